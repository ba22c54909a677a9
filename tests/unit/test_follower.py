"""The registry follower publishes only whole applies: a poll (at most 1000 records) that ends inside one
apply's events leaves readers on the state before it until the apply's closing event arrives."""

from __future__ import annotations

from typing import Any

from actors.bus import Outgoing
from actors.follower import RegistryFollower, opens_group
from actors.memory_bus import MemoryBus
from events import control
from events.codec import CODEC
from events.jobs import JobUpdated
from events.planes import Component
from events.specs import EntitySpec
from events.topics import CONTROL_EVENTS, TopicNames

NAMES = TopicNames("t")
TOPIC = NAMES.name(CONTROL_EVENTS)
BIG = 1500  # more objects than one poll returns


def _apply(apply_id: str, names: list[str]) -> list[Any]:
    return [*(control.EntityApplied(EntitySpec(n, ("id",))) for n in names), control.RepoApplied(apply_id, len(names))]


async def _publish(bus: MemoryBus, bodies: list[Any]) -> None:
    await bus.send([Outgoing(TOPIC, CODEC.encode(CODEC.message(b, producer=Component.CONTROL_PLANE,
                                                                  workspace="prod"))) for b in bodies])


async def test_a_poll_boundary_inside_an_apply_publishes_nothing_of_it() -> None:
    bus = MemoryBus()
    small = [control.WorkspaceCreated("prod", True), *_apply("a1", ["user"])]
    await _publish(bus, small + _apply("a2", [f"e{i}" for i in range(BIG)]))
    follower = RegistryFollower(bus, NAMES)
    consumer = await bus.reader([TOPIC], "earliest")

    await follower._poll_once(consumer)  # 1000 records: a1 whole, a2 cut off
    assert follower.registry.applied == frozenset({"a1"})
    assert list(follower.registry.workspace("prod").entities) == ["user"]
    assert follower.folded_positions() == {(TOPIC, 0): len(small)}  # sync() waits for the rest

    await follower._poll_once(consumer)  # the rest of a2 and its RepoApplied
    assert follower.registry.applied == frozenset({"a1", "a2"})
    assert len(follower.registry.workspace("prod").entities) == BIG + 1
    assert follower.folded_positions() == {(TOPIC, 0): len(small) + BIG + 1}


async def test_an_empty_poll_inside_an_apply_does_not_advance_the_positions() -> None:
    bus = MemoryBus()
    await _publish(bus, [control.WorkspaceCreated("prod", True), *_apply("a1", [f"e{i}" for i in range(BIG)])])
    follower = RegistryFollower(bus, NAMES)
    consumer = await bus.reader([TOPIC], "earliest")
    await follower._poll_once(consumer)
    assert follower.registry.workspaces == {}
    assert follower.folded_positions() == {}
    await follower._poll_once(consumer)
    assert len(follower.registry.workspace("prod").entities) == BIG


def test_groups_close_with_their_outcome_and_job_records_stand_alone() -> None:
    job_record: Any = object.__new__(JobUpdated)
    assert opens_group(control.EntityApplied(EntitySpec("u", ("id",))), False)
    assert not opens_group(control.RepoApplied("a", 1), True)
    assert not opens_group(control.RepoRejected("a", ("no",)), False)
    assert not opens_group(control.CommandSucceeded("c"), True)
    assert not opens_group(job_record, False)
    assert opens_group(job_record, True)  # inside a group it stays open
