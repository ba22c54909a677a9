"""`featureplane up/down/status`: one supervisor process owns the broker, Ray and every actor.

`up` starts the supervisor in the background and returns when the gateway answers; `up --foreground`
is the supervisor itself (what the container runs). `down` asks it to stop, and it stops the actors,
Ray and the broker in that order.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actors.host import ensure_platform_topics
from actors.kafka_bus import KafkaBus
from actors.settings import KafkaCredentials, Settings
from deploy import client
from deploy.acls import deployment_acls
from deploy.cluster import Deployment, init_ray, shutdown_ray, start_deployment
from deploy.kafka import BrokerConfig, create_acls, pid_alive, start_broker, stop_broker
from deploy.kafka_sasl import KafkaUsers, credentials_path, ensure_users, load_users
from deploy.runinfo import RunInfo
from events.planes import Plane
from stores.metadata_key import DEFAULT_KEY_ENV_VAR, MetadataKey, write_key_file


@dataclass(frozen=True, slots=True)
class UpOptions:
    state_dir: Path
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8080
    kafka_port: int = 9092
    kafka_controller_port: int = 0  # 0: kafka_port + 1
    external_bootstrap: str | None = None  # use this Kafka instead of starting one (docker compose)
    topic_prefix: str = "fp"
    rift_workers: int = 1
    metadata_key_file: Path | None = None
    # SASL/SCRAM logins and ACLs on the broker (deploy/kafka_sasl.py, deploy/acls.py); False only with
    # `up --insecure`, an open PLAINTEXT listener where any client may read and write any topic.
    secure: bool = True


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def run_foreground(options: UpOptions) -> int:
    """Start everything, then wait for SIGTERM/SIGINT and stop everything."""
    state_dir = options.state_dir.resolve()
    users = _kafka_users(options, state_dir)
    broker_cfg = BrokerConfig(state_dir, port=options.kafka_port, controller_port=options.kafka_controller_port,
                              users=users)
    if options.external_bootstrap:
        bootstrap = options.external_bootstrap
    else:
        _say(f"starting Kafka on 127.0.0.1:{options.kafka_port}{' with SASL and ACLs' if users else ''} ...")
        bootstrap = start_broker(broker_cfg).bootstrap
    settings = Settings(bootstrap_servers=bootstrap, state_dir=state_dir, topic_prefix=options.topic_prefix,
                        gateway_host=options.gateway_host, gateway_port=options.gateway_port,
                        log_json=not sys.stderr.isatty(), metadata_key_file=metadata_key_file(options),
                        kafka_credentials=users.operator if users else None)
    if users is not None:
        await prepare_secure_broker(settings, None if options.external_bootstrap else broker_cfg)
    _say("starting Ray and the actors ...")
    init_ray(state_dir, log_to_driver=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    deployment = await start_deployment(settings, rift_workers=options.rift_workers, credentials=plane_logins(users))
    await _bootstrap_admin(settings, deployment.gateway_url)
    info = RunInfo(os.getpid(), bootstrap, deployment.gateway_url, options.topic_prefix, str(state_dir),
                   str(log_path(state_dir)), secure=users is not None)
    info.write()
    _say(f"featureplane is up: gateway {deployment.gateway_url}, Kafka {bootstrap}")
    try:
        await stop.wait()
    finally:
        _say("stopping ...")
        RunInfo.remove(state_dir)
        await deployment.stop()
        shutdown_ray()
        if not options.external_bootstrap:
            stop_broker(broker_cfg)
    return 0


def _kafka_users(options: UpOptions, state_dir: Path) -> KafkaUsers | None:
    """The deployment's Kafka logins (None with --insecure): made once per state folder (0600), else loaded."""
    if not options.secure:
        return None
    if options.external_bootstrap:
        users = load_users(state_dir)
        if users is None:
            raise RuntimeError(f"an external broker needs its logins in {credentials_path(state_dir)} "
                               "(made by the broker's set-up: deploy/compose/kafka-init.sh), "
                               "or `up --insecure` if it has an open PLAINTEXT listener")
        return users
    return ensure_users(state_dir)


def plane_logins(users: KafkaUsers | None) -> dict[Plane, KafkaCredentials] | None:
    """Each plane's own Kafka login, for start_deployment (None: the broker takes no logins)."""
    return {plane: users.plane(plane) for plane in Plane} if users else None


async def prepare_secure_broker(settings: Settings, broker_cfg: BrokerConfig | None) -> None:
    """As the operator (settings.kafka_credentials): create the ACLs of every plane on the broker of
    `broker_cfg` (None: a broker whose set-up made them, docker compose), then the platform's topics (no
    plane may create a topic; each may only use its own). Both are no-ops when they exist already."""
    if broker_cfg is not None:
        _say("creating the ACLs of each plane ...")
        create_acls(broker_cfg, deployment_acls(settings.topics))
    bus = KafkaBus(settings.bootstrap_servers, client_id="featureplane-operator",
                   credentials=settings.kafka_credentials)
    try:
        await ensure_platform_topics(bus, settings)
    finally:
        await bus.close()


async def start_on_local_broker(broker_cfg: BrokerConfig, settings: Settings, **options: Any) -> Deployment:
    """A deployment on a broker we started (tests, bench), as `up` makes one: on a broker with SASL users
    (broker_cfg.users), the ACLs and topics first, then each actor with its own plane's login; the returned
    deployment's settings carry the operator's login, for the caller's own clients. Options go to
    start_deployment."""
    users = broker_cfg.users
    settings = dataclasses.replace(settings, kafka_credentials=users.operator if users else None)
    if users is not None:
        await prepare_secure_broker(settings, broker_cfg)
    return await start_deployment(settings, credentials=plane_logins(users), **options)


async def _bootstrap_admin(settings: Settings, gateway_url: str) -> None:
    """The first admin's key, in a file only its owner may read (kept across restarts)."""
    path = client.admin_key_path(settings.state_dir)
    existing = client.read_key_file(path)
    conn = client.Connection(settings.bootstrap_servers, settings.topics, gateway_url, settings.kafka_credentials)
    key = await client.bootstrap_admin(conn, existing)
    if existing is None:
        client.write_key_file(path, key)
    _say(f"admin API key: {path} (readable by its owner only)")


def metadata_key_file(options: UpOptions) -> Path | None:
    """The customer-managed key of the control plane's metadata: --metadata-key-file, else
    $FEATUREPLANE_METADATA_KEY (None here), else a key made once in the state folder (0600)."""
    if options.metadata_key_file is not None:
        return options.metadata_key_file.resolve()
    if os.environ.get(DEFAULT_KEY_ENV_VAR):
        return None
    path = options.state_dir.resolve() / "metadata.key"
    if not path.exists():
        write_key_file(path, MetadataKey.generate())
        _say(f"created the metadata encryption key {path} (keep it: the control plane's state needs it)")
    return path


def log_path(state_dir: Path) -> Path:
    return state_dir / "run" / "featureplane.log"


def gateway_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def start_background(options: UpOptions, argv: list[str], timeout_s: float = 300) -> RunInfo:
    """Start the supervisor detached and wait until its gateway answers; show progress meanwhile."""
    state_dir = options.state_dir.resolve()
    running = RunInfo.read(state_dir)
    if running is not None and pid_alive(running.pid):
        _say(f"featureplane is already up (pid {running.pid})")
        return running
    RunInfo.remove(state_dir)
    log = log_path(state_dir)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "deploy.cli", *argv, "--foreground"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    deadline = time.monotonic() + timeout_s
    started = time.monotonic()
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"featureplane exited with code {process.returncode} while starting; "
                               f"see {log}:\n{_tail(log)}")
        info = RunInfo.read(state_dir)
        if info is not None and info.pid == process.pid and gateway_ready(info.gateway_url):
            return info
        _say(f"  waiting for featureplane to be ready ... {time.monotonic() - started:.0f}s")
        time.sleep(2)
    process.terminate()
    raise RuntimeError(f"featureplane was not ready within {timeout_s:.0f}s; see {log}")


def stop_background(state_dir: Path, timeout_s: float = 90) -> bool:
    """Stop the supervisor (which stops everything else); returns whether one was running."""
    info = RunInfo.read(state_dir.resolve())
    broker = broker_started_by_up(state_dir.resolve(), info)
    if info is None or not pid_alive(info.pid):
        stopped_broker = stop_broker(broker)
        RunInfo.remove(state_dir.resolve())
        return stopped_broker
    os.kill(info.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while pid_alive(info.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    if pid_alive(info.pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(info.pid, signal.SIGKILL)
        stop_broker(broker)  # its own session: the killpg above does not reach it
    RunInfo.remove(state_dir.resolve())
    return True


def broker_started_by_up(state_dir: Path, info: RunInfo | None) -> BrokerConfig:
    """The broker `up` started in state_dir: on the port its run file names (`up --kafka-port`), else the
    default one. Stopping it acts only on the PID file in that port's folder, so a broker elsewhere is safe."""
    if info is not None:
        host, _, port = info.bootstrap_servers.split(",")[0].rpartition(":")
        if host in ("127.0.0.1", "localhost") and port.isdigit():
            return BrokerConfig(state_dir, port=int(port))
    return BrokerConfig(state_dir)


def _tail(path: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""
