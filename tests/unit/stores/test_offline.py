"""The OfflineStore contract, run against Parquet and the in-memory store; then what only Parquet has."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from events.data import Coordinates, FeatureRow, Scalar, SourceRange, WriteOfflineRows
from events.errors import StoreError
from stores import offline
from stores.offline import (
    FORMAT_VERSION,
    InMemoryOfflineStore,
    OfflineStore,
    OfflineWrite,
    ParquetOfflineStore,
)

T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)
TOPIC = "offline-writes"


def row(key: tuple[Scalar, ...], hours: float, **values: Scalar) -> FeatureRow:
    return FeatureRow(key, T0 + timedelta(hours=hours), values)


def write(
    offset: int, *rows: FeatureRow, fv: str = "fv", ws: str = "ws", keys: tuple[str, ...] = ("user",),
    partition: int = 0,
) -> OfflineWrite:
    source = SourceRange("src", 0, offset, offset)
    return OfflineWrite(Coordinates(TOPIC, partition, offset), ws, WriteOfflineRows(fv, keys, rows, source),
                        f"event-{offset}")


def rows_of(store: OfflineStore, fv: str = "fv", ws: str = "ws") -> list[dict[str, Any]]:
    return store.scan(ws, fv).sort("event_time", "_written_by").collect().to_dicts()


@pytest.fixture(params=["parquet", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OfflineStore]:
    backend: OfflineStore = (ParquetOfflineStore(tmp_path / "offline") if request.param == "parquet"
                             else InMemoryOfflineStore())
    with backend:
        yield backend


# --- contract --------------------------------------------------------------------------------------------


def test_scan_has_join_keys_event_time_features_and_lineage(store: OfflineStore) -> None:
    assert store.append([
        write(0, row(("u1", 7), 0, amount=1.5, merchant="m1"), row(("u2", 8), 30, amount=2.0, merchant=None),
              keys=("user", "shard")),
        write(1, row(("u1", 7), 1, amount=3.25, merchant="m2", flag=True), keys=("user", "shard")),
    ]) == 2
    frame = store.scan("ws", "fv").collect()
    assert frame.schema == pl.Schema({
        "user": pl.String(), "shard": pl.Int64(), "event_time": pl.Datetime("us", "UTC"),
        "amount": pl.Float64(), "merchant": pl.String(), "flag": pl.Boolean(), "_written_by": pl.String(),
    })
    assert rows_of(store) == [
        {"user": "u1", "shard": 7, "event_time": T0, "amount": 1.5, "merchant": "m1", "flag": None,
         "_written_by": "event-0"},
        {"user": "u1", "shard": 7, "event_time": T0 + timedelta(hours=1), "amount": 3.25, "merchant": "m2",
         "flag": True, "_written_by": "event-1"},
        {"user": "u2", "shard": 8, "event_time": T0 + timedelta(hours=30), "amount": 2.0, "merchant": None,
         "flag": None, "_written_by": "event-0"},
    ]


def test_scan_is_lazy(store: OfflineStore) -> None:
    store.append([write(0, row(("u1",), 0, a=1))])
    assert isinstance(store.scan("ws", "fv"), pl.LazyFrame)


def test_replayed_messages_are_skipped(store: OfflineStore) -> None:
    assert store.append([write(0, row(("u1",), 0, a=1)), write(1, row(("u2",), 0, a=2))]) == 2
    assert store.append([write(1, row(("u9",), 0, a=9)), write(0, row(("u9",), 0, a=9))]) == 0
    assert store.append([write(1, row(("u9",), 0, a=9)), write(2, row(("u3",), 0, a=3))]) == 1
    assert [r["user"] for r in rows_of(store)] == ["u1", "u2", "u3"]
    assert store.applied_offsets() == {(TOPIC, 0): 3}


def test_applied_offsets_advance_for_writes_without_rows(store: OfflineStore) -> None:
    assert store.applied_offsets() == {}
    assert store.append([write(4), write(0, partition=1)]) == 2
    assert store.applied_offsets() == {(TOPIC, 0): 5, (TOPIC, 1): 1}


def test_views_and_workspaces_are_separate(store: OfflineStore) -> None:
    store.append([write(0, row(("u1",), 0, a=1)), write(1, row(("u1",), 0, b="x"), fv="other"),
                  write(2, row(("u1",), 0, c=True), ws="ws2")])
    assert [set(r) - {"user", "event_time", "_written_by"} for r in
            (rows_of(store)[0], rows_of(store, "other")[0], rows_of(store, "fv", "ws2")[0])] == [
        {"a"}, {"b"}, {"c"}]


def test_a_view_never_written_scans_empty(store: OfflineStore) -> None:
    frame = store.scan("ws", "nothing").collect()
    assert frame.height == 0
    assert frame.schema == pl.Schema({"event_time": pl.Datetime("us", "UTC"), "_written_by": pl.String()})


def test_ints_widen_to_floats_and_null_columns_take_their_first_type(store: OfflineStore) -> None:
    store.append([write(0, row(("u1",), 0, n=1, later=None))])
    store.append([write(1, row(("u1",), 1, n=2.5, later="x"))])
    frame = store.scan("ws", "fv").sort("event_time").collect()
    assert frame.schema["n"] == pl.Float64()
    assert frame.schema["later"] == pl.String()
    assert frame["n"].to_list() == [1.0, 2.5]
    assert frame["later"].to_list() == [None, "x"]


def test_event_times_are_stored_in_utc(store: OfflineStore) -> None:
    local = datetime(2024, 5, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    store.append([write(0, FeatureRow(("u1",), local, {"a": 1}))])
    assert rows_of(store)[0]["event_time"] == datetime(2024, 5, 2, 4, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "bad",
    [
        write(3, row(("u1",), 0, a="text")),  # a holds ints
        write(3, row(("u1",), 0, a=True)),  # bools are not ints
        write(3, row(("u1", 2), 0, a=1)),  # entity key longer than the join keys
        write(3, row(("u1",), 0, a=1), keys=("customer",)),  # join keys changed
        write(3, row(("u1",), 0, event_time=1)),  # reserved name
        write(3, row(("u1",), 0, user="x")),  # feature named like a join key
        write(3, row(("u1",), 0, a=2**63)),  # beyond int64
        write(3, row(("u1",), 0, a=b"raw")),  # type: ignore[arg-type]
        write(3, FeatureRow(("u1",), datetime(2024, 5, 1), {"a": 1})),  # noqa: DTZ001 - naive on purpose
        write(3, row(("u1", "u1"), 0, a=1), fv="new", keys=("k", "k")),  # join key twice
        write(3, row(("x",), 0, a=1), fv="new", keys=("event_time",)),  # join key with a reserved name
    ],
    ids=["type change", "bool for int", "key arity", "join keys", "reserved", "join key name", "int64",
         "bytes", "naive time", "duplicate join key", "reserved join key"],
)
def test_rows_that_do_not_fit_fail_the_whole_batch(store: OfflineStore, bad: OfflineWrite) -> None:
    store.append([write(0, row(("u1",), 0, a=1))])
    with pytest.raises(StoreError):
        store.append([write(2, row(("u2",), 0, a=2)), bad])
    assert [r["user"] for r in rows_of(store)] == ["u1"]
    assert store.applied_offsets() == {(TOPIC, 0): 1}


def test_close_is_safe_twice_and_use_after_close_is_refused(store: OfflineStore) -> None:
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.scan("ws", "fv")
    with pytest.raises(StoreError, match="closed"):
        store.append([write(0)])


# --- Parquet only ----------------------------------------------------------------------------------------


def manifest(root: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((root / "manifest.json").read_text())
    return loaded


def test_one_file_per_view_and_date_in_hive_directories(tmp_path: Path) -> None:
    with ParquetOfflineStore(tmp_path) as store:
        store.append([write(0, row(("u1",), 0, a=1), row(("u2",), 1, a=2), row(("u3",), 24, a=3)),
                      write(1, row(("u4",), 2, a=4), fv="other")])
    files = sorted(manifest(tmp_path)["files"], key=lambda f: f["path"])
    assert [(Path(f["path"]).parent.as_posix(), f["rows"]) for f in files] == [
        ("data/workspace=ws/feature_view=fv/date=2024-05-01", 2),
        ("data/workspace=ws/feature_view=fv/date=2024-05-02", 1),
        ("data/workspace=ws/feature_view=other/date=2024-05-01", 1),
    ]
    assert all(Path(f["path"]).name.startswith("part-") for f in files)
    on_disk = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.parquet"))
    assert on_disk == [f["path"] for f in files]
    assert pq.read_table(tmp_path / files[0]["path"]).column("a").to_pylist() == [1, 2]


def test_names_cannot_escape_the_data_directory(tmp_path: Path) -> None:
    with ParquetOfflineStore(tmp_path / "root") as store:
        store.append([write(0, row(("u1",), 0, a=1), ws="../..", fv="a/b*[c]")])
        assert rows_of(store, "a/b*[c]", "../..")[0]["a"] == 1
    assert [p.relative_to(tmp_path / "root" / "data").parts[:2]
            for p in (tmp_path / "root").rglob("*.parquet")] == [("workspace=..%2F..", "feature_view=a%2Fb%2A%5Bc%5D")]


def test_committed_rows_and_offsets_survive_reopening(tmp_path: Path) -> None:
    with ParquetOfflineStore(tmp_path) as store:
        store.append([write(0, row(("u1",), 0, a=1))])
    with ParquetOfflineStore(tmp_path) as store:
        assert store.applied_offsets() == {(TOPIC, 0): 1}
        assert store.append([write(0, row(("u9",), 0, a=9)), write(1, row(("u2",), 0, a=2.5))]) == 1
        assert [(r["user"], r["a"]) for r in rows_of(store)] == [("u1", 1.0), ("u2", 2.5)]


def orphan(directory: Path, name: str = "part-orphan.parquet") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"user": ["ghost"], "a": [666]}), directory / name)
    return directory / name


def test_files_not_in_the_manifest_are_ignored_then_removed_on_open(tmp_path: Path) -> None:
    partition = tmp_path / "data/workspace=ws/feature_view=fv/date=2024-05-01"
    with ParquetOfflineStore(tmp_path) as store:
        store.append([write(0, row(("u1",), 0, a=1))])
        ghosts = [orphan(partition), orphan(partition, ".part-x.parquet.tmp")]
        foreign = orphan(partition, "notes.parquet")
        assert [r["user"] for r in rows_of(store)] == ["u1"]
    with ParquetOfflineStore(tmp_path) as store:
        assert [r["user"] for r in rows_of(store)] == ["u1"]
    assert not any(ghost.exists() for ghost in ghosts)
    assert foreign.exists()  # not a name the store writes: not the store's to delete
    assert len(list(partition.glob("part-*.parquet"))) == 1


def test_a_crash_before_the_manifest_commit_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ParquetOfflineStore(tmp_path) as store:
        store.append([write(0, row(("u1",), 0, a=1))])
        real = offline._write_atomically

        def crash_on_manifest(path: Path, *args: Any) -> None:
            if path.name == "manifest.json":
                raise StoreError("disk gone")
            real(path, *args)

        def crash_on_log(root: Path, manifest: Any, line: bytes, what: str) -> None:
            raise StoreError("disk gone")

        monkeypatch.setattr(offline, "_write_atomically", crash_on_manifest)  # the snapshot
        monkeypatch.setattr(offline, "append_line", crash_on_log)  # the log of commits since the snapshot
        with pytest.raises(StoreError, match="disk gone"):
            store.append([write(1, row(("u2",), 0, a=2))])
        assert len(list(tmp_path.rglob("part-*.parquet"))) == 2  # renamed, never committed
        assert [r["user"] for r in rows_of(store)] == ["u1"]
        assert store.applied_offsets() == {(TOPIC, 0): 1}
    monkeypatch.undo()
    with ParquetOfflineStore(tmp_path) as store:
        assert len(list(tmp_path.rglob("part-*.parquet"))) == 1
        assert store.append([write(1, row(("u2",), 0, a=2))]) == 1
        assert [r["user"] for r in rows_of(store)] == ["u1", "u2"]


def test_a_store_of_a_newer_format_is_refused_and_left_alone(tmp_path: Path) -> None:
    with ParquetOfflineStore(tmp_path) as store:
        store.append([write(0, row(("u1",), 0, a=1))])
    stored = manifest(tmp_path)
    assert stored["format_version"] == FORMAT_VERSION
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": FORMAT_VERSION + 1, "files": []}))
    with pytest.raises(StoreError, match="newer"):
        ParquetOfflineStore(tmp_path)
    assert (tmp_path / stored["files"][0]["path"]).exists()  # not mistaken for an orphan
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(StoreError, match="malformed"):
        ParquetOfflineStore(tmp_path)


def test_data_without_a_manifest_is_refused_not_cleaned_up(tmp_path: Path) -> None:
    with ParquetOfflineStore(tmp_path) as store:
        store.append([write(0, row(("u1",), 0, a=1))])
    (tmp_path / "manifest.json").unlink()
    with pytest.raises(StoreError, match="no manifest"):
        ParquetOfflineStore(tmp_path)
    assert len(list(tmp_path.rglob("part-*.parquet"))) == 1


def test_one_writer_at_a_time_and_readers_see_each_commit(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        ParquetOfflineStore(tmp_path / "missing", readonly=True)
    with ParquetOfflineStore(tmp_path) as writer:
        with pytest.raises(StoreError, match="another writer"):
            ParquetOfflineStore(tmp_path)
        with ParquetOfflineStore(tmp_path, readonly=True) as reader:
            assert rows_of(reader) == []
            writer.append([write(0, row(("u1",), 0, a=1))])
            assert [r["user"] for r in rows_of(reader)] == ["u1"]
            assert reader.applied_offsets() == {(TOPIC, 0): 1}
            with pytest.raises(StoreError, match="read-only"):
                reader.append([write(1, row(("u2",), 0, a=2))])
    with ParquetOfflineStore(tmp_path) as writer:  # the lock went with the first writer
        assert writer.applied_offsets() == {(TOPIC, 0): 1}


def test_one_append_of_many_messages_writes_one_file_per_view_and_day_rows_in_write_order(tmp_path: Path) -> None:
    with ParquetOfflineStore(tmp_path) as store:
        assert store.append([write(0, row(("u1",), 25, a=1), row(("u2",), 0, a=2)),
                             write(1, row(("u3",), 1, a=3), row(("u4",), 26, a=4.5)),
                             write(2, row(("u5",), -1, a=5))]) == 3
    files = sorted(manifest(tmp_path)["files"], key=lambda f: f["date"])
    assert [(f["date"], f["rows"]) for f in files] == [("2024-05-01", 3), ("2024-05-02", 2)]
    assert [pq.read_table(tmp_path / f["path"]).column("user").to_pylist() for f in files] == [
        ["u2", "u3", "u5"], ["u1", "u4"]]
    assert pq.read_table(tmp_path / files[1]["path"]).column("a").to_pylist() == [1.0, 4.5]


def test_each_directory_of_a_commit_is_synced_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[Path] = []
    real = offline.fsync_dir
    monkeypatch.setattr(offline, "fsync_dir", lambda d: (synced.append(d), real(d)))
    with ParquetOfflineStore(tmp_path) as store:
        synced.clear()
        store.append([write(0, row(("u1",), 0, a=1), row(("u2",), 24, a=2)), write(1, row(("u3",), 1, a=3))])
    days = tmp_path / "data/workspace=ws/feature_view=fv"
    assert sorted(synced) == sorted([tmp_path, tmp_path / "data", tmp_path / "data/workspace=ws", days,
                                     days / "date=2024-05-01", days / "date=2024-05-02", tmp_path])
    # the root twice: once for the new "data" directory, once for the manifest's rename


def test_a_type_change_between_messages_of_one_append_is_refused(store: OfflineStore) -> None:
    with pytest.raises(StoreError, match="'a'"):
        store.append([write(0, row(("u1",), 0, a=1)), write(1, row(("u2",), 0, a="x"))])
    with pytest.raises(StoreError, match="64 bits"):
        store.append([write(0, row(("u1",), 0, a=1.5)), write(1, row(("u2",), 0, a=-(2**63) - 1))])
    assert rows_of(store) == []
    assert store.applied_offsets() == {}


def test_subclasses_of_the_value_types_are_stored_as_their_base_type(store: OfflineStore) -> None:
    class Code(str):
        pass

    class Count(int):
        pass

    store.append([write(0, row(("u1",), 0, code=Code("c1"), count=Count(3)), row(("u2",), 0, code="c2", count=4))])
    assert sorted((r["code"], r["count"]) for r in rows_of(store)) == [("c1", 3), ("c2", 4)]
