"""Checks shared by the reliability tests (crashes, broker outages): what the platform serves and audits."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import aiohttp
from aiokafka import AIOKafkaProducer

from deploy.cluster import Deployment
from events.audit import AuditRecord
from events.codec import CODEC
from events.flows import Flow
from events.planes import Component
from events.topics import (
    AUDIT_QUERIES,
    AUDIT_REPLIES,
    CONTROL_COMMANDS,
    CONTROL_EVENTS,
    DEAD_LETTER,
    OFFLINE_WRITES,
    ONLINE_CHANGELOG,
    ONLINE_READS,
    ONLINE_REPLIES,
    ONLINE_WRITES,
)
from stores.audit_log import LmdbAuditStore
from tests.integration.helpers import CUSTOMER_APP, auth, client_options, read_topic


async def produce_fast(bootstrap: str, topic: str, events: list[dict[str, Any]]) -> None:
    """A plain aiokafka producer, as a customer's application would use (with its login), sending compact
    JSON records."""
    producer = AIOKafkaProducer(**client_options(bootstrap, CUSTOMER_APP), acks="all", linger_ms=20,
                                max_batch_size=512 * 1024)
    await producer.start()
    try:
        pending = []
        for e in events:
            pending.append(await producer.send(topic, json.dumps(e, separators=(",", ":")).encode()))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


# Users per get-features-batch request: the store answers a request with one Kafka message, which holds every
# tile delta of every user asked for and must stay under the broker's message size limit (1 MiB).
BATCH_USERS = 10


async def online_values(url: str, key: str, workspace: str, service: str, users: list[str],
                        batch_users: int = BATCH_USERS) -> dict[str, list[Any]]:
    """Every user's served features, through get-features-batch requests of `batch_users` users."""
    values: dict[str, list[Any]] = {}
    async with aiohttp.ClientSession() as http:
        for i in range(0, len(users), batch_users):
            chunk = users[i:i + batch_users]
            body = {"params": {"workspace_name": workspace, "feature_service_name": service,
                               "request_data": [{"join_key_map": {"user_id": u}} for u in chunk]}}
            async with http.post(f"{url}/api/v1/feature-service/get-features-batch", json=body,
                                 headers=auth(key)) as resp:
                assert resp.status == 200, await resp.text()
                result = (await resp.json())["result"]
            values.update({u: row["features"] for u, row in zip(chunk, result, strict=True)})
    return values



async def assert_every_data_message_audited_once(deployment: Deployment, bootstrap: str, source_topic: str,
                                                  source_messages: int, *, every_response_sent: bool = True,
                                                  requests_served: int | None = None,
                                                  timeout_s: float = 60) -> list[AuditRecord]:
    """Each committed message on a data topic has exactly one audit record naming its coordinates, the
    source records are covered by F5 records exactly once, and the hash chain verifies.

    `every_response_sent`: one F4 record per F1 request, every flow of a full deployment present, every
    read belonging to a request. Without it (a feature server killed between a request and its response
    never sent that response) only: no response audited twice or without its request.
    `requests_served`: the number of get-features requests the test made, each answered: so many F1 records,
    one per request (counted by the caller, not from the audit log itself)."""
    names = deployment.settings.topics
    data_topics = {
        Flow.F2: [ONLINE_READS], Flow.F3: [ONLINE_REPLIES, ONLINE_CHANGELOG],
        Flow.F7: [ONLINE_WRITES, OFFLINE_WRITES, DEAD_LETTER],
        Flow.F8: [CONTROL_EVENTS, AUDIT_REPLIES], Flow.F9: [AUDIT_QUERIES, CONTROL_COMMANDS],
    }
    messages: dict[Flow, Counter[tuple[str, int, int]]] = {}
    for flow, topics in data_topics.items():
        coords: Counter[tuple[str, int, int]] = Counter()
        for t in topics:
            for r in await read_topic(bootstrap, names.name(t)):
                # The operator's own commands stay inside the control plane: no flow, no audit record.
                if CODEC.decode(r.value).envelope.producer is not Component.OPERATOR:
                    coords[(r.topic, r.partition, r.offset)] += 1
        messages[flow] = coords
    required = list(data_topics) if every_response_sent else [Flow.F2, Flow.F7]
    assert all(messages[flow] for flow in required), f"no data messages of {[f for f in required if not messages[f]]}"
    expected_kafka = sum(len(c) for c in messages.values())
    audit_dir = deployment.settings.store_dir("audit_log-0")
    deadline = time.monotonic() + timeout_s
    while True:
        with LmdbAuditStore(audit_dir, readonly=True) as store:
            assert store.verify() is None, "the audit hash chain does not verify"
            records: list[AuditRecord] = [CODEC.decode(link.record).body for link in store.links()]
        f5 = sum(r.message_count for r in records if r.flow is Flow.F5 and r.topic == source_topic)
        kafka_audited = sum(1 for r in records if r.flow in data_topics)
        if (kafka_audited >= expected_kafka and f5 >= source_messages) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    for flow, coords in messages.items():
        audited = Counter((r.topic, r.partition, r.first_offset) for r in records if r.flow is flow)
        assert audited == coords, f"{flow}: audited messages differ from the data messages"
    covered = Counter(o for r in records if r.flow is Flow.F5 and r.topic == source_topic
                      for o in range(r.first_offset, r.last_offset + 1))
    assert sorted(covered) == list(range(source_messages)), "F5: every source offset audited"
    assert set(covered.values()) == {1}, "F5: no source offset audited twice"
    # the HTTP edge: F1 per request served, F4 per response sent, by request id
    f1 = Counter(r.causation_id for r in records if r.flow is Flow.F1)
    f4 = Counter(r.causation_id for r in records if r.flow is Flow.F4)
    if requests_served is not None:
        assert sum(f1.values()) == requests_served, f"F1: {sum(f1.values())} records for {requests_served} requests"
        assert set(f1.values()) == {1}, "F1: a request audited twice"
    if every_response_sent:
        assert f1
        assert f1 == f4
        # every read of the online store belongs to a request; requests the serving cache answered read none
        f2_requests = {r.correlation_id for r in records if r.flow is Flow.F2}
        assert f2_requests <= {r.correlation_id for r in records if r.flow is Flow.F1}
        assert len(f2_requests) == len(messages[Flow.F2])
        assert all(r.digest and r.byte_count > 0 for r in records)
    else:
        assert set(f4) <= set(f1)
        assert set(f4.values()) == {1}
    return records
