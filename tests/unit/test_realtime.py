"""Realtime views at request time, per-view serving cache ages, and aggregates' implicit TTL."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest

from actors.components import cache as cache_module
from actors.components.cache import ServingCache
from actors.components.realtime import compute, input_types
from actors.components.serving import (
    FeatureStatus,
    ServedFeatures,
    assemble,
    check_request_context,
    plan_lookups,
    read_views,
)
from actors.components.tiling import TileBuilder, aggregate_values
from events.codec import CODEC
from events.data import FeatureRow, Lookup, OnlineRowsRead, StoredRow
from events.envelope import new_message
from events.errors import InvalidRequest
from events.planes import Component
from events.registry import Registry, Workspace
from events.specs import (
    AggregateSpec,
    DType,
    FeatureServiceSpec,
    FeatureSpec,
    FeatureViewKind,
    FeatureViewSpec,
    FieldSpec,
    TimeWindowSpec,
)
from events.validation import repo_errors
from gateway.tecton import MetadataOptions, parse_get_features_batch, render_get_features, render_metadata
from sdk import (
    Aggregate,
    Attribute,
    Entity,
    Field,
    RealtimeFeatureView,
    RequestSource,
    StreamFeatureView,
    StreamSource,
    TimeWindow,
)
from sdk.transforms import compile_transformation, polars_type
from tests.unit.fixtures import REPO, VIEW, applied_events

NOW = datetime(2026, 11, 26, 12, 3, tzinfo=UTC)
SQL = ("SELECT amount > 2 * user_last__last_amount AS unusual, "
       "concat_ws('/', channel, user_last__last_merchant) AS route FROM source")


REQUEST = (FieldSpec("amount", DType.FLOAT64), FieldSpec("channel", DType.STRING))


def _realtime(sql: str = SQL, request: tuple[FieldSpec, ...] = REQUEST) -> FeatureViewSpec:
    inputs = {f.name: f.dtype for f in request} | {"user_last__last_amount": DType.FLOAT64,
                                                    "user_last__last_merchant": DType.STRING}
    compiled = compile_transformation(sql, {k: polars_type(v) for k, v in inputs.items()})
    assert not compiled.errors, compiled.errors
    return FeatureViewSpec("risk", (), "", (FeatureSpec("unusual", "unusual", DType.BOOL),
                                            FeatureSpec("route", "route", DType.STRING)),
                           kind=FeatureViewKind.REALTIME, transformation=compiled.spec, request_schema=request,
                           inputs=("user_last",))


RISK = _realtime()


def _workspace(*views: FeatureViewSpec, services: tuple[FeatureServiceSpec, ...] = ()) -> Workspace:
    repo = replace(REPO, feature_views=(*REPO.feature_views, *views),
                   feature_services=services or (FeatureServiceSpec("fraud", ("risk", "user_last")),))
    assert not repo_errors(repo)
    registry = Registry().apply_all(CODEC.message(e, producer=Component.CONTROL_PLANE, workspace="prod")
                                    for e in applied_events(repo))
    return registry.workspace("prod")


def _stored(amount: float, merchant: str = "shoes") -> StoredRow:
    return StoredRow(FeatureRow(("u1",), NOW - timedelta(minutes=1), {"last_amount": amount,
                                                                      "last_merchant": merchant}), "w1")


def _serve(ws: Workspace, stored: StoredRow | None, context: dict[str, Any], service: str = "fraud") -> Any:
    spec = ws.service(service)
    rows = tuple(stored for _ in read_views(ws, spec))
    return assemble(ws, spec, OnlineRowsRead("r", "fs", rows), NOW, context=context)


def test_a_realtime_view_reads_request_fields_and_its_inputs_in_the_services_order() -> None:
    ws = _workspace(RISK)
    spec = ws.service("fraud")
    assert read_views(ws, spec) == ("user_last",)
    assert [lookup.feature_view for lookup in plan_lookups(ws, spec, {"user_id": "u1"}, NOW)] == ["user_last"]
    served = _serve(ws, _stored(10.0), {"amount": 25, "channel": "web"})
    assert [(f.name, f.value, f.status) for f in served] == [
        ("risk.unusual", True, FeatureStatus.PRESENT), ("risk.route", "web/shoes", FeatureStatus.PRESENT),
        ("user_last.last_amount", 10.0, FeatureStatus.PRESENT),
        ("user_last.last_merchant", "shoes", FeatureStatus.PRESENT)]
    assert [f.value for f in _serve(ws, _stored(20.0), {"amount": 25, "channel": "app"})][:2] == [False, "app/shoes"]


def test_inputs_not_in_the_service_are_read_but_not_served() -> None:
    ws = _workspace(RISK, services=(FeatureServiceSpec("only_risk", ("risk",)),))
    served = _serve(ws, _stored(1.0), {"amount": 5.0, "channel": "pos"}, "only_risk")
    assert [(f.name, f.value) for f in served] == [("risk.unusual", True), ("risk.route", "pos/shoes")]
    missing = _serve(ws, None, {"amount": 5.0, "channel": "pos"}, "only_risk")
    assert [f.value for f in missing] == [None, "pos"]  # null inputs are nulls (concat_ws skips them), no error
    assert {f.status for f in missing} == {FeatureStatus.PRESENT}


def test_a_missing_request_field_is_the_callers_mistake() -> None:
    ws = _workspace(RISK)
    with pytest.raises(InvalidRequest, match="request_context_map is missing 'channel', needed by realtime"):
        check_request_context(ws, ws.service("fraud"), {"amount": 1.0})
    check_request_context(ws, ws.service("fraud"), {"amount": 1.0, "channel": None})


@pytest.mark.parametrize(("view", "context", "message"), [
    (RISK, {"amount": "lots", "channel": "web"}, "request field 'amount' is str, expected float64"),
    (RISK, {"amount": True, "channel": "web"}, "request field 'amount' is bool, expected float64"),
    (_realtime("SELECT CAST(channel AS BIGINT) > 1 AS unusual, channel AS route FROM source"),
     {"amount": 1.0, "channel": "web"}, "the transformation of feature view 'risk' failed"),
    (_realtime("SELECT true AS unusual, channel AS route FROM source UNION ALL "
               "SELECT false AS unusual, channel AS route FROM source"),
     {"amount": 1.0, "channel": "web"}, "returned 2 rows"),
])
def test_errors_stay_inside_the_view_as_per_feature_errors(view: FeatureViewSpec, context: dict[str, Any],
                                                           message: str) -> None:
    ws = _workspace(view)
    served = _serve(ws, _stored(1.0), context)
    risk, others = served[:2], served[2:]
    assert {f.status for f in risk} == {FeatureStatus.ERROR}
    assert all(f.value is None and f.error is not None and message in f.error for f in risk)
    assert [f.value for f in others] == [1.0, "shoes"]  # the other views are unaffected
    body = render_get_features(ServedFeatures(served, _envelope(), "fraud"),
                               MetadataOptions(include_serving_status=True))
    assert body["metadata"]["features"][0]["status"] == "ERROR"
    assert message in body["metadata"]["features"][0]["errorMessage"]
    assert "errorMessage" not in body["metadata"]["features"][2]


def test_a_filtered_out_request_is_missing_data_and_a_wrongly_typed_output_an_error() -> None:
    view = _realtime("SELECT amount > 1 AS unusual, channel AS route FROM source WHERE amount > 100")
    values = compute(view, input_types(_workspace(view), view), {"amount": 1.0, "channel": "x"}, {})
    assert [(v.value, v.missing, v.error) for v in values] == [(None, True, None), (None, True, None)]
    wrong = replace(view, features=(FeatureSpec("unusual", "route", DType.INT64),))
    [value] = compute(wrong, input_types(_workspace(view), wrong), {"amount": 500.0, "channel": "x"}, {})
    assert value.error is not None
    assert "declared int64" in value.error


def test_request_only_realtime_views_need_no_join_keys() -> None:
    view = replace(_realtime("SELECT amount > 3 AS unusual, channel AS route FROM source"), inputs=())
    ws = _workspace(view, services=(FeatureServiceSpec("req", ("risk",)),))
    assert plan_lookups(ws, ws.service("req"), {}, NOW) == ()
    served = assemble(ws, ws.service("req"), OnlineRowsRead("r", "fs", ()), NOW,
                      context={"amount": 4.0, "channel": "c"})
    assert [f.value for f in served] == [True, "c"]


def test_get_features_batch_takes_a_request_context_per_entity() -> None:
    body = {"params": {"workspace_name": "w", "feature_service_name": "s", "request_context_map": {"channel": "x"},
                       "request_data": [{"join_key_map": {"user_id": "a"}, "request_context_map": {"amount": 1}},
                                        {"join_key_map": {"user_id": "b"}}]}}
    request, keys, contexts, _ = parse_get_features_batch(json.dumps(body).encode(), "p")
    assert keys == [{"user_id": "a"}, {"user_id": "b"}]
    assert contexts == [{"amount": 1}, {"channel": "x"}]
    assert request.request_context == {"amount": 1}


def test_metadata_describes_realtime_views_with_their_inputs_join_keys_and_request_fields() -> None:
    ws = _workspace(RISK, services=(FeatureServiceSpec("only_risk", ("risk",)),))
    document = render_metadata(ws, ws.service("only_risk"))
    assert document["inputJoinKeys"] == [{"name": "user_id", "dataType": {"type": "string"}}]
    assert [k["name"] for k in document["inputRequestContextKeys"]] == ["amount", "channel"]
    assert [(v["name"], v["dataType"]["type"]) for v in document["featureValues"]] == [
        ("risk.unusual", "bool"), ("risk.route", "string")]


def test_the_dsl_compiles_a_realtime_view_over_aggregates_with_their_types() -> None:
    user = Entity(name="user", join_keys=["user_id"])
    source = StreamSource(name="tx", topic="tx", timestamp_field="ts",
                          schema=[Field("user_id", "string"), Field("ts", "timestamp"), Field("amount", "float64")])
    stats = StreamFeatureView(name="stats", source=source, entities=[user],
                              features=[Aggregate("amount", "mean", TimeWindow(timedelta(hours=1)))],
                              cache_max_age=timedelta(minutes=5))
    assert stats.spec().serving_cache_max_age_s == 300
    risk = RealtimeFeatureView(name="r", sources=[RequestSource([Field("amount", "float64")]), stats],
                               features=[Attribute("high", "bool")],
                               transformation="SELECT amount > stats__amount_mean_1h_continuous AS high FROM source")
    spec = risk.spec()
    assert spec.inputs == ("stats",)
    ws = _workspace(replace(stats.spec(), source="transactions"), services=(FeatureServiceSpec("x", ("user_last",)),))
    assert input_types(ws, spec) == {"amount": pl.Float64(), "stats__amount_mean_1h_continuous": pl.Float64()}


@pytest.mark.parametrize(("seconds", "kind", "problem"), [
    (25 * 3600, FeatureViewKind.STREAM, "cache_max_age must be more than 0s and at most 24h, got 25h"),
    (0, FeatureViewKind.STREAM, "cache_max_age must be more than 0s"),
    (60, FeatureViewKind.REALTIME, "never cached"),
])
def test_cache_max_age_is_checked(seconds: int, kind: FeatureViewKind, problem: str) -> None:
    target = VIEW if kind is FeatureViewKind.STREAM else RISK
    changed = replace(target, serving_cache_max_age_s=seconds)
    views = tuple(changed if v.name == target.name else v for v in (*REPO.feature_views, RISK))
    errors = repo_errors(replace(REPO, feature_views=views))
    assert any(problem in e and f"feature view '{target.name}'" in e for e in errors), errors
    assert not repo_errors(replace(REPO, feature_views=(replace(VIEW, serving_cache_max_age_s=24 * 3600),)))


def test_each_view_keeps_its_own_cache_max_age(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(cache_module.ServingCache, "now", staticmethod(lambda: now[0]))
    cache = ServingCache(60, 10)
    short, long, default = Lookup("short", ("u",)), Lookup("long", ("u",)), Lookup("default", ("u",))
    cache.put("ws", short, None, None, now[0], max_age_s=10)
    cache.put("ws", long, None, None, now[0], max_age_s=3600)
    cache.put("ws", default, None, None, now[0])
    now[0] += 30
    assert [cache.get("ws", k) is not None for k in (short, long, default)] == [False, True, True]
    now[0] += 60
    assert [cache.get("ws", k) is not None for k in (long, default)] == [True, False]
    cache.put("ws", long, None, None, now[0], max_age_s=10 * 24 * 3600)  # never beyond 24 h
    now[0] += 24 * 3600 + 1
    assert cache.get("ws", long) is None


def test_aggregates_have_an_implicit_ttl_of_their_windows() -> None:
    """Tecton: an aggregate view serves the default of an empty window once every event is older than
    the window (0 for count, null otherwise); a lifetime window never expires."""
    view = replace(VIEW, features=(), aggregation_interval_s=600, aggregates=(
        AggregateSpec("n_1h", "amount", "count", TimeWindowSpec(3600)),
        AggregateSpec("sum_1h", "amount", "sum", TimeWindowSpec(3600)),
        AggregateSpec("last_2h", "merchant", "last", TimeWindowSpec(7200)),
    ))
    builder = TileBuilder(view)
    builder.add(("u1",), NOW - timedelta(minutes=90), {"amount": 4.0, "merchant": "m"})
    tiles = [delta.tile for delta in builder.deltas()]
    assert aggregate_values(view, tiles, NOW) == [0, None, "m"]
    assert aggregate_values(view, tiles, NOW + timedelta(hours=1)) == [0, None, None]
    assert aggregate_values(view, tiles, NOW - timedelta(minutes=45)) == [1, 4.0, "m"]


def _envelope() -> Any:
    return new_message(None, type_tag="t", schema_version=1, producer=Component.CUSTOMER_APP,
                       workspace="prod").envelope

