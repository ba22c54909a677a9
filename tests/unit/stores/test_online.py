"""The OnlineStore contract, run against LMDB and the in-memory store; then what only LMDB has."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import lmdb
import msgpack
import pytest

from events.data import Coordinates, FeatureRow, Lookup, Scalar, SourceRange, StoredRow, WriteOnlineRows
from events.errors import StoreError
from stores.offsets import FORMAT_VERSION_KEY
from stores.online import (
    FORMAT_VERSION,
    InMemoryOnlineStore,
    LmdbOnlineStore,
    OnlineStore,
    OnlineWrite,
)

T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def row(key: tuple[Scalar, ...], minutes: int, **values: Scalar) -> FeatureRow:
    return FeatureRow(key, at(minutes), values)


def write(offset: int, *rows: FeatureRow, fv: str = "fv", ws: str = "ws", partition: int = 0) -> OnlineWrite:
    source = SourceRange("src", 0, offset, offset)
    return OnlineWrite(Coordinates("online-writes", partition, offset), ws,
                       WriteOnlineRows(fv, rows, source), f"event-{partition}-{offset}")


def read_one(store: OnlineStore, key: tuple[Scalar, ...], fv: str = "fv", ws: str = "ws") -> StoredRow | None:
    return store.read(ws, [Lookup(fv, key)])[0]


@pytest.fixture(params=["lmdb", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    backend: OnlineStore = (LmdbOnlineStore(tmp_path / "online") if request.param == "lmdb"
                            else InMemoryOnlineStore())
    with backend:
        yield backend


# --- contract --------------------------------------------------------------------------------------------


def test_missing_keys_read_as_none_aligned_with_lookups(store: OnlineStore) -> None:
    store.apply_writes([write(0, row(("u1",), 0, a=1))])
    found = store.read("ws", [Lookup("fv", ("nope",)), Lookup("fv", ("u1",)), Lookup("other", ("u1",)),
                              Lookup("fv", ("u1",))])
    assert [None if f is None else f.row.values for f in found] == [None, {"a": 1}, None, {"a": 1}]
    assert store.read("ws", []) == []


def test_latest_event_time_wins_whatever_the_arrival_order(store: OnlineStore) -> None:
    assert store.apply_writes([write(0, row(("u1",), 10, a=10))]) == 1
    assert store.apply_writes([write(1, row(("u1",), 5, a=5))]) == 1  # older: applied, but loses
    assert read_one(store, ("u1",)) == StoredRow(row(("u1",), 10, a=10), "event-0-0")
    store.apply_writes([write(2, row(("u1",), 11, a=11), row(("u1",), 7, a=7))])
    assert read_one(store, ("u1",)) == StoredRow(row(("u1",), 11, a=11), "event-0-2")


def test_on_equal_event_times_the_later_write_wins(store: OnlineStore) -> None:
    store.apply_writes([write(0, row(("u1",), 1, a="first")), write(1, row(("u1",), 1, a="second"))])
    assert read_one(store, ("u1",)) == StoredRow(row(("u1",), 1, a="second"), "event-0-1")
    store.apply_writes([write(2, row(("u1",), 1, a="third"), row(("u1",), 1, a="fourth"))])
    assert read_one(store, ("u1",)) == StoredRow(row(("u1",), 1, a="fourth"), "event-0-2")
    store.apply_writes([write(3, row(("u1",), 1, a="fifth"))])
    assert read_one(store, ("u1",)) == StoredRow(row(("u1",), 1, a="fifth"), "event-0-3")


def test_replayed_messages_are_skipped(store: OnlineStore) -> None:
    batch = [write(0, row(("u1",), 0, a=1)), write(1, row(("u2",), 0, a=2))]
    assert store.apply_writes(batch) == 2
    before = store.read("ws", [Lookup("fv", ("u1",)), Lookup("fv", ("u2",))])
    # Same coordinates with newer rows: a replay is identified by its position, not its content.
    replay = [write(0, row(("u1",), 99, a=100)), write(1, row(("u3",), 0, a=3))]
    assert store.apply_writes(replay) == 0
    assert store.read("ws", [Lookup("fv", ("u1",)), Lookup("fv", ("u2",))]) == before
    assert read_one(store, ("u3",)) is None
    assert store.applied_offsets() == {("online-writes", 0): 2}


def test_a_message_twice_in_one_batch_is_applied_once(store: OnlineStore) -> None:
    first, again = write(5, row(("u1",), 0, a=1)), write(5, row(("u1",), 50, a=2))
    assert store.apply_writes([first, again]) == 1
    assert read_one(store, ("u1",)) == StoredRow(row(("u1",), 0, a=1), "event-0-5")


def test_applied_offsets_are_the_next_offset_per_partition(store: OnlineStore) -> None:
    assert store.applied_offsets() == {}
    store.apply_writes([write(3, partition=0), write(9, partition=1), write(4, partition=0)])
    assert store.applied_offsets() == {("online-writes", 0): 5, ("online-writes", 1): 10}
    assert store.apply_writes([write(4, row(("u1",), 0), partition=0), write(0, partition=2)]) == 1
    assert store.applied_offsets() == {("online-writes", 0): 5, ("online-writes", 1): 10,
                                       ("online-writes", 2): 1}


def test_rows_are_scoped_by_workspace_and_feature_view(store: OnlineStore) -> None:
    store.apply_writes([write(0, row(("k",), 0, a="ws/fv")),
                        write(1, row(("k",), 0, a="ws/other"), fv="other"),
                        write(2, row(("k",), 0, a="ws2/fv"), ws="ws2")])
    found = [read_one(store, ("k",), fv, ws) for ws, fv in [("ws", "fv"), ("ws", "other"), ("ws2", "fv")]]
    assert [f and f.row.values["a"] for f in found] == ["ws/fv", "ws/other", "ws2/fv"]
    assert read_one(store, ("k",), "fv", "ws3") is None


def test_many_rows_of_one_key_in_a_batch_end_as_if_applied_one_by_one(store: OnlineStore) -> None:
    store.apply_writes([write(0, row(("u1",), 5, a="stored"), row(("u2",), 9, a="stored"))])
    store.apply_writes([write(1, row(("u1",), 3, a="older"), row(("u2",), 8, a="older"), row(("u1",), 5, a="tie")),
                        write(2, row(("u1",), 4, a="older again"), row(("u3",), 1, a="new"))])
    found = store.read("ws", [Lookup("fv", ("u1",)), Lookup("fv", ("u2",)), Lookup("fv", ("u3",))])
    assert [(f.row.values["a"], f.written_by) for f in found if f is not None] == [
        ("tie", "event-0-1"), ("stored", "event-0-0"), ("new", "event-0-2")]


def test_entity_keys_match_by_type(store: OnlineStore) -> None:
    store.apply_writes([write(0, row((1,), 0, t="int"), row((True,), 0, t="bool"), row((1.0,), 0, t="float"),
                                 row((-0.0,), 0, t="zero"), row((None, "x"), 0, t="none"))])
    found = store.read("ws", [Lookup("fv", (1,)), Lookup("fv", (True,)), Lookup("fv", (1.0,)),
                              Lookup("fv", (0.0,)), Lookup("fv", (None, "x")), Lookup("fv", (None,))])
    assert [None if f is None else f.row.values["t"] for f in found] == [
        "int", "bool", "float", "zero", "none", None]


def test_event_times_come_back_in_utc_and_values_keep_their_types(store: OnlineStore) -> None:
    plus_two = timezone(timedelta(hours=2))
    values: dict[str, Scalar] = {"s": "x", "i": -(2**63), "f": 0.5, "b": False, "n": None}
    store.apply_writes([write(0, FeatureRow(("u1",), datetime(2024, 5, 1, 14, tzinfo=plus_two), values))])
    found = read_one(store, ("u1",))
    assert found is not None
    assert found.row.event_time == T0
    assert found.row.event_time.utcoffset() == timedelta(0)
    assert found.row.values == values
    assert [type(v) for v in found.row.values.values()] == [str, int, float, bool, type(None)]


def test_a_bad_write_fails_the_whole_batch_and_changes_nothing(store: OnlineStore) -> None:
    naive = FeatureRow(("u2",), datetime(2024, 5, 1), {"a": 2})  # noqa: DTZ001 - the point of the test
    with pytest.raises(StoreError, match="time zone"):
        store.apply_writes([write(0, row(("u1",), 0, a=1)), write(1, naive)])
    assert read_one(store, ("u1",)) is None
    assert store.applied_offsets() == {}


@pytest.mark.parametrize("value", [b"bytes", [1, 2], 2**64, {"nested": 1}], ids=str)
def test_values_the_store_cannot_hold_are_refused(store: OnlineStore, value: object) -> None:
    bad = FeatureRow(("u1",), T0, {"a": value})  # type: ignore[dict-item]
    with pytest.raises(StoreError):
        store.apply_writes([write(0, bad)])
    assert store.applied_offsets() == {}


def test_keys_longer_than_lmdb_allows_are_refused_and_read_as_missing(store: OnlineStore) -> None:
    long_key = ("x" * 600,)
    with pytest.raises(StoreError, match="bytes"):
        store.apply_writes([write(0, row(long_key, 0, a=1))])
    assert read_one(store, long_key) is None


def test_changing_a_returned_row_does_not_change_the_store(store: OnlineStore) -> None:
    store.apply_writes([write(0, row(("u1",), 0, a=1))])
    found = read_one(store, ("u1",))
    assert found is not None
    found.row.values["a"] = 2  # type: ignore[index]
    assert read_one(store, ("u1",)) == StoredRow(row(("u1",), 0, a=1), "event-0-0")


def test_close_is_safe_twice_and_use_after_close_is_refused(store: OnlineStore) -> None:
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.read("ws", [Lookup("fv", ("u1",))])
    with pytest.raises(StoreError, match="closed"):
        store.apply_writes([write(0, row(("u1",), 0))])


# --- LMDB only -------------------------------------------------------------------------------------------


def test_rows_and_offsets_survive_reopening(tmp_path: Path) -> None:
    with LmdbOnlineStore(tmp_path / "db") as store:
        store.apply_writes([write(0, row(("u1",), 0, a=1)), write(1, row(("u2",), 0, a=2))])
    with LmdbOnlineStore(tmp_path / "db") as store:
        assert store.applied_offsets() == {("online-writes", 0): 2}
        assert store.apply_writes([write(1, row(("u2",), 9, a=9)), write(2, row(("u3",), 0, a=3))]) == 1
        found = store.read("ws", [Lookup("fv", (k,)) for k in ("u1", "u2", "u3")])
        assert [f and f.row.values["a"] for f in found] == [1, 2, 3]


def test_a_store_of_a_newer_format_is_refused(tmp_path: Path) -> None:
    LmdbOnlineStore(tmp_path / "db").close()
    with lmdb.open(str(tmp_path / "db"), max_dbs=4) as env:
        meta = env.open_db(b"meta")
        with env.begin(write=True, db=meta) as txn:
            assert msgpack.unpackb(txn.get(FORMAT_VERSION_KEY, b"")) == FORMAT_VERSION
            txn.put(FORMAT_VERSION_KEY, msgpack.packb(FORMAT_VERSION + 1))
    with pytest.raises(StoreError, match="newer"):
        LmdbOnlineStore(tmp_path / "db")


def test_read_only_store_reads_and_refuses_writes(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        LmdbOnlineStore(tmp_path / "missing", readonly=True)
    with LmdbOnlineStore(tmp_path / "db") as store:
        store.apply_writes([write(0, row(("u1",), 0, a=1))])
    with LmdbOnlineStore(tmp_path / "db", readonly=True) as reader:
        assert read_one(reader, ("u1",)) == StoredRow(row(("u1",), 0, a=1), "event-0-0")
        with pytest.raises(StoreError, match="read-only"):
            reader.apply_writes([write(1, row(("u1",), 1, a=2))])


def test_a_full_map_is_a_store_error_and_the_batch_is_not_applied(tmp_path: Path) -> None:
    with LmdbOnlineStore(tmp_path / "db", map_size=64 * 1024) as store:
        big = [write(i, row((i,), 0, blob="x" * 2000)) for i in range(100)]
        with pytest.raises(StoreError, match="map_size"):
            store.apply_writes(big)
        assert store.applied_offsets() == {}
        assert read_one(store, (0,)) is None
