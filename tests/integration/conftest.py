"""Session fixtures for integration tests: one real Kafka broker and one real Ray per test session.

The broker gets random free ports and a throw-away state folder, so a test run never collides
with a developer's `featureplane up` broker on 9092 nor with a parallel test run.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from actors.settings import Settings
from deploy.client import Connection, bootstrap_admin
from deploy.cluster import Deployment, init_ray, shutdown_ray, start_deployment
from deploy.kafka import KAFKA_VERSION, REPO_ROOT, BrokerConfig, BrokerHandle, start_broker
from deploy.ports import free_ports
from stores.metadata_key import MetadataKey, write_key_file


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[BrokerHandle]:
    """A real single-node KRaft broker for the whole session; stopped and wiped at the end."""
    port, controller_port = free_ports(2)
    state_dir = REPO_ROOT / ".state" / "test-kafka" / str(port)
    cfg = BrokerConfig(
        state_dir,
        port=port,
        controller_port=controller_port,
        # Share the jar cache with `featureplane up`: the state folder is deleted afterwards.
        libs_dir=REPO_ROOT / ".state" / "kafka" / f"libs-{KAFKA_VERSION}",
    )
    handle = start_broker(cfg)
    try:
        yield handle
    finally:
        handle.stop()
        shutil.rmtree(state_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            state_dir.parent.rmdir()  # .state/test-kafka, unless another session is using it


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: BrokerHandle) -> str:
    """bootstrap_servers for Kafka clients, e.g. "127.0.0.1:40123"."""
    return kafka_broker.bootstrap


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """One local Ray per test session; its files stay in the git-ignored state folder."""
    init_ray(REPO_ROOT / ".state" / "test", num_cpus=2, log_to_driver=False)
    try:
        yield
    finally:
        shutdown_ray()


@pytest.fixture(scope="module")
def topic_prefix() -> str:
    """A unique topic prefix (and consumer-group prefix) per test module: modules never see each
    other's data; tests within a module use their own workspaces and source topics."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
async def deployment(kafka_bootstrap: str, ray_cluster: None, topic_prefix: str,
                     tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Deployment]:
    """Every component as a real Ray actor against the real broker; the gateway on a free port."""
    state_dir = tmp_path_factory.mktemp("state")
    key_file = state_dir / "metadata.key"
    write_key_file(key_file, MetadataKey.generate())
    settings = Settings(bootstrap_servers=kafka_bootstrap, state_dir=state_dir, metadata_key_file=key_file,
                        topic_prefix=topic_prefix, gateway_port=0, log_json=True, read_timeout_s=10)
    running = await start_deployment(settings)
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture(scope="module")
async def admin_key(deployment: Deployment) -> str:
    """The deployment's admin, bootstrapped as `featureplane up` does it."""
    settings = deployment.settings
    conn = Connection(settings.bootstrap_servers, settings.topics, deployment.gateway_url)
    return await bootstrap_admin(conn, None)
