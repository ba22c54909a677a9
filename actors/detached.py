"""Publishing from a request path without hanging on the broker.

A Kafka transaction cannot be abandoned half-way: cancelling it makes the client abort, and the abort
itself waits for the broker. So each transaction of a request runs in a task of its own and the request
waits for it at most a deadline; when the broker is away the request gets `BrokerUnavailable` (HTTP 503)
and the task finishes once the broker is back (aiokafka reconnects by itself and keeps the messages).

Audit records of flows that are no Kafka message (answers from the serving cache) do not come this way:
they are spooled and shipped in the background (actors/audit_shipper.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import structlog

from actors.group_commit import GroupCommit
from actors.outbox import Outbound
from events.audit import AuditRecord
from events.errors import BrokerUnavailable, FlowDenied
from events.planes import Component

T = TypeVar("T")
_CLOSE_WAIT_S = 5.0


class DetachedPublisher:
    def __init__(self, commits: Callable[[], GroupCommit], sender: Component, timeout_s: float) -> None:
        self._commits = commits
        self._timeout_s = timeout_s
        self._tasks: set[asyncio.Task[Any]] = set()
        self._log = structlog.get_logger().bind(sender=str(sender))

    async def publish(self, outputs: Sequence[Outbound], audits: Sequence[AuditRecord] = (),
                      timeout_s: float | None = None) -> list[FlowDenied]:
        """Send `outputs` and `audits` in one transaction; BrokerUnavailable if Kafka has not taken them
        within the deadline (they may still be sent when the broker is back)."""
        timeout = self._timeout_s if timeout_s is None else max(timeout_s, 0.0)
        task = self._spawn(self._send(outputs, audits))
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            raise BrokerUnavailable(f"Kafka did not take the message within {timeout:g}s: the broker is unreachable")
        return task.result()

    async def close(self) -> None:
        """Give pending transactions a moment to finish, then cancel them."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=_CLOSE_WAIT_S)
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _send(self, outputs: Sequence[Outbound], audits: Sequence[AuditRecord]) -> list[FlowDenied]:
        return await self._commits().publish(outputs, audits)

    def _spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # a request stopped waiting for it (503); say what became of it
            self._log.warning("detached_send_failed", error=repr(task.exception()))
