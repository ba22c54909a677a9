"""Publishing from a request path without hanging on the broker.

A Kafka transaction cannot be abandoned half-way: cancelling it makes the client abort, and the abort
itself waits for the broker. So each transaction of a request runs in a task of its own and the request
waits for it at most a deadline; when the broker is away the request gets `BrokerUnavailable` (HTTP 503)
and the task finishes once the broker is back (aiokafka reconnects by itself and keeps the messages).
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
_AUDIT_RETRY_S = (0.5, 1.0, 2.0, 5.0)
_CLOSE_WAIT_S = 5.0


class DetachedPublisher:
    def __init__(self, commits: Callable[[], GroupCommit], sender: Component, timeout_s: float) -> None:
        self._commits = commits
        self._timeout_s = timeout_s
        self._tasks: set[asyncio.Task[Any]] = set()
        self._audits_waiting = 0
        self._audits_overdue = 0  # audits a caller stopped waiting for at the timeout: the broker is away
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

    async def audit(self, records: Sequence[AuditRecord]) -> None:
        """Audit records of flows that are not Kafka messages (a request answered from the serving cache,
        a response): sent in a transaction of their own and retried until Kafka takes them. The caller waits
        for them while the broker answers; while earlier ones still wait for the broker, it does not, so
        answers from the cache go on during an outage and their audit records follow when it is over."""
        # The broker is away when an earlier audit has already waited past the timeout, not merely when
        # others are in flight (under load some always are, and each answer must still wait for its own).
        broker_away = self._audits_overdue > 0
        task = self._spawn(self._send_until_taken(records))
        if not broker_away:
            done, _ = await asyncio.wait({task}, timeout=self._timeout_s)
            if not done:
                self._audits_overdue += 1
                task.add_done_callback(self._no_longer_overdue)

    def _no_longer_overdue(self, _task: asyncio.Task[Any]) -> None:
        self._audits_overdue -= 1

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

    async def _send_until_taken(self, records: Sequence[AuditRecord]) -> None:
        self._audits_waiting += 1
        try:
            attempt = 0
            while True:
                try:
                    await self._send([], records)
                except Exception:  # noqa: BLE001 - the transaction aborted; the records go again
                    delay = _AUDIT_RETRY_S[min(attempt, len(_AUDIT_RETRY_S) - 1)]
                    attempt += 1
                    self._log.warning("audit_send_failed", records=len(records), retry_in_s=delay, exc_info=True)
                    await asyncio.sleep(delay)
                else:
                    return
        finally:
            self._audits_waiting -= 1

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
