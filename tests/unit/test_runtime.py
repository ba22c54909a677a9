"""The component runtime over the in-memory bus: outputs, audits and offsets commit together."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from actors.bus import Outgoing
from actors.components.control_plane import ControlPlane
from actors.components.online_store import OnlineStoreShard
from actors.components.rift import RiftWorker
from actors.follower import RegistryFollower
from actors.memory_bus import MemoryBus
from actors.runtime import ComponentRuntime
from events import control
from events.access import is_denial, new_api_key
from events.audit import AuditRecord
from events.codec import CODEC
from events.data import FeatureRow, Lookup, ReadOnlineRows, RecordDeadLettered, SourceRange, WriteOnlineRows
from events.flows import Flow
from events.planes import Component
from events.topics import (
    AUDIT,
    CONTROL_COMMANDS,
    CONTROL_EVENTS,
    DEAD_LETTER,
    OFFLINE_WRITES,
    ONLINE_CHANGELOG,
    ONLINE_READS,
    ONLINE_REPLIES,
    ONLINE_WRITES,
    TopicNames,
)
from stores.online import InMemoryOnlineStore
from tests.unit.fixtures import ADMIN, REPO, applied_events

NAMES = TopicNames("t")


def _bodies(bus: MemoryBus, topic: Any) -> list[Any]:
    return [CODEC.decode(r.value).body for r in bus.records(NAMES.name(topic))]


async def _publish_repo(bus: MemoryBus) -> None:
    events = applied_events()
    await bus.send([Outgoing(NAMES.name(CONTROL_EVENTS), CODEC.encode(
        CODEC.message(e, producer=Component.CONTROL_PLANE, workspace="prod"))) for e in events])


async def _rift(bus: MemoryBus) -> tuple[ComponentRuntime, RegistryFollower]:
    follower = RegistryFollower(bus, NAMES)
    await follower.start()
    await follower.wait_for(lambda r: "a1" in r.applied, 2)
    runtime = ComponentRuntime(bus, NAMES, RiftWorker(NAMES, follower), instance_id="rift-0", group_id="t.rift")
    await runtime.start()
    return runtime, follower


async def _control_plane(bus: MemoryBus) -> tuple[ComponentRuntime, RegistryFollower]:
    follower = RegistryFollower(bus, NAMES)
    await follower.start()
    runtime = ComponentRuntime(bus, NAMES, ControlPlane(NAMES, follower), instance_id="cp-0", group_id="t.cp")
    await runtime.start()
    return runtime, follower


async def test_control_plane_publishes_definitions_and_commits_its_offset() -> None:
    bus = MemoryBus()
    key = new_api_key("admin", "", "operator")
    bootstrap = CODEC.message(control.BootstrapAdmin("c1", ADMIN, key.spec), producer=Component.OPERATOR,
                              workspace="")
    command = CODEC.message(control.ApplyRepo("a1", REPO), producer=Component.FEATURE_SERVER, workspace="prod",
                            principal="admin")
    await bus.send([Outgoing(NAMES.name(CONTROL_COMMANDS), CODEC.encode(m)) for m in (bootstrap, command)])
    runtime, follower = await _control_plane(bus)
    assert await runtime.step() == 2  # the apply sees the admin created earlier in the same batch
    events = bus.records(NAMES.name(CONTROL_EVENTS))
    names = [type(CODEC.decode(r.value).body).__name__ for r in events]
    assert names[:3] == ["PrincipalCreated", "ApiKeyIssued", "CommandSucceeded"]
    assert names[-1] == "RepoApplied"
    audits = _bodies(bus, AUDIT)
    assert [a.flow for a in audits] == [Flow.F8] * len(events)
    assert sorted(a.first_offset for a in audits) == [r.offset for r in events]
    assert bus.committed("t.cp") == {(NAMES.name(CONTROL_COMMANDS), 0): 2}
    applied = [r for r in events if CODEC.decode(r.value).envelope.causation_id == command.envelope.event_id]
    assert len(applied) == len(events) - 3
    await follower.close()


async def test_control_plane_refuses_an_apply_by_a_stranger() -> None:
    bus = MemoryBus()
    command = CODEC.message(control.ApplyRepo("a1", REPO), producer=Component.FEATURE_SERVER, workspace="prod",
                            principal="mallory")
    await bus.send([Outgoing(NAMES.name(CONTROL_COMMANDS), CODEC.encode(command))])
    runtime, follower = await _control_plane(bus)
    assert await runtime.step() == 1
    (rejected,) = _bodies(bus, CONTROL_EVENTS)
    assert isinstance(rejected, control.RepoRejected)
    assert "'mallory' may not apply" in rejected.errors[0]
    assert is_denial(rejected.errors[0])
    await follower.close()


async def test_rift_writes_valid_records_dead_letters_bad_ones_and_audits_all() -> None:
    bus = MemoryBus()
    await _publish_repo(bus)
    good = {"user_id": "u1", "ts": "2026-11-26T09:00:00Z", "amount": 5.0, "merchant": "m"}
    payloads = [json.dumps(good).encode(), b"{broken", json.dumps({**good, "amount": "x"}).encode()]
    await bus.send([Outgoing("transactions", p) for p in payloads])
    runtime, follower = await _rift(bus)
    assert await runtime.step() == 3
    writes = _bodies(bus, ONLINE_WRITES)
    assert len(writes) == 1
    assert isinstance(writes[0], WriteOnlineRows)
    assert writes[0].rows[0].values == {"last_amount": 5.0, "last_merchant": "m"}
    assert len(_bodies(bus, OFFLINE_WRITES)) == 1
    dead = _bodies(bus, DEAD_LETTER)
    assert [d.payload for d in dead] == payloads[1:]
    assert all(isinstance(d, RecordDeadLettered) for d in dead)
    audits: list[AuditRecord] = _bodies(bus, AUDIT)
    assert sorted(a.flow for a in audits) == [Flow.F5, Flow.F7, Flow.F7, Flow.F7, Flow.F7]
    f5 = next(a for a in audits if a.flow is Flow.F5)
    assert (f5.message_count, f5.first_offset, f5.last_offset) == (3, 0, 2)
    assert bus.committed("t.rift") == {("transactions", 0): 3}
    await follower.close()


async def test_a_failed_commit_rewinds_and_replays_without_duplicates() -> None:
    bus = MemoryBus()
    await _publish_repo(bus)
    good = {"user_id": "u1", "ts": "2026-11-26T09:00:00Z", "amount": 5.0, "merchant": "m"}
    await bus.send([Outgoing("transactions", json.dumps(good).encode())])
    runtime, follower = await _rift(bus)
    bus.fail_on_commit.append(True)
    with pytest.raises(ConnectionError):
        await runtime.step()
    assert _bodies(bus, ONLINE_WRITES) == []
    assert _bodies(bus, AUDIT) == []
    assert await runtime.step() == 1
    assert len(_bodies(bus, ONLINE_WRITES)) == 1
    assert len([a for a in _bodies(bus, AUDIT) if a.flow is Flow.F5]) == 1
    await follower.close()


async def test_online_store_answers_reads_after_writes_in_the_same_batch() -> None:
    bus = MemoryBus()
    await _publish_repo(bus)
    good = {"user_id": "u1", "ts": "2026-11-26T09:00:00Z", "amount": 5.0, "merchant": "m"}
    await bus.send([Outgoing("transactions", json.dumps(good).encode())])
    rift, follower = await _rift(bus)
    await rift.step()
    read = CODEC.message(ReadOnlineRows("r1", (Lookup("user_last", ("u1",)), Lookup("user_last", ("u2",))), "fs-0"),
                         producer=Component.FEATURE_SERVER, workspace="prod")
    await bus.send([Outgoing(NAMES.name(ONLINE_READS), CODEC.encode(read))])
    shard = ComponentRuntime(bus, NAMES, OnlineStoreShard(NAMES, InMemoryOnlineStore()), instance_id="os-0",
                             group_id="t.os")
    await shard.start()
    assert await shard.step() == 2
    (reply,) = _bodies(bus, ONLINE_REPLIES)
    assert reply.request_id == "r1"
    assert reply.rows[0].row.values["last_amount"] == 5.0
    assert reply.rows[1] is None
    (changelog,) = _bodies(bus, ONLINE_CHANGELOG)  # the write of this batch, for read-after-write
    assert (changelog.feature_view, changelog.row_count) == ("user_last", 1)
    assert [a.flow for a in _bodies(bus, AUDIT)].count(Flow.F3) == 2  # the reply and the changelog entry
    await follower.close()


async def test_undecodable_platform_message_goes_to_dead_letter() -> None:
    bus = MemoryBus()
    await bus.send([Outgoing(NAMES.name(CONTROL_COMMANDS), b"\x93garbage")])
    runtime, follower = await _control_plane(bus)
    assert await runtime.step() == 1
    await follower.close()
    (dead,) = _bodies(bus, DEAD_LETTER)
    assert dead.payload == b"\x93garbage"
    assert "not a featureplane message" in dead.reason
    assert bus.committed("t.cp") == {(NAMES.name(CONTROL_COMMANDS), 0): 1}


async def test_a_write_the_store_refuses_is_dead_lettered_and_the_rest_applied() -> None:
    bus = MemoryBus()
    rows = [FeatureRow(("u1",), datetime(2026, 1, 1, tzinfo=UTC), {"last_amount": 1.0}),
            FeatureRow(("x" * 600,), datetime(2026, 1, 1, tzinfo=UTC), {"last_amount": 2.0})]  # key too long
    writes = [CODEC.message(WriteOnlineRows("user_last", (row,), SourceRange("transactions", 0, i, i)),
                            producer=Component.RIFT, workspace="prod") for i, row in enumerate(rows)]
    await bus.send([Outgoing(NAMES.name(ONLINE_WRITES), CODEC.encode(w)) for w in writes])
    store = InMemoryOnlineStore()
    shard = ComponentRuntime(bus, NAMES, OnlineStoreShard(NAMES, store), instance_id="os-0", group_id="t.os")
    await shard.start()
    assert await shard.step() == 2
    (stored,) = store.read("prod", [Lookup("user_last", ("u1",))])
    assert stored is not None
    assert stored.written_by == writes[0].envelope.event_id
    (dead,) = _bodies(bus, DEAD_LETTER)
    assert dead.source.first_offset == 1
    assert "key" in dead.reason
    assert bus.committed("t.os") == {(NAMES.name(ONLINE_WRITES), 0): 2}


async def test_registry_follower_sync_waits_for_every_committed_event() -> None:
    bus = MemoryBus()
    follower = RegistryFollower(bus, NAMES)
    await follower.start()
    await _publish_repo(bus)
    registry = await follower.sync(2)  # no sleep: sync itself must wait for the fold
    assert "a1" in registry.applied
    assert registry.workspace("prod").service("fraud").feature_views == ("user_last",)
    await follower.close()
