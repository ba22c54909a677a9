"""The offline store's manifest: the committed files, each view's column types, the applied offsets.

On disk it is a snapshot, `manifest.json`, and a log, `manifest-<generation>.log`, of the commits since that
snapshot: one line per commit, `<crc32 of the JSON, 8 hex digits> <JSON>\n`, holding the files the commit
added, the schemas it changed and all applied offsets. So a commit writes (and fsyncs) what it adds, not the
whole store: rewriting a snapshot of every file at each commit made a long backfill quadratic.

The commit point of a commit is its line, complete and fsynced. A last line that is incomplete or fails its
checksum was cut short by a crash: readers ignore it, the writer overwrites it. The writer folds the log
into a new snapshot (the next generation; written to a temporary name, fsynced, renamed) once the log
outgrows the snapshot and when it closes; the snapshot's rename is that compaction's commit point, and the
older log is then deleted.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from events.errors import StoreError
from stores.files import fsync_dir
from stores.offline_rows import _COLUMN_TYPES, ViewId, ViewSchema
from stores.offsets import applied_from_rows, applied_to_rows, check_format_version

FORMAT_VERSION = 2  # 2: the snapshot is continued by a log; 1 (snapshot only) is still read
MANIFEST = "manifest.json"
_LOG_PREFIX = "manifest-"
_MIN_LOG_BYTES_TO_COMPACT = 256 * 1024


@dataclass(frozen=True, slots=True)
class DataFile:
    path: str  # relative to the root, POSIX separators
    workspace: str
    feature_view: str
    date: str
    rows: int


@dataclass(frozen=True, slots=True)
class Manifest:
    files: tuple[DataFile, ...]
    schemas: Mapping[ViewId, ViewSchema]
    applied: Mapping[tuple[str, int], int]
    generation: int = 0  # of the log that continues the snapshot
    log_bytes: int = 0  # the valid length of that log: where the next commit's line goes
    snapshot_bytes: int = 0

    def outgrew_snapshot(self) -> bool:
        return self.log_bytes > max(self.snapshot_bytes, _MIN_LOG_BYTES_TO_COMPACT)


EMPTY = Manifest((), {}, {})


def log_path(root: Path, generation: int) -> Path:
    return root / f"{_LOG_PREFIX}{generation}.log"


def load(root: Path, what: str) -> Manifest | None:
    """The committed manifest (snapshot, then its log); None if there is no snapshot."""
    for _ in range(10):
        try:
            text = (root / MANIFEST).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read the manifest of {what}: {exc}") from exc
        snapshot = _from_snapshot(text, what)
        try:
            log = log_path(root, snapshot.generation).read_bytes()
        except FileNotFoundError:
            log = b""
        except OSError as exc:
            raise StoreError(f"cannot read the manifest log of {what}: {exc}") from exc
        if log or _snapshot_text(root) == text:
            return _replayed(snapshot, log, what)
        # Missing log: no commit since the snapshot, or the writer compacted between our two reads.
    raise StoreError(f"the manifest of {what} keeps changing under its reader")


def with_commit(manifest: Manifest, files: Sequence[DataFile], schemas: Mapping[ViewId, ViewSchema],
                applied: Mapping[tuple[str, int], int]) -> tuple[Manifest, bytes]:
    """The manifest after a commit, and the log line that commits it."""
    changed = {view: schema for view, schema in schemas.items() if manifest.schemas.get(view) != schema}
    body = json.dumps({"files": [_file_to_json(f) for f in files], "views": _views_to_json(changed),
                       "applied_offsets": applied_to_rows(applied)}, separators=(",", ":")).encode("utf-8")
    line = b"%08x %s\n" % (zlib.crc32(body), body)
    return replace(manifest, files=manifest.files + tuple(files), schemas=dict(schemas), applied=dict(applied),
                   log_bytes=manifest.log_bytes + len(line)), line


def append_line(root: Path, manifest: Manifest, line: bytes, what: str) -> None:
    """Write `line` where the manifest's log ends (over whatever a failed commit left), cut the rest, fsync."""
    path = log_path(root, manifest.generation)
    try:
        created = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, line, manifest.log_bytes)
            os.ftruncate(fd, manifest.log_bytes + len(line))
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_dir(root)
    except OSError as exc:
        raise StoreError(f"cannot commit to the manifest log of {what}: {exc}") from exc


def snapshot_json(manifest: Manifest) -> bytes:
    """The snapshot of `manifest`, continued by the (empty) log of the next generation."""
    return json.dumps({
        "format_version": FORMAT_VERSION,
        "log_generation": manifest.generation + 1,
        "applied_offsets": applied_to_rows(manifest.applied),
        "views": _views_to_json(manifest.schemas),
        "files": [_file_to_json(f) for f in manifest.files],
    }, separators=(",", ":")).encode("utf-8")


def remove_other_logs(root: Path, generation: int, what: str) -> None:
    """Delete the logs of older snapshots (their commits are in the snapshot now)."""
    try:
        for path in root.glob(f"{_LOG_PREFIX}*.log"):
            if path != log_path(root, generation):
                path.unlink()
    except OSError as exc:
        raise StoreError(f"cannot remove old manifest logs of {what}: {exc}") from exc


def _snapshot_text(root: Path) -> str | None:
    try:
        return (root / MANIFEST).read_text(encoding="utf-8")
    except OSError:
        return None


def _from_snapshot(text: str, what: str) -> Manifest:
    try:
        data = json.loads(text)
        version = data.get("format_version")
        if version != 1:  # 1 had no log
            check_format_version(version, FORMAT_VERSION, what)
        files = tuple(DataFile(**f) for f in data["files"])
        manifest = Manifest(files, _views_from_json(data["views"], what), applied_from_rows(data["applied_offsets"]),
                            generation=int(data.get("log_generation", 0)))
        return replace(manifest, snapshot_bytes=len(text))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StoreError(f"the manifest of {what} is malformed: {exc}") from exc


def _replayed(snapshot: Manifest, log: bytes, what: str) -> Manifest:
    manifest, position = snapshot, 0
    files, schemas = list(snapshot.files), dict(snapshot.schemas)
    while position < len(log):
        end = log.find(b"\n", position)
        commit = _parsed_line(log[position:end]) if end >= 0 else None
        if commit is None:
            if end >= 0 and log.find(b"\n", end + 1) >= 0:  # only the last line can be cut short
                raise StoreError(f"the manifest log of {what} is corrupt at byte {position}")
            break
        try:
            files += [DataFile(**f) for f in commit["files"]]
            schemas.update(_views_from_json(commit["views"], what))
            applied = applied_from_rows(commit["applied_offsets"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise StoreError(f"the manifest log of {what} is malformed at byte {position}: {exc}") from exc
        position = end + 1
        manifest = replace(manifest, applied=applied, log_bytes=position)
    return replace(manifest, files=tuple(files), schemas=schemas)


def _parsed_line(line: bytes) -> dict[str, Any] | None:
    """The commit of one log line; None unless complete and intact."""
    checksum, _, body = line.partition(b" ")
    try:
        if len(checksum) != 8 or int(checksum, 16) != zlib.crc32(body):
            return None
        commit = json.loads(body)
    except ValueError:
        return None
    return commit if isinstance(commit, dict) else None


def _file_to_json(f: DataFile) -> dict[str, object]:
    return {"path": f.path, "workspace": f.workspace, "feature_view": f.feature_view, "date": f.date,
            "rows": f.rows}


def _views_to_json(schemas: Mapping[ViewId, ViewSchema]) -> list[dict[str, object]]:
    return [{"workspace": w, "feature_view": fv, "join_keys": list(s.join_keys), "columns": dict(s.columns)}
            for (w, fv), s in schemas.items()]


def _views_from_json(views: list[dict[str, Any]], what: str) -> dict[ViewId, ViewSchema]:
    schemas: dict[ViewId, ViewSchema] = {}
    for view in views:
        columns = dict(view["columns"])
        if not set(columns.values()) <= _COLUMN_TYPES:
            raise StoreError(f"{what} names unknown column types in {columns}")
        schemas[(str(view["workspace"]), str(view["feature_view"]))] = ViewSchema(
            tuple(view["join_keys"]), columns)
    return schemas
