"""The online store: the latest feature row per (workspace, feature view, entity key), for serving.

`LmdbOnlineStore` keeps rows in LMDB under sortable binary keys (`encode_key`) with msgpack values, and
a `meta` sub-database with the format version and the applied offsets, written in the same transaction
as the rows. `InMemoryOnlineStore` behaves the same for unit tests.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

import msgpack

from events.data import Coordinates, EntityKey, FeatureRow, Lookup, Scalar, StoredRow, WriteOnlineRows
from events.errors import StoreError
from stores.lmdb_env import lmdb_errors, open_store_env
from stores.offsets import (
    APPLIED_OFFSETS_KEY,
    UNPACK_ERRORS,
    AppliedOffsets,
    ClosableStore,
    decode_applied,
    encode_applied,
    split_applied,
)

FORMAT_VERSION = 1
DEFAULT_MAP_SIZE = 1 << 30
# LMDB's compiled-in key limit. The in-memory store enforces it too, so both refuse the same keys.
MAX_KEY_BYTES = 511

# Type tags of entity-key values: values of different types in one key position sort by tag.
_TAG_NONE, _TAG_BOOL, _TAG_INT, _TAG_FLOAT, _TAG_STR = 1, 2, 3, 4, 5
_SIGN = 1 << 63
_ALL_ONES = (1 << 64) - 1
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 63) - 1


@dataclass(frozen=True, slots=True)
class OnlineWrite:
    """One consumed online-write message; `written_by` is its event id, kept with the rows for lineage."""

    coordinates: Coordinates
    workspace: str
    write: WriteOnlineRows
    written_by: str


class OnlineStore(Protocol):
    def apply_writes(self, writes: Sequence[OnlineWrite]) -> int:
        """Apply the writes not applied yet and their offsets in one transaction; how many were applied.

        Per (workspace, feature view, entity key) the row with the latest event time wins; on equal event
        times the later write wins.
        """
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


# --- keys ---------------------------------------------------------------------------------------------


def encode_key(workspace: str, feature_view: str, entity_key: EntityKey) -> bytes:
    """A key whose byte order is the order of (workspace, feature view, entity key).

    Strings are UTF-8 (whose byte order is code-point order) with 0x00 escaped as 0x00 0xFF and ended by
    0x00, so a string sorts before its extensions. Entity-key values carry a type tag; ints are 64-bit
    big-endian with the sign bit flipped, floats IEEE 754 bits flipped so that negatives sort first.
    """
    out = bytearray()
    _put_str(out, workspace)
    _put_str(out, feature_view)
    if not isinstance(entity_key, tuple):
        raise StoreError(f"an entity key is a tuple, not {type(entity_key).__name__}")
    for value in entity_key:
        _put_scalar(out, value)
    return bytes(out)


def decode_key(key: bytes) -> tuple[str, str, EntityKey]:
    try:
        workspace, pos = _take_str(key, 0)
        feature_view, pos = _take_str(key, pos)
        values: list[Scalar] = []
        while pos < len(key):
            value, pos = _take_scalar(key, pos)
            values.append(value)
    except (IndexError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise StoreError(f"not an online-store key: {key!r}") from exc
    return workspace, feature_view, tuple(values)


def _put_str(out: bytearray, value: str) -> None:
    if not isinstance(value, str):
        raise StoreError(f"expected a string, got {type(value).__name__}")
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise StoreError(f"{value!r} is not valid Unicode") from exc
    out += raw.replace(b"\x00", b"\x00\xff")
    out.append(0)


def _put_scalar(out: bytearray, value: Scalar) -> None:
    # bool before int: bool is an int subclass, and True must not become the key 1.
    if value is None:
        out.append(_TAG_NONE)
    elif isinstance(value, bool):
        out += bytes((_TAG_BOOL, int(value)))
    elif isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise StoreError(f"entity key value {value} does not fit in 64 bits")
        out.append(_TAG_INT)
        out += (value + _SIGN).to_bytes(8, "big")
    elif isinstance(value, float):
        out.append(_TAG_FLOAT)
        out += _float_bits(value).to_bytes(8, "big")
    elif isinstance(value, str):
        out.append(_TAG_STR)
        _put_str(out, value)
    else:
        raise StoreError(f"entity key values are str, int, float, bool or None, not {type(value).__name__}")


def _float_bits(value: float) -> int:
    # -0.0 == 0.0 in Python, so they are one key; every NaN gets one bit pattern.
    value = math.nan if math.isnan(value) else value + 0.0
    bits = int.from_bytes(struct.pack(">d", value), "big")
    return bits ^ _ALL_ONES if bits & _SIGN else bits | _SIGN


def _float_from_bits(bits: int) -> float:
    bits = bits ^ _SIGN if bits & _SIGN else bits ^ _ALL_ONES
    value: float = struct.unpack(">d", bits.to_bytes(8, "big"))[0]
    return value


def _take_str(key: bytes, pos: int) -> tuple[str, int]:
    out = bytearray()
    while True:
        end = key.index(0, pos)
        out += key[pos:end]
        if end + 1 < len(key) and key[end + 1] == 0xFF:
            out.append(0)
            pos = end + 2
        else:
            return out.decode("utf-8"), end + 1


def _take_scalar(key: bytes, pos: int) -> tuple[Scalar, int]:
    tag = key[pos]
    pos += 1
    if tag == _TAG_NONE:
        return None, pos
    if tag == _TAG_BOOL:
        if key[pos] > 1:
            raise ValueError(f"bad bool byte {key[pos]}")
        return key[pos] == 1, pos + 1
    if tag in (_TAG_INT, _TAG_FLOAT):
        if len(key) < pos + 8:
            raise ValueError("truncated number")
        bits = int.from_bytes(key[pos : pos + 8], "big")
        return (bits - _SIGN if tag == _TAG_INT else _float_from_bits(bits)), pos + 8
    if tag == _TAG_STR:
        return _take_str(key, pos)
    raise ValueError(f"unknown type tag {tag}")


# --- rows ---------------------------------------------------------------------------------------------


def _prepared(writes: Sequence[OnlineWrite]) -> list[tuple[bytes, StoredRow]]:
    """Every row of the writes as (key, stored row), all validated before anything is written."""
    entries: list[tuple[bytes, StoredRow]] = []
    for write in writes:
        if not isinstance(write.written_by, str):
            raise StoreError(f"written_by is {type(write.written_by).__name__}, not a string")
        for row in write.write.rows:
            key = encode_key(write.workspace, write.write.feature_view, row.entity_key)
            if len(key) > MAX_KEY_BYTES:
                raise StoreError(f"key of {row.entity_key!r} is {len(key)} bytes, over {MAX_KEY_BYTES}")
            entries.append((key, StoredRow(_normalized(key, row), write.written_by)))
    return entries


def _normalized(key: bytes, row: FeatureRow) -> FeatureRow:
    """The row as every backend returns it: canonical key values, UTC event time, a plain dict."""
    if row.event_time.tzinfo is None or row.event_time.utcoffset() is None:
        raise StoreError(f"event time {row.event_time} has no time zone")
    values = dict(row.values)
    for name, value in values.items():
        if not isinstance(name, str):
            raise StoreError(f"feature names are strings, not {type(name).__name__}")
        if not (value is None or isinstance(value, str | float | int)) or (
            isinstance(value, int) and not _INT_MIN <= value <= _INT_MAX
        ):
            raise StoreError(f"feature {name!r} has a value {value!r} the store cannot hold")
    return FeatureRow(decode_key(key)[2], row.event_time.astimezone(UTC), values)


def _wins(new: StoredRow, old: StoredRow) -> bool:
    # Equal event times: the write applied later (later in the log) wins.
    return new.row.event_time >= old.row.event_time


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


def _copy(stored: StoredRow) -> StoredRow:
    # The values dict is mutable: a caller changing a returned row must not change the store.
    row = stored.row
    return StoredRow(FeatureRow(row.entity_key, row.event_time, dict(row.values)), stored.written_by)


class InMemoryOnlineStore(ClosableStore):
    def __init__(self) -> None:
        self._rows: dict[bytes, StoredRow] = {}
        self._applied: AppliedOffsets = {}

    def apply_writes(self, writes: Sequence[OnlineWrite]) -> int:
        self._check_open()
        to_apply, next_offsets = split_applied(writes, self._applied, _coordinates_of)
        for key, stored in _prepared(to_apply):
            old = self._rows.get(key)
            if old is None or _wins(stored, old):
                self._rows[key] = stored
        self._applied = next_offsets
        return len(to_apply)

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
        if self._readonly:
            raise StoreError(f"{self._what} is open read-only")
        with lmdb_errors(self._what), self._env.begin(write=True) as txn:
            # Offsets are read inside the write transaction: another writer may have moved them.
            applied = decode_applied(txn.get(APPLIED_OFFSETS_KEY, db=self._meta_db))
            to_apply, next_offsets = split_applied(writes, applied, _coordinates_of)
            if not to_apply:
                return 0
            for key, stored in _prepared(to_apply):
                old = txn.get(key, db=self._rows_db)
                if old is None or _wins(stored, _unpack_stored(key, old)):
                    txn.put(key, _pack_stored(stored), db=self._rows_db)
            txn.put(APPLIED_OFFSETS_KEY, encode_applied(next_offsets), db=self._meta_db)
        return len(to_apply)

    def read(self, workspace: str, lookups: Sequence[Lookup]) -> list[StoredRow | None]:
        self._check_open()
        keys = [encode_key(workspace, lookup.feature_view, lookup.entity_key) for lookup in lookups]
        with lmdb_errors(self._what), self._env.begin(db=self._rows_db) as txn:
            # A key too long to store cannot be stored: no need to ask LMDB (which would raise).
            raws = [txn.get(key) if len(key) <= MAX_KEY_BYTES else None for key in keys]
        return [None if raw is None else _unpack_stored(key, raw)
                for key, raw in zip(keys, raws, strict=True)]

    def applied_offsets(self) -> dict[tuple[str, int], int]:
        self._check_open()
        with lmdb_errors(self._what), self._env.begin(db=self._meta_db) as txn:
            return decode_applied(txn.get(APPLIED_OFFSETS_KEY))

    def close(self) -> None:
        if not self._closed:
            self._env.close()
        super().close()

