"""The job table: the latest `JobUpdated` of every batch job, folded from the control-events topic.

The control plane publishes each change to a job there (F8, metadata only); the control plane itself
folds it back after a restart, and the gateway lists jobs from it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import structlog

from actors.bus import Bus, Consumer, stop_reading
from events.codec import CODEC, Codec
from events.errors import DeadlineExceeded, DecodeError
from events.jobs import JobRecord, JobUpdated
from events.topics import CONTROL_EVENTS, TopicNames


def fold(table: Mapping[str, JobRecord], update: JobUpdated) -> dict[str, JobRecord]:
    return {**table, update.job.job_id: update.job}


class JobTableFollower:
    """Keeps `jobs` up to date with the control-events topic, in a background task."""

    def __init__(self, bus: Bus, names: TopicNames, codec: Codec = CODEC) -> None:
        self._bus = bus
        self._names = names
        self._codec = codec
        self.jobs: dict[str, JobRecord] = {}
        self._changed = asyncio.Condition()
        self._consumer: Consumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._folded_to: dict[tuple[str, int], int] = {}

    async def start(self) -> None:
        self._consumer = await self._bus.reader([self._names.name(CONTROL_EVENTS)], "earliest", {})
        self._task = asyncio.create_task(self._follow(self._consumer), name="job-table-follower")

    async def sync(self, timeout_s: float) -> dict[str, JobRecord]:
        """The table once it holds every control event committed before this call."""
        if self._consumer is None:
            raise RuntimeError("JobTableFollower.start() was not called")
        ends = await self._consumer.end_offsets()
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(
                    lambda: all(self._folded_to.get(tp, 0) >= end for tp, end in ends.items())), timeout_s)
            except TimeoutError:
                raise DeadlineExceeded(f"the job table did not catch up in {timeout_s}s") from None
        return dict(self.jobs)

    async def close(self) -> None:
        await stop_reading(self._task, self._consumer)

    async def _follow(self, consumer: Consumer) -> None:
        while True:
            records = await consumer.poll(500, 1000)
            positions = await consumer.positions()
            jobs = self.jobs
            for record in records:
                try:
                    message = self._codec.decode(record.value)
                except DecodeError as exc:
                    structlog.get_logger().error("undecodable_control_event", offset=record.offset, error=str(exc))
                    continue
                if isinstance(message.body, JobUpdated):
                    jobs = fold(jobs, message.body)
            async with self._changed:
                self.jobs = jobs
                self._folded_to = positions
                self._changed.notify_all()
