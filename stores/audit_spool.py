"""The audit spool: a feature server's write-ahead log of audit records still to be sent to Kafka.

An answer from the serving cache crosses two plane boundaries (F1 in, F4 out) without any Kafka message,
so its audit records have nothing to ride on. The feature server appends them here before it answers and
a background shipper sends them to the audit topic, then removes them (`remove_through`). A record stays
here until Kafka has taken it, so neither a broker outage nor a killed process loses one; a record sent
but not yet removed when the process dies is sent again by the next incarnation, and the audit log skips
the copy (it chains a spooled record once, by record id).

The spool holds encoded `AuditRecord`s only: digests, counts, ids, the principal; never feature values
or raw records (DESIGN: nothing in the data plane is persisted but the volatile cache; this is audit
metadata, and it is emptied as it ships).

Durability: `LmdbAuditSpool` commits without fsync (LMDB `sync=False`). A committed append is in the OS
page cache, which outlives the process: a SIGKILLed or crashed feature server loses nothing. A power
loss or kernel crash may lose the appends since the last flush; `sync()` flushes (the shipper calls it
while records wait for an absent broker). One fsync per answer would cost more than the answer.

Layout: sub-database `records` (key: 8-byte big-endian sequence number, so LMDB's order is the append
order; value: the encoded record) and `meta` (format version, next sequence number). Sequence numbers
only grow, also across restarts and after the spool has been emptied.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from events.errors import StoreError
from stores.lmdb_env import lmdb_errors, open_store_env
from stores.offsets import ClosableStore

FORMAT_VERSION = 1
# Sparse: the file grows with what is pending, up to this (records of a few hundred bytes, so millions).
DEFAULT_MAP_SIZE = 2 << 30
_NEXT_SEQ_KEY = b"next_seq"

Pending = tuple[int, bytes]  # (sequence number, encoded record)


class AuditSpool(Protocol):
    def append(self, records: Sequence[bytes]) -> int:
        """Append in one transaction; the sequence number of the last one (-1 when `records` is empty)."""
        ...

    def pending(self, limit: int) -> list[Pending]:
        """Up to `limit` records not removed yet, oldest first."""
        ...

    def remove_through(self, seq: int) -> int:
        """Remove the records up to and including `seq` (they are in Kafka); how many were removed."""
        ...

    def count(self) -> int:
        """Records pending."""
        ...

    def sync(self) -> None:
        """Flush what is committed to disk (survives a power loss, not just a killed process)."""
        ...

    def close(self) -> None: ...


def _seq_key(seq: int) -> bytes:
    return seq.to_bytes(8, "big")


def _check_records(records: Sequence[bytes]) -> None:
    for record in records:
        if not isinstance(record, bytes):
            raise StoreError(f"a spooled audit record is encoded bytes, not {type(record).__name__}")


class InMemoryAuditSpool(ClosableStore):
    """Same contract, in memory (unit tests, and a feature server given no state folder): lost with the
    process, which is what the LMDB spool is for."""

    def __init__(self) -> None:
        self._records: dict[int, bytes] = {}
        self._next = 0

    def append(self, records: Sequence[bytes]) -> int:
        self._check_open()
        _check_records(records)
        for record in records:
            self._records[self._next] = record
            self._next += 1
        return self._next - 1 if records else -1

    def pending(self, limit: int) -> list[Pending]:
        self._check_open()
        return sorted(self._records.items())[:max(limit, 0)]

    def remove_through(self, seq: int) -> int:
        self._check_open()
        removed = [s for s in self._records if s <= seq]
        for s in removed:
            del self._records[s]
        return len(removed)

    def count(self) -> int:
        self._check_open()
        return len(self._records)

    def sync(self) -> None:
        self._check_open()


class LmdbAuditSpool(ClosableStore):
    """The spool in its own LMDB environment (one writer: the feature server replica that owns the folder)."""

    def __init__(self, path: Path, *, map_size: int = DEFAULT_MAP_SIZE) -> None:
        self._what = f"audit spool {path}"
        self._env, dbs = open_store_env(path, (b"records", b"meta"), data_db=b"records", map_size=map_size,
                                        readonly=False, supported=FORMAT_VERSION, what=self._what, sync=False)
        self._records_db, self._meta_db = dbs[b"records"], dbs[b"meta"]
        try:
            with lmdb_errors(self._what), self._env.begin() as txn:
                raw = txn.get(_NEXT_SEQ_KEY, db=self._meta_db)
                self._count: int = txn.stat(self._records_db)["entries"]
                cursor = txn.cursor(db=self._records_db)
                after_last = int.from_bytes(cursor.key(), "big") + 1 if cursor.last() else 0
        except BaseException:
            self._env.close()
            raise
        self._next = max(int.from_bytes(raw, "big") if raw else 0, after_last)

    def append(self, records: Sequence[bytes]) -> int:
        self._check_open()
        _check_records(records)
        if not records:
            return -1
        seq = self._next
        with lmdb_errors(self._what), self._env.begin(write=True) as txn:
            for record in records:
                # append=True: LMDB's fast path for a key past the last one (it refuses any other key)
                txn.put(_seq_key(seq), record, append=True, db=self._records_db)
                seq += 1
            txn.put(_NEXT_SEQ_KEY, _seq_key(seq), db=self._meta_db)
        self._next = seq
        self._count += len(records)
        return seq - 1

    def pending(self, limit: int) -> list[Pending]:
        self._check_open()
        found: list[Pending] = []
        if limit <= 0:
            return found
        with lmdb_errors(self._what), self._env.begin(db=self._records_db) as txn:
            for key, value in txn.cursor():
                found.append((int.from_bytes(key, "big"), value))
                if len(found) == limit:
                    break
        return found

    def remove_through(self, seq: int) -> int:
        self._check_open()
        removed = 0
        with lmdb_errors(self._what), self._env.begin(write=True, db=self._records_db) as txn:
            cursor = txn.cursor()
            # delete() leaves the cursor on the next record (no key past the last one): oldest on, one walk
            key = cursor.key() if cursor.first() else b""
            while key and int.from_bytes(key, "big") <= seq:
                cursor.delete()
                removed += 1
                key = cursor.key()
        self._count -= removed
        return removed

    def count(self) -> int:
        self._check_open()
        return self._count

    def sync(self) -> None:
        self._check_open()
        with lmdb_errors(self._what):
            self._env.sync(True)

    def close(self) -> None:
        if not self._closed:
            self._env.close()
        super().close()
