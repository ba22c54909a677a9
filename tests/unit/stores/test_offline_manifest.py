"""The Parquet offline store's manifest: a snapshot plus a log of commits, so a commit costs what it adds."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest

from events.data import Coordinates, FeatureRow, SourceRange, WriteOfflineRows
from events.errors import StoreError
from stores import offline_manifest
from stores.offline import OfflineWrite, ParquetOfflineStore

T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)


def write(offset: int, user: str, days: int = 0) -> OfflineWrite:
    row = FeatureRow((user,), T0 + timedelta(days=days), {"a": offset})
    return OfflineWrite(Coordinates("t", 0, offset), "ws", WriteOfflineRows("fv", ("user",), (row,),
                                                                             SourceRange("s", 0, 0, 0)), f"e{offset}")


def users(store: ParquetOfflineStore) -> list[str]:
    return sorted(store.scan("ws", "fv").collect()["user"].to_list())


def logs(root: Path) -> list[str]:
    return sorted(p.name for p in root.glob("manifest-*.log"))


def test_a_commit_appends_one_line_of_what_it_adds_and_leaves_the_snapshot_alone(tmp_path: Path) -> None:
    with ParquetOfflineStore(tmp_path) as store, ParquetOfflineStore(tmp_path, readonly=True) as reader:
        snapshot = (tmp_path / "manifest.json").read_bytes()
        sizes = []
        for offset in range(5):
            store.append([write(offset, f"u{offset}", days=offset)])
            sizes.append(sum(p.stat().st_size for p in tmp_path.glob("manifest-*.log")))
            assert (tmp_path / "manifest.json").read_bytes() == snapshot
        growth = [b - a for a, b in pairwise(sizes)]  # the first also names the columns
        assert max(growth) - min(growth) <= 2  # the same size each time, however many files came before
        assert users(reader) == ["u0", "u1", "u2", "u3", "u4"]
        assert reader.applied_offsets() == {("t", 0): 5}


def test_closing_folds_the_log_into_the_snapshot(tmp_path: Path) -> None:
    with ParquetOfflineStore(tmp_path) as store:
        store.append([write(0, "u0"), write(1, "u1", days=1)])
        assert logs(tmp_path) == ["manifest-1.log"]
    assert logs(tmp_path) == []
    snapshot = json.loads((tmp_path / "manifest.json").read_text())
    assert (snapshot["log_generation"], len(snapshot["files"])) == (2, 2)
    with ParquetOfflineStore(tmp_path, readonly=True) as reader:
        assert users(reader) == ["u0", "u1"]


def test_a_log_that_outgrows_the_snapshot_becomes_the_next_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(offline_manifest, "_MIN_LOG_BYTES_TO_COMPACT", 0)
    with ParquetOfflineStore(tmp_path) as store, ParquetOfflineStore(tmp_path, readonly=True) as reader:
        generations = []
        for offset in range(6):
            store.append([write(offset, f"u{offset}")])
            generations.append(json.loads((tmp_path / "manifest.json").read_text())["log_generation"])
            assert len(logs(tmp_path)) <= 1
            assert users(reader) == [f"u{i}" for i in range(offset + 1)]
        assert generations == sorted(generations)
        assert generations[-1] > generations[0]


@pytest.mark.parametrize("damage", ["cut short", "bit flipped"])
def test_a_last_commit_a_crash_damaged_is_ignored_then_overwritten(tmp_path: Path, damage: str) -> None:
    with ParquetOfflineStore(tmp_path) as store:
        store.append([write(0, "u0")])
        store.append([write(1, "u1")])
        snapshot, (log,) = (tmp_path / "manifest.json").read_bytes(), tmp_path.glob("manifest-*.log")
        first, second, _ = log.read_bytes().split(b"\n")
    # As if the machine had died while the second commit's line was being written (the close never came).
    second = second[: len(second) // 2] if damage == "cut short" else second.replace(b'"files"', b'"filez"') + b"\n"
    (tmp_path / "manifest.json").write_bytes(snapshot)
    log.write_bytes(first + b"\n" + second)
    with ParquetOfflineStore(tmp_path, readonly=True) as reader:
        assert users(reader) == ["u0"]
        assert reader.applied_offsets() == {("t", 0): 1}
    with ParquetOfflineStore(tmp_path) as store:
        assert len(list(tmp_path.rglob("part-*.parquet"))) == 1  # the second commit's file was an orphan
        assert store.append([write(1, "u1")]) == 1
        with ParquetOfflineStore(tmp_path, readonly=True) as reader:
            assert users(reader) == ["u0", "u1"]
            assert reader.applied_offsets() == {("t", 0): 2}


def test_a_damaged_commit_before_the_last_is_refused(tmp_path: Path) -> None:
    with ParquetOfflineStore(tmp_path) as store, ParquetOfflineStore(tmp_path, readonly=True) as reader:
        store.append([write(0, "u0")])
        store.append([write(1, "u1")])
        log = tmp_path / logs(tmp_path)[0]
        log.write_bytes(log.read_bytes().replace(b'"files"', b'"filez"', 1))
        with pytest.raises(StoreError, match="corrupt"):
            reader.scan("ws", "fv")


def test_a_format_1_manifest_without_a_log_is_read(tmp_path: Path) -> None:
    with ParquetOfflineStore(tmp_path) as store:
        store.append([write(0, "u0")])
    snapshot = json.loads((tmp_path / "manifest.json").read_text())
    del snapshot["log_generation"]
    (tmp_path / "manifest.json").write_text(json.dumps({**snapshot, "format_version": 1}))
    with ParquetOfflineStore(tmp_path) as store:
        assert users(store) == ["u0"]
        store.append([write(1, "u1")])
    with ParquetOfflineStore(tmp_path, readonly=True) as reader:
        assert users(reader) == ["u0", "u1"]
        assert json.loads((tmp_path / "manifest.json").read_text())["format_version"] == 2
