"""What the integration tests do from outside the platform: produce, read topics, call HTTP, wait."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from deploy.client import Connection, apply_repo

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


def write_repo(folder: Path, topic: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "features.py").write_text(REPO_TEMPLATE.format(topic=topic))
    return folder


async def produce_plain(bootstrap: str, topic: str, payloads: list[bytes]) -> None:
    """An ordinary Kafka producer, as a customer's application would use: no featureplane code."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for payload in payloads:
            await producer.send_and_wait(topic, payload)
    finally:
        await producer.stop()


async def read_topic(bootstrap: str, topic: str, quiet_s: float = 1.5) -> list[Any]:
    """Every committed record of `topic` (all partitions), read until nothing new arrives for `quiet_s`."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, isolation_level="read_committed",
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
