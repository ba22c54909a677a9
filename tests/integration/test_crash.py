"""Crash tests: exactly once, end to end, while components are SIGKILLed and Ray restarts them.

At least 200,000 events go to a source topic through a plain aiokafka producer while the process of the
Rift worker, the online store shard, the offline store, the feature server and the audit log is killed
several times each, at seeded random moments. Ray restarts each one; the restarted actor resumes by itself
(deploy.cluster runs start-up in `__init__`). At the end the online and offline values equal the reference
computed in plain Python from what was produced (a plain view: last values and the sequence numbers, so a
gap or a duplicate shows; a count aggregate: tiles), and every data message has exactly one audit record.
How long each component took to come back is printed and written to `recovery.json` in the test's tmp dir.

`make soak` runs the longer variant (FEATUREPLANE_SOAK=1: more events, more kills).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import statistics
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import polars as pl
import pytest

from deploy.client import bootstrap_admin
from deploy.cluster import Deployment
from deploy.kafka import BrokerConfig, BrokerHandle
from events.topics import (
    DEAD_LETTER,
)
from sdk.offline import OfflineFeatures
from sdk.repo import load_repo
from stores.offline import ParquetOfflineStore
from tests.integration.conftest import free_ports
from tests.integration.helpers import apply, get_features, operator_connection, read_topic, running_deployment
from tests.integration.reliability import assert_every_data_message_audited_once, online_values, produce_fast

pytestmark = pytest.mark.integration

SOAK = os.environ.get("FEATUREPLANE_SOAK") == "1"
EVENTS = 1_000_000 if SOAK else 200_000
KILLS_PER_COMPONENT = 6 if SOAK else 2
SEED = 20261126
USERS = 2000 if SOAK else 500
# Users per get-features-batch request: each user's reply holds a tile delta per Rift batch that touched it.
BATCH_USERS = 4 if SOAK else 10
WS = "crash"
# The killed components, by instance name (the actor is named "<topic prefix>-<instance>").
KILLED = ("rift-0", "online_store-0", "offline_store-0", "feature_server-0", "audit_log-0")
# Seconds between a component's restart and its next kill (drawn uniformly, seeded).
KILL_GAP_S = (1.0, 8.0)
RESTART_LIMIT_S = 120.0
PIPELINE_LIMIT_S = 1800.0 if SOAK else 600.0

REPO = '''
from datetime import timedelta
from sdk import (Aggregate, Attribute, Entity, FeatureService, Field, LifetimeWindow, StreamFeatureView,
                 StreamSource)

user = Entity(name="user", join_keys=["user_id"])
clicks = StreamSource(
    name="clicks", topic="{topic}", timestamp_field="ts",
    schema=[Field("user_id", "string"), Field("ts", "timestamp"), Field("seq", "int64"), Field("amount", "int64")],
)
user_last = StreamFeatureView(
    name="user_last", source=clicks, entities=[user],
    features=[Attribute("seq", "int64", name="last_seq"), Attribute("amount", "int64", name="last_amount")],
)
user_counts = StreamFeatureView(
    name="user_counts", source=clicks, entities=[user], aggregation_interval=timedelta(hours=1),
    features=[Aggregate("seq", "count", LifetimeWindow(), name="events"),
              Aggregate("amount", "sum", LifetimeWindow(), name="amount_total")],
)
crash = FeatureService(name="crash", features=[user_last, user_counts])
'''
FEATURES = ["user_last__last_seq", "user_last__last_amount", "user_counts__events", "user_counts__amount_total"]


@dataclass(frozen=True, slots=True)
class Kill:
    component: str
    at_s: float  # since the first event was produced
    old_pid: int
    new_pid: int
    recovered_s: float  # SIGKILL until the restarted actor answered, its start-up done
    while_flowing: bool  # the platform had not yet taken in every event


@pytest.fixture(scope="module")
async def crash_deployment(kafka_config: BrokerConfig, kafka_broker: BrokerHandle, ray_cluster: None,
                           topic_prefix: str,
                           tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Deployment]:
    """A deployment of its own with a fixed gateway port, so a restarted feature server listens where
    the killed one did."""
    async with running_deployment(kafka_config, tmp_path_factory.mktemp("crash-state"), topic_prefix,
                                  gateway_port=free_ports(1)[0]) as running:
        yield running


def generate(count: int, start: datetime) -> list[dict[str, Any]]:
    """Seeded events: one per millisecond (so the last one produced for a user is its newest)."""
    rng = random.Random(SEED)
    return [{"user_id": f"u{rng.randrange(USERS)}", "ts": int((start + timedelta(milliseconds=i)).timestamp() * 1000),
             "seq": i, "amount": rng.randrange(1, 100)} for i in range(count)]


def reference(events: list[dict[str, Any]]) -> dict[str, list[int]]:
    """What the platform must serve for each user, computed from the event log in plain Python."""
    ref: dict[str, list[int]] = {}
    for e in events:  # in produced order, which is event-time order
        last = ref.get(e["user_id"], [0, 0, 0, 0])
        ref[e["user_id"]] = [e["seq"], e["amount"], last[2] + 1, last[3] + e["amount"]]
    return ref


async def kill_repeatedly(deployment: Deployment, instance: str, started: float,
                          taken_in: asyncio.Event) -> list[Kill]:
    """SIGKILL the instance's process `KILLS_PER_COMPONENT` times at seeded random moments; after each,
    wait until Ray has restarted it and its start-up is done."""
    name = f"{deployment.settings.topic_prefix}-{instance}"
    rng = random.Random(f"{SEED}-{instance}")
    kills = []
    for _ in range(KILLS_PER_COMPONENT):
        await asyncio.sleep(rng.uniform(*KILL_GAP_S))
        old = await deployment.pid_of(name, RESTART_LIMIT_S)
        assert old is not None, f"{instance} does not answer"
        flowing = not taken_in.is_set()
        os.kill(old, signal.SIGKILL)
        killed_at = time.monotonic()
        while (new := await deployment.pid_of(name, 1.0)) in (None, old):
            assert time.monotonic() - killed_at < RESTART_LIMIT_S, f"{instance} did not come back"
            await asyncio.sleep(0.1)
        assert new is not None
        kills.append(Kill(instance, round(killed_at - started, 2), old, new,
                          round(time.monotonic() - killed_at, 2), flowing))
        print(f"killed {instance} (pid {old}) at {kills[-1].at_s}s: back as pid {new} "
              f"after {kills[-1].recovered_s}s", flush=True)
    return kills


async def serve_meanwhile(url: str, key: str, stop: asyncio.Event) -> Counter[str]:
    """get-features for random users while components die: answers or errors, it must never hang."""
    rng = random.Random(SEED)
    outcomes: Counter[str] = Counter()
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        while not stop.is_set():
            try:
                status, _ = await get_features(http, url, WS, "crash", {"user_id": f"u{rng.randrange(USERS)}"}, key)
                outcomes[str(status)] += 1
            except aiohttp.ClientError:
                outcomes["connection refused or reset"] += 1
            except TimeoutError:
                outcomes["no answer in 30 s"] += 1
            await asyncio.sleep(0.5)
    return outcomes


async def wait_taken_in(url: str, key: str, users: list[str], offline_dir: Path, done: asyncio.Event) -> None:
    """Until every event is stored offline and counted online (no more, no fewer: then it stops)."""
    deadline = time.monotonic() + PIPELINE_LIMIT_S
    while time.monotonic() < deadline:
        await asyncio.sleep(2.0)
        with ParquetOfflineStore(offline_dir, readonly=True) as store:
            if store.scan(WS, "user_last").select(pl.len()).collect().item() < EVENTS:
                continue  # cheap to ask, and the offline store lags behind the online one anyway
        try:
            online = sum(v[2] or 0 for v in (await online_values(url, key, WS, "crash", users, BATCH_USERS)).values())
        except (AssertionError, aiohttp.ClientError):
            continue  # the feature server or the store is being restarted
        if online >= EVENTS:
            done.set()
            return
    raise AssertionError(f"not every event was taken in within {PIPELINE_LIMIT_S}s")


@pytest.mark.timeout(3600 if SOAK else 900)
async def test_exactly_once_while_components_are_killed(crash_deployment: Deployment, kafka_bootstrap: str,
                                                        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deployment = crash_deployment
    settings = deployment.settings
    url = deployment.gateway_url
    conn = operator_connection(deployment)
    key = await bootstrap_admin(conn, None)
    topic = f"{settings.topic_prefix}-clicks-{uuid.uuid4().hex[:6]}"
    repo_dir = tmp_path / "repo"
    repo_dir.mkdir()
    (repo_dir / "features.py").write_text(REPO.format(topic=topic))
    await apply(conn, repo_dir, WS, key)

    events = generate(EVENTS, datetime.now(UTC) - timedelta(hours=2))
    expected = reference(events)
    users = sorted(expected, key=lambda u: int(u[1:]))
    offline_dir = settings.store_dir("offline_store-0")

    started = time.monotonic()
    taken_in, stop_serving = asyncio.Event(), asyncio.Event()
    serving = asyncio.create_task(serve_meanwhile(url, key, stop_serving))
    pipeline = asyncio.create_task(wait_taken_in(url, key, users, offline_dir, taken_in))
    killers = [kill_repeatedly(deployment, instance, started, taken_in) for instance in KILLED]
    _, *kill_lists = await asyncio.gather(produce_fast(kafka_bootstrap, topic, events), *killers)
    produced_s = time.monotonic() - started
    await pipeline
    stop_serving.set()
    served = await serving
    took_s = time.monotonic() - started

    # every component is up again, and the values equal the reference: nothing lost, nothing twice
    assert all(h.get("alive", True) for h in (await deployment.health()).values())
    online = await online_values(url, key, WS, "crash", users, BATCH_USERS)
    assert online == {u: expected[u] for u in users}
    await _assert_offline_equals_reference(offline_dir, repo_dir, users, expected, len(events))
    await assert_every_data_message_audited_once(deployment, kafka_bootstrap, topic, len(events),
                                                  every_response_sent=False)
    assert not await read_topic(kafka_bootstrap, settings.topics.name(DEAD_LETTER)), "no record may be refused"

    kills = [k for kill_list in kill_lists for k in kill_list]
    assert len(kills) == KILLS_PER_COMPONENT * len(KILLED)
    assert all(k.new_pid != k.old_pid for k in kills)
    with capsys.disabled():  # the measured recovery times belong in the test run's output
        _report(tmp_path / "recovery.json", kills, served, produced_s, took_s)


async def _assert_offline_equals_reference(offline_dir: Path, repo_dir: Path, users: list[str],
                                           expected: dict[str, list[int]], count: int) -> None:
    with ParquetOfflineStore(offline_dir, readonly=True) as store:
        seqs = store.scan(WS, "user_last").select("last_seq").collect()["last_seq"].to_list()
    assert sorted(seqs) == list(range(count)), "offline rows: every event exactly once (no gap, no duplicate)"
    at = datetime.now(UTC)  # one fixed request time for every user; every event is older
    with OfflineFeatures.open(offline_dir, load_repo(repo_dir), WS) as offline:
        table = offline.get_features_for_events(pl.DataFrame({"user_id": users, "ts": [at] * len(users)}),
                                                "crash", "ts")
    got = {row["user_id"]: [row[f] for f in FEATURES] for row in table.to_dicts()}
    assert got == {u: expected[u] for u in users}


def _report(path: Path, kills: list[Kill], served: Counter[str], produced_s: float, took_s: float) -> None:
    by_component: dict[str, dict[str, Any]] = {}
    for instance in KILLED:
        times = [k.recovered_s for k in kills if k.component == instance]
        by_component[instance] = {"kills": len(times), "recovery_s": times,
                                  "median_s": round(statistics.median(times), 2), "max_s": max(times)}
    summary = {"events": EVENTS, "kills": len(kills), "kills_while_flowing": sum(k.while_flowing for k in kills),
               "produced_in_s": round(produced_s, 1), "all_taken_in_after_s": round(took_s, 1),
               "get_features_during_run": dict(served), "components": by_component,
               "kill_log": [asdict(k) for k in kills]}
    path.write_text(json.dumps(summary, indent=2))
    print(f"\ncrash test: {EVENTS} events, {len(kills)} kills ({summary['kills_while_flowing']} while events "
          f"were flowing), all taken in after {took_s:.1f}s; get-features meanwhile: {dict(served)}")
    for instance, figures in by_component.items():
        print(f"  {instance:<18} kills={figures['kills']}  back after {figures['recovery_s']} s "
              f"(median {figures['median_s']} s, max {figures['max_s']} s)")
    print(f"  written to {path}")
