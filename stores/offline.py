"""The offline store: every feature row ever written, as Parquet, for training data (customer plane).

Layout: `root/data/workspace=W/feature_view=FV/date=YYYY-MM-DD/part-<uuid>.parquet` (names
percent-encoded) and `root/manifest.json`, which lists the committed files, each view's column types and
the applied offsets. The manifest is the commit point: files are written under a temporary name,
fsynced and renamed, then the manifest is replaced atomically. A file the manifest does not list is not
part of the dataset; the writer deletes such orphans (left by a crash) when it opens the store.

Columns of `scan`: the view's join keys, `event_time` (UTC, microseconds), its features in first-seen
order, `_written_by` (the event id of the write, for lineage). A column's type is fixed by its first
non-null value; ints widen to floats, any other change is refused.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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
from stores.offline_rows import (
    _COLUMN_TYPES,
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
from stores.offsets import (
    AppliedOffsets,
    ClosableStore,
    applied_from_rows,
    applied_to_rows,
    check_format_version,
    split_applied,
)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
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


@dataclass(frozen=True, slots=True)
class _File:
    path: str  # relative to the root, POSIX separators
    workspace: str
    feature_view: str
    date: str
    rows: int


@dataclass(frozen=True, slots=True)
class _Manifest:
    files: tuple[_File, ...]
    schemas: Mapping[ViewId, ViewSchema]
    applied: Mapping[tuple[str, int], int]


_EMPTY = _Manifest((), {}, {})


class ParquetOfflineStore(ClosableStore):
    """One writer per root (an exclusive lock file); any number of `readonly=True` readers."""

    def __init__(self, root: Path, *, readonly: bool = False) -> None:
        self._root = root
        self._readonly = readonly
        self._what = f"offline store {root}"
        self._lock_fd: int | None = None
        if not readonly:
            self._lock_fd = _lock(root, self._what)
        try:
            self._manifest = self._load()
            if not readonly:
                _remove_orphans(root, {f.path for f in self._manifest.files})
                if not (root / MANIFEST).exists():
                    self._commit(self._manifest)  # stamps the format version, so readers can open
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
        self._commit(_Manifest(self._manifest.files + tuple(files), schemas, next_offsets))
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
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None
        super().close()

    def _current(self) -> _Manifest:
        # A reader sees each commit of the writer as it lands; the writer's own copy is always current.
        return self._load() if self._readonly else self._manifest

    def _load(self) -> _Manifest:
        try:
            text = (self._root / MANIFEST).read_text(encoding="utf-8")
        except FileNotFoundError:
            # Without a manifest every data file would look like an orphan: refuse rather than delete.
            if self._readonly or any((self._root / "data").rglob("part-*.parquet")):
                raise StoreError(f"{self._what} has no manifest") from None
            return _EMPTY
        except OSError as exc:
            raise StoreError(f"cannot read the manifest of {self._what}: {exc}") from exc
        return _manifest_from_json(text, self._what)

    def _commit(self, manifest: _Manifest) -> None:
        payload = json.dumps(_manifest_to_json(manifest), separators=(",", ":")).encode("utf-8")
        _write_atomically(self._root / MANIFEST, lambda f: f.write(payload), self._what)
        self._manifest = manifest

    def _write_files(self, parts: Sequence[tuple[ViewId, date, pa.Table]]) -> list[_File]:
        """One new file per (view, day) part, each fsynced, then each directory touched fsynced once: after
        this the files survive a crash, but they are part of the dataset only once the manifest lists them."""
        files = [_File(_part_path(workspace, feature_view, day), workspace, feature_view, day.isoformat(),
                       part.num_rows) for (workspace, feature_view), day, part in parts]
        touched: set[Path] = set()
        for file in files:
            touched |= _make_dirs((self._root / file.path).parent, self._what)
        if not files:
            return files

        def write(file: _File, table: pa.Table) -> None:
            _write_synced(self._root / file.path, lambda out: pq.write_table(table, out), self._what)

        with ThreadPoolExecutor(min(_WRITER_THREADS, len(files))) as pool:
            list(pool.map(write, files, [table for _, _, table in parts]))
            touched |= {(self._root / f.path).parent for f in files}
            list(pool.map(lambda directory: _fsync_dir(directory, self._what), touched))
        return files


def _part_path(workspace: str, feature_view: str, day: date) -> str:
    return (f"data/workspace={quote(workspace, safe='')}/feature_view={quote(feature_view, safe='')}"
            f"/date={day.isoformat()}/part-{uuid.uuid4().hex}.parquet")


def _manifest_to_json(manifest: _Manifest) -> dict[str, object]:
    return {
        "format_version": FORMAT_VERSION,
        "applied_offsets": applied_to_rows(manifest.applied),
        "views": [{"workspace": w, "feature_view": fv, "join_keys": list(s.join_keys),
                   "columns": dict(s.columns)}
                  for (w, fv), s in manifest.schemas.items()],
        "files": [{"path": f.path, "workspace": f.workspace, "feature_view": f.feature_view, "date": f.date,
                   "rows": f.rows} for f in manifest.files],
    }


def _manifest_from_json(text: str, what: str) -> _Manifest:
    try:
        data = json.loads(text)
        check_format_version(data.get("format_version"), FORMAT_VERSION, what)
        schemas: dict[ViewId, ViewSchema] = {}
        for view in data["views"]:
            columns = dict(view["columns"])
            if not set(columns.values()) <= _COLUMN_TYPES:
                raise StoreError(f"{what} names unknown column types in {columns}")
            schemas[(view["workspace"], view["feature_view"])] = ViewSchema(tuple(view["join_keys"]), columns)
        files = tuple(_File(**f) for f in data["files"])
        return _Manifest(files, schemas, applied_from_rows(data["applied_offsets"]))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StoreError(f"the manifest of {what} is malformed: {exc}") from exc


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
