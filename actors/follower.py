"""Read models kept by folding a topic from its beginning (flow F8: definitions reach every plane)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from actors.bus import Bus, Consumer, stop_reading
from actors.replies import POLL_RETRY_S
from events.codec import CODEC, Codec
from events.errors import DeadlineExceeded, DecodeError
from events.registry import Registry
from events.shape import checked
from events.topics import CONTROL_EVENTS, TopicNames


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

    async def _follow(self, consumer: Consumer) -> None:
        while True:
            try:
                records = await consumer.poll(500, 1000)
                positions = await consumer.positions()
            except Exception:  # noqa: BLE001 - e.g. the broker is away: the client reconnects, we poll again
                self._log.warning("registry_poll_failed", exc_info=True)
                await asyncio.sleep(POLL_RETRY_S)
                continue
            if not records:
                if positions != self._folded_to:  # e.g. moved past a transaction marker
                    async with self._changed:
                        self._folded_to = positions
                        self._changed.notify_all()
                continue
            registry = self.registry
            for record in records:
                try:
                    registry = registry.apply(checked(self._codec.decode(record.value)))
                except (DecodeError, TypeError, AttributeError, KeyError, ValueError, IndexError) as exc:
                    # The control plane wrote it; a reader cannot fix it, only report it (the event stays
                    # unapplied, the read model goes on with the next one).
                    self._log.error("undecodable_control_event", offset=record.offset, error=str(exc))
            async with self._changed:
                self.registry = registry
                self._folded_to = positions
                self._changed.notify_all()
