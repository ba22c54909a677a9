"""Group commit: the messages of many concurrent callers in one Kafka transaction.

A transaction costs a few broker round trips whatever it holds, and a producer has one open at a time,
so callers that each open their own queue up behind one another (the gateway's requests did: throughput
stayed flat as clients were added). Here a caller hands its outputs and audit records over and waits;
whoever arrives while a transaction is in flight joins the next one. A caller returns only once the
transaction holding its messages has committed, so "audited before answered" still holds.

A caller with audit records only (a response the cache answered: no data message, no consumed offsets)
needs no transaction at all: one acknowledged, idempotent send (acks=all) makes its records durable in
one round trip, and concurrent sends share the producer's batches. Given `send`, those go that way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from actors.bus import Outgoing, TransactionalProducer
from actors.outbox import Outbound, audit_message, publish_groups
from events.audit import AuditRecord
from events.codec import Codec
from events.data import Coordinates
from events.errors import FlowDenied, Unavailable
from events.planes import Component
from events.topics import AUDIT, TopicNames

# Callers per transaction at most: bounds the size of one transaction, and of what one failure aborts.
MAX_GROUP = 256


@dataclass(frozen=True, slots=True)
class _Pending:
    outputs: Sequence[Outbound]
    audits: Sequence[AuditRecord]
    done: asyncio.Future[list[FlowDenied]]


class GroupCommit:
    def __init__(self, producer: TransactionalProducer, codec: Codec, names: TopicNames, sender: Component,
                 send: Callable[[Sequence[Outgoing]], Awaitable[list[Coordinates]]] | None = None) -> None:
        self._producer = producer
        self._send = send
        self._codec = codec
        self._names = names
        self._sender = sender
        self._queue: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None

    async def publish(self, outputs: Sequence[Outbound], audits: Sequence[AuditRecord] = ()) -> list[FlowDenied]:
        """Send `outputs` with their audit records and `audits` (see `actors.outbox.publish`) in a shared
        transaction; returns this caller's refusals once it has committed, raises if it aborted."""
        if not outputs and self._send is not None:
            await self._send([audit_message(self._codec, self._names, self._sender, a) for a in audits])
            return []
        done: asyncio.Future[list[FlowDenied]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(outputs, audits, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        # A caller that gives up (cancelled) leaves its messages to the group: they are sent regardless.
        return await asyncio.shield(done)

    async def _flush(self) -> None:
        while self._queue:
            group, self._queue = self._queue[:MAX_GROUP], self._queue[MAX_GROUP:]
            try:
                async with self._producer.transaction() as txn:
                    txn.announce([self._names.name(AUDIT)])  # every caller's messages are audited
                    refused = await publish_groups(txn, self._codec, self._names, self._sender,
                                                   [(p.outputs, p.audits) for p in group])
            except Exception as exc:  # noqa: BLE001 - every caller of the aborted transaction gets the error
                _fail(group, exc)
                continue
            except BaseException:
                _fail([*group, *self._queue], Unavailable("the group commit was cancelled"))
                self._queue = []
                raise
            for pending, theirs in zip(group, refused, strict=True):
                if not pending.done.done():
                    pending.done.set_result(theirs)

    async def close(self) -> None:
        """Wait for what was handed over to be committed (or to fail)."""
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)


def _fail(pendings: Sequence[_Pending], error: Exception) -> None:
    for pending in pendings:
        if not pending.done.done():
            pending.done.set_exception(error)
