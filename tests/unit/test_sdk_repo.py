"""Loading repositories: every problem is reported at once, prefixed by the file that declares the object;
compiled repos travel through the codec, and older encodings still decode."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import msgpack
import pytest

from events import control
from events.codec import CODEC
from events.planes import Component
from events.specs import DType, FeatureSpec, FeatureViewKind, FeatureViewSpec, RepoSpec
from sdk.repo import InvalidRepo, load_repo

ROOT = Path(__file__).resolve().parents[2]
HEADER = ("from datetime import timedelta\n"
          "from sdk import Attribute, BatchSource, Entity, FeatureService, Field, StreamFeatureView, StreamSource\n")
SOURCES = HEADER + (
    "user = Entity('user', ['user_id'])\n"
    "tx = StreamSource('tx', 'tx', 'ts', [Field('user_id', 'string'), Field('ts', 'timestamp'),\n"
    "                                    Field('amount', 'float64')])\n"
)


def _repo(folder: Path, **files: str) -> Path:
    for name, text in files.items():
        (folder / f"{name}.py").write_text(text)
    return folder


def _errors(folder: Path) -> tuple[str, ...]:
    with pytest.raises(InvalidRepo) as error:
        load_repo(folder)
    assert error.value.message == "\n".join(error.value.errors)
    return error.value.errors


def test_every_problem_of_every_file_is_reported_with_its_file(tmp_path: Path) -> None:
    repo = _repo(
        tmp_path, a_sources=SOURCES,
        b_views=HEADER + "from a_sources import tx, user\n"
        "v = StreamFeatureView('v', tx, [user], [Attribute('nope', 'string')], ttl=timedelta(0))\n"
        "w = StreamFeatureView('w', StreamSource('clicks', 'c', 'ts', []), [user], [Attribute('x', 'bool')])\n",
        c_services="from sdk import FeatureService\nfrom b_views import v\nsvc = FeatureService('svc', [v])\n"
                   "other = FeatureService('other', [])\n",
    )
    b, c = tmp_path / "b_views.py", tmp_path / "c_services.py"
    assert _errors(repo) == (
        f"{b}: feature view 'v': ttl must be positive, got 0s",
        f"{b}: feature view 'v': feature 'nope' reads column 'nope', which source 'tx' does not have",
        f"{b}: feature view 'w': unknown source 'clicks'",
        f"{c}: feature service 'other': lists no feature views",
    )


def test_objects_are_attributed_to_the_file_that_declares_them_not_the_importer(tmp_path: Path) -> None:
    repo = _repo(tmp_path, a_views=HEADER + "from z_sources import tx, user\n"
                 "v = StreamFeatureView('v', tx, [user], [Attribute('amount', 'float64')])\n",
                 z_sources=SOURCES.replace("['user_id']", "['user id']"))
    z = tmp_path / "z_sources.py"
    assert _errors(repo) == (
        f"{z}: entity 'user': join key 'user id' is not a Python identifier",
        f"{tmp_path / 'a_views.py'}: feature view 'v': join key 'user id' is not a column of source 'tx'",
    )


def test_the_same_name_in_two_files_is_declared_twice(tmp_path: Path) -> None:
    repo = _repo(tmp_path, a=SOURCES,
                 b=HEADER + "user = Entity('user', ['user_id'])\ntx = BatchSource('tx', 'p', 'ts', [])\n")
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    assert _errors(repo) == (f"{b}: entity 'user' is declared twice (also in {a})",
                             f"{b}: batch source 'tx' is declared twice (also in {a})")


def test_one_object_bound_to_two_names_is_one_declaration(tmp_path: Path) -> None:
    repo = load_repo(_repo(tmp_path, a=SOURCES + "customer = user\n"
                                       "v = StreamFeatureView('v', tx, [user], [Attribute('amount', 'float64')])\n"))
    assert [e.name for e in repo.entities] == ["user"]


def test_a_wrong_type_names_the_file_line_and_object(tmp_path: Path) -> None:
    repo = _repo(tmp_path, a=SOURCES + "\nv = StreamFeatureView('v', tx, [user], [], ttl='1 day')\n",
                 b="raise RuntimeError('boom')\n")
    assert _errors(repo) == (
        f"{tmp_path / 'a.py'}:7: feature view 'v': ttl must be a datetime.timedelta, got str '1 day'",
        f"{tmp_path / 'b.py'}: RuntimeError: boom",
    )


def test_a_transformation_that_does_not_compile_is_reported_with_its_file(tmp_path: Path) -> None:
    repo = _repo(tmp_path, a=SOURCES + "v = StreamFeatureView('v', tx, [user], [Attribute('amount', 'float64')],\n"
                                       "                      transformation='SELECT amount FROM elsewhere')\n")
    assert _errors(repo) == (
        f"{tmp_path / 'a.py'}: feature view 'v': transformation is not valid polars SQL: relation 'elsewhere' "
        f"was not found",
        f"{tmp_path / 'a.py'}: feature view 'v': its transformation produces no columns",
    )


def test_a_feature_view_without_entities_is_reported_with_its_file(tmp_path: Path) -> None:
    repo = _repo(tmp_path, a=SOURCES, b=HEADER + "from a import tx\n"
                 "lonely = StreamFeatureView('lonely', tx, [], [Attribute('amount', 'float64')])\n")
    assert _errors(repo) == (f"{tmp_path / 'b.py'}: feature view 'lonely': has no entities",)


def test_a_window_smaller_than_the_aggregation_interval_is_reported_with_its_file(tmp_path: Path) -> None:
    repo = _repo(tmp_path, a=SOURCES + "from sdk import Aggregate, TimeWindow\n"
                 "five = Aggregate('amount', 'sum', TimeWindow(timedelta(minutes=5)), name='amount_5m')\n"
                 "v = StreamFeatureView('v', tx, [user], [five],\n"
                 "                      aggregation_interval=timedelta(minutes=10))\n")
    assert _errors(repo) == (
        f"{tmp_path / 'a.py'}: feature view 'v': aggregate 'amount_5m': window 5m is smaller than the aggregation "
        f"interval 10m",)


def test_loading_leaves_no_repository_module_or_path_behind(tmp_path: Path) -> None:
    path_before, modules_before = list(sys.path), set(sys.modules)
    load_repo(ROOT / "examples" / "fraud")
    assert sys.path == path_before
    assert not {m for m in set(sys.modules) - modules_before if m in ("sources", "features")}


def test_the_fraud_example_compiles_every_kind() -> None:
    repo = load_repo(ROOT / "examples" / "fraud")
    kinds = {v.name: v.kind for v in repo.feature_views}
    assert kinds == {"user_spending": FeatureViewKind.BATCH, "user_velocity": FeatureViewKind.STREAM,
                     "merchant_chargebacks": FeatureViewKind.STREAM, "user_last_transaction": FeatureViewKind.STREAM,
                     "transaction_risk": FeatureViewKind.REALTIME}
    assert ([s.name for s in repo.batch_sources], [s.name for s in repo.stream_sources],
            [s.name for s in repo.push_sources]) == (["transactions_history"], ["transactions_stream"], ["chargebacks"])
    assert repo.stream_sources[0].batch_source == "transactions_history"
    assert repo.feature_services[0].feature_views == (
        "user_spending", "user_velocity", "merchant_chargebacks", "transaction_risk")


@pytest.mark.parametrize("example", ["fraud", "quickstart"])
def test_a_compiled_repo_round_trips_through_the_codec(example: str) -> None:
    repo = load_repo(ROOT / "examples" / example)
    message = CODEC.message(control.ApplyRepo("id", repo), producer=Component.OPERATOR, workspace="w")
    assert CODEC.decode(CODEC.encode(message)).body.repo == repo


def test_the_quickstart_view_compiles_to_the_legacy_fields_and_defaults() -> None:
    (view,) = load_repo(ROOT / "examples" / "quickstart").feature_views
    assert view == FeatureViewSpec(
        "user_last_transaction", ("user",), "transactions",
        (FeatureSpec("last_amount", "amount", DType.FLOAT64), FeatureSpec("last_merchant", "merchant", DType.STRING),
         FeatureSpec("last_is_online", "is_online", DType.BOOL)),
        True, True, "The most recent transaction of each user")


def _old(tag: str, *values: Any) -> msgpack.ExtType:
    """A nested value as the codec encoded it before specs gained fields."""
    return msgpack.ExtType(1, msgpack.packb([tag, *values]))


def test_an_old_positional_encoding_still_decodes() -> None:
    old_view = _old("FeatureViewSpec", "v", ("user",), "tx", (_old("FeatureSpec", "a", "amount", "float64"),),
                    True, False, "old")
    old_repo = _old("RepoSpec", (_old("EntitySpec", "user", ("user_id",), ""),),
                    (_old("StreamSourceSpec", "tx", "tx", "ts", (_old("FieldSpec", "ts", "timestamp"),), "json", ""),),
                    (old_view,), (_old("FeatureServiceSpec", "svc", ("v",), ""),))
    current = CODEC.message(control.ApplyRepo("id", RepoSpec()), producer=Component.OPERATOR, workspace="w")
    frame = msgpack.unpackb(CODEC.encode(current), timestamp=3)
    frame[11] = {"apply_id": "id", "repo": old_repo}
    repo = CODEC.decode(msgpack.packb(frame, datetime=True)).body.repo
    (view,) = repo.feature_views
    assert view == FeatureViewSpec("v", ("user",), "tx", (FeatureSpec("a", "amount", DType.FLOAT64),), True, False,
                                   "old")
    assert (view.kind, view.aggregates, view.transformation, view.tags) == (FeatureViewKind.STREAM, (), None, {})
    assert (repo.batch_sources, repo.push_sources) == ((), ())
    assert repo.stream_sources[0].batch_source == ""
