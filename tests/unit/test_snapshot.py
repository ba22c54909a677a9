"""Restoring the registry from a snapshot plus the topic's tail equals replaying the topic from offset 0."""

from __future__ import annotations

from typing import Any

import pytest

from actors.bus import Outgoing
from actors.follower import RegistryFollower
from actors.memory_bus import MemoryBus
from events import control
from events.access import PrincipalKind, PrincipalSpec, Role, RoleGrant, new_api_key
from events.codec import CODEC
from events.errors import DecodeError
from events.planes import Component
from events.registry import Registry
from events.snapshot import decode_snapshot, encode_snapshot
from events.topics import CONTROL_EVENTS, TopicNames
from tests.unit.fixtures import ADMIN, applied_events

NAMES = TopicNames("t")
ALICE = PrincipalSpec("sa-alice", PrincipalKind.SERVICE_ACCOUNT, "alice", "", "admin")


def _history() -> list[tuple[str, Any]]:
    admin_key, alice_key = new_api_key("admin", "", "operator"), new_api_key("sa-alice", "", "admin")
    return [
        ("", control.PrincipalCreated(ADMIN)), ("", control.ApiKeyIssued(admin_key.spec)),
        ("", control.CommandSucceeded("c1")),
        *(("prod", e) for e in applied_events()),
        # Each command's events close with its outcome, as the control plane writes them (one transaction):
        # the follower publishes whole groups, so the cuts fall between groups.
        ("dev", control.WorkspaceCreated("dev", False)), ("", control.CommandSucceeded("c2")),
        ("", control.PrincipalCreated(ALICE)), ("", control.ApiKeyIssued(alice_key.spec)),
        ("", control.CommandSucceeded("c3")),
        ("prod", control.RoleAssigned(RoleGrant("sa-alice", "prod", Role.CONSUMER))),
        ("", control.CommandSucceeded("c4")),
        ("dev", control.RoleAssigned(RoleGrant("sa-alice", "dev", Role.OWNER))), ("", control.CommandSucceeded("c5")),
        ("prod", control.RoleUnassigned(RoleGrant("sa-alice", "prod", Role.CONSUMER))),
        ("", control.CommandSucceeded("c6")),
        ("", control.ApiKeyRevoked(alice_key.spec.key_id)), ("", control.CommandSucceeded("c7")),
        ("", control.CommandRejected("c9", "no")),
        ("prod", control.RepoRejected("a9", ("bad",))),
    ]


async def _publish(bus: MemoryBus, events: list[tuple[str, Any]]) -> None:
    await bus.send([Outgoing(NAMES.name(CONTROL_EVENTS), CODEC.encode(
        CODEC.message(body, producer=Component.CONTROL_PLANE, workspace=ws))) for ws, body in events])


@pytest.mark.parametrize("cut", [0, 3, 9, 14, 18, 999])
async def test_snapshot_plus_tail_equals_replay_from_zero(cut: int) -> None:
    history = _history()
    bus = MemoryBus()
    await _publish(bus, history[:cut])
    first = RegistryFollower(bus, NAMES)
    await first.start()
    at_cut = await first.sync(2)
    snapshot, positions = encode_snapshot(at_cut), first.folded_positions()
    await first.close()
    await _publish(bus, history[cut:])

    from_zero = RegistryFollower(bus, NAMES)
    resumed = RegistryFollower(bus, NAMES, registry=decode_snapshot(snapshot), positions=positions)
    for follower in (from_zero, resumed):
        await follower.start()
    assert await resumed.sync(2) == await from_zero.sync(2)
    assert (await resumed.sync(2)).workspaces["dev"].live is False
    for follower in (from_zero, resumed):
        await follower.close()


def test_a_snapshot_round_trips_the_whole_registry() -> None:
    registry = Registry().apply_all(
        CODEC.message(body, producer=Component.CONTROL_PLANE, workspace=ws) for ws, body in _history())
    assert decode_snapshot(encode_snapshot(registry)) == registry


def test_garbage_is_not_a_snapshot() -> None:
    with pytest.raises(DecodeError):
        decode_snapshot(b"\x93\x01")
