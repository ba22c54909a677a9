"""ComponentHost: runs one consuming component in its own process (a Ray actor, via deploy).

The host builds the component's bus client, its own store and its runtime, and runs the runtime's
loop as a task. It is a plain class: the deploy module applies `ray.remote` to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import structlog

from actors.components.audit_log import AuditLog, index_terms
from actors.components.control_plane import ControlPlane
from actors.components.external_compute import ExternalCompute
from actors.components.job_table import JobTableFollower
from actors.components.offline_store import OfflineStoreWriter
from actors.components.online_store import OnlineStoreShard
from actors.components.rift import RiftWorker
from actors.follower import RegistryFollower
from actors.kafka_bus import KafkaBus
from actors.logs import configure_logging
from actors.outbox import Outbound, publish
from actors.runtime import ComponentRuntime, Handler
from actors.settings import Settings
from events.codec import CODEC
from events.control import TickSchedules
from events.planes import Component
from events.snapshot import decode_snapshot
from events.topics import CONTROL_CLOCK, PLATFORM_TOPICS
from stores.audit_log import LmdbAuditStore
from stores.metadata import EncryptedSnapshotStore, load_metadata_key
from stores.offline import ParquetOfflineStore
from stores.online import LmdbOnlineStore


class ComponentKind(StrEnum):
    CONTROL_PLANE = "control_plane"
    AUDIT_LOG = "audit_log"
    RIFT = "rift"
    ONLINE_STORE = "online_store"
    OFFLINE_STORE = "offline_store"
    EXTERNAL_COMPUTE = "external_compute"


SCHEDULE_TICK_S = 5.0
# How long a Rift worker waits for the registry before it joins its consumer group (see _handler).
REGISTRY_CATCH_UP_S = 30.0


async def ensure_platform_topics(bus: KafkaBus, settings: Settings) -> None:
    await bus.ensure_topics({settings.topics.name(t): t.partitions for t in PLATFORM_TOPICS})


async def _lag(runtime: ComponentRuntime) -> dict[str, int] | str:
    """The runtime's lag, or why it is unknown: a health check must answer while the broker is away."""
    try:
        return await asyncio.wait_for(runtime.lag(), 2.0)
    except Exception as exc:  # noqa: BLE001 - health reports the problem instead of failing
        return f"unknown: {exc!r}"


class ComponentHost:
    def __init__(self) -> None:
        self._runtime: ComponentRuntime | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._closers: list[Any] = []
        self._kind = ""
        self._instance = ""
        self._ticker: asyncio.Task[None] | None = None

    async def start(self, settings: Settings, kind: ComponentKind, instance: int = 0) -> None:
        """Open the store, join the consumer group and initialise the transactional producer; its
        transactional id depends only on the instance, so a restarted one fences its predecessor's open
        transaction (aborting it) and the consumer resumes from the offsets committed with the outputs."""
        self._kind, self._instance = kind.value, f"{kind.value}-{instance}"
        self._stop = asyncio.Event()
        configure_logging(kind.value, json=settings.log_json)
        bus = KafkaBus(settings.bootstrap_servers, client_id=self._instance, credentials=settings.kafka_credentials,
                       max_message_bytes=settings.max_message_bytes)
        self._closers.append(bus)
        await ensure_platform_topics(bus, settings)
        handler = await self._handler(settings, kind, bus)
        self._runtime = ComponentRuntime(bus, settings.topics, handler, instance_id=self._instance,
                                         group_id=f"{settings.topic_prefix}.{kind.value}",
                                         max_record_bytes=settings.max_record_bytes)
        self._closers.insert(0, self._runtime)  # closed even when its start fails half-way
        await self._runtime.start()
        self._task = asyncio.create_task(self._runtime.run(self._stop), name=self._instance)

    async def _handler(self, settings: Settings, kind: ComponentKind, bus: KafkaBus) -> Handler:
        names = settings.topics
        store_dir = settings.store_dir(self._instance)
        if kind is ComponentKind.CONTROL_PLANE:
            return await self._control_plane(settings, bus, store_dir)
        if kind is ComponentKind.RIFT:
            follower = RegistryFollower(bus, names)
            await follower.start()
            self._closers.insert(0, follower)
            # Caught up before joining the group, so the first subscription already names every source
            # topic: a restarted worker then resumes with one rebalance, not one per topic it learns of.
            await follower.sync(REGISTRY_CATCH_UP_S)
            return RiftWorker(names, follower)
        if kind is ComponentKind.ONLINE_STORE:
            online = LmdbOnlineStore(store_dir)
            self._closers.append(online)
            return OnlineStoreShard(names, online, max_reply_bytes=settings.online_reply_bytes)
        if kind is ComponentKind.EXTERNAL_COMPUTE:
            return ExternalCompute(names)
        if kind is ComponentKind.OFFLINE_STORE:
            offline = ParquetOfflineStore(store_dir)
            self._closers.append(offline)
            return OfflineStoreWriter(names, offline)
        audit = LmdbAuditStore(store_dir, index_terms=index_terms())
        self._closers.append(audit)
        return AuditLog(names, audit)

    async def _control_plane(self, settings: Settings, bus: KafkaBus, store_dir: Path) -> ControlPlane:
        """The control plane, resumed from its encrypted snapshot when it has one."""
        key = load_metadata_key(settings.metadata_key_file)
        snapshots = EncryptedSnapshotStore(store_dir / "metadata", key)
        self._closers.append(snapshots)
        loaded = snapshots.load()
        registry, positions = (decode_snapshot(loaded[0]), loaded[1]) if loaded else (None, None)
        if registry is not None:
            structlog.get_logger().info("control_plane_restored", workspaces=len(registry.workspaces),
                                        principals=len(registry.principals), key_id=key.key_id,
                                        resumes_at={f"{t}/{p}": o for (t, p), o in (positions or {}).items()})
        follower = RegistryFollower(bus, settings.topics, registry=registry, positions=positions)
        await follower.start()
        self._closers.insert(0, follower)
        jobs = JobTableFollower(bus, settings.topics)
        await jobs.start()
        self._closers.insert(0, jobs)
        self._ticker = asyncio.create_task(self._tick_schedules(settings, bus), name="schedule-ticker")
        return ControlPlane(settings.topics, follower, snapshots=snapshots, jobs=jobs)

    async def _tick_schedules(self, settings: Settings, bus: KafkaBus) -> None:
        """The control plane's clock: a tick on a topic it consumes, so schedules and retries are decided by
        the same runtime (and transaction) as every command."""
        producer = await bus.transactional_producer(f"{settings.topic_prefix}.control-plane-clock")
        try:
            while not self._stop.is_set():
                await asyncio.sleep(SCHEDULE_TICK_S)
                tick = CODEC.message(TickSchedules(datetime.now(UTC)), producer=Component.CONTROL_PLANE,
                                     workspace="")
                try:
                    async with producer.transaction() as txn:
                        await publish(txn, CODEC, settings.topics, Component.CONTROL_PLANE,
                                      [Outbound(CONTROL_CLOCK, tick)])
                except Exception:  # noqa: BLE001 - a lost tick is made up by the next one
                    structlog.get_logger().exception("schedule_tick_failed")
        finally:
            await producer.close()

    async def pid(self) -> int:
        """This component's process id (the crash tests kill it; Ray restarts it)."""
        return os.getpid()

    async def health(self) -> dict[str, Any]:
        runtime = self._runtime
        alive = self._task is not None and not self._task.done()
        return {
            "component": self._kind, "instance": self._instance, "alive": alive,
            "batches": runtime.batches if runtime else 0, "records": runtime.records if runtime else 0,
            "failures": runtime.failures if runtime else 0,
            # consumer lag of the component's group per topic/partition: ingest backlog shows up here
            "lag": await _lag(runtime) if runtime and alive else {},
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,  # peak memory (Linux: KiB)
        }

    async def stop(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for closer in self._closers:
            result = closer.close()
            if asyncio.iscoroutine(result):
                await result
        self._closers.clear()
        self._runtime = None
