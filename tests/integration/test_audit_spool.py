"""Answers from the serving cache keep their audit records through a broker outage and a killed feature server.

The feature server spools the F1/F4 records of a cached answer (stores/audit_spool.py) instead of holding them
in memory while the broker is away. Here: answers from the cache, the broker stopped, more answers from the
cache, the feature server SIGKILLed, the broker started again; Ray restarts the feature server, which ships
what its predecessor spooled. Every answered request ends with exactly one F1 and one F4 record in the audit
log. The spool holds audit metadata only: the served feature value is nowhere in its files.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from actors.settings import Settings
from deploy.client import bootstrap_admin
from deploy.cluster import Deployment
from deploy.kafka import BrokerConfig, start_broker, stop_broker
from events.audit import AuditRecord
from events.codec import CODEC
from events.flows import Flow
from gateway.host import audit_spool_dir
from stores.audit_log import LmdbAuditStore
from tests.integration.conftest import free_ports
from tests.integration.helpers import apply, broker_of_its_own, get_features, operator_connection, running_deployment
from tests.integration.reliability import produce_fast

pytestmark = pytest.mark.integration

WS = "spooled"
SERVICE = "notes"
USERS = ["u0", "u1", "u2"]
ANSWERS_PER_PHASE = 4  # per user, before and during the outage
RESTART_LIMIT_S = 120.0
REPO = '''
from sdk import Attribute, Entity, FeatureService, Field, StreamFeatureView, StreamSource

user = Entity(name="user", join_keys=["user_id"])
notes_source = StreamSource(
    name="notes_source", topic="{topic}", timestamp_field="ts",
    schema=[Field("user_id", "string"), Field("ts", "timestamp"), Field("note", "string")],
)
user_note = StreamFeatureView(name="user_note", source=notes_source, entities=[user],
                              features=[Attribute("note", "string", name="note")])
notes = FeatureService(name="notes", features=[user_note])
'''


@pytest.fixture(scope="module")
def own_broker() -> Iterator[BrokerConfig]:
    """A broker for this module alone: the test stops and restarts it."""
    with broker_of_its_own() as cfg:
        yield cfg


@pytest.fixture(scope="module")
async def spool_deployment(own_broker: BrokerConfig, ray_cluster: None, topic_prefix: str,
                           tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Deployment]:
    """A fixed gateway port, so the restarted feature server listens where the killed one did."""
    async with running_deployment(own_broker, tmp_path_factory.mktemp("spool-state"), topic_prefix,
                                  gateway_port=free_ports(1)[0], read_timeout_s=3.0,
                                  serving_cache_max_age_s=3600) as running:
        yield running


class Client:
    """get-features for the test's service, counting the requests that were answered (200)."""

    def __init__(self, http: aiohttp.ClientSession, url: str, key: str) -> None:
        self._http, self._url, self._key = http, url, key
        self.answered = 0

    async def note(self, user: str) -> tuple[Any, str]:
        status, body = await get_features(self._http, self._url, WS, SERVICE, {"user_id": user}, self._key)
        assert status == 200, body
        self.answered += 1
        return body["result"]["features"][0], body["metadata"]["features"][0]["status"]


def spooled_records(settings: Settings) -> list[AuditRecord]:
    with LmdbAuditStore(settings.store_dir("audit_log-0"), readonly=True) as store:
        assert store.verify() is None, "the audit hash chain does not verify"
        records = [CODEC.decode(link.record).body for link in store.links()]
    return [r for r in records if r.workspace == WS and r.subject == SERVICE and r.flow in (Flow.F1, Flow.F4)]


@pytest.mark.timeout(300)
async def test_cached_answers_are_audited_once_through_an_outage_and_a_killed_feature_server(
        spool_deployment: Deployment, own_broker: BrokerConfig, tmp_path: Path) -> None:
    deployment = spool_deployment
    settings = deployment.settings
    conn = operator_connection(deployment)
    key = await bootstrap_admin(conn, None)
    topic = f"{settings.topic_prefix}-notes-{uuid.uuid4().hex[:6]}"
    (tmp_path / "features.py").write_text(REPO.format(topic=topic))
    await apply(conn, tmp_path, WS, key)
    planted = f"planted-{uuid.uuid4().hex}"  # a feature value that must never be written down by the data plane
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    await produce_fast(own_broker.bootstrap, topic,
                       [{"user_id": u, "ts": now_ms, "note": f"{planted}-{u}"} for u in USERS])

    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        client = Client(http, deployment.gateway_url, key)
        for user in USERS:  # read through the store once: the serving cache holds them from then on
            deadline = time.monotonic() + 60
            while (await client.note(user))[0] != f"{planted}-{user}":
                assert time.monotonic() < deadline, f"{user}'s note never arrived"
                await asyncio.sleep(0.5)
        for _ in range(ANSWERS_PER_PHASE):
            for user in USERS:
                assert await client.note(user) == (f"{planted}-{user}", "CACHED_PRESENT")

        await asyncio.to_thread(stop_broker, own_broker)
        answered_before_outage = client.answered
        for _ in range(ANSWERS_PER_PHASE):
            for user in USERS:  # no broker: the cache answers, the spool keeps their audit records
                assert await client.note(user) == (f"{planted}-{user}", "CACHED_PRESENT")

    # The spool is audit metadata only (DESIGN: the data plane persists no feature data).
    spool_files = [p for p in audit_spool_dir(settings, "fs-0").iterdir() if p.is_file()]
    assert spool_files
    assert not [p for p in spool_files if planted.encode() in p.read_bytes()]
    # Those answers' records are not in the audit log yet: only the spool has them.
    assert len([r for r in spooled_records(settings) if r.flow is Flow.F4]) <= answered_before_outage

    name = f"{settings.topic_prefix}-feature_server-0"
    old_pid = await deployment.pid_of(name)
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    await asyncio.sleep(1.0)  # Ray notices and restarts it; its start-up waits for the broker
    await asyncio.to_thread(start_broker, own_broker)
    killed_at = time.monotonic()
    while await deployment.pid_of(name, 1.0) in (None, old_pid):
        assert time.monotonic() - killed_at < RESTART_LIMIT_S, "the feature server did not come back"
        await asyncio.sleep(0.2)

    deadline = time.monotonic() + 60
    records = spooled_records(settings)
    while len([r for r in records if r.flow is Flow.F4]) < client.answered:
        assert time.monotonic() < deadline, "the spooled audit records did not reach the audit log"
        await asyncio.sleep(0.5)
        records = spooled_records(settings)
    f1 = Counter(r.causation_id for r in records if r.flow is Flow.F1)
    f4 = Counter(r.causation_id for r in records if r.flow is Flow.F4)
    assert sum(f4.values()) == client.answered
    assert set(f4.values()) == {1}, "an answer audited twice"
    assert set(f1.values()) == {1}, "a request audited twice"
    assert set(f4) <= set(f1), "an answered request without its F1 record"
