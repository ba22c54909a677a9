"""The Ray seam: the only module that imports ray.

It starts each component as its own Ray actor and holds the handles only to start, health-check and
stop them; components never receive each other's handles (they talk through Kafka).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

from actors.host import ComponentHost, ComponentKind
from actors.settings import KafkaCredentials, Settings
from events.planes import PLANE_OF, Component, Plane
from gateway.host import FeatureServerHost

# Unix socket paths under Ray's temp dir must fit in 107 bytes; Ray adds about 62 to this folder.
_MAX_RAY_TEMP_DIR = 44

# Started in this order: the audit log first, so no audited flow waits for its reader.
COMPONENTS: tuple[ComponentKind, ...] = (
    ComponentKind.AUDIT_LOG, ComponentKind.CONTROL_PLANE, ComponentKind.ONLINE_STORE,
    ComponentKind.OFFLINE_STORE, ComponentKind.RIFT, ComponentKind.EXTERNAL_COMPUTE,
)


def ray_temp_dir(state_dir: Path) -> Path:
    """Ray's temp dir inside the project's state folder, or a short stand-in when that path is too long."""
    wanted = (state_dir / "ray").resolve()
    if len(str(wanted)) <= _MAX_RAY_TEMP_DIR:
        return wanted
    digest = hashlib.sha256(str(wanted).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"fp-ray-{digest}"


def init_ray(state_dir: Path, *, num_cpus: int | None = None, log_to_driver: bool = True) -> None:
    """Start a local Ray for this process (once); its files stay in the git-ignored state folder."""
    if ray.is_initialized():
        return
    temp_dir = ray_temp_dir(state_dir)
    temp_dir.mkdir(parents=True, exist_ok=True)
    ray.init(
        num_cpus=num_cpus, include_dashboard=False, _temp_dir=str(temp_dir),
        log_to_driver=log_to_driver, configure_logging=False,
    )


def shutdown_ray() -> None:
    if ray.is_initialized():
        ray.shutdown()


@dataclass
class Deployment:
    settings: Settings
    gateway_url: str
    handles: dict[str, Any] = field(default_factory=dict)

    async def health(self) -> dict[str, Any]:
        names = list(self.handles)
        answers = await asyncio.gather(*(self.handles[n].health.remote() for n in names))
        return dict(zip(names, answers, strict=True))

    async def stop(self) -> None:
        """Stop every actor, the feature servers first so no request is left half-served."""
        for name in reversed(list(self.handles)):
            handle = self.handles.pop(name)
            with contextlib.suppress(TimeoutError, ray.exceptions.RayError):  # killed below either way
                await asyncio.wait_for(handle.stop.remote(), 30)
            ray.kill(handle)


def plane_settings(settings: Settings, plane: Plane,
                   credentials: Mapping[Plane, KafkaCredentials] | None) -> Settings:
    """The settings an actor of `plane` starts with: its own plane's Kafka login and no other."""
    return dataclasses.replace(settings, kafka_credentials=credentials[plane] if credentials else None)


async def start_deployment(settings: Settings, *, rift_workers: int = 1, gateway_replicas: int = 1,
                           components: Sequence[ComponentKind] = COMPONENTS,
                           credentials: Mapping[Plane, KafkaCredentials] | None = None) -> Deployment:
    """Start every component as a Ray actor and return once the gateway accepts requests.

    With `credentials` (a SASL broker), each actor receives only its own plane's login."""
    # Ray's handles are dynamically typed: `.remote()` exists only at run time.
    host_actor: Any = ray.remote(num_cpus=0)(ComponentHost)
    gateway_actor: Any = ray.remote(num_cpus=0)(FeatureServerHost)
    deployment = Deployment(settings, gateway_url="")
    try:
        for kind in components:
            count = rift_workers if kind is ComponentKind.RIFT else 1
            for i in range(count):
                name = f"{settings.topic_prefix}-{kind.value}-{i}"
                handle = host_actor.options(name=name).remote()
                deployment.handles[name] = handle
                own = plane_settings(settings, PLANE_OF[Component(kind.value)], credentials)
                await handle.start.remote(own, kind, i)
        for i in range(gateway_replicas):
            name = f"{settings.topic_prefix}-feature_server-{i}"
            handle = gateway_actor.options(name=name).remote()
            deployment.handles[name] = handle
            own = plane_settings(settings, PLANE_OF[Component.FEATURE_SERVER], credentials)
            deployment.gateway_url = await handle.start.remote(own, f"fs-{i}")
    except BaseException:
        await deployment.stop()
        raise
    return deployment
