"""The offline store: every feature row ever written, as Parquet, for training data (customer plane).

Layout: `root/data/workspace=W/feature_view=FV/date=YYYY-MM-DD/part-<uuid>.parquet` (names
percent-encoded) and the manifest (`root/manifest.json` and the log of commits since it, see
`stores.offline_manifest`), which lists the committed files, each view's column types and the applied
offsets. An append writes one file per view and UTC day of its rows, under a temporary name, fsynced and
renamed, fsyncs each directory it touched once, then commits to the manifest. A file the manifest does not
list is not part of the dataset; the writer deletes such orphans (left by a crash) when it opens the store.

Columns of `scan`: the view's join keys, `event_time` (UTC, microseconds), its features in first-seen
order, `_written_by` (the event id of the write, for lineage). A column's type is fixed by its first
non-null value; ints widen to floats, any other change is refused.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import date
from pathlib import Path
from types import TracebackType
from typing import IO, Protocol, Self
from urllib.parse import quote

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from events.errors import StoreError
from stores.files import fsync_dir
from stores.offline_manifest import (
    EMPTY,
    FORMAT_VERSION,
    MANIFEST,
    DataFile,
    Manifest,
    append_line,
    load,
    log_path,
    remove_other_logs,
    snapshot_json,
    with_commit,
)
from stores.offline_rows import (
    EVENT_TIME,
    WRITTEN_BY,
    OfflineWrite,
    ViewId,
    ViewSchema,
    _by_day,
    _coordinates_of,
    _frame,
    _prepared,
)
from stores.offsets import AppliedOffsets, ClosableStore, split_applied

_WRITER_THREADS = 8  # Parquet encoding and fsync release the GIL: the files of one commit overlap

__all__ = ["EVENT_TIME", "FORMAT_VERSION", "WRITTEN_BY", "InMemoryOfflineStore", "OfflineStore", "OfflineWrite",
           "ParquetOfflineStore"]


class OfflineStore(Protocol):
    def append(self, writes: Sequence[OfflineWrite]) -> int:
        """Append the rows of the writes not applied yet, with their offsets, in one commit; how many."""
        ...

    def applied_offsets(self) -> dict[tuple[str, int], int]: ...

    def scan(self, workspace: str, feature_view: str) -> pl.LazyFrame:
        """All committed rows of the view, lazily."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...



class InMemoryOfflineStore(ClosableStore):
    def __init__(self) -> None:
        self._tables: dict[ViewId, list[pl.LazyFrame]] = {}
        self._schemas: dict[ViewId, ViewSchema] = {}
        self._applied: AppliedOffsets = {}

    def append(self, writes: Sequence[OfflineWrite]) -> int:
        self._check_open()
        to_apply, next_offsets = split_applied(writes, self._applied, _coordinates_of)
        self._schemas, tables = _prepared(self._schemas, to_apply)  # validates before anything changes
        for view, table in tables.items():
            self._tables.setdefault(view, []).append(pl.from_arrow(table).lazy())  # type: ignore[union-attr]
        self._applied = next_offsets
        return len(to_apply)

    def applied_offsets(self) -> dict[tuple[str, int], int]:
        self._check_open()
        return dict(self._applied)

    def scan(self, workspace: str, feature_view: str) -> pl.LazyFrame:
        self._check_open()
        view = (workspace, feature_view)
        return _frame(self._schemas.get(view), self._tables.get(view, []))


# --- Parquet ----------------------------------------------------------------------------------------------


class ParquetOfflineStore(ClosableStore):
    """One writer per root (an exclusive lock file); any number of `readonly=True` readers."""

    def __init__(self, root: Path, *, readonly: bool = False) -> None:
        self._root = root
        self._readonly = readonly
        self._what = f"offline store {root}"
        self._lock_fd: int | None = None
        self._manifest = EMPTY
        if not readonly:
            self._lock_fd = _lock(root, self._what)
        try:
            self._manifest = self._load()
            if not readonly:
                _remove_orphans(root, {f.path for f in self._manifest.files})
                # One snapshot in this code's format (readers can open a new store; an older format is
                # upgraded), whatever a crash left in the log before.
                self._compact()
        except BaseException:
            self.close()
            raise

    def append(self, writes: Sequence[OfflineWrite]) -> int:
        self._check_open()
        if self._readonly:
            raise StoreError(f"{self._what} is open read-only")
        to_apply, next_offsets = split_applied(writes, self._manifest.applied, _coordinates_of)
        if not to_apply:
            return 0
        schemas, tables = _prepared(self._manifest.schemas, to_apply)
        parts = [(view, day, part) for view, table in tables.items() for day, part in _by_day(table)]
        files = self._write_files(parts)
        manifest, line = with_commit(self._manifest, files, schemas, next_offsets)
        append_line(self._root, self._manifest, line, self._what)  # the commit point
        self._manifest = manifest
        if manifest.outgrew_snapshot():
            self._compact()
        return len(to_apply)

    def applied_offsets(self) -> dict[tuple[str, int], int]:
        self._check_open()
        return dict(self._current().applied)

    def scan(self, workspace: str, feature_view: str) -> pl.LazyFrame:
        self._check_open()
        manifest = self._current()
        schema = manifest.schemas.get((workspace, feature_view))
        paths = [self._root / f.path for f in manifest.files
                 if (f.workspace, f.feature_view) == (workspace, feature_view)]
        # Listed files only (no globbing, no hive columns).
        return _frame(schema, [pl.scan_parquet(path, hive_partitioning=False, glob=False) for path in paths])

    def close(self) -> None:
        if self._lock_fd is not None:
            try:
                if self._manifest.log_bytes and not self._closed:
                    self._compact()  # a store closed cleanly is one snapshot
            except StoreError:
                pass  # the log stays valid: the next writer continues it
            finally:
                os.close(self._lock_fd)  # releases the lock
                self._lock_fd = None
        super().close()

    def _current(self) -> Manifest:
        # A reader sees each commit of the writer as it lands; the writer's own copy is always current.
        return self._load() if self._readonly else self._manifest

    def _load(self) -> Manifest:
        manifest = load(self._root, self._what)
        if manifest is None:
            # Without a manifest every data file would look like an orphan: refuse rather than delete.
            if self._readonly or any((self._root / "data").rglob("part-*.parquet")):
                raise StoreError(f"{self._what} has no manifest")
            return EMPTY
        return manifest

    def _compact(self) -> None:
        """Fold the log into a new snapshot, continued by the next generation's log (none yet)."""
        manifest = self._manifest
        next_generation = manifest.generation + 1
        try:
            log_path(self._root, next_generation).unlink(missing_ok=True)  # never continue a stale log
        except OSError as exc:
            raise StoreError(f"cannot remove a stale manifest log of {self._what}: {exc}") from exc
        payload = snapshot_json(manifest)
        _write_atomically(self._root / MANIFEST, lambda f: f.write(payload), self._what)  # the commit point
        self._manifest = replace(manifest, generation=next_generation, log_bytes=0, snapshot_bytes=len(payload))
        remove_other_logs(self._root, next_generation, self._what)

    def _write_files(self, parts: Sequence[tuple[ViewId, date, pa.Table]]) -> list[DataFile]:
        """One new file per (view, day) part, each fsynced, then each directory touched fsynced once: after
        this the files survive a crash, but they are part of the dataset only once the manifest lists them."""
        files = [DataFile(_part_path(workspace, feature_view, day), workspace, feature_view, day.isoformat(),
                       part.num_rows) for (workspace, feature_view), day, part in parts]
        touched: set[Path] = set()
        for file in files:
            touched |= _make_dirs((self._root / file.path).parent, self._what)
        if not files:
            return files

        def write(file: DataFile, table: pa.Table) -> None:
            _write_synced(self._root / file.path, lambda out: pq.write_table(table, out), self._what)

        with ThreadPoolExecutor(min(_WRITER_THREADS, len(files))) as pool:
            list(pool.map(write, files, [table for _, _, table in parts]))
            touched |= {(self._root / f.path).parent for f in files}
            list(pool.map(lambda directory: _fsync_dir(directory, self._what), touched))
        return files


def _part_path(workspace: str, feature_view: str, day: date) -> str:
    return (f"data/workspace={quote(workspace, safe='')}/feature_view={quote(feature_view, safe='')}"
            f"/date={day.isoformat()}/part-{uuid.uuid4().hex}.parquet")


def _lock(root: Path, what: str) -> int:
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(f"cannot open {what}: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise StoreError(f"{what} is open by another writer") from exc
    return fd


def _remove_orphans(root: Path, committed: set[str]) -> None:
    """Delete data files no manifest lists: a crash came between their rename and the manifest."""
    try:
        # Only names this store writes (parts and their temporaries): anything else is not ours to delete.
        for path in [*(root / "data").rglob("part-*.parquet"), *(root / "data").rglob(".part-*.tmp")]:
            if path.is_file() and path.relative_to(root).as_posix() not in committed:
                path.unlink()
    except OSError as exc:
        raise StoreError(f"cannot clean up {root}: {exc}") from exc


def _write_atomically(path: Path, write: Callable[[IO[bytes]], object], what: str) -> None:
    """Write to a temporary name in the same directory, fsync, rename over `path`, fsync the directory."""
    _write_synced(path, write, what)
    _fsync_dir(path.parent, what)


def _write_synced(path: Path, write: Callable[[IO[bytes]], object], what: str) -> None:
    """Write to a temporary name in the same directory, fsync, rename over `path` (the rename is durable
    once the caller fsyncs the directory)."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with open(temporary, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except (OSError, pa.ArrowException) as exc:
        temporary.unlink(missing_ok=True)
        raise StoreError(f"cannot write {path.name} in {what}: {exc}") from exc


def _fsync_dir(directory: Path, what: str) -> None:
    try:
        fsync_dir(directory)
    except OSError as exc:
        raise StoreError(f"cannot sync {directory} in {what}: {exc}") from exc


def _make_dirs(directory: Path, what: str) -> set[Path]:
    """Create `directory` and its missing parents; the parents whose entries changed, to be fsynced (a
    committed file must not vanish with its directory in a crash)."""
    if directory.exists():
        return set()
    changed = _make_dirs(directory.parent, what)
    try:
        directory.mkdir()
    except OSError as exc:
        raise StoreError(f"cannot create {directory} in {what}: {exc}") from exc
    return changed | {directory.parent}
