from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import msgpack
import pytest

from actors.bus import Record
from actors.components.rift import RiftWorker, parse_record, parse_timestamp, project, projects_attributes
from actors.follower import RegistryFollower
from actors.memory_bus import MemoryBus
from actors.runtime import Decision, Inbound
from events import control
from events.codec import CODEC
from events.data import IngestRecords
from events.errors import InvalidRequest
from events.planes import Component
from events.registry import Registry
from events.specs import AggregateSpec, FeatureViewKind, PushSourceSpec, RecordFormat, TimeWindowSpec
from events.topics import INGEST, TopicNames
from tests.unit.fixtures import REPO, SOURCE, VIEW, applied_events

NAMES = TopicNames("t")


def _record(**fields: object) -> bytes:
    base = {"user_id": "u1", "ts": "2026-11-26T09:00:00Z", "amount": 3, "merchant": "m", "count": 2,
            "online": True}
    return json.dumps({**base, **fields}).encode()


def test_parse_types_fields_and_widens_ints_to_float() -> None:
    fields = parse_record(SOURCE, _record())
    assert fields["amount"] == 3.0
    assert isinstance(fields["amount"], float)
    assert fields["ts"] == "2026-11-26T09:00:00+00:00"
    assert fields["online"] is True


def test_parse_accepts_ingest_wrapping_and_msgpack() -> None:
    wrapped = json.dumps({"record": json.loads(_record(user_id="u9"))}).encode()
    assert parse_record(SOURCE, wrapped)["user_id"] == "u9"
    packed = msgpack.packb(json.loads(_record(user_id="u8")))
    assert parse_record(replace(SOURCE, record_format=RecordFormat.MSGPACK), packed)["user_id"] == "u8"


@pytest.mark.parametrize(("payload", "reason"), [
    (b"{not json", "not json"),
    (b"[1, 2]", "must be an object"),
    (_record(amount="12"), "field 'amount' is str, expected float64"),
    (_record(count=True), "field 'count' is bool, expected int64"),
    (_record(ts=None), "timestamp field 'ts' is missing"),
    (_record(ts="yesterday"), "not a timestamp"),
])
def test_bad_records_say_why(payload: bytes, reason: str) -> None:
    with pytest.raises(InvalidRequest, match=reason):
        parse_record(SOURCE, payload)


def test_epoch_seconds_and_millis_are_the_same_instant() -> None:
    expected = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    assert parse_timestamp("ts", expected.timestamp()) == expected
    assert parse_timestamp("ts", int(expected.timestamp() * 1000)) == expected
    assert parse_timestamp("ts", "2026-11-26T09:00:00") == expected


def test_project_keeps_the_declared_features_under_their_names() -> None:
    registry = Registry().apply_all(
        CODEC.message(e, producer=Component.CONTROL_PLANE, workspace="prod")
        for e in applied_events())
    ws = registry.workspace("prod")
    row = project(ws, VIEW, SOURCE, parse_record(SOURCE, _record(amount=9.5)))
    assert row.entity_key == ("u1",)
    assert row.values == {"last_amount": 9.5, "last_merchant": "m"}
    assert row.event_time == datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    with pytest.raises(InvalidRequest, match="join key"):
        project(ws, VIEW, SOURCE, parse_record(SOURCE, _record(user_id=None)))


def test_views_with_aggregates_or_transformations_are_not_projected_as_attributes() -> None:
    assert projects_attributes(VIEW)
    assert not projects_attributes(replace(VIEW, kind=FeatureViewKind.BATCH))
    assert not projects_attributes(replace(VIEW, aggregates=(AggregateSpec("amount_sum_1h_continuous", "amount",
                                                                             "sum", TimeWindowSpec(3600)),)))


PUSHED = PushSourceSpec("pushed", "ts", SOURCE.schema)
PUSH_REPO = replace(REPO, push_sources=(PUSHED,),
                    feature_views=(VIEW, replace(VIEW, name="pushed_last", source="pushed")))


def _rift(live: bool) -> RiftWorker:
    """A worker whose read model holds REPO plus a push-fed view, in a live or a development workspace."""
    events = [control.WorkspaceCreated("prod", live) if isinstance(e, control.WorkspaceCreated) else e
              for e in applied_events(PUSH_REPO)]
    registry = Registry().apply_all(CODEC.message(e, producer=Component.CONTROL_PLANE, workspace="prod")
                                    for e in events)
    return RiftWorker(NAMES, RegistryFollower(MemoryBus(), NAMES, registry=registry))


def _written(decision: Decision) -> list[str]:
    return [type(o.message.body).__name__ for o in decision.outputs]


@pytest.mark.parametrize("live", [True, False])
async def test_development_workspaces_stream_sources_are_not_read(live: bool) -> None:
    rift = _rift(live)
    assert ("transactions" in rift.subscriptions()) is live
    raw = Inbound(Record("transactions", 0, 7, None, _record(), 0), None)
    decision = await rift.handle([raw])
    assert _written(decision) == (["WriteOnlineRows", "WriteOfflineRows"] if live else [])


@pytest.mark.parametrize("live", [True, False])
async def test_development_workspaces_push_sources_are_not_materialized(live: bool) -> None:
    rift = _rift(live)
    pushed = CODEC.message(IngestRecords("r1", "pushed", (_record(),)), producer=Component.FEATURE_SERVER,
                           workspace="prod")
    decision = await rift.handle([Inbound(Record(NAMES.name(INGEST), 0, 3, None, CODEC.encode(pushed), 0), pushed)])
    assert _written(decision) == (["WriteOnlineRows", "WriteOfflineRows"] if live else [])
