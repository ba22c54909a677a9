"""Transformations at materialization time: the pure module and Rift applying it to a batch."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.bus import Record
from actors.components.ingest import plan_ingest
from actors.components.rift import RiftWorker, parse_record
from actors.components.transform import source_frame, transform_batch, transform_each, transform_records
from actors.follower import RegistryFollower
from actors.memory_bus import MemoryBus
from actors.runtime import Inbound
from engine import aggregator_for
from events.codec import CODEC
from events.data import RecordDeadLettered, WriteOfflineRows, WriteOnlineRows, WriteTiles
from events.planes import Component
from events.registry import Registry, Workspace
from events.specs import (
    AggregateSpec,
    DType,
    EntitySpec,
    FeatureServiceSpec,
    FeatureSpec,
    FeatureViewSpec,
    PushSourceSpec,
    RepoSpec,
    TimeWindowSpec,
)
from events.topics import TopicNames
from sdk.transforms import compile_transformation, polars_type
from tests.unit.fixtures import REPO, SOURCE, applied_events

NAMES = TopicNames("t")
T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
SQL = "SELECT user_id, ts, amount * 2 + 1 AS doubled, upper(merchant) AS shop FROM source WHERE amount > 0"


def _transformation(value: Any) -> Any:
    compiled = compile_transformation(value, {f.name: polars_type(f.dtype) for f in SOURCE.schema})
    assert not compiled.errors, compiled.errors
    return compiled.spec


DOUBLED = FeatureViewSpec(
    "user_doubled", ("user",), "transactions",
    (FeatureSpec("doubled", "doubled", DType.FLOAT64), FeatureSpec("shop", "shop", DType.STRING)),
    transformation=_transformation(SQL))
# A cast that fails at run time on a merchant that is not a number: per-record failures.
CODED = FeatureViewSpec(
    "merchant_code", ("user",), "transactions", (FeatureSpec("code", "code", DType.INT64),),
    transformation=_transformation("SELECT user_id, ts, CAST(merchant AS BIGINT) AS code FROM source"))
SPEND = FeatureViewSpec(
    "user_spend", ("user",), "transactions", (), online=True, offline=False,
    aggregates=(AggregateSpec("big_sum_1h", "big", "sum", TimeWindowSpec(3600)),),
    transformation=_transformation([pl.col("amount").clip(0, 10).alias("big")]))


def _workspace(*views: FeatureViewSpec) -> Workspace:
    repo = replace(REPO, feature_views=(*REPO.feature_views, *views),
                   feature_services=(FeatureServiceSpec("fraud", ("user_last",)),))
    registry = Registry().apply_all(CODEC.message(e, producer=Component.CONTROL_PLANE, workspace="prod")
                                    for e in applied_events(repo))
    return registry.workspace("prod")


def _fields(user: str = "u1", amount: float = 3.0, merchant: str = "m", minutes: int = 0) -> dict[str, Any]:
    payload = json.dumps({"user_id": user, "ts": (T0 + timedelta(minutes=minutes)).isoformat(), "amount": amount,
                          "merchant": merchant, "count": 1, "online": True}).encode()
    return parse_record(SOURCE, payload)


def test_the_source_frame_is_typed_by_the_schema_with_utc_datetimes() -> None:
    frame = source_frame(SOURCE, [_fields(), {"user_id": "u2", "ts": T0.isoformat()}])
    assert frame.schema["ts"] == pl.Datetime("us", "UTC")
    assert frame.schema["count"] == pl.Int64()
    assert frame["ts"].to_list() == [T0, T0]
    assert frame["amount"].to_list() == [3.0, None]


def test_sql_output_rows_project_into_feature_rows() -> None:
    ws = _workspace(DOUBLED)
    rows = transform_batch(ws, SOURCE, [DOUBLED], [_fields(amount=4.0, merchant="shoe"), _fields(amount=-1.0)])
    assert len(rows) == 1  # the WHERE clause filtered the second record: not an error
    view, row, fields = rows[0]
    assert view is DOUBLED
    assert row.entity_key == ("u1",)
    assert row.event_time == T0
    assert row.values == {"doubled": 9.0, "shop": "SHOE"}
    assert fields["ts"] == T0.isoformat()  # timestamps as featureplane keeps them: ISO text in UTC


def test_a_failing_record_is_named_and_the_others_still_transform() -> None:
    ws = _workspace(CODED)
    outcomes = transform_each(ws, SOURCE, [CODED], [_fields(merchant="12"), _fields(merchant="shoe")])
    assert [r.values for _, r, _ in outcomes[0]] == [{"code": 12}]  # type: ignore[union-attr]
    assert isinstance(outcomes[1], str)
    assert "merchant_code" in outcomes[1]
    assert "conversion" in outcomes[1]


def test_batch_falls_back_to_records_and_a_bad_record_adds_nothing_anywhere() -> None:
    ws = _workspace(DOUBLED, CODED)
    readers = [(ws, SOURCE, [DOUBLED, CODED])]
    good, bad = _fields(user="a", merchant="7"), _fields(user="b", merchant="shoe")
    rows, failed = transform_records(readers, [[good], [bad], [good]])
    assert set(failed) == {1}
    assert sorted((v.name, r.entity_key) for _, v, r, _ in rows) == [
        ("merchant_code", ("a",)), ("merchant_code", ("a",)), ("user_doubled", ("a",)), ("user_doubled", ("a",))]
    fast, none_failed = transform_records(readers, [[good], [good]])
    assert none_failed == {}
    assert len(fast) == 4


def test_a_transformed_row_without_its_join_key_fails_only_its_record() -> None:
    nulled = replace(DOUBLED, transformation=_transformation(
        "SELECT CASE WHEN amount > 5 THEN NULL ELSE user_id END AS user_id, ts, amount AS doubled, "
        "merchant AS shop FROM source"))
    ws = _workspace(nulled)
    rows, failed = transform_records([(ws, SOURCE, [nulled])], [[_fields(amount=1.0)], [_fields(amount=9.0)]])
    assert list(failed) == [1]
    assert "join key" in failed[1]
    assert [r.values["doubled"] for _, _, r, _ in rows] == [1.0]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["u1", "u2", "u3"]), st.floats(-1e6, 1e6, allow_nan=False),
                          st.text(alphabet="abcXYZ", max_size=5), st.integers(0, 10_000)), max_size=20))
def test_sql_projection_equals_a_plain_python_reference(records: list[tuple[str, float, str, int]]) -> None:
    ws = _workspace(DOUBLED)
    parsed = [_fields(user, amount, merchant, minutes) for user, amount, merchant, minutes in records]
    rows = transform_batch(ws, SOURCE, [DOUBLED], parsed)
    expected = [((user, T0 + timedelta(minutes=minutes)), {"doubled": amount * 2 + 1, "shop": merchant.upper()})
                for user, amount, merchant, minutes in records if amount > 0]
    assert [((r.entity_key[0], r.event_time), dict(r.values)) for _, r, _ in rows] == expected


async def _handle(ws_views: tuple[FeatureViewSpec, ...], payloads: list[bytes]) -> list[Any]:
    repo = RepoSpec(REPO.entities, REPO.stream_sources, (*REPO.feature_views, *ws_views), REPO.feature_services)
    registry = Registry().apply_all(CODEC.message(e, producer=Component.CONTROL_PLANE, workspace="prod")
                                    for e in applied_events(repo))
    worker = RiftWorker(NAMES, RegistryFollower(MemoryBus(), NAMES, registry=registry))
    batch = [Inbound(Record("transactions", 0, offset, None, payload, 0), None)
             for offset, payload in enumerate(payloads)]
    decision = await worker.handle(batch)
    return [out.message.body for out in decision.outputs]


def _payload(**fields: Any) -> bytes:
    base = {"user_id": "u1", "ts": T0.isoformat(), "amount": 3.0, "merchant": "5", "count": 1, "online": True}
    return json.dumps({**base, **fields}).encode()


async def test_rift_writes_transformed_rows_online_and_offline_and_dead_letters_failures() -> None:
    bodies = await _handle((DOUBLED, CODED, SPEND),
                           [_payload(amount=4.0), _payload(user_id="u2", merchant="x"), _payload(amount=20.0)])
    dead = [b for b in bodies if isinstance(b, RecordDeadLettered)]
    assert [(d.source.first_offset, "merchant_code" in d.reason) for d in dead] == [(1, True)]
    assert json.loads(dead[0].payload)["user_id"] == "u2"
    online = {b.feature_view: b for b in bodies if isinstance(b, WriteOnlineRows)}
    offline = {b.feature_view: b for b in bodies if isinstance(b, WriteOfflineRows)}
    assert [r.values for r in online["user_doubled"].rows] == [{"doubled": 9.0, "shop": "5"},
                                                               {"doubled": 41.0, "shop": "5"}]
    assert offline["user_doubled"].rows == online["user_doubled"].rows  # offline gets the transformed rows
    assert [r.values for r in online["merchant_code"].rows] == [{"code": 5}, {"code": 5}]
    assert {r.entity_key for r in online["user_last"].rows} == {("u1",)}  # u2 added nothing anywhere
    tiles = [b for b in bodies if isinstance(b, WriteTiles)]
    assert [t.feature_view for t in tiles] == ["user_spend"]
    # the clip to 10 of the expression transformation ran: 4 + 10
    assert _sum_of(tiles[0]) == 14.0


def _sum_of(tiles: WriteTiles) -> float:
    aggregator = aggregator_for(SPEND.aggregates[0])
    state = aggregator.empty()
    for delta in tiles.tiles:
        state = aggregator.merge(state, aggregator.decode(delta.tile.states[0]))
    return float(aggregator.finalize(state))  # type: ignore[arg-type]


def test_the_ingest_api_reports_a_record_the_transformation_fails_on() -> None:
    push = PushSourceSpec("pushed", "ts", SOURCE.schema)
    coded = replace(CODED, source="pushed")
    ws = Workspace("prod", entities={"user": EntitySpec("user", ("user_id",))}, push_sources={"pushed": push},
                   feature_views={"merchant_code": coded})
    base = {"user_id": "u1", "ts": datetime.now(UTC).isoformat(), "amount": 1.0}
    plan = plan_ingest(ws, {"pushed": [{**base, "merchant": "12"}, {**base, "merchant": "shoe"}]}, datetime.now(UTC))
    assert [(e.index, e.feature_view) for e in plan.errors] == [(1, "merchant_code")]
    assert "failed" in plan.errors[0].message
    assert plan.online == {"merchant_code": 1}
