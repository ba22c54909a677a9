"""The edge under bad input and load, against a real deployment with small limits: a fuzz run from the
OpenAPI document finds no 5xx; poison on every consumed topic is dead-lettered while consumers go on;
bodies over the limit are 413; a burst beyond the in-flight limit gets 429s; a tiny latency budget gives
TIME_OUT."""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import io
import json
import random
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, given, settings

from deploy.cluster import Deployment
from deploy.kafka import BrokerConfig, BrokerHandle
from events.codec import CODEC
from events.data import RecordDeadLettered, SourceRange
from events.planes import Component
from events.topics import (
    AUDIT,
    AUDIT_QUERIES,
    AUDIT_REPLIES,
    CONTROL_CLOCK,
    CONTROL_COMMANDS,
    CONTROL_EVENTS,
    DEAD_LETTER,
    INGEST,
    JOB_STATUS,
    JOBS_EXTERNAL,
    JOBS_RIFT,
    OFFLINE_WRITES,
    ONLINE_CHANGELOG,
    ONLINE_READS,
    ONLINE_REPLIES,
    ONLINE_WRITES,
    Topic,
)
from gateway.app import MAX_BODY_BYTES
from gateway.openapi import document
from tests.integration.helpers import (
    CUSTOMER_APP,
    OPERATOR,
    apply,
    auth,
    client_options,
    eventually,
    get_features,
    operator_connection,
    read_topic,
    running_deployment,
    write_repo,
)
from tests.integration.openapi_fuzz import Case, cases
from tests.integration.test_ingest import PUSH_REPO

pytestmark = pytest.mark.integration

MAX_IN_FLIGHT = 2
MAX_RECORD_BYTES = 64 * 1024
FUZZ_CASES = 400
# Every platform topic a ComponentRuntime consumes (the readers of the reply and control-event topics
# log and skip what they cannot use).
RUNTIME_TOPICS: tuple[Topic, ...] = (CONTROL_COMMANDS, JOB_STATUS, CONTROL_CLOCK, JOBS_EXTERNAL, OFFLINE_WRITES,
                                     ONLINE_WRITES, ONLINE_READS, INGEST, JOBS_RIFT, AUDIT, AUDIT_QUERIES)
# Topics read outside a consumer group (read models, replies): poison there is logged and skipped.
READER_TOPICS: tuple[Topic, ...] = (CONTROL_EVENTS, ONLINE_REPLIES, AUDIT_REPLIES, ONLINE_CHANGELOG)


@pytest.fixture(scope="module")
async def deployment(kafka_config: BrokerConfig, kafka_broker: BrokerHandle, ray_cluster: None,
                     topic_prefix: str,
                     tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Deployment]:
    """This module's own deployment, with a small in-flight limit and record size limit."""
    async with running_deployment(kafka_config, tmp_path_factory.mktemp("state"), topic_prefix,
                                  gateway_max_in_flight=MAX_IN_FLIGHT, max_record_bytes=MAX_RECORD_BYTES) as running:
        yield running


@pytest.fixture(scope="module")
def source_topic(deployment: Deployment) -> str:
    return f"{deployment.settings.topic_prefix}-edge-source"


@pytest.fixture(scope="module")
async def workspace(deployment: Deployment, admin_key: str, source_topic: str,
                    tmp_path_factory: pytest.TempPathFactory) -> str:
    name = f"ws_{uuid.uuid4().hex[:6]}"
    repo = write_repo(tmp_path_factory.mktemp("repo"), source_topic)
    await apply(operator_connection(deployment), repo, name,
                admin_key)
    return name


def _send(url: str, case: Case) -> tuple[int, bytes, str]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
    headers = {"Content-Type": case.content_type}
    if case.authorization is not None:
        headers["Authorization"] = case.authorization
    try:
        connection.request(case.method, case.path, body=case.body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read(), response.getheader("Content-Type") or ""
    finally:
        connection.close()


def test_fuzzing_every_route_finds_no_5xx_and_every_error_is_tecton_shaped(
        deployment: Deployment, workspace: str, admin_key: str) -> None:
    known = [workspace, "fraud", "user_last", "transactions", "F1", "F5", "admin", "viewer"]
    seen: list[tuple[str, str, int]] = []

    @settings(max_examples=FUZZ_CASES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(case=cases(document(), known, admin_key))
    def check(case: Case) -> None:
        status, body, content_type = _send(deployment.gateway_url, case)
        seen.append((case.method, case.path.split("?")[0], status))
        assert status < 500, f"{status} {body[:500]!r} for {case.describe()}"
        if status >= 400:
            error = json.loads(body)["requestError"]
            assert isinstance(error["errorMessage"], str), case.describe()
            assert isinstance(error["errorType"], str), case.describe()
        elif "json" in content_type:
            json.loads(body)

    started = time.monotonic()
    check()
    statuses = sorted({s for *_, s in seen})
    print(f"fuzz: {len(seen)} requests in {time.monotonic() - started:.1f}s, statuses {statuses}")
    assert len(seen) >= FUZZ_CASES
    assert 200 in statuses  # the fuzz got past validation too, not only into 4xx
    assert {401, 400, 404} <= set(statuses)


async def test_a_body_over_the_limit_is_413_on_every_route(deployment: Deployment, admin_key: str) -> None:
    big = b"{" * (MAX_BODY_BYTES + 1)
    async with aiohttp.ClientSession() as http_session:
        for path, ops in document()["paths"].items():
            for method in ops:
                url = deployment.gateway_url + path.replace("{", "").replace("}", "")
                async with http_session.request(method, url, data=io.BytesIO(big), headers=auth(admin_key)) as resp:
                    assert resp.status == 413, (method, path)
                    assert (await resp.json())["requestError"]["errorType"] == "PAYLOAD_TOO_LARGE"


async def test_a_burst_beyond_the_in_flight_limit_gets_quick_429s_and_no_5xx(
        deployment: Deployment, workspace: str, admin_key: str) -> None:
    async with aiohttp.ClientSession() as http_session:
        async def one(i: int) -> tuple[int, str | None, Any]:
            body = {"params": {"workspace_name": workspace, "feature_service_name": "fraud",
                               "join_key_map": {"user_id": f"burst-{i}"}}}
            async with http_session.post(f"{deployment.gateway_url}/api/v1/feature-service/get-features",
                                         json=body, headers=auth(admin_key)) as resp:
                return resp.status, resp.headers.get("Retry-After"), await resp.json()

        answers = await asyncio.gather(*(one(i) for i in range(40)))
    statuses = [status for status, _, _ in answers]
    assert set(statuses) <= {200, 429}, statuses
    assert 429 in statuses
    assert 200 in statuses
    for status, retry_after, body in answers:
        if status == 429:
            assert retry_after == "1"
            assert body["requestError"]["errorType"] == "RESOURCE_EXHAUSTED"
    async with aiohttp.ClientSession() as http_session, http_session.get(f"{deployment.gateway_url}/healthz") as r:
        in_flight = (await r.json())["in_flight"]
    assert in_flight["limit"] == MAX_IN_FLIGHT
    assert in_flight["refused"] >= statuses.count(429)


async def test_a_tiny_latency_budget_returns_time_out_then_values_come(
        deployment: Deployment, workspace: str, admin_key: str) -> None:
    url = f"{deployment.gateway_url}/api/v1/feature-service/get-features"
    body = {"params": {"workspace_name": workspace, "feature_service_name": "fraud",
                       "join_key_map": {"user_id": f"budget-{uuid.uuid4().hex[:6]}"},
                       "metadata_options": {"include_serving_status": True},
                       "request_options": {"latency_budget_ms": 1}}}
    async with aiohttp.ClientSession() as http_session:
        async with http_session.post(url, json=body, headers=auth(admin_key)) as resp:
            assert resp.status == 200
            answer = await resp.json()
        assert [f["status"] for f in answer["metadata"]["features"]] == ["TIME_OUT", "TIME_OUT"]
        assert answer["result"]["features"] == [None, None]
        body["params"]["request_options"] = {"latency_budget_ms": 10_000}
        async with http_session.post(url, json=body, headers=auth(admin_key)) as resp:
            answer = await resp.json()
    assert [f["status"] for f in answer["metadata"]["features"]] == ["MISSING_DATA", "MISSING_DATA"]


def _wrong_shape(topic: Topic) -> bytes:
    """A valid envelope around the topic's own event type, every field a number: the wrong types."""
    cls = topic.events[0]
    body = cls(*[7 for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING
                 and f.default_factory is dataclasses.MISSING])
    return CODEC.encode(CODEC.message(body, producer=Component.RIFT, workspace="nowhere"))


def _poison(platform: bool) -> list[bytes | None]:
    valid = CODEC.encode(CODEC.message(SourceRange("x", 0, 0, 0), producer=Component.RIFT, workspace="nowhere"))
    rng = random.Random(7)
    noise = bytes(rng.getrandbits(8) for _ in range(64))
    huge = bytes(rng.getrandbits(8) for _ in range(900_000)) if platform else \
        json.dumps({"user_id": "u", "ts": "2026-01-01T00:00:00Z", "amount": 1.0, "merchant": "m" * 100_000}).encode()
    # random bytes, truncated msgpack, a message that does not belong on the topic, a tombstone, a huge record
    return [noise, valid[: len(valid) // 2], valid, None, huge]


async def _produce(bootstrap: str, topic: str, values: list[bytes | None], principal: str) -> list[int]:
    producer = AIOKafkaProducer(**client_options(bootstrap, principal), acks="all", max_request_size=2 * 1024 * 1024)
    await producer.start()
    try:
        return [(await producer.send_and_wait(topic, value, key=b"poison")).offset for value in values]
    finally:
        await producer.stop()


async def test_poison_on_every_consumed_topic_is_dead_lettered_and_consumers_go_on(
        deployment: Deployment, workspace: str, admin_key: str, kafka_bootstrap: str, source_topic: str) -> None:
    names = deployment.settings.topics
    expected: set[tuple[str, int]] = set()
    for topic in RUNTIME_TOPICS:
        name = names.name(topic)
        # As the operator: no plane's login may write most of these topics (the ACLs refuse it first).
        offsets = await _produce(kafka_bootstrap, name, [*_poison(platform=True), _wrong_shape(topic)], OPERATOR)
        expected |= {(name, o) for o in offsets}
    for topic in READER_TOPICS:
        await _produce(kafka_bootstrap, names.name(topic), [*_poison(platform=True), _wrong_shape(topic)], OPERATOR)
    offsets = await _produce(kafka_bootstrap, source_topic, [*_poison(platform=False), b'{"user_id": 5}'],
                             CUSTOMER_APP)
    expected |= {(source_topic, o) for o in offsets}
    good = {"user_id": "after-poison", "ts": datetime.now(UTC).isoformat(), "amount": 9.5, "merchant": "m"}
    await _produce(kafka_bootstrap, source_topic, [json.dumps(good).encode()], CUSTOMER_APP)

    async def served() -> list[Any] | None:  # the valid record after the poison is processed
        async with aiohttp.ClientSession() as http_session:
            status, body = await get_features(http_session, deployment.gateway_url, workspace, "fraud",
                                              {"user_id": "after-poison"}, admin_key)
        return body["result"]["features"] if status == 200 and body["result"]["features"][0] else None

    assert await eventually(served, 60, "the valid record after the poison to be served") == [9.5, "m"]

    lags: dict[str, int] = {}

    async def all_consumed() -> dict[str, Any] | None:
        health = await deployment.health()
        lags.clear()
        lags.update({t: n for h in health.values() for t, n in (h.get("lag") or {}).items()
                     if t.rsplit("/", 1)[0] in {name for name, _ in expected}})
        return health if lags and not any(lags.values()) else None

    try:
        health = await eventually(all_consumed, 60, "every consumer group to reach the end of its topics")
    finally:
        print("lags:", lags)
    assert all(h.get("alive", True) for h in health.values())
    dead = [CODEC.decode(r.value).body for r in await read_topic(kafka_bootstrap, names.name(DEAD_LETTER))]
    lettered = {(d.source.topic, d.source.first_offset): d for d in dead if isinstance(d, RecordDeadLettered)}
    assert sorted(expected - set(lettered)) == [], "poison records missing from the dead-letter topic"
    assert all(lettered[c].reason for c in expected)
    assert any("at most" in lettered[c].reason for c in expected if c[0] == source_topic)
    # serving, audit queries and the registry still work after the poison on the read and reply paths
    async with aiohttp.ClientSession() as http_session:
        status, _ = await get_features(http_session, deployment.gateway_url, workspace, "fraud", {"user_id": "x"},
                                       admin_key)
        assert status == 200
        async with http_session.get(f"{deployment.gateway_url}/api/v1/audit/flows?limit=5",
                                    headers=auth(admin_key)) as resp:
            assert resp.status == 200
        created = f"after_poison_{uuid.uuid4().hex[:6]}"
        async with http_session.post(f"{deployment.gateway_url}/api/v1/workspaces", json={"name": created},
                                     headers=auth(admin_key)) as resp:
            assert resp.status == 201
        async with http_session.get(f"{deployment.gateway_url}/api/v1/workspaces", headers=auth(admin_key)) as resp:
            assert created in {w["name"] for w in (await resp.json())["workspaces"]}


FLOOD_RECORDS = 20_000
FLOOD_USERS = 50


async def test_a_flood_of_source_records_is_all_processed_with_lag_reported_and_memory_bounded(
        deployment: Deployment, admin_key: str, kafka_bootstrap: str,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    topic, name = f"{deployment.settings.topic_prefix}-flood", f"flood_{uuid.uuid4().hex[:6]}"
    await apply(operator_connection(deployment), write_repo(tmp_path_factory.mktemp("flood"), topic), name, admin_key)
    before = (await deployment.health())[f"{deployment.settings.topic_prefix}-rift-0"]["max_rss_mb"]
    now = datetime.now(UTC).isoformat()
    records = [json.dumps({"user_id": f"u{i % FLOOD_USERS}", "ts": now, "amount": float(i),
                           "merchant": "m"}).encode() for i in range(FLOOD_RECORDS)]
    producer = AIOKafkaProducer(**client_options(kafka_bootstrap, CUSTOMER_APP), acks="all", linger_ms=20)
    await producer.start()
    lag_seen: list[int] = []
    try:  # as fast as the client can: far faster than one Rift worker applies them
        await asyncio.gather(*[await producer.send(topic, r) for r in records])
    finally:
        await producer.stop()

    async def drained() -> dict[str, Any] | None:
        rift = (await deployment.health())[f"{deployment.settings.topic_prefix}-rift-0"]
        if isinstance(rift["lag"], str):  # "unknown: ..." when the broker did not answer within 2 s: ask again
            return None
        lag = {t: n for t, n in rift["lag"].items() if t.startswith(topic)}
        lag_seen.append(sum(lag.values()))
        return rift if lag and not any(lag.values()) else None

    rift = await eventually(drained, 180, "Rift to work off the flood")
    print(f"flood: {FLOOD_RECORDS} records, lag samples {lag_seen}, highest {max(lag_seen)}, "
          f"Rift peak RSS {before} -> {rift['max_rss_mb']} MB")
    assert rift["alive"]
    assert rift["max_rss_mb"] - before < 512  # the flood is not buffered in memory beyond a fetch or two

    async with aiohttp.ClientSession() as http_session:  # nothing dropped: every record consumed, audited
        async def audited() -> int | None:
            """Source records covered by F5 records, once the audit log has chained them all (it consumes
            the audit topic on its own, a moment after Rift committed)."""
            async with http_session.get(f"{deployment.gateway_url}/api/v1/audit/flows",
                                        params={"flow": "F5", "subject": topic, "limit": "10000"},
                                        headers=auth(admin_key)) as resp:
                count = sum(r["message_count"] for r in (await resp.json())["records"])
            return count if count >= FLOOD_RECORDS else None

        assert await eventually(audited, 30, "the flood's F5 audit records") == FLOOD_RECORDS
        for user in (0, FLOOD_USERS - 1):  # and the last record of each user is the one served
            last = max(i for i in range(FLOOD_RECORDS) if i % FLOOD_USERS == user)
            status, body = await get_features(http_session, deployment.gateway_url, name, "fraud",
                                              {"user_id": f"u{user}"}, admin_key)
            assert (status, body["result"]["features"]) == (200, [float(last), "m"])


async def test_an_ingest_record_over_the_size_limit_is_a_record_error(
        deployment: Deployment, admin_key: str,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("push_repo")
    (folder / "features.py").write_text(PUSH_REPO)
    name = f"push_{uuid.uuid4().hex[:6]}"
    await apply(operator_connection(deployment), folder, name,
                admin_key)
    now = datetime.now(UTC).isoformat()
    records = [{"record": {"user_id": "small", "ts": now, "page": "home", "dwell": 1.0}},
               {"record": {"user_id": "big", "ts": now, "page": "p" * MAX_RECORD_BYTES, "dwell": 1.0}}]
    async with aiohttp.ClientSession() as http_session, http_session.post(
            f"{deployment.gateway_url}/ingest", json={"workspace_name": name, "records": {"clicks": records}},
            headers=auth(admin_key)) as resp:
        status, body = resp.status, await resp.json()
    assert status == 400
    (error,) = body["recordErrors"]
    assert (error["pushSourceName"], error["recordIndex"]) == ("clicks", 1)
    assert f"at most {MAX_RECORD_BYTES}" in error["errorMessage"]
