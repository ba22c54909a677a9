from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from actors.components.control_plane import decide_apply
from actors.components.serving import FeatureStatus, ServedFeature, ServedFeatures, assemble
from events.codec import CODEC
from events.control import ApplyRepo
from events.data import FeatureRow, OnlineRowsRead, StoredRow
from events.envelope import new_message
from events.errors import InvalidRequest
from events.planes import Component
from events.registry import Registry
from events.specs import DType
from gateway.tecton import MetadataOptions, parse_get_features, render_get_features
from tests.unit.fixtures import REPO, VIEW, admin_registry, envelope_of


def _body(**params: object) -> bytes:
    return json.dumps({"params": params}).encode()


def test_snake_case_request() -> None:
    request, options = parse_get_features(_body(
        workspace_name="prod", feature_service_name="fraud", join_key_map={"user_id": "u1"},
        request_context_map={"amount": 3}, metadata_options={"include_data_types": True}), "p")
    assert (request.workspace, request.feature_service) == ("prod", "fraud")
    assert request.join_keys == {"user_id": "u1"}
    assert request.request_context == {"amount": 3}
    assert options == MetadataOptions(include_names=True, include_data_types=True)
    assert request.principal == "p"


def test_camel_case_request() -> None:
    request, options = parse_get_features(_body(
        workspaceName="prod", featureServiceName="fraud", joinKeyMap={"user_id": "u1"},
        metadataOptions={"includeNames": False, "includeServingStatus": True}), "p")
    assert request.feature_service == "fraud"
    assert not options.include_names
    assert options.include_serving_status


@pytest.mark.parametrize(("payload", "reason"), [
    (b"{nope", "not valid JSON"),
    (b"[]", "'params' object"),
    (json.dumps({"params": []}).encode(), "'params' object"),
    (_body(feature_service_name="f", join_key_map={"k": 1}), "workspace_name is required"),
    (_body(workspace_name="w", join_key_map={"k": 1}), "feature_service_name is required"),
    (_body(workspace_name="w", feature_service_name="f"), "join_key_map is required"),
    (_body(workspace_name="w"), "feature_service_name, params.join_key_map are required"),
    (_body(workspace_name=3, feature_service_name="f", join_key_map={"k": 1}), "must be a non-empty string"),
    (_body(workspace_name="w", feature_service_name="f", join_key_map={"k": [1]}), "join_key_map must be"),
    (_body(workspace_name="w", feature_service_name="f", join_key_map={"k": 1}, metadata_options=3),
     "metadata_options"),
    (b"\xff\xfe", "not valid JSON"),
])
def test_malformed_requests_are_invalid(payload: bytes, reason: str) -> None:
    with pytest.raises(InvalidRequest, match=reason):
        parse_get_features(payload, "p")


def test_render_follows_metadata_options() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    envelope = new_message(None, type_tag="t", schema_version=1, producer=Component.CUSTOMER_APP,
                           workspace="w").envelope
    served = ServedFeatures((
        ServedFeature("v.a", 1.5, DType.FLOAT64, FeatureStatus.PRESENT, at),
        ServedFeature("v.b", None, DType.STRING, FeatureStatus.MISSING_DATA, None),
    ), envelope, "svc")
    full = render_get_features(served, MetadataOptions(True, True, True, True))
    assert full["result"]["features"] == [1.5, None]
    assert full["metadata"]["features"][0] == {
        "name": "v.a", "dataType": {"type": "float64"}, "status": "PRESENT", "effectiveTime": "2026-01-02T03:04:05Z"}
    assert full["metadata"]["features"][1]["status"] == "MISSING_DATA"
    names_only = render_get_features(served, MetadataOptions())
    assert names_only["metadata"]["features"] == [{"name": "v.a"}, {"name": "v.b"}]


def test_values_older_than_the_ttl_are_missing() -> None:
    repo = replace(REPO, feature_views=(replace(VIEW, ttl_s=3600),))
    events = decide_apply(admin_registry(), envelope_of(), ApplyRepo("a", repo))
    ws = Registry().apply_all(CODEC.message(e, producer=Component.CONTROL_PLANE, workspace="prod")
                              for e in events).workspace("prod")
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    fresh = StoredRow(FeatureRow(("u",), now - timedelta(minutes=59), {"last_amount": 1.0, "last_merchant": "m"}), "w")
    stale = StoredRow(FeatureRow(("u",), now - timedelta(minutes=61), {"last_amount": 1.0, "last_merchant": "m"}), "w")
    service = ws.service("fraud")
    assert [f.status for f in assemble(ws, service, OnlineRowsRead("r", "x", (fresh,)), now)] == [
        FeatureStatus.PRESENT, FeatureStatus.PRESENT]
    expired = assemble(ws, service, OnlineRowsRead("r", "x", (stale,)), now)
    assert [(f.value, f.status) for f in expired] == [(None, FeatureStatus.MISSING_DATA)] * 2
