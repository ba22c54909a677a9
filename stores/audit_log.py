"""The audit store: append-only, hash-chained records of every cross-plane flow (DESIGN: "Audit records").

Each record becomes the next `ChainLink`: its hash covers the previous link's hash, so changing,
removing or reordering any stored record breaks the chain from there on, which `verify` reports.

`LmdbAuditStore` keeps links in the `links` sub-database (key: 8-byte big-endian sequence number, so
LMDB's order is the chain's order; value: msgpack [prev_hash, record, hash]) and the format version and
applied offsets in `meta`, written in the same transaction as the links. A writer given `index_terms`
also keeps an `index` sub-database (key: term, NUL, sequence number) so that lineage and audit queries
by correlation or causation id read a handful of links instead of the whole chain; the index is not
covered by the hash chain (it can always be rebuilt from the links, and is, for links it lacks).

A term that starts with `UNIQUE` names one record: a record with such a term already in the index (or
earlier in the same append) is not chained again. The feature server's spooled records (HTTP flows, sent
again when its process died between Kafka taking them and the spool dropping them) carry one, their record
id; records of Kafka messages need none (their offsets make them idempotent) and cost nothing extra.

Other processes (the CLI, tests) can open the store read-only while the writer has it open; LMDB serves
them consistent snapshots. A second open
inside the writer's own process is refused by LMDB (its locks belong to the process).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

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
# The terms under which a stored record is found again (e.g. "c:<correlation id>"); derived from the
# encoded record by the caller, since the store never decodes records.
IndexTerms = Callable[[bytes], Iterable[str]]
_INDEXED_THROUGH_KEY = b"indexed_through"  # meta: links below this sequence number are indexed
UNIQUE = "!"  # an index term starting with this names one record: it is chained once


class AuditStore(Protocol):
    def append(self, records: Sequence[AuditItem]) -> int:
        """Chain the records not applied yet (and not already chained under a `UNIQUE` term), with their
        offsets, in one transaction; how many were chained."""
        ...

    def links(self, start: int = 0) -> Iterator[ChainLink]:
        """The links from sequence number `start` on, in order."""
        ...

    def latest(self, limit: int) -> list[ChainLink]:
        """The `limit` most recent links, newest first."""
        ...

    def newest_first(self) -> Iterator[ChainLink]:
        """Every link, newest first, read lazily: a consumer that stops early reads little."""
        ...

    def find(self, term: str, limit: int) -> list[ChainLink]:
        """The `limit` most recent links indexed under `term`, newest first (needs `index_terms`)."""
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
    def __init__(self, *, index_terms: IndexTerms | None = None) -> None:
        self._links: list[ChainLink] = []
        self._applied: AppliedOffsets = {}
        self._index_terms = index_terms
        self._index: dict[str, list[int]] = {}

    def append(self, records: Sequence[AuditItem]) -> int:
        self._check_open()
        to_apply, next_offsets = split_applied(records, self._applied, _coordinates_of)
        prev = self._links[-1] if self._links else None
        chained = 0
        for record in _records(to_apply):
            terms = list(self._index_terms(record)) if self._index_terms else []
            if any(t.startswith(UNIQUE) and t in self._index for t in terms):
                continue
            prev = chain(prev, record)
            self._links.append(prev)
            chained += 1
            for term in terms:
                self._index.setdefault(term, []).append(prev.seq)
        self._applied = next_offsets
        return chained

    def links(self, start: int = 0) -> Iterator[ChainLink]:
        self._check_open()
        return iter(self._links[max(start, 0) :])

    def latest(self, limit: int) -> list[ChainLink]:
        self._check_open()
        return list(reversed(self._links[-limit:])) if limit > 0 else []

    def newest_first(self) -> Iterator[ChainLink]:
        self._check_open()
        return reversed(list(self._links))

    def find(self, term: str, limit: int) -> list[ChainLink]:
        self._check_open()
        if self._index_terms is None:
            raise StoreError("this audit store keeps no index")
        seqs = self._index.get(term, [])[-limit:] if limit > 0 else []
        return [self._links[seq] for seq in reversed(seqs)]

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


def _index_key(term: str, seq: int) -> bytes:
    if "\0" in term:
        raise StoreError(f"an index term may not contain NUL: {term!r}")
    return term.encode() + b"\0" + _seq_key(seq)


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
    def __init__(self, path: Path, *, readonly: bool = False, map_size: int = DEFAULT_MAP_SIZE,
                 index_terms: IndexTerms | None = None) -> None:
        self._readonly = readonly
        self._what = f"audit store {path}"
        # Readers never open the index: it may not exist yet in a store an older version wrote.
        self._index_terms = None if readonly else index_terms
        names = (b"links", b"meta", b"index") if self._index_terms else (b"links", b"meta")
        self._env, dbs = open_store_env(path, names, data_db=b"links", map_size=map_size,
                                        readonly=readonly, supported=FORMAT_VERSION, what=self._what)
        self._links_db, self._meta_db, self._index_db = dbs[b"links"], dbs[b"meta"], dbs.get(b"index")
        try:
            self._index_missing_links()
        except BaseException:
            self._env.close()
            raise

    def append(self, records: Sequence[AuditItem]) -> int:
        self._check_open()
        with applying(self._env, self._meta_db, records, _coordinates_of, readonly=self._readonly,
                      what=self._what) as (txn, to_apply):
            if not to_apply:
                return 0
            # The chain's tail is read inside the write transaction too, which LMDB serialises.
            cursor = txn.cursor(db=self._links_db)
            prev = _unpack_link(cursor.key(), cursor.value(), strict=True) if cursor.last() else None
            chained = 0
            for record in _records(to_apply):
                terms = list(self._index_terms(record)) if self._index_terms else []
                if self._chained_before(txn, terms):
                    continue  # the applied offsets still move past it: it is taken, once
                prev = chain(prev, record)
                # append=True: LMDB's fast path for keys past the last one; it refuses any other key.
                txn.put(_seq_key(prev.seq), _pack_link(prev), append=True, db=self._links_db)
                self._put_terms(txn, prev.seq, terms)
                chained += 1
            if self._index_db is not None and prev is not None:
                txn.put(_INDEXED_THROUGH_KEY, _seq_key(prev.seq + 1), db=self._meta_db)
        return chained

    def _chained_before(self, txn: Any, terms: Sequence[str]) -> bool:
        """A `UNIQUE` term of the record is in the index already (this transaction's puts included)."""
        if self._index_db is None:
            return False
        for term in terms:
            if term.startswith(UNIQUE):
                prefix = term.encode() + b"\0"
                cursor = txn.cursor(db=self._index_db)
                if cursor.set_range(prefix) and cursor.key().startswith(prefix):
                    return True
        return False

    def _put_terms(self, txn: Any, seq: int, terms: Iterable[str]) -> None:
        if self._index_db is None:
            return
        for term in terms:
            txn.put(_index_key(term, seq), b"", db=self._index_db)

    def _index_missing_links(self) -> None:
        """Index the links a writer without an index appended (or an older version), in chunks."""
        if self._index_db is None:
            return
        with lmdb_errors(self._what), self._env.begin(db=self._meta_db) as txn:
            raw = txn.get(_INDEXED_THROUGH_KEY)
        start = int.from_bytes(raw, "big") if raw else 0
        pending: list[ChainLink] = []
        for link in self._links(start, strict=False):
            pending.append(link)
            if len(pending) == _CHUNK:
                self._index_links(pending)
                pending = []
        self._index_links(pending)

    def _index_links(self, links: list[ChainLink]) -> None:
        if not links:
            return
        with lmdb_errors(self._what), self._env.begin(write=True) as txn:
            for link in links:
                self._put_terms(txn, link.seq, self._index_terms(link.record) if self._index_terms else ())
            txn.put(_INDEXED_THROUGH_KEY, _seq_key(links[-1].seq + 1), db=self._meta_db)

    def find(self, term: str, limit: int) -> list[ChainLink]:
        self._check_open()
        if self._index_db is None:
            raise StoreError(f"{self._what} is open without its index")
        prefix = term.encode() + b"\0"
        with lmdb_errors(self._what), self._env.begin() as txn:
            cursor = txn.cursor(db=self._index_db)
            seqs: list[bytes] = []
            if cursor.set_range(prefix):
                for key in cursor.iternext(values=False):
                    if not key.startswith(prefix) or len(key) != len(prefix) + 8:
                        break
                    seqs.append(key[len(prefix):])
            chosen = seqs[-limit:] if limit > 0 else []
            return [_unpack_link(seq, self._raw_link(txn, seq), strict=True) for seq in reversed(chosen)]

    def _raw_link(self, txn: Any, seq: bytes) -> bytes:
        raw = txn.get(seq, db=self._links_db)
        if not isinstance(raw, bytes):
            raise StoreError(f"{self._what}: the index names link {int.from_bytes(seq, 'big')}, which is missing")
        return raw

    def newest_first(self) -> Iterator[ChainLink]:
        self._check_open()
        with lmdb_errors(self._what), self._env.begin() as txn:
            cursor = txn.cursor(db=self._links_db)
            end = int.from_bytes(cursor.key(), "big") + 1 if cursor.last() else 0
        while end > 0:
            start = max(0, end - _CHUNK)
            yield from reversed([_unpack_link(key, raw, strict=True) for key, raw in self._read_chunk(_seq_key(start))
                                 if int.from_bytes(key, "big") < end])
            end = start

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
