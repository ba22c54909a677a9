"""The online store: the latest feature row per (workspace, feature view, entity key), for serving.

`LmdbOnlineStore` keeps rows in LMDB under sortable binary keys (`encode_key`) with msgpack values, and
a `meta` sub-database with the format version and the applied offsets, written in the same transaction
as the rows. `InMemoryOnlineStore` behaves the same for unit tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

import msgpack

from events.data import Coordinates, EntityKey, FeatureRow, Lookup, StoredRow, TileState, WriteOnlineRows, WriteTiles
from events.errors import StoreError
from stores.lmdb_env import applying, lmdb_errors, open_store_env
from stores.offsets import (
    APPLIED_OFFSETS_KEY,
    UNPACK_ERRORS,
    AppliedOffsets,
    ClosableStore,
    decode_applied,
    split_applied,
)
from stores.online_keys import _INT_MAX, _INT_MIN, MAX_KEY_BYTES, decode_key, encode_key
from stores.online_tiles import collect, delta_entries, range_bounds

FORMAT_VERSION = 1
DEFAULT_MAP_SIZE = 1 << 30
_PLAIN = frozenset({str, float, bool, type(None)})  # values stored as they are (ints need a range check)
_NAME_TYPES = frozenset({str})


@dataclass(frozen=True, slots=True)
class OnlineWrite:
    """One consumed online-write message; `written_by` is its event id, kept with the rows for lineage."""

    coordinates: Coordinates
    workspace: str
    write: WriteOnlineRows | WriteTiles
    written_by: str


class OnlineStore(Protocol):
    def apply_writes(self, writes: Sequence[OnlineWrite]) -> int:
        """Apply the writes not applied yet and their offsets in one transaction; how many were applied.

        Per (workspace, feature view, entity key) the row with the latest event time wins; on equal event
        times the later write wins. Tile deltas are all kept (they are merged when read).
        """
        ...

    def read_tiles(self, workspace: str, feature_view: str, entity_key: EntityKey, lower: float | None,
                   upper: float) -> tuple[TileState, ...]:
        """The tile deltas of one entity with lower <= tile <= upper (lower None: from the first), in tile
        order; several deltas of one tile are all returned."""
        ...

    def read(self, workspace: str, lookups: Sequence[Lookup]) -> list[StoredRow | None]:
        """The stored row of each lookup, None where nothing is stored."""
        ...

    def applied_offsets(self) -> dict[tuple[str, int], int]:
        """The next offset to apply per (topic, partition)."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


# --- rows ---------------------------------------------------------------------------------------------


def _tile_entries(writes: Sequence[OnlineWrite]) -> list[tuple[bytes, bytes]]:
    return [entry for w in writes if isinstance(w.write, WriteTiles)
            for entry in delta_entries(w.workspace, w.write.feature_view, w.coordinates.offset, w.write.tiles,
                                       w.written_by)]


def _prepared(writes: Sequence[OnlineWrite]) -> list[tuple[bytes, StoredRow]]:
    """The row that wins per key among the writes' rows as (key, stored row), every row checked before
    anything is written: the same outcome as applying each row in turn.

    A batch often holds many rows of one entity (a backfill, a busy key), so the key is encoded once per
    distinct entity and only the winning rows are normalized; the checks still see every row.
    """
    latest: dict[bytes, tuple[FeatureRow, str]] = {}
    # Entity keys equal as tuples may differ in type ((1,) == (True,) == (1.0,)): the types are part of
    # the cache key, as they are of the encoded key.
    keys: dict[tuple[str, str, EntityKey, tuple[type, ...]], bytes] = {}
    for write in writes:
        if not isinstance(write.written_by, str):
            raise StoreError(f"written_by is {type(write.written_by).__name__}, not a string")
        if not isinstance(write.write, WriteOnlineRows):
            continue
        workspace, feature_view = write.workspace, write.write.feature_view
        for row in write.write.rows:
            _check(row)
            entity = row.entity_key
            cache_key = (workspace, feature_view, entity, tuple(map(type, entity)) if isinstance(entity, tuple) else ())
            key = keys.get(cache_key)
            if key is None:
                key = keys[cache_key] = encode_key(workspace, feature_view, entity)
                if len(key) > MAX_KEY_BYTES:
                    raise StoreError(f"key of {entity!r} is {len(key)} bytes, over {MAX_KEY_BYTES}")
            old = latest.get(key)
            if old is None or _wins(row.event_time, old[0].event_time):
                latest[key] = (row, write.written_by)
    return [(key, StoredRow(_normalized(_canonical(key, row.entity_key), row), written_by))
            for key, (row, written_by) in latest.items()]


def _canonical(key: bytes, entity: EntityKey) -> EntityKey:
    """The entity key as the store returns it (decoded from its stored form): strings stay as they are."""
    return entity if _NAME_TYPES.issuperset(map(type, entity)) else decode_key(key)[2]


def _check(row: FeatureRow) -> None:
    """StoreError unless the store can hold the row: an aware event time, string names, plain values."""
    if row.event_time.tzinfo is None or row.event_time.utcoffset() is None:
        raise StoreError(f"event time {row.event_time} has no time zone")
    values = row.values
    if _PLAIN.issuperset(map(type, values.values())) and _NAME_TYPES.issuperset(map(type, values)):
        return  # the common case, decided without a Python-level step per value
    for name, value in values.items():
        if not isinstance(name, str):
            raise StoreError(f"feature names are strings, not {type(name).__name__}")
        if type(value) in _PLAIN:
            continue
        if not (value is None or isinstance(value, str | float | int)) or (
            isinstance(value, int) and not _INT_MIN <= value <= _INT_MAX
        ):
            raise StoreError(f"feature {name!r} has a value {value!r} the store cannot hold")


def _normalized(entity: EntityKey, row: FeatureRow) -> FeatureRow:
    """The (checked) row as every backend returns it: canonical key values, UTC event time, a plain dict."""
    event_time = row.event_time if row.event_time.tzinfo is UTC else row.event_time.astimezone(UTC)
    return FeatureRow(entity, event_time, dict(row.values))


def _wins(new: datetime, old: datetime) -> bool:
    """Whether a row of event time `new` replaces one of `old`, the one rule of every backend and of a
    batch's own rows: equal event times, the row applied later (later in the log) wins."""
    return new >= old


def _coordinates_of(write: OnlineWrite) -> Coordinates:
    return write.coordinates


def _pack_stored(stored: StoredRow) -> bytes:
    row = stored.row
    return msgpack.packb([row.event_time, row.values, stored.written_by], datetime=True)


def _unpack_stored(key: bytes, raw: bytes) -> StoredRow:
    try:
        event_time, values, written_by = msgpack.unpackb(raw, timestamp=3)
    except UNPACK_ERRORS as exc:
        raise StoreError(f"unreadable online row under {key!r}: {exc}") from exc
    return StoredRow(FeatureRow(decode_key(key)[2], event_time, values), written_by)


def _stored_event_time(key: bytes, raw: bytes) -> datetime:
    """The event time of a stored row, without rebuilding its entity key and row."""
    try:
        event_time = msgpack.unpackb(raw, timestamp=3)[0]
    except (*UNPACK_ERRORS, IndexError, KeyError) as exc:
        raise StoreError(f"unreadable online row under {key!r}: {exc}") from exc
    if not isinstance(event_time, datetime):
        raise StoreError(f"unreadable online row under {key!r}: no event time")
    return event_time


def _copy(stored: StoredRow) -> StoredRow:
    # The values dict is mutable: a caller changing a returned row must not change the store.
    row = stored.row
    return StoredRow(FeatureRow(row.entity_key, row.event_time, dict(row.values)), stored.written_by)


class InMemoryOnlineStore(ClosableStore):
    def __init__(self) -> None:
        self._rows: dict[bytes, StoredRow] = {}
        self._tiles: dict[bytes, bytes] = {}
        self._applied: AppliedOffsets = {}

    def apply_writes(self, writes: Sequence[OnlineWrite]) -> int:
        self._check_open()
        to_apply, next_offsets = split_applied(writes, self._applied, _coordinates_of)
        rows, tiles = _prepared(to_apply), _tile_entries(to_apply)
        for key, stored in rows:
            old = self._rows.get(key)
            if old is None or _wins(stored.row.event_time, old.row.event_time):
                self._rows[key] = stored
        self._tiles.update(tiles)
        self._applied = next_offsets
        return len(to_apply)

    def read_tiles(self, workspace: str, feature_view: str, entity_key: EntityKey, lower: float | None,
                   upper: float) -> tuple[TileState, ...]:
        self._check_open()
        start, prefix = range_bounds(workspace, feature_view, entity_key, lower)
        items = ((k, self._tiles[k]) for k in sorted(self._tiles) if k >= start)
        return collect(items, prefix, len(entity_key), upper)

    def read(self, workspace: str, lookups: Sequence[Lookup]) -> list[StoredRow | None]:
        self._check_open()
        found = [self._rows.get(encode_key(workspace, lookup.feature_view, lookup.entity_key))
                 for lookup in lookups]
        return [None if stored is None else _copy(stored) for stored in found]

    def applied_offsets(self) -> dict[tuple[str, int], int]:
        self._check_open()
        return dict(self._applied)


class LmdbOnlineStore(ClosableStore):
    """Rows in the `rows` sub-database, format version and applied offsets in `meta`."""

    def __init__(self, path: Path, *, map_size: int = DEFAULT_MAP_SIZE, readonly: bool = False) -> None:
        self._readonly = readonly
        self._what = f"online store {path}"
        self._env, dbs = open_store_env(path, (b"rows", b"meta"), data_db=b"rows", map_size=map_size,
                                        readonly=readonly, supported=FORMAT_VERSION, what=self._what)
        self._rows_db, self._meta_db = dbs[b"rows"], dbs[b"meta"]

    def apply_writes(self, writes: Sequence[OnlineWrite]) -> int:
        self._check_open()
        with applying(self._env, self._meta_db, writes, _coordinates_of, readonly=self._readonly,
                      what=self._what) as (txn, to_apply):
            if not to_apply:
                return 0
            rows, tiles = _prepared(to_apply), _tile_entries(to_apply)  # all checked before any write
            for key, stored in rows:  # one read and one write per key, not per row
                old = txn.get(key, db=self._rows_db)
                if old is None or _wins(stored.row.event_time, _stored_event_time(key, old)):
                    txn.put(key, _pack_stored(stored), db=self._rows_db)
            for key, packed in tiles:
                txn.put(key, packed, db=self._rows_db)
        return len(to_apply)

    def read(self, workspace: str, lookups: Sequence[Lookup]) -> list[StoredRow | None]:
        self._check_open()
        keys = [encode_key(workspace, lookup.feature_view, lookup.entity_key) for lookup in lookups]
        with lmdb_errors(self._what), self._env.begin(db=self._rows_db) as txn:
            # A key too long to store cannot be stored: no need to ask LMDB (which would raise).
            raws = [txn.get(key) if len(key) <= MAX_KEY_BYTES else None for key in keys]
        return [None if raw is None else _unpack_stored(key, raw)
                for key, raw in zip(keys, raws, strict=True)]

    def read_tiles(self, workspace: str, feature_view: str, entity_key: EntityKey, lower: float | None,
                   upper: float) -> tuple[TileState, ...]:
        self._check_open()
        start, prefix = range_bounds(workspace, feature_view, entity_key, lower)
        with lmdb_errors(self._what), self._env.begin(db=self._rows_db) as txn:
            cursor = txn.cursor()
            if not cursor.set_range(start):
                return ()
            return collect(cursor.iternext(), prefix, len(entity_key), upper)

    def applied_offsets(self) -> dict[tuple[str, int], int]:
        self._check_open()
        with lmdb_errors(self._what), self._env.begin(db=self._meta_db) as txn:
            return decode_applied(txn.get(APPLIED_OFFSETS_KEY))

    def close(self) -> None:
        if not self._closed:
            self._env.close()
        super().close()

