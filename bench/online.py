"""Ingest throughput and freshness through the real path: Kafka source topic → Rift → online store →
get-features over HTTP, with transactions and audit records on."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaProducer

from bench.logins import customer_producer_options, operator_connection
from deploy.client import apply_repo, bootstrap_admin
from deploy.cluster import Deployment

REPO = '''
from sdk import Attribute, Entity, FeatureService, Field, StreamFeatureView, StreamSource
user = Entity(name="user", join_keys=["user_id"])
events = StreamSource(name="events", topic="{topic}", timestamp_field="ts",
                      schema=[Field("user_id", "string"), Field("ts", "timestamp"), Field("amount", "float64")])
last = StreamFeatureView(name="last", source=events, entities=[user], features=[Attribute("amount", "float64")])
svc = FeatureService(name="svc", features=[last])
'''


async def prepare(deployment: Deployment, workdir: Path) -> tuple[str, str]:
    """Applies the bench repository; returns (source topic, admin key)."""
    conn = operator_connection(deployment)
    key = await bootstrap_admin(conn, None)
    topic = f"bench-events-{uuid.uuid4().hex[:6]}"
    folder = workdir / "repo"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "features.py").write_text(REPO.format(topic=topic))
    await asyncio.to_thread(apply_repo, conn, folder, "bench", key)
    return topic, key


async def _value(http: aiohttp.ClientSession, url: str, key: str, user: str) -> Any:
    body = {"params": {"workspace_name": "bench", "feature_service_name": "svc", "join_key_map": {"user_id": user}}}
    async with http.post(f"{url}/api/v1/feature-service/get-features", json=body,
                         headers={"Authorization": f"Bearer {key}"}) as resp:
        return (await resp.json())["result"]["features"][0] if resp.status == 200 else None


async def _until_visible(http: aiohttp.ClientSession, url: str, key: str, user: str, amount: float,
                         timeout_s: float = 120) -> float:
    deadline = time.perf_counter() + timeout_s
    while await _value(http, url, key, user) != amount:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{user} never became visible")
        await asyncio.sleep(0.002)
    return time.perf_counter()


async def ingest_throughput(deployment: Deployment, topic: str, key: str, events: int, repeats: int) -> dict[str, Any]:
    """Events/s from the first produced event until the last one is served (all keys distinct, in order)."""
    producer = AIOKafkaProducer(**customer_producer_options(deployment), acks="all",
                                linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    rates = []
    try:
        async with aiohttp.ClientSession() as http:
            for run in range(repeats):
                now = datetime.now(UTC).isoformat()
                payloads = [json.dumps({"user_id": f"r{run}-u{i}", "ts": now, "amount": float(i)}).encode()
                            for i in range(events)]
                began = time.perf_counter()
                for payload in payloads:
                    await producer.send(topic, payload)
                await producer.flush()
                seen = await _until_visible(http, deployment.gateway_url, key, f"r{run}-u{events - 1}",
                                            float(events - 1))
                rates.append(events / (seen - began))
    finally:
        await producer.stop()
    return {"events_per_run": events, "events_per_s_median": statistics.median(rates), "events_per_s_all": rates}


async def freshness(deployment: Deployment, topic: str, key: str, samples: int) -> dict[str, Any]:
    """Event produced (acknowledged) → visible in get-features, one event at a time."""
    producer = AIOKafkaProducer(**customer_producer_options(deployment), acks="all")
    await producer.start()
    latencies = []
    try:
        async with aiohttp.ClientSession() as http:
            for i in range(samples):
                user = f"fresh-{uuid.uuid4().hex[:8]}"
                payload = json.dumps({"user_id": user, "ts": datetime.now(UTC).isoformat(), "amount": float(i)})
                began = time.perf_counter()
                await producer.send_and_wait(topic, payload.encode())
                seen = await _until_visible(http, deployment.gateway_url, key, user, float(i))
                latencies.append((seen - began) * 1000)
    finally:
        await producer.stop()
    latencies.sort()
    return {"samples": samples, "p50_ms": _pct(latencies, 50), "p90_ms": _pct(latencies, 90),
            "p99_ms": _pct(latencies, 99), "max_ms": latencies[-1]}


def _pct(values: list[float], pct: float) -> float:
    return values[min(len(values) - 1, round(pct / 100 * (len(values) - 1)))]
