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
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import structlog

from actors.host import ComponentHost, ComponentKind
from actors.settings import KafkaCredentials, Settings
from events.planes import PLANE_OF, Component, Plane
from gateway.host import FeatureServerHost

# Unix socket paths under Ray's temp dir must fit in 107 bytes; Ray adds about 62 to this folder.
_MAX_RAY_TEMP_DIR = 44

# Ray restarts an actor whose process died (SIGKILL, OOM, a crash) this many times; -1: without limit.
MAX_RESTARTS = -1
# A restarted actor whose start-up fails (e.g. Kafka is down) tries again after these pauses, then every 5 s.
_RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)

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


async def _start_up(start: Callable[[], Awaitable[object]], cleanup: Callable[[], Awaitable[None]]) -> None:
    """Run an actor's start-up. A first start fails loudly (the deployer sees why); a restart after the
    process died retries until it succeeds: no one is waiting to be told, and the component must come back."""
    with warnings.catch_warnings():  # Ray's own property warns about an API it calls internally
        warnings.simplefilter("ignore", DeprecationWarning)
        restarted = ray.get_runtime_context().was_current_actor_reconstructed
    if not restarted:
        await start()
        return
    attempt = 0
    while True:
        try:
            await start()
        except Exception:  # noqa: BLE001 - whatever stopped it, the component has to come back
            await cleanup()
            delay = _RESTART_BACKOFF_S[min(attempt, len(_RESTART_BACKOFF_S) - 1)]
            attempt += 1
            structlog.get_logger().exception("restart_failed", attempt=attempt, retry_in_s=delay)
            await asyncio.sleep(delay)
        else:
            return


class ResumingComponentHost(ComponentHost):
    """The component host as Ray runs it. Ray re-runs only `__init__` when it restarts a killed actor (not
    the methods the deployer called afterwards), so start-up happens here: a restarted component joins its
    consumer group again, fences its zombie by re-initialising its transactional id, reopens its store and
    resumes from the committed offsets, by itself."""

    async def __init__(self, settings: Settings, kind: ComponentKind, instance: int) -> None:  # type: ignore[misc]
        super().__init__()
        await _start_up(lambda: self.start(settings, kind, instance), self.stop)


class ResumingFeatureServerHost(FeatureServerHost):
    """The feature server and gateway as Ray runs them: started in `__init__`, like ResumingComponentHost;
    a restarted one binds the same port (give the deployment a fixed `gateway_port` to rely on that)."""

    async def __init__(self, settings: Settings, replica_id: str) -> None:  # type: ignore[misc]
        super().__init__()
        await _start_up(lambda: self.start(settings, replica_id), self.stop)


@dataclass
class Deployment:
    settings: Settings
    gateway_url: str
    handles: dict[str, Any] = field(default_factory=dict)

    async def health(self) -> dict[str, Any]:
        names = list(self.handles)
        answers = await asyncio.gather(*(self.handles[n].health.remote() for n in names))
        return dict(zip(names, answers, strict=True))

    async def pids(self) -> dict[str, int]:
        """Each actor's process id, by actor name (the crash tests kill these)."""
        names = list(self.handles)
        answers = await asyncio.gather(*(self.handles[n].pid.remote() for n in names))
        return dict(zip(names, answers, strict=True))

    async def pid_of(self, name: str, timeout_s: float = 2.0) -> int | None:
        """The named actor's process id; None while it is dead or restarting (its start-up not done yet)."""
        try:
            return int(await asyncio.wait_for(self.handles[name].pid.remote(), timeout_s))
        except (TimeoutError, ray.exceptions.RayError):
            return None

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
    host_actor: Any = ray.remote(num_cpus=0, max_restarts=MAX_RESTARTS)(ResumingComponentHost)
    gateway_actor: Any = ray.remote(num_cpus=0, max_restarts=MAX_RESTARTS)(ResumingFeatureServerHost)
    deployment = Deployment(settings, gateway_url="")
    try:
        for kind in components:
            count = rift_workers if kind is ComponentKind.RIFT else 1
            for i in range(count):
                name = f"{settings.topic_prefix}-{kind.value}-{i}"
                own = plane_settings(settings, PLANE_OF[Component(kind.value)], credentials)
                handle = host_actor.options(name=name).remote(own, kind, i)
                deployment.handles[name] = handle
                await handle.pid.remote()  # answers once its start-up in __init__ is done
        for i in range(gateway_replicas):
            name = f"{settings.topic_prefix}-feature_server-{i}"
            own = plane_settings(settings, PLANE_OF[Component.FEATURE_SERVER], credentials)
            handle = gateway_actor.options(name=name).remote(own, f"fs-{i}")
            deployment.handles[name] = handle
            deployment.gateway_url = (await handle.health.remote())["url"]
    except BaseException:
        await deployment.stop()
        raise
    return deployment
