"""What the integration tests do from outside the platform: produce, read topics, call HTTP, wait.

The test brokers run as `featureplane up` runs its own, with SASL logins and ACLs, so every test exercises
them. Every plain aiokafka client here logs in through `client_options`: as the customer's application when
it produces source topics (flow F5; the customer plane's principal), as the operator (a super user) when it
inspects platform topics or injects faults into them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from actors.kafka_bus import security_options
from actors.settings import Settings
from deploy.acls import OPERATOR_USER, PLANE_USERS
from deploy.client import Connection, apply_repo
from deploy.cluster import Deployment
from deploy.kafka import KAFKA_VERSION, REPO_ROOT, BrokerConfig, start_broker, stop_broker
from deploy.kafka_sasl import KafkaUsers, ensure_users, load_users
from deploy.ports import free_ports
from deploy.supervisor import start_on_local_broker
from events.planes import Plane
from stores.metadata_key import MetadataKey, write_key_file

T = TypeVar("T")

REPO_TEMPLATE = '''
from sdk import Attribute, Entity, FeatureService, Field, StreamFeatureView, StreamSource

user = Entity(name="user", join_keys=["user_id"])
transactions = StreamSource(
    name="transactions", topic="{topic}", timestamp_field="ts",
    schema=[Field("user_id", "string"), Field("ts", "timestamp"), Field("amount", "float64"),
            Field("merchant", "string")],
)
user_last = StreamFeatureView(
    name="user_last", source=transactions, entities=[user],
    features=[Attribute("amount", "float64", name="last_amount"), Attribute("merchant", "string")],
)
fraud = FeatureService(name="fraud", features=[user_last])
'''


# Kafka principals of the test brokers' clients (deploy/acls.py).
CUSTOMER_APP = PLANE_USERS[Plane.CUSTOMER]  # may write and create every topic outside a deployment's prefix
OPERATOR = OPERATOR_USER  # a super user
# Each test broker's folder, by port: its logins are found from a bootstrap address alone.
TEST_BROKERS = REPO_ROOT / ".state" / "test-kafka"


def broker_config_with_logins(port: int, controller_port: int) -> BrokerConfig:
    """A broker with SASL users (passwords made once, in its folder) as `featureplane up` starts; it shares
    the jar cache with `up`, since the folder is deleted afterwards."""
    state_dir = TEST_BROKERS / str(port)
    libs = REPO_ROOT / ".state" / "kafka" / f"libs-{KAFKA_VERSION}"
    return BrokerConfig(state_dir, port=port, controller_port=controller_port, libs_dir=libs,
                        users=ensure_users(state_dir))


@contextlib.contextmanager
def broker_of_its_own() -> Iterator[BrokerConfig]:
    """A broker for one test module alone (which stops and restarts it), with SASL logins and ACLs like
    the session's; removed with its logins afterwards."""
    cfg = broker_config_with_logins(*free_ports(2))
    start_broker(cfg)
    try:
        yield cfg
    finally:
        stop_broker(cfg)
        shutil.rmtree(cfg.state_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            TEST_BROKERS.rmdir()


@contextlib.asynccontextmanager
async def running_deployment(broker: BrokerConfig, state_dir: Path, topic_prefix: str,
                             **settings: Any) -> AsyncIterator[Deployment]:
    """Every component as a real Ray actor on the test broker `broker`, each with its plane's login, after
    the operator created the ACLs and topics of `topic_prefix`; a fresh metadata key in `state_dir`.
    `settings` override the tests' defaults: the gateway on a free port, JSON logs, a 10 s read timeout."""
    key_file = state_dir / "metadata.key"
    write_key_file(key_file, MetadataKey.generate())
    chosen = {"gateway_port": 0, "log_json": True, "read_timeout_s": 10, **settings}
    running = await start_on_local_broker(broker, Settings(
        bootstrap_servers=broker.bootstrap, state_dir=state_dir, metadata_key_file=key_file,
        topic_prefix=topic_prefix, **chosen))
    try:
        yield running
    finally:
        await running.stop()


def broker_users(bootstrap: str) -> KafkaUsers:
    """The logins of the test broker at `bootstrap` (made by broker_config_with_logins)."""
    users = load_users(TEST_BROKERS / bootstrap.rsplit(":", 1)[1])
    assert users is not None, f"{bootstrap} is not a test broker started by broker_config_with_logins"
    return users


def client_options(bootstrap: str, principal: str = CUSTOMER_APP) -> dict[str, Any]:
    """bootstrap_servers and the SASL login of `principal`, for any aiokafka client."""
    return {"bootstrap_servers": bootstrap, **security_options(broker_users(bootstrap).credentials(principal))}


def operator_connection(deployment: Deployment) -> Connection:
    """The CLI's connection to a deployment, as the operator (whose login its settings carry)."""
    settings = deployment.settings
    return Connection(settings.bootstrap_servers, settings.topics, deployment.gateway_url,
                      settings.kafka_credentials)


def write_repo(folder: Path, topic: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "features.py").write_text(REPO_TEMPLATE.format(topic=topic))
    return folder


async def produce_plain(bootstrap: str, topic: str, payloads: list[bytes]) -> None:
    """An ordinary Kafka producer, as a customer's application would use (with its login): no featureplane code."""
    producer = AIOKafkaProducer(**client_options(bootstrap, CUSTOMER_APP), acks="all")
    await producer.start()
    try:
        for payload in payloads:
            await producer.send_and_wait(topic, payload)
    finally:
        await producer.stop()


async def read_topic(bootstrap: str, topic: str, quiet_s: float = 1.5) -> list[Any]:
    """Every committed record of `topic` (all partitions), read as the operator until nothing new arrives
    for `quiet_s`."""
    consumer = AIOKafkaConsumer(topic, **client_options(bootstrap, OPERATOR), isolation_level="read_committed",
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        records: list[Any] = []
        last_new = time.monotonic()
        while time.monotonic() - last_new < quiet_s:
            batch = await consumer.getmany(timeout_ms=200)
            for part in batch.values():
                records.extend(part)
                last_new = time.monotonic()
        return records
    finally:
        await consumer.stop()


async def get_features(session: aiohttp.ClientSession, url: str, workspace: str, service: str,
                       join_keys: dict[str, Any], key: str | None) -> tuple[int, Any]:
    body = {"params": {"workspace_name": workspace, "feature_service_name": service,
                       "join_key_map": join_keys,
                       "metadata_options": {"include_names": True, "include_serving_status": True}}}
    async with session.post(f"{url}/api/v1/feature-service/get-features", data=json.dumps(body),
                            headers=auth(key)) as resp:
        return resp.status, await resp.json()


def auth(key: str | None, scheme: str = "Bearer") -> dict[str, str]:
    return {"Authorization": f"{scheme} {key}"} if key else {}


async def apply(conn: Connection, folder: Path, workspace: str, key: str) -> dict[str, Any]:
    """`featureplane apply`, as the CLI does it (compile here, apply through the gateway)."""
    return await asyncio.to_thread(apply_repo, conn, folder, workspace, key)


async def eventually(check: Callable[[], Awaitable[T | None]], timeout_s: float, what: str) -> T:
    """The first non-None answer of `check`, polling; fails the test with `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = await check()
        if answer is not None:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.2)
