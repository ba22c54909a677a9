"""Audit records of flows that are not Kafka messages, written ahead to a spool and shipped in the background.

An answer from the serving cache (F1 in, F4 out) and a refused read (F1, denied) cross plane boundaries
without a Kafka message to carry their audit records. Waiting for Kafka to take them would put a broker
round trip into every answer (and hold answers during an outage); keeping them in memory would lose them
with the process. So `audit` appends them to the feature server's spool (one LMDB transaction, no fsync:
see stores/audit_spool.py) and returns: the answer goes out once its records are written down. A single
background task sends what is pending, oldest first, in batches through the group commit, and drops each
batch from the spool once Kafka has it; while the broker is away it retries with a growing pause. A new
incarnation (Ray restarted the process) starts by shipping what its predecessor left. A batch Kafka took
just before the process died is sent again; the audit log chains each of these records once (by id).

Bounded: a spool that already holds `max_pending` records (the broker has been away a long time) refuses
more with `BrokerUnavailable` (HTTP 503), rather than grow the disk without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

import structlog

from actors.group_commit import GroupCommit
from events.audit import AuditRecord
from events.codec import Codec
from events.errors import BrokerUnavailable
from events.planes import Component
from stores.audit_spool import AuditSpool

# Records per shipped batch: one send of the group commit (the audit log takes them in one transaction).
SHIP_BATCH = 1_000
# What the spool holds at most (a few hundred bytes each): about ten minutes of half-peak load.
MAX_PENDING = 1_000_000
RETRY_S = (0.5, 1.0, 2.0, 5.0)  # pauses between attempts while Kafka does not take a batch
_CLOSE_WAIT_S = 5.0


class AuditShipper:
    def __init__(self, spool: AuditSpool, commits: Callable[[], GroupCommit], codec: Codec, sender: Component,
                 *, max_pending: int = MAX_PENDING, batch: int = SHIP_BATCH,
                 retry_s: Sequence[float] = RETRY_S) -> None:
        self._spool = spool
        self._commits = commits
        self._codec = codec
        self._max_pending = max_pending
        self._batch = batch
        self._retry_s = tuple(retry_s)
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()  # set while the spool is empty
        self._task: asyncio.Task[None] | None = None
        self._flushing: asyncio.Future[None] | None = None
        self.shipped = 0  # records Kafka has taken (and the spool dropped) in this process
        self._log = structlog.get_logger().bind(sender=str(sender))

    def audit(self, records: Sequence[AuditRecord]) -> None:
        """Write the records down for shipping; BrokerUnavailable when the spool is full."""
        if self._spool.count() >= self._max_pending:
            raise BrokerUnavailable(f"{self._max_pending} audit records are waiting for Kafka: the broker has "
                                    "been unreachable too long to answer more")
        self._spool.append([self._codec.encode_value(r) for r in records])
        self._drained.clear()
        self._wake.set()

    def pending(self) -> int:
        return self._spool.count()

    def start(self) -> None:
        """Ship in the background, beginning with what a previous incarnation left in the spool."""
        if self._task is None:
            self._task = asyncio.create_task(self._ship_forever(), name="audit-shipper")

    async def close(self, wait_s: float = _CLOSE_WAIT_S) -> None:
        """Give the shipper a moment to empty the spool, then stop it; what is left ships on the next start."""
        task, self._task = self._task, None
        if task is None:
            return
        if not task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), wait_s)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if self._flushing is not None:  # the spool is closed after this: no flush may still be running
            await asyncio.gather(self._flushing, return_exceptions=True)

    async def _ship_forever(self) -> None:
        attempt = 0
        while True:
            batch = self._spool.pending(self._batch)
            if not batch:
                # nothing awaited between the empty read and clear(): an append in between is not missed
                self._drained.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            records = [self._codec.decode_value(raw) for _, raw in batch]
            try:
                await self._commits().publish([], records)
            except Exception:  # noqa: BLE001 - Kafka did not take them; they stay spooled and go again
                delay = self._retry_s[min(attempt, len(self._retry_s) - 1)]
                attempt += 1
                self._log.warning("audit_ship_failed", records=len(records), pending=self._spool.count(),
                                  retry_in_s=delay, exc_info=attempt == 1)
                await self._flush()
                await asyncio.sleep(delay)
                continue
            if attempt:
                self._log.info("audit_ship_resumed", after_attempts=attempt, pending=self._spool.count())
            attempt = 0
            self._spool.remove_through(batch[-1][0])
            self.shipped += len(batch)

    async def _flush(self) -> None:
        """Records wait for the broker: flush the spool to disk (an fsync, off the event loop), so that not
        even a power loss takes them. While Kafka answers they are gone within milliseconds: no fsync then."""
        self._flushing = asyncio.ensure_future(asyncio.to_thread(self._spool.sync))
        await asyncio.shield(self._flushing)
