"""Read models kept by folding a topic from its beginning (flow F8: definitions reach every plane).

A reader's registry moves from one applied state to the next: the control plane writes each apply as one
transaction of object events closed by RepoApplied, and a poll may end inside it (it returns at most 1000
records), so the follower holds what it folded after the last closing event until the next one arrives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from actors.bus import Bus, Consumer, Record, stop_reading
from actors.replies import POLL_RETRY_S
from events import control
from events.codec import CODEC, Codec
from events.errors import DeadlineExceeded, DecodeError
from events.jobs import JobUpdated
from events.registry import Registry
from events.shape import checked
from events.topics import CONTROL_EVENTS, TopicNames

# Each decision of the control plane is one transaction of events ending with one of these: an apply's
# object events then RepoApplied (or only RepoRejected), a command's events then its outcome.
_CLOSING = (control.RepoApplied, control.RepoRejected, control.CommandSucceeded, control.CommandRejected)
# Job records are published on their own, outside any group.
_STANDALONE = (JobUpdated,)


def opens_group(body: object, is_open: bool) -> bool:
    """Whether a group of events is still open after `body`."""
    if isinstance(body, _CLOSING):
        return False
    return is_open or not isinstance(body, _STANDALONE)


@dataclass(frozen=True, slots=True)
class _Folded:
    complete: Registry | None  # the state after the last closed group of the poll (None: none closed)
    complete_to: dict[tuple[str, int], int]  # the position after that group's last record


class RegistryFollower:
    """Keeps `registry` up to date with the control-events topic, in a background task."""

    def __init__(self, bus: Bus, names: TopicNames, codec: Codec = CODEC, *, registry: Registry | None = None,
                 positions: dict[tuple[str, int], int] | None = None) -> None:
        """Start from `registry` as folded up to `positions` (a snapshot), or from the beginning."""
        self._bus = bus
        self._names = names
        self._codec = codec
        self.registry = registry or Registry()
        self._start_positions = dict(positions or {})
        self._changed = asyncio.Condition()
        self._consumer: Consumer | None = None
        self._task: asyncio.Task[None] | None = None
        # Positions whose records are all folded into `registry` (not merely fetched).
        self._folded_to: dict[tuple[str, int], int] = dict(self._start_positions)
        self._log = structlog.get_logger().bind(read_model="registry")
        # Folded but not yet published: the events of an apply (or command) a poll cut off before its end.
        self._held, self._open = self.registry, False

    async def start(self) -> None:
        self._consumer = await self._bus.reader([self._names.name(CONTROL_EVENTS)], "earliest",
                                                self._start_positions)
        self._task = asyncio.create_task(self._follow(self._consumer), name="registry-follower")

    async def wait_for(self, predicate: Callable[[Registry], bool], timeout_s: float) -> Registry:
        """The registry once `predicate` holds; DeadlineExceeded if it does not within `timeout_s`."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: predicate(self.registry)), timeout_s)
            except TimeoutError:
                raise DeadlineExceeded(f"the registry did not reach the expected state in {timeout_s}s") from None
        return self.registry

    async def sync(self, timeout_s: float) -> Registry:
        """The registry once it holds every control event committed before this call (read-your-writes)."""
        if self._consumer is None:
            raise RuntimeError("RegistryFollower.start() was not called")
        ends = await self._consumer.end_offsets()

        def caught_up(_: Registry) -> bool:
            return all(self._folded_to.get(tp, 0) >= end for tp, end in ends.items())

        return await self.wait_for(caught_up, timeout_s)

    def folded_positions(self) -> dict[tuple[str, int], int]:
        """The positions up to which `registry` holds every control event."""
        return dict(self._folded_to)

    async def close(self) -> None:
        await stop_reading(self._task, self._consumer)

    def _fold(self, records: Sequence[Record]) -> _Folded:
        """Fold `records` after what earlier polls held; what a reader may see is the state after the last
        record that closes a group of events (an apply, a command), never one inside it."""
        registry, is_open = self._held, self._open
        folded = _Folded(None, {})
        for record in records:
            try:
                message = checked(self._codec.decode(record.value))
            except (DecodeError, TypeError, AttributeError, KeyError, ValueError, IndexError) as exc:
                # The control plane wrote it; a reader cannot fix it, only report it (the event stays
                # unapplied, the read model goes on with the next one).
                # It ends any open group too: a reader may then see part of it, but never stops following.
                self._log.error("undecodable_control_event", offset=record.offset, error=str(exc))
                message, is_open = None, False
            if message is not None:
                registry = registry.apply(message)
                is_open = opens_group(message.body, is_open)
            if not is_open:
                folded = _Folded(registry, {(record.topic, record.partition): record.offset + 1})
        self._held, self._open = registry, is_open
        return folded

    async def _follow(self, consumer: Consumer) -> None:
        while True:
            await self._poll_once(consumer)

    async def _poll_once(self, consumer: Consumer) -> None:
        try:
            records = await consumer.poll(500, 1000)
            positions = await consumer.positions()
        except Exception:  # noqa: BLE001 - e.g. the broker is away: the client reconnects, we poll again
            self._log.warning("registry_poll_failed", exc_info=True)
            await asyncio.sleep(POLL_RETRY_S)
            return
        if not records:
            if positions != self._folded_to and not self._open:  # e.g. moved past a transaction marker
                async with self._changed:
                    self._folded_to = positions
                    self._changed.notify_all()
            return
        folded = self._fold(records)
        async with self._changed:
            if folded.complete is not None:
                self.registry = folded.complete
                self._folded_to = positions if not self._open else {**self._folded_to, **folded.complete_to}
                self._changed.notify_all()
