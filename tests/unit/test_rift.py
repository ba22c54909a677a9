from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import msgpack
import pytest

from actors.components.rift import parse_record, parse_timestamp, project, projects_attributes
from events.codec import CODEC
from events.errors import InvalidRequest
from events.planes import Component
from events.registry import Registry
from events.specs import AggregateSpec, FeatureViewKind, RecordFormat, TimeWindowSpec
from tests.unit.fixtures import SOURCE, VIEW, applied_events


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
