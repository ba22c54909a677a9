from __future__ import annotations

from pathlib import Path

import pytest

from events.errors import InvalidSpec
from sdk.repo import load_repo

REPO = Path(__file__).resolve().parents[2]


def test_quickstart_compiles_to_specs() -> None:
    repo = load_repo(REPO / "examples" / "quickstart")
    assert [e.name for e in repo.entities] == ["user"]
    assert [s.topic for s in repo.stream_sources] == ["transactions"]
    (view,) = repo.feature_views
    assert [f.name for f in view.features] == ["last_amount", "last_merchant", "last_is_online"]
    assert repo.feature_services[0].feature_views == ("user_last_transaction",)


@pytest.mark.parametrize(("source", "fragment"), [
    ("x = 1\n", "declares no entities"),
    ("def broken(:\n", "SyntaxError"),
    ("raise RuntimeError('boom')\n", "RuntimeError: boom"),
    ("from sdk import Entity, FeatureService, Field, StreamFeatureView, StreamSource, Attribute\n"
     "s = StreamSource('s', 't', 'ts', [Field('ts', 'timestamp')])\n"
     "v = StreamFeatureView('v', s, [Entity('user', ['user_id'])], [Attribute('amount', 'float64')])\n",
     "unknown entity 'user'"),
])
def test_bad_repositories_name_the_file_and_the_problem(tmp_path: Path, source: str, fragment: str) -> None:
    (tmp_path / "features.py").write_text(source)
    with pytest.raises(InvalidSpec, match=fragment) as error:
        load_repo(tmp_path)
    assert str(tmp_path) in error.value.message


def test_missing_folder_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpec, match="no such feature repository"):
        load_repo(tmp_path / "nope")
