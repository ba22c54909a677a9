"""Bad input at the edge is refused as such (400, a record error), never a 500; a latency budget marks
the values the store did not answer in time TIME_OUT."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from actors.components.control_plane import decide_apply
from actors.components.ingest import plan_ingest
from actors.components.serving import FeatureStatus, assemble
from events.codec import CODEC
from events.control import ApplyRepo
from events.data import FeatureRow, OnlineRowsRead, StoredRow
from events.errors import InvalidRequest
from events.planes import Component
from events.registry import Registry, Workspace
from events.specs import EntitySpec, PushSourceSpec
from gateway.tecton import parse_get_features, parse_get_features_batch
from tests.unit.fixtures import REPO, SOURCE, admin_registry, envelope_of
from tests.unit.test_transform import CODED


def _body(**params: object) -> bytes:
    return json.dumps({"params": {"workspace_name": "prod", "feature_service_name": "fraud",
                                  "join_key_map": {"user_id": "u"}, **params}}).encode()


def test_the_latency_budget_is_parsed_in_either_spelling() -> None:
    request, _ = parse_get_features(_body(request_options={"latency_budget_ms": 25}), "p")
    assert request.latency_budget_ms == 25
    request, _ = parse_get_features(_body(requestOptions={"latencyBudgetMs": 7}), "p")
    assert request.latency_budget_ms == 7
    assert parse_get_features(_body(), "p")[0].latency_budget_ms is None
    batch = json.dumps({"params": {"workspace_name": "prod", "feature_service_name": "fraud",
                                   "request_data": [{"join_key_map": {"user_id": "u"}}],
                                   "request_options": {"latency_budget_ms": 3}}}).encode()
    assert parse_get_features_batch(batch, "p")[0].latency_budget_ms == 3


@pytest.mark.parametrize("options", [{"latency_budget_ms": 0}, {"latency_budget_ms": -5},
                                     {"latency_budget_ms": True}, {"latency_budget_ms": 1.5},
                                     {"latency_budget_ms": "10"}, {"latency_budget_ms": 10**9}, [1], "fast"])
def test_a_bad_latency_budget_is_invalid(options: object) -> None:
    with pytest.raises(InvalidRequest, match="request_options"):
        parse_get_features(_body(request_options=options), "p")


@pytest.mark.parametrize(("payload", "fragment"), [
    (_body(join_key_map={"user_id": 2**64}), "64-bit"),
    (b'{"params": {"workspace_name": "\\ud800", "feature_service_name": "f", "join_key_map": {}}}', "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b"\xff\xfe", "not valid JSON"),
])
def test_input_the_platform_cannot_carry_is_invalid_not_a_crash(payload: bytes, fragment: str) -> None:
    with pytest.raises(InvalidRequest, match=fragment):
        parse_get_features(payload, "p")


def _workspace() -> Workspace:
    events = decide_apply(admin_registry(), envelope_of(), ApplyRepo("a", REPO))
    return Registry().apply_all(CODEC.message(e, producer=Component.CONTROL_PLANE, workspace="prod")
                                for e in events).workspace("prod")


def test_a_view_the_store_did_not_answer_in_time_is_time_out_the_cached_one_is_served() -> None:
    ws = _workspace()
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    cached = StoredRow(FeatureRow(("u",), now, {"last_amount": 1.0, "last_merchant": "m"}), "w")
    service = ws.service("fraud")
    served = assemble(ws, service, OnlineRowsRead("r", "x", (None,)), now, timed_out=[True])
    assert [(f.value, f.status) for f in served] == [(None, FeatureStatus.TIME_OUT)] * 2
    served = assemble(ws, service, OnlineRowsRead("r", "x", (cached,)), now, cached=[True], timed_out=[False])
    assert [f.status for f in served] == [FeatureStatus.CACHED_PRESENT] * 2


def test_an_ingest_record_over_the_size_limit_is_a_record_error() -> None:
    push = PushSourceSpec("pushed", "ts", SOURCE.schema)
    ws = Workspace("prod", entities={"user": EntitySpec("user", ("user_id",))}, push_sources={"pushed": push},
                   feature_views={"merchant_code": replace(CODED, source="pushed")})
    base = {"user_id": "u1", "ts": datetime.now(UTC).isoformat(), "amount": 1.0, "merchant": "12"}
    plan = plan_ingest(ws, {"pushed": [base, {**base, "merchant": "1" * 500}]}, datetime.now(UTC),
                       max_record_bytes=300)
    assert [(e.index, e.feature_view) for e in plan.errors] == [(1, "")]
    assert "at most 300" in plan.errors[0].message
