"""Audit records of answers from the serving cache: spooled at once (no wait for Kafka), shipped in the
background, kept while the broker is away, shipped by the next incarnation after a kill, bounded."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from actors.audit_shipper import AuditShipper
from actors.auditing import make_record
from actors.group_commit import GroupCommit
from actors.memory_bus import MemoryBus, MemoryProducer
from events.audit import AuditRecord
from events.codec import CODEC
from events.envelope import new_message
from events.errors import BrokerUnavailable
from events.flows import Flow
from events.planes import Component
from events.topics import AUDIT, TopicNames
from stores.audit_spool import AuditSpool, InMemoryAuditSpool, LmdbAuditSpool
from tests.unit.test_detached import AwayBroker

NAMES = TopicNames("t")
FAST_RETRY = (0.01,)


def _f4(n: int) -> AuditRecord:
    envelope = new_message(None, type_tag="GetFeaturesRequest", schema_version=1, producer=Component.CUSTOMER_APP,
                           workspace="prod", principal="model").envelope
    return make_record(Flow.F4, Component.FEATURE_SERVER, Component.CUSTOMER_APP, envelope, subject=f"s{n}",
                       message_count=1, row_count=1, byte_count=10, digest="d")


def _audited(bus: MemoryBus) -> list[str]:
    return [CODEC.decode(r.value).body.subject for r in bus.records(NAMES.name(AUDIT))]


def _shipper(spool: AuditSpool, producer: AwayBroker | MemoryProducer, **kwargs: int) -> AuditShipper:
    commits = GroupCommit(producer, CODEC, NAMES, Component.FEATURE_SERVER)
    return AuditShipper(spool, lambda: commits, CODEC, Component.FEATURE_SERVER, retry_s=FAST_RETRY, **kwargs)


async def _until(check: Callable[[], bool], turns: int = 500) -> None:
    for _ in range(turns):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the shipper did not get there")


async def test_audit_returns_at_once_while_the_broker_is_away_and_everything_ships_once_when_it_is_back() -> None:
    bus = MemoryBus()
    producer = AwayBroker(bus)
    spool = InMemoryAuditSpool()
    shipper = _shipper(spool, producer)
    shipper.start()
    for n in range(5):
        shipper.audit([_f4(n)])  # no await: nothing to wait for
        await asyncio.sleep(0)
    assert _audited(bus) == []
    assert spool.count() == 5  # written down, not yet in Kafka
    producer.back.set()
    await _until(lambda: spool.count() == 0)
    assert sorted(_audited(bus)) == [f"s{n}" for n in range(5)]
    await shipper.close()


async def test_a_batch_kafka_refused_stays_spooled_and_goes_again() -> None:
    bus = MemoryBus()
    bus.fail_on_commit.extend([True, True])
    spool = InMemoryAuditSpool()
    shipper = _shipper(spool, MemoryProducer(bus.log, bus.fail_on_commit))
    shipper.start()
    shipper.audit([_f4(1), _f4(2)])
    await _until(lambda: spool.count() == 0)
    assert _audited(bus) == ["s1", "s2"]
    assert shipper.shipped == 2
    await shipper.close()


async def test_the_next_incarnation_ships_what_a_killed_one_left_in_the_spool(tmp_path: Path) -> None:
    bus = MemoryBus()
    away = AwayBroker(bus)
    with LmdbAuditSpool(tmp_path / "spool") as spool:
        killed = _shipper(spool, away)
        killed.start()
        killed.audit([_f4(1)])
        killed.audit([_f4(2)])
        await asyncio.sleep(0.05)
        task = killed._task  # what a SIGKILL does: the task is gone, nothing is flushed or sent
        assert task is not None
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert _audited(bus) == []
    with LmdbAuditSpool(tmp_path / "spool") as spool:
        restarted = _shipper(spool, MemoryProducer(bus.log, bus.fail_on_commit))
        restarted.start()
        await _until(lambda: spool.count() == 0)
        await restarted.close()
    assert _audited(bus) == ["s1", "s2"]


async def test_a_full_spool_refuses_more_with_broker_unavailable() -> None:
    bus = MemoryBus()
    spool = InMemoryAuditSpool()
    shipper = _shipper(spool, AwayBroker(bus), max_pending=2)  # not started: nothing leaves the spool
    shipper.audit([_f4(1), _f4(2)])
    with pytest.raises(BrokerUnavailable, match="audit records are waiting for Kafka"):
        shipper.audit([_f4(3)])
    assert spool.count() == 2


async def test_close_lets_the_shipper_empty_the_spool_first() -> None:
    bus = MemoryBus()
    spool = InMemoryAuditSpool()
    shipper = _shipper(spool, MemoryProducer(bus.log, bus.fail_on_commit))
    shipper.start()
    shipper.audit([_f4(n) for n in range(3)])
    await shipper.close()
    assert spool.count() == 0
    assert len(_audited(bus)) == 3
