"""Session fixtures for integration tests: one real Kafka broker and one real Ray per test session.

The broker gets random free ports and a throw-away state folder, so a test run never collides
with a developer's `featureplane up` broker on 9092 nor with a parallel test run. It runs as `up` runs
its own, with SASL logins and ACLs, so every integration test goes through the planes' ACLs; the tests'
own Kafka clients log in through tests/integration/helpers.py `client_options`.

Three modules start a broker of their own because they stop or restart it (test_cli through `featureplane
up`/`down`, test_audit_spool and test_broker_faults through helpers.py `broker_of_its_own`): stopping the
session broker would break every other module.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from deploy.client import bootstrap_admin
from deploy.cluster import Deployment, init_ray, shutdown_ray
from deploy.kafka import REPO_ROOT, BrokerConfig, BrokerHandle, start_broker
from deploy.ports import free_ports
from tests.integration.helpers import TEST_BROKERS, broker_config_with_logins, operator_connection, running_deployment


@pytest.fixture(scope="session")
def kafka_config() -> BrokerConfig:
    """The session broker's settings: random free ports, SASL users (as `featureplane up` runs its broker)."""
    return broker_config_with_logins(*free_ports(2))


@pytest.fixture(scope="session")
def kafka_broker(kafka_config: BrokerConfig) -> Iterator[BrokerHandle]:
    """A real single-node KRaft broker for the whole session, with SASL logins and ACLs enforced; stopped
    and wiped at the end. Each deployment on it gets the ACLs of its own topic prefix."""
    handle = start_broker(kafka_config)
    try:
        yield handle
    finally:
        handle.stop()
        shutil.rmtree(kafka_config.state_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            TEST_BROKERS.rmdir()  # unless another session is using it


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
async def deployment(kafka_config: BrokerConfig, kafka_broker: BrokerHandle, ray_cluster: None,
                     topic_prefix: str,
                     tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Deployment]:
    """Every component as a real Ray actor against the real broker, each with its plane's login, after the
    operator created the ACLs and topics of the module's prefix; the gateway on a free port."""
    async with running_deployment(kafka_config, tmp_path_factory.mktemp("state"), topic_prefix) as running:
        yield running


@pytest.fixture(scope="module")
async def admin_key(deployment: Deployment) -> str:
    """The deployment's admin, bootstrapped as `featureplane up` does it."""
    return await bootstrap_admin(operator_connection(deployment), None)
