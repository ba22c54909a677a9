"""FeatureServerHost: the feature server and its HTTP edge in one process (a Ray actor, via deploy)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from aiohttp import web

from actors.components.cache import ServingCache
from actors.components.feature_server import FeatureServer
from actors.components.job_table import JobTableFollower
from actors.kafka_bus import KafkaBus
from actors.logs import configure_logging
from actors.settings import Settings
from gateway.admin import JOBS_KEY
from gateway.app import create_app
from stores.audit_spool import LmdbAuditSpool


def audit_spool_dir(settings: Settings, replica_id: str) -> Path:
    """Where a feature server replica spools the audit records of its answers (stores/audit_spool.py)."""
    return settings.store_dir(f"feature_server-{replica_id}") / "audit-spool"


class FeatureServerHost:
    """Plain class; the deploy module makes it a Ray actor. Holds no handle to any other component."""

    def __init__(self) -> None:
        self._server: FeatureServer | None = None
        self._runner: web.AppRunner | None = None
        self._bus: KafkaBus | None = None
        self._jobs: JobTableFollower | None = None
        self._spool: LmdbAuditSpool | None = None
        self.url = ""

    async def start(self, settings: Settings, replica_id: str) -> str:
        """Start serving; returns the gateway's base URL once it accepts requests."""
        log = configure_logging("feature_server", json=settings.log_json)
        self._bus = KafkaBus(settings.bootstrap_servers, client_id=f"feature-server-{replica_id}",
                             credentials=settings.kafka_credentials)
        cache = ServingCache(settings.serving_cache_max_age_s, settings.serving_cache_entries) \
            if settings.serving_cache_max_age_s > 0 else None
        # The replica's own folder, the same after Ray restarts it: the new incarnation ships what the
        # killed one had spooled.
        self._spool = LmdbAuditSpool(audit_spool_dir(settings, replica_id))
        self._server = FeatureServer(self._bus, settings.topics, replica_id,
                                     read_timeout_s=settings.read_timeout_s, cache=cache,
                                     max_record_bytes=settings.max_record_bytes, audit_spool=self._spool)
        await self._server.start()
        self._jobs = JobTableFollower(self._bus, settings.topics)
        await self._jobs.start()
        app = create_app(self._server, max_in_flight=settings.gateway_max_in_flight)
        app[JOBS_KEY] = self._jobs  # batch jobs, listed by the admin routes
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        # reuse_port lets several replicas share one port; the kernel spreads connections over them.
        site = web.TCPSite(self._runner, settings.gateway_host, settings.gateway_port, reuse_port=True)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        log.info("gateway_started", url=self.url)
        return self.url

    async def pid(self) -> int:
        """This replica's process id (the crash tests kill it; Ray restarts it)."""
        return os.getpid()

    async def health(self) -> dict[str, Any]:
        registry = self._server.follower.registry if self._server else None
        return {"component": "feature_server", "url": self.url, "ready": self._server is not None,
                "workspaces": sorted(registry.workspaces) if registry else []}

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._jobs is not None:
            await self._jobs.close()
            self._jobs = None
        if self._server is not None:
            await self._server.close()
            self._server = None
        if self._bus is not None:
            await self._bus.close()
            self._bus = None
        if self._spool is not None:
            self._spool.close()
            self._spool = None
