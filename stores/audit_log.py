"""The audit store: append-only, hash-chained records of every cross-plane flow (DESIGN: "Audit records").

Each record becomes the next `ChainLink`: its hash covers the previous link's hash, so changing,
removing or reordering any stored record breaks the chain from there on, which `verify` reports.

`LmdbAuditStore` keeps links in the `links` sub-database (key: 8-byte big-endian sequence number, so
LMDB's order is the chain's order; value: msgpack [prev_hash, record, hash]) and the format version and
applied offsets in `meta`, written in the same transaction as the links. Other processes (the CLI, tests)
can open it read-only while the writer has it open; LMDB serves them consistent snapshots. A second open
inside the writer's own process is refused by LMDB (its locks belong to the process).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

import msgpack

from events.audit import ChainLink, chain, first_broken_link
from events.data import Coordinates
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

FORMAT_VERSION = 1
DEFAULT_MAP_SIZE = 1 << 30
# Links read per read transaction while iterating: short transactions never hold the writer back.
_CHUNK = 1024

AuditItem = tuple[Coordinates, bytes]


class AuditStore(Protocol):
    def append(self, records: Sequence[AuditItem]) -> int:
        """Chain the records not applied yet, with their offsets, in one transaction; how many were."""
        ...

    def links(self, start: int = 0) -> Iterator[ChainLink]:
        """The links from sequence number `start` on, in order."""
        ...

    def latest(self, limit: int) -> list[ChainLink]:
        """The `limit` most recent links, newest first."""
        ...

    def count(self) -> int: ...

    def verify(self) -> int | None:
        """The sequence number of the first link that does not verify, None if the chain is intact."""
        ...

    def applied_offsets(self) -> dict[tuple[str, int], int]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


def _coordinates_of(item: AuditItem) -> Coordinates:
    return item[0]


def _records(items: Sequence[AuditItem]) -> list[bytes]:
    records = [record for _, record in items]
    for record in records:
        if not isinstance(record, bytes):
            raise StoreError(f"an audit record is encoded bytes, not {type(record).__name__}")
    return records


class InMemoryAuditStore(ClosableStore):
    def __init__(self) -> None:
        self._links: list[ChainLink] = []
        self._applied: AppliedOffsets = {}

    def append(self, records: Sequence[AuditItem]) -> int:
        self._check_open()
        to_apply, next_offsets = split_applied(records, self._applied, _coordinates_of)
        prev = self._links[-1] if self._links else None
        for record in _records(to_apply):
            prev = chain(prev, record)
            self._links.append(prev)
        self._applied = next_offsets
        return len(to_apply)

    def links(self, start: int = 0) -> Iterator[ChainLink]:
        self._check_open()
        return iter(self._links[max(start, 0) :])

    def latest(self, limit: int) -> list[ChainLink]:
        self._check_open()
        return list(reversed(self._links[-limit:])) if limit > 0 else []

    def count(self) -> int:
        self._check_open()
        return len(self._links)

    def verify(self) -> int | None:
        self._check_open()
        return first_broken_link(self._links)

    def applied_offsets(self) -> dict[tuple[str, int], int]:
        self._check_open()
        return dict(self._applied)


def _seq_key(seq: int) -> bytes:
    return seq.to_bytes(8, "big")


def _pack_link(link: ChainLink) -> bytes:
    return msgpack.packb([link.prev_hash, link.record, link.hash])


def _unpack_link(key: bytes, raw: bytes, *, strict: bool) -> ChainLink:
    """The stored link; with strict=False an unreadable one comes back as a link that cannot verify."""
    if len(key) != 8:
        raise StoreError(f"audit store key {key!r} is not a sequence number")
    seq = int.from_bytes(key, "big")
    try:
        prev_hash, record, hash_ = msgpack.unpackb(raw)
        if not all(isinstance(part, bytes) for part in (prev_hash, record, hash_)):
            raise TypeError("link parts are not bytes")
    except UNPACK_ERRORS as exc:
        if strict:
            raise StoreError(f"audit link {seq} is unreadable: {exc}") from exc
        # An empty prev_hash never matches (GENESIS and hashes are 32 bytes): verify reports this seq.
        return ChainLink(seq, b"", raw, b"")
    return ChainLink(seq, prev_hash, record, hash_)


class LmdbAuditStore(ClosableStore):
    def __init__(self, path: Path, *, readonly: bool = False, map_size: int = DEFAULT_MAP_SIZE) -> None:
        self._readonly = readonly
        self._what = f"audit store {path}"
        self._env, dbs = open_store_env(path, (b"links", b"meta"), data_db=b"links", map_size=map_size,
                                        readonly=readonly, supported=FORMAT_VERSION, what=self._what)
        self._links_db, self._meta_db = dbs[b"links"], dbs[b"meta"]

    def append(self, records: Sequence[AuditItem]) -> int:
        self._check_open()
        with applying(self._env, self._meta_db, records, _coordinates_of, readonly=self._readonly,
                      what=self._what) as (txn, to_apply):
            if not to_apply:
                return 0
            # The chain's tail is read inside the write transaction too, which LMDB serialises.
            cursor = txn.cursor(db=self._links_db)
            prev = _unpack_link(cursor.key(), cursor.value(), strict=True) if cursor.last() else None
            for record in _records(to_apply):
                prev = chain(prev, record)
                # append=True: LMDB's fast path for keys past the last one; it refuses any other key.
                txn.put(_seq_key(prev.seq), _pack_link(prev), append=True, db=self._links_db)
        return len(to_apply)

    def links(self, start: int = 0) -> Iterator[ChainLink]:
        self._check_open()
        return self._links(max(start, 0), strict=True)

    def _links(self, start: int, *, strict: bool) -> Iterator[ChainLink]:
        next_key = _seq_key(start)
        while True:
            chunk = self._read_chunk(next_key)
            for key, raw in chunk:
                yield _unpack_link(key, raw, strict=strict)
            if len(chunk) < _CHUNK:
                return
            next_key = _seq_key(int.from_bytes(chunk[-1][0], "big") + 1)

    def _read_chunk(self, first_key: bytes) -> list[tuple[bytes, bytes]]:
        self._check_open()
        with lmdb_errors(self._what), self._env.begin(db=self._links_db) as txn:
            cursor = txn.cursor()
            if not cursor.set_range(first_key):
                return []
            chunk: list[tuple[bytes, bytes]] = []
            for item in cursor:
                chunk.append(item)
                if len(chunk) == _CHUNK:
                    break
            return chunk

    def latest(self, limit: int) -> list[ChainLink]:
        self._check_open()
        if limit <= 0:
            return []
        found: list[ChainLink] = []
        with lmdb_errors(self._what), self._env.begin(db=self._links_db) as txn:
            cursor = txn.cursor()
            if cursor.last():
                for key, raw in cursor.iterprev():
                    found.append(_unpack_link(key, raw, strict=True))
                    if len(found) == limit:
                        break
        return found

    def count(self) -> int:
        self._check_open()
        with lmdb_errors(self._what), self._env.begin() as txn:
            return txn.stat(self._links_db)["entries"]

    def verify(self) -> int | None:
        self._check_open()
        return first_broken_link(self._links(0, strict=False))

    def applied_offsets(self) -> dict[tuple[str, int], int]:
        self._check_open()
        with lmdb_errors(self._what), self._env.begin(db=self._meta_db) as txn:
            return decode_applied(txn.get(APPLIED_OFFSETS_KEY))

    def close(self) -> None:
        if not self._closed:
            self._env.close()
        super().close()
