"""A batch view's `compute`: compiled by the SDK, checked by repository validation."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from events.specs import FeatureViewKind
from events.validation import repo_errors
from sdk import Attribute, BatchFeatureView, BatchSource, Entity, Field
from tests.unit.fixtures import REPO

user = Entity(name="user", join_keys=["user_id"])
source = BatchSource(name="tx", path="/data/tx.parquet", timestamp_field="ts",
                     schema=[Field("user_id", "string"), Field("ts", "timestamp"), Field("amount", "float64")])


def view(**kwargs: object) -> BatchFeatureView:
    return BatchFeatureView(name="spend", source=source, entities=[user], features=[Attribute("amount", "float64")],
                            batch_schedule=timedelta(days=1), **kwargs)  # type: ignore[arg-type]


def test_compute_defaults_to_rift_and_compiles_into_the_spec() -> None:
    assert view().spec().compute == "rift"
    assert view(compute="external").spec().compute == "external"


def test_validation_names_an_unknown_compute_and_a_stream_view_that_chooses_one() -> None:
    bad = view(compute="spark").spec()
    repo = replace(REPO, batch_sources=(source.spec(),), feature_views=(*REPO.feature_views, bad))
    assert any("compute must be one of ['rift', 'external']" in e for e in repo_errors(repo))
    stream = replace(REPO.feature_views[0], compute="external")
    assert stream.kind is FeatureViewKind.STREAM
    errors = repo_errors(replace(REPO, feature_views=(stream,)))
    assert any("only batch feature views choose their compute" in e for e in errors)
    assert repo_errors(REPO) == []
