"""Online serving workloads on featureplane: a feature service of ten features (seven attributes and three
windowed aggregates of a stream view), fed through its Kafka source topic, read over HTTP by the shared
closed-loop load generator, one key per request or 100 per batch request."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaProducer

from bench import data
from bench.loadgen import LoadResult, closed_loop
from bench.logins import customer_producer_options, operator_connection
from deploy.client import apply_repo, bootstrap_admin
from deploy.cluster import Deployment

WORKSPACE = "serving"
GET_FEATURES = "/api/v1/feature-service/get-features"
GET_FEATURES_BATCH = "/api/v1/feature-service/get-features-batch"
REPO = '''from datetime import timedelta
from sdk import Aggregate, Attribute, Entity, FeatureService, Field, StreamFeatureView, StreamSource, TimeWindow

user = Entity(name="user", join_keys=["user_id"])
transactions = StreamSource(name="transactions", topic="{topic}", timestamp_field="ts", schema=[
    Field("user_id", "string"), Field("ts", "timestamp"), {fields}])
profile = StreamFeatureView(name="profile", source=transactions, entities=[user], ttl=timedelta(days=30),
                            features=[{attributes}])
velocity = StreamFeatureView(
    name="velocity", source=transactions, entities=[user], aggregation_interval=timedelta(minutes=5),
    features=[Aggregate("amount", "count", TimeWindow(timedelta(hours=1)), name="amount_count_1h"),
              Aggregate("amount", "sum", TimeWindow(timedelta(hours=1)), name="amount_sum_1h"),
              Aggregate("amount", "mean", TimeWindow(timedelta(hours=24)), name="amount_mean_24h")])
svc = FeatureService(name="svc", features=[profile, velocity])
'''
FEATURES_PER_KEY = len(data.FEATURES)


def repo_text(topic: str) -> str:
    fields = ", ".join(f'Field("{name}", "{dtype}")' for name, dtype in data.ATTRIBUTES)
    attributes = ", ".join(f'Attribute("{name}", "{dtype}")' for name, dtype in data.ATTRIBUTES)
    return REPO.format(topic=topic, fields=fields, attributes=attributes)


def single_bodies(user_ids: Sequence[str], serving_status: bool) -> list[bytes]:
    return [json.dumps({"params": {
        "workspace_name": WORKSPACE, "feature_service_name": "svc", "join_key_map": {"user_id": user},
        "metadata_options": {"include_serving_status": serving_status}}}).encode() for user in user_ids]


def batch_bodies(user_ids: Sequence[str], size: int) -> list[bytes]:
    groups = [user_ids[i:i + size] for i in range(0, len(user_ids) - size + 1, size)]
    return [json.dumps({"params": {
        "workspace_name": WORKSPACE, "feature_service_name": "svc",
        "request_data": [{"join_key_map": {"user_id": user}} for user in group]}}).encode() for group in groups]


async def load_data(deployment: Deployment, workdir: Path, events: list[dict[str, Any]], key: str | None) -> str:
    """Applies the serving repo, produces `events` to its source topic, waits until the last one is served;
    returns the admin key (`key`, else the one made here for a new deployment)."""
    settings = deployment.settings
    conn = operator_connection(deployment)
    key = key or await bootstrap_admin(conn, None)
    topic = f"bench-serving-{uuid.uuid4().hex[:6]}"
    folder = workdir / f"serving-repo-{settings.topic_prefix}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "features.py").write_text(repo_text(topic))
    await asyncio.to_thread(apply_repo, conn, folder, WORKSPACE, key)
    producer = AIOKafkaProducer(**customer_producer_options(deployment), acks="all", linger_ms=5,
                                max_batch_size=256 * 1024)
    await producer.start()
    try:
        for event in events:
            await producer.send(topic, json.dumps(event).encode())
        await producer.flush()
    finally:
        await producer.stop()
    last = events[-1]
    async with aiohttp.ClientSession() as http:
        await _until_visible_in(http, deployment.gateway_url, key, last["user_id"], last["amount"])
    return key


async def _until_visible_in(http: aiohttp.ClientSession, url: str, key: str, user: str, amount: float) -> None:
    body = single_bodies([user], False)[0]
    for _ in range(60_000):
        async with http.post(f"{url}{GET_FEATURES}", data=body, headers=_headers(key)) as resp:
            if resp.status == 200 and (await resp.json())["result"]["features"][0] == amount:
                return
        await asyncio.sleep(0.005)
    raise TimeoutError(f"{user} never became visible")


def _headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


async def measure(url: str, bodies: Sequence[bytes], key: str | None, concurrencies: Sequence[int],
                  duration_s: float, repeats: int, items_per_request: int = 1,
                  marker: bytes | None = None) -> list[dict[str, Any]]:
    """One point per concurrency: the median over `repeats` closed-loop runs (a short warm-up first)."""
    headers = {"Authorization": f"Bearer {key}"} if key else None
    await closed_loop(url, bodies, max(concurrencies), duration_s=min(1.0, duration_s), headers=headers)
    points = []
    for concurrency in concurrencies:
        runs: list[LoadResult] = []
        for _ in range(repeats):
            runs.append(await closed_loop(url, bodies, concurrency, duration_s=duration_s, headers=headers,
                                          marker=marker))
        points.append(median_point([r.summary(items_per_request) for r in runs]))
        p = points[-1]
        print(f"    c={concurrency}: {p['requests_per_s']:.0f} req/s, p50 {p.get('p50_ms', 0):.2f} ms, "
              f"p99 {p.get('p99_ms', 0):.2f} ms, errors {p['errors']}", file=sys.stderr, flush=True)
    return points


def median_point(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The median of each numeric field over repeated runs of one load point (the run count kept)."""
    point: dict[str, Any] = dict(runs[0])
    for name, value in runs[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            values = sorted(r[name] for r in runs if name in r)
            point[name] = values[len(values) // 2] if len(values) % 2 else \
                (values[len(values) // 2 - 1] + values[len(values) // 2]) / 2
    point["repeats"] = len(runs)
    point["errors"] = sum(r["errors"] for r in runs)
    return point
