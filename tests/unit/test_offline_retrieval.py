"""Offline retrieval from a real Parquet offline store: point-in-time joins, TTL, range reads, errors.

The randomized comparison with a plain-Python reference is in test_offline_retrieval_properties.py; the
helpers here are shared with it.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from events.data import Coordinates, FeatureRow, Scalar, SourceRange, WriteOfflineRows
from events.errors import InvalidRequest, NotFound, StoreError, UnknownFeatureService, UnknownFeatureView
from events.specs import (
    AggregateSpec,
    DType,
    EntitySpec,
    FeatureServiceSpec,
    FeatureSpec,
    FeatureViewKind,
    FeatureViewSpec,
    RepoSpec,
    TimeWindowSpec,
    TransformationMode,
    TransformationSpec,
)
from sdk.offline import OfflineFeatures, workspace_of
from stores.offline import OfflineWrite, ParquetOfflineStore

T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)
US = timedelta(microseconds=1)
WS = "prod"
TTL = timedelta(hours=1)


def view(name: str, entities: tuple[str, ...], *features: tuple[str, DType], ttl: timedelta | None = None,
         **more: Any) -> FeatureViewSpec:
    specs = tuple(FeatureSpec(n, n, t) for n, t in features)
    ttl_s = None if ttl is None else int(ttl.total_seconds())
    return FeatureViewSpec(name, entities, "src", specs, ttl_s=ttl_s, **more)


USERS = view("users", ("user",), ("amount", DType.INT64), ("city", DType.STRING), ttl=TTL)
MERCHANTS = view("merchants", ("merchant",), ("risk", DType.FLOAT64))
PAIRS = view("pairs", ("user", "merchant"), ("visits", DType.INT64))
REPO = RepoSpec(
    entities=(EntitySpec("user", ("user_id",)), EntitySpec("merchant", ("merchant_id",))),
    feature_views=(
        USERS, MERCHANTS, PAIRS,
        view("spend", ("user",), aggregates=(AggregateSpec("total", "amount", "sum", TimeWindowSpec(3600)),),
             kind=FeatureViewKind.BATCH),
        view("scored", (), ("score", DType.FLOAT64), kind=FeatureViewKind.REALTIME,
             transformation=TransformationSpec(TransformationMode.SQL, "select 1")),
        view("online_only", ("user",), ("amount", DType.INT64), offline=False),
        view("never_written", ("user",), ("flag", DType.BOOL)),
        view("ancient", ("user",), ("amount", DType.INT64), ttl=timedelta(days=900_000)),
    ),
    feature_services=(
        FeatureServiceSpec("users", ("users",)),
        FeatureServiceSpec("fraud", ("users", "merchants", "pairs")),
        FeatureServiceSpec("spend", ("users", "spend")),
        FeatureServiceSpec("scored", ("scored",)),
        FeatureServiceSpec("online_only", ("online_only",)),
        FeatureServiceSpec("never_written", ("never_written",)),
        FeatureServiceSpec("ancient", ("ancient",)),
        FeatureServiceSpec("dangling", ("users", "deleted_view")),
    ),
)
KEYS = {"users": ("user_id",), "ancient": ("user_id",), "merchants": ("merchant_id",),
        "pairs": ("user_id", "merchant_id")}


class Writer:
    """Appends rows the way the OfflineStore actor does: one OfflineWrite per consumed message."""

    def __init__(self, store: ParquetOfflineStore, workspace: str = WS) -> None:
        self.store = store
        self.workspace = workspace
        self.offsets = itertools.count()

    def write(self, fv: str, join_keys: Sequence[str], rows: Sequence[FeatureRow]) -> OfflineWrite:
        offset = next(self.offsets)
        body = WriteOfflineRows(fv, tuple(join_keys), tuple(rows), SourceRange("src", 0, offset, offset))
        return OfflineWrite(Coordinates("offline-writes", 0, offset), self.workspace, body, f"event-{offset}")

    def append(self, fv: str, *rows: FeatureRow) -> None:
        """One message, one commit."""
        assert self.store.append([self.write(fv, KEYS[fv], rows)]) == 1


def at(key: Scalar | tuple[Scalar, ...], when: datetime, **values: Scalar) -> FeatureRow:
    return FeatureRow(key if isinstance(key, tuple) else (key,), when, values)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ParquetOfflineStore]:
    with ParquetOfflineStore(tmp_path / "offline") as opened:
        yield opened


@pytest.fixture
def writer(store: ParquetOfflineStore) -> Writer:
    return Writer(store)


@pytest.fixture
def offline(store: ParquetOfflineStore) -> OfflineFeatures:
    return OfflineFeatures(store, workspace_of(REPO, WS))


def events(**columns: Sequence[Any]) -> pl.DataFrame:
    """An event frame with the test repository's key types, so that all-null columns stay typed."""
    types: Mapping[str, pl.DataType] = {"user_id": pl.String(), "merchant_id": pl.Int64(),
                                        "ts": pl.Datetime("us", "UTC"), "n": pl.Int64()}
    return pl.DataFrame({name: pl.Series(name, values, dtype=types.get(name)) for name, values in columns.items()})


def user_features(offline: OfflineFeatures, users: Sequence[str | None], times: Sequence[datetime | None],
                  ) -> list[tuple[Any, Any]]:
    result = offline.get_features_for_events(events(user_id=users, ts=times), "users", "ts")
    return list(zip(result["users__amount"], result["users__city"], strict=True))


# --- point in time ---------------------------------------------------------------------------------------


def test_a_row_at_the_event_time_counts_and_one_a_microsecond_later_does_not(
        writer: Writer, offline: OfflineFeatures) -> None:
    writer.append("users", at("u1", T0 - timedelta(minutes=5), amount=1, city="a"))
    writer.append("users", at("u1", T0, amount=2, city="b"), at("u2", T0 + US, amount=3, city="c"))
    writer.append("users", at("u2", T0 - timedelta(minutes=5), amount=4, city="d"))
    assert user_features(offline, ["u1", "u1", "u2", "u2"], [T0 - US, T0, T0, T0 + US]) == [
        (1, "a"), (2, "b"), (4, "d"), (3, "c")]


def test_the_latest_row_wins_whatever_the_write_order(writer: Writer, offline: OfflineFeatures) -> None:
    writer.append("users", at("u1", T0, amount=3, city="late"))
    writer.append("users", at("u1", T0 - timedelta(minutes=2), amount=1, city="early"),
                  at("u1", T0 - timedelta(minutes=1), amount=2, city="middle"))
    assert user_features(offline, ["u1", "u1", "u1"], [T0 - US, T0 - timedelta(minutes=2), T0 + US]) == [
        (2, "middle"), (1, "early"), (3, "late")]


def test_of_rows_with_the_same_key_and_time_the_last_written_wins(writer: Writer, offline: OfflineFeatures,
                                                                   store: ParquetOfflineStore) -> None:
    writer.append("users", at("u1", T0, amount=1, city="first"))
    writer.append("users", at("u1", T0, amount=2, city="second"), at("u1", T0, amount=3, city="third"))
    # Two messages in one commit: the later message is written after the earlier one.
    store.append([writer.write("users", ["user_id"], [at("u2", T0, amount=4, city="x")]),
                  writer.write("users", ["user_id"], [at("u2", T0, amount=5, city="y")])])
    assert user_features(offline, ["u1", "u2"], [T0, T0]) == [(3, "third"), (5, "y")]


def test_a_null_value_in_the_latest_row_is_not_filled_from_older_rows(writer: Writer,
                                                                       offline: OfflineFeatures) -> None:
    writer.append("users", at("u1", T0 - timedelta(minutes=2), amount=1, city="a"),
                  at("u1", T0 - timedelta(minutes=1), amount=None, city="b"))
    assert user_features(offline, ["u1"], [T0]) == [(None, "b")]


def test_rows_older_than_the_ttl_have_expired(writer: Writer, offline: OfflineFeatures) -> None:
    writer.append("users", at("u1", T0 - TTL - timedelta(minutes=1), amount=1, city="old"),
                  at("u1", T0, amount=2, city="new"))
    # A row counts until its event time + TTL inclusive; once the latest row expires, an older one does
    # not come back.
    old_expires = T0 - timedelta(minutes=1)
    times = [T0 + TTL, T0 + TTL + US, old_expires, old_expires + US, T0 - US]
    assert user_features(offline, ["u1"] * 5, times) == [(2, "new"), (None, None), (1, "old"), (None, None),
                                                         (None, None)]


def test_views_without_ttl_never_expire(writer: Writer, offline: OfflineFeatures) -> None:
    writer.append("merchants", at(7, T0 - timedelta(days=3000), risk=0.5))
    result = offline.get_features_for_events(events(user_id=["u1"], merchant_id=[7], ts=[T0]), "fraud", "ts")
    assert result["merchants__risk"].to_list() == [0.5]


def test_a_ttl_longer_than_the_calendar_expires_nothing(writer: Writer, offline: OfflineFeatures) -> None:
    writer.append("ancient", at("u1", datetime(1, 1, 2, tzinfo=UTC), amount=1))
    result = offline.get_features_for_events(events(user_id=["u1"], ts=[T0]), "ancient", "ts")
    assert result["ancient__amount"].to_list() == [1]


def test_missing_keys_timestamps_and_rows_give_null_features(writer: Writer, offline: OfflineFeatures) -> None:
    writer.append("users", at("u1", T0 - timedelta(minutes=1), amount=1, city="a"))
    assert user_features(offline, ["u1", None, "u1", "nobody", "u1"], [T0, T0, None, T0, T0]) == [
        (1, "a"), (None, None), (None, None), (None, None), (1, "a")]


def test_views_with_different_entities_join_on_their_own_keys(writer: Writer, offline: OfflineFeatures) -> None:
    writer.append("users", at("u1", T0 - timedelta(minutes=3), amount=10, city="a"))
    writer.append("merchants", at(7, T0 - timedelta(minutes=2), risk=0.1), at(8, T0 - timedelta(minutes=2), risk=0.9))
    writer.append("pairs", at(("u1", 7), T0 - timedelta(minutes=1), visits=3),
                  at(("u2", 8), T0 - timedelta(minutes=1), visits=4))
    frame = events(user_id=["u1", "u1", "u2", "u2"], merchant_id=[7, 8, 7, 8], ts=[T0] * 4)
    result = offline.get_features_for_events(frame, "fraud", "ts")
    assert result.columns == ["user_id", "merchant_id", "ts", "users__amount", "users__city", "merchants__risk",
                              "pairs__visits"]
    assert result.drop("ts").rows() == [
        ("u1", 7, 10, "a", 0.1, 3), ("u1", 8, 10, "a", 0.9, None), ("u2", 7, None, None, 0.1, None),
        ("u2", 8, None, None, 0.9, 4)]


def test_event_order_duplicates_and_other_columns_are_kept(writer: Writer, offline: OfflineFeatures) -> None:
    writer.append("users", at("u1", T0, amount=1, city="a"), at("u2", T0, amount=2, city="b"))
    times = [T0 + timedelta(minutes=m) for m in (9, 1, 5, 1, 3)]
    frame = events(n=[0, 1, 2, 3, 4], user_id=["u2", "u1", "u1", "u1", "u2"], ts=times)
    result = offline.get_features_for_events(frame.with_columns(label=pl.lit("x")), "users", "ts")
    assert result.columns == ["n", "user_id", "ts", "label", "users__amount", "users__city"]
    assert result.select("n", "user_id", "ts", "label").equals(frame.with_columns(label=pl.lit("x")))
    assert result["users__amount"].to_list() == [2, 1, 1, 1, 2]


def test_naive_zoned_and_nanosecond_timestamps_are_compared_in_utc(writer: Writer,
                                                                   offline: OfflineFeatures) -> None:
    writer.append("users", at("u1", T0, amount=1, city="a"))
    naive = pl.Series([T0.replace(tzinfo=None), (T0 - US).replace(tzinfo=None)])
    # 13:59:59.999999999 in Paris is 1 ns before the row: the flooring to microseconds must not reach it.
    paris = pl.Series([T0, T0]).dt.convert_time_zone("Europe/Paris").dt.cast_time_unit("ns")
    paris = paris + pl.Series([0, -1]).cast(pl.Duration("ns"))
    for times in (naive, paris):
        frame = pl.DataFrame({"user_id": ["u1", "u1"], "ts": times})
        result = offline.get_features_for_events(frame, "users", "ts")
        assert result["users__amount"].to_list() == [1, None]
        assert result["ts"].equals(times.alias("ts"))  # the caller's column is untouched


def test_lazy_events_and_narrower_integer_keys_are_accepted(writer: Writer, offline: OfflineFeatures) -> None:
    writer.append("merchants", at(7, T0, risk=0.5))
    frame = pl.LazyFrame({"user_id": ["u1", "u1"], "merchant_id": pl.Series([7, -1], dtype=pl.Int8()),
                          "ts": [T0, T0]})
    result = offline.get_features_for_events(frame, "fraud", "ts")
    assert result["merchants__risk"].to_list() == [0.5, None]
    assert result.schema["merchant_id"] == pl.Int8()


def test_features_never_written_are_nulls_of_their_declared_type(writer: Writer,
                                                                 offline: OfflineFeatures) -> None:
    writer.append("users", at("u1", T0, amount=None, city="a"))
    result = offline.get_features_for_events(events(user_id=["u1"], ts=[T0]), "never_written", "ts")
    assert result.schema["never_written__flag"] == pl.Boolean()
    assert result["never_written__flag"].to_list() == [None]
    assert user_features(offline, ["u1"], [T0]) == [(None, "a")]
    typed = offline.get_features_for_events(events(user_id=["u1"], ts=[T0]), "users", "ts")
    assert typed.schema["users__amount"] == pl.Int64()


def test_no_events_give_an_empty_frame_with_every_column(writer: Writer, offline: OfflineFeatures) -> None:
    writer.append("users", at("u1", T0, amount=1, city="a"))
    result = offline.get_features_for_events(events(user_id=[], ts=[]), "users", "ts")
    assert result.height == 0
    assert result.columns == ["user_id", "ts", "users__amount", "users__city"]


def test_results_convert_to_arrow(writer: Writer, offline: OfflineFeatures) -> None:
    writer.append("users", at("u1", T0, amount=1, city="a"))
    result = offline.get_features_for_events(events(user_id=["u1"], ts=[T0]), "users", "ts")
    assert result.to_arrow().to_pylist() == [{"user_id": "u1", "ts": T0, "users__amount": 1, "users__city": "a"}]


def test_results_convert_to_pandas(writer: Writer, offline: OfflineFeatures) -> None:
    import pandas as pd  # a dev dependency: training code usually wants pandas

    writer.append("users", at("u1", T0, amount=1, city="a"))
    result = offline.get_features_for_events(events(user_id=["u1", "u2"], ts=[T0, T0]), "users", "ts")
    cities = result.to_pandas()["users__city"].tolist()
    assert cities[0] == "a"
    assert pd.isna(cities[1])


# --- errors ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("service", "error", "words"), [
    ("nope", UnknownFeatureService, "feature service 'nope' does not exist in workspace 'prod'"),
    ("dangling", UnknownFeatureView, "feature view 'deleted_view' (asked for by feature service 'dangling')"),
    ("spend", InvalidRequest, "'spend' is a batch view with aggregates: those are not materialized offline yet"),
    ("scored", InvalidRequest, "'scored' is a realtime view"),
    ("online_only", InvalidRequest, "'online_only' has offline=False"),
])
def test_services_that_cannot_be_read_offline(offline: OfflineFeatures, service: str, error: type[Exception],
                                              words: str) -> None:
    with pytest.raises(error, match=re.escape(words)):
        offline.get_features_for_events(events(user_id=["u1"], ts=[T0]), service, "ts")


def test_unknown_names_are_not_found_errors() -> None:
    assert issubclass(UnknownFeatureView, NotFound)
    assert issubclass(UnknownFeatureService, NotFound)


@pytest.mark.parametrize(("frame", "words"), [
    (pl.DataFrame({"user_id": ["u1"], "when": [T0]}), "no timestamp column 'ts'"),
    (pl.DataFrame({"user_id": ["u1"], "ts": ["2024-05-01T12:00:00Z"]}), "timestamp column 'ts' is String"),
    (pl.DataFrame({"ts": [T0]}), "no join key column 'user_id', which feature view 'users' needs"),
    (pl.DataFrame({"user_id": [1], "ts": [T0]}), "join key 'user_id' is Int64 in the events but String"),
    (pl.DataFrame({"user_id": ["u1"], "ts": [T0], "users__city": ["x"]}), "already have column 'users__city'"),
    (pl.DataFrame({"user_id": ["u1"], "ts": [T0], "__fp_row": [1]}), "already have column '__fp_row'"),
    ([{"user_id": "u1", "ts": T0}], "must be a polars DataFrame or LazyFrame, not list"),
], ids=["no timestamp", "string timestamp", "no key", "key type", "taken output", "taken working column",
        "not polars"])
def test_events_that_break_the_contract(writer: Writer, offline: OfflineFeatures, frame: Any, words: str) -> None:
    writer.append("users", at("u1", T0, amount=1, city="a"))
    with pytest.raises(InvalidRequest, match=re.escape(words)):
        offline.get_features_for_events(frame, "users", "ts")


# --- rows in a range -------------------------------------------------------------------------------------


def test_range_reads_start_inclusive_end_exclusive_in_time_order(writer: Writer, offline: OfflineFeatures) -> None:
    writer.append("users", at("u2", T0 + timedelta(minutes=1), amount=3, city="c"), at("u1", T0 + TTL, amount=4))
    writer.append("users", at("u1", T0, amount=2, city="b"), at("u1", T0 - US, amount=1, city="a"))
    result = offline.get_features_in_range("users", T0, T0 + TTL)
    assert result.columns == ["user_id", "event_time", "amount", "city", "_valid_from", "_valid_to"]
    assert result.drop("_valid_from", "_valid_to").rows() == [("u1", T0, 2, "b"),
                                                              ("u2", T0 + timedelta(minutes=1), 3, "c")]
    # u1's row holds until u1's next row; u2 has no next row, so its ttl (1 h) ends it
    assert result.select("_valid_from", "_valid_to").rows() == [
        (T0, T0 + TTL), (T0 + timedelta(minutes=1), T0 + timedelta(minutes=1) + TTL)]
    assert offline.get_features_in_range("users", T0, T0).height == 0
    everything = offline.get_features_in_range("users", T0 - US, T0 + TTL + US)
    assert everything["amount"].to_list() == [1, 2, 3, 4]


def test_range_reads_filter_entities_and_add_lineage_on_request(writer: Writer, offline: OfflineFeatures) -> None:
    writer.append("pairs", at(("u1", 7), T0, visits=1), at(("u1", 8), T0, visits=2), at(("u2", 7), T0, visits=3))
    entities = pl.DataFrame({"merchant_id": pl.Series([7, 7, 1000], dtype=pl.Int16()), "user_id": ["u1"] * 3})
    result = offline.get_features_in_range("pairs", T0.replace(tzinfo=None), T0 + US, entities,
                                           include_lineage=True)
    assert result.drop("_valid_from", "_valid_to").rows() == [("u1", 7, T0, 1, "event-0")]
    assert result.schema["merchant_id"] == pl.Int64()


def test_range_reads_of_a_view_never_written_are_empty_but_typed(offline: OfflineFeatures) -> None:
    result = offline.get_features_in_range("never_written", T0, T0 + TTL)
    assert result.height == 0
    assert result.schema == pl.Schema({"user_id": pl.Null(), "event_time": pl.Datetime("us", "UTC"),
                                       "flag": pl.Boolean(), "_valid_from": pl.Datetime("us", "UTC"),
                                       "_valid_to": pl.Datetime("us", "UTC")})


@pytest.mark.parametrize(("call", "error", "words"), [
    (lambda o: o.get_features_in_range("nope", T0, T0), UnknownFeatureView, "feature view 'nope'"),
    (lambda o: o.get_features_in_range("spend", T0, T0), InvalidRequest, "not materialized offline"),
    (lambda o: o.get_features_in_range("users", T0, T0 - US), InvalidRequest, "is before start"),
    (lambda o: o.get_features_in_range("users", T0.date(), T0), InvalidRequest, "start must be a datetime"),
    (lambda o: o.get_features_in_range("users", T0, T0 + US, pl.DataFrame({"user": ["u1"]})), InvalidRequest,
     "entities have no join key column 'user_id'"),
])
def test_range_reads_that_cannot_be_answered(writer: Writer, offline: OfflineFeatures, call: Any,
                                             error: type[Exception], words: str) -> None:
    writer.append("users", at("u1", T0, amount=1, city="a"))
    with pytest.raises(error, match=re.escape(words)):
        call(offline)


# --- opening a store -------------------------------------------------------------------------------------


def test_open_reads_the_writers_commits_and_closing_closes_the_store(tmp_path: Path, writer: Writer) -> None:
    with OfflineFeatures.open(tmp_path / "offline", REPO, WS) as offline:
        assert user_features(offline, ["u1"], [T0]) == [(None, None)]
        writer.append("users", at("u1", T0, amount=1, city="a"))
        assert user_features(offline, ["u1"], [T0]) == [(1, "a")]
    with pytest.raises(StoreError, match="closed"):
        offline.get_features_in_range("users", T0, T0 + US)
    other = OfflineFeatures.open(tmp_path / "offline", REPO, "staging")
    assert other.get_features_in_range("users", T0, T0 + US).height == 0  # views are per workspace
    other.close()
    other.close()


def test_open_refuses_a_folder_that_is_no_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no manifest"):
        OfflineFeatures.open(tmp_path / "empty", REPO, WS)
