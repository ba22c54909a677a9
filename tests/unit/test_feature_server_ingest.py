"""The feature server's ingest decision: a development workspace stores definitions only, so it refuses
pushed records before anything is checked or sent; a live workspace takes them."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from actors.components.feature_server import FeatureServer
from actors.memory_bus import MemoryBus
from events import control
from events.codec import CODEC
from events.errors import InvalidRequest
from events.planes import Component
from events.registry import Registry
from events.specs import PushSourceSpec
from events.topics import INGEST, TopicNames
from tests.unit.fixtures import REPO, SOURCE, VIEW, applied_events

PUSH_REPO = replace(REPO, push_sources=(PushSourceSpec("pushed", "ts", SOURCE.schema),),
                    feature_views=(VIEW, replace(VIEW, name="pushed_last", source="pushed")))
RECORD = {"user_id": "u1", "ts": "2026-11-26T09:00:00Z", "amount": 3.0, "merchant": "m", "count": 2,
          "online": True}


def _server(live: bool, bus: MemoryBus | None = None) -> FeatureServer:
    bus = bus or MemoryBus()
    server = FeatureServer(bus, TopicNames("t"), "fs-0", read_timeout_s=1.0)
    events = [control.WorkspaceCreated("prod", live) if isinstance(e, control.WorkspaceCreated) else e
              for e in applied_events(PUSH_REPO)]
    server.follower.registry = Registry().apply_all(
        CODEC.message(e, producer=Component.CONTROL_PLANE, workspace="prod") for e in events)
    return server


async def test_a_development_workspace_refuses_ingest_and_sends_nothing() -> None:
    bus = MemoryBus()
    with pytest.raises(InvalidRequest, match="workspace 'prod' is a development workspace: it does not ingest"):
        await _server(live=False, bus=bus).ingest("prod", {"pushed": [RECORD]}, principal="admin",
                                                  payload=json.dumps(RECORD).encode(), dry_run=False)
    assert bus.records(TopicNames("t").name(INGEST)) == []


async def test_a_live_workspace_plans_the_same_ingest() -> None:
    plan = await _server(live=True).ingest("prod", {"pushed": [RECORD]}, principal="admin",
                                           payload=json.dumps(RECORD).encode(), dry_run=True)
    assert plan.errors == []
    assert list(plan.payloads) == ["pushed"]
