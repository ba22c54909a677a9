"""Transformations at materialization time and realtime views, against a real deployment over HTTP.

A stream view with a SQL transformation is fed by a plain Kafka producer (a record the transformation
fails on is dead-lettered, the others are served); a push view with an expression transformation and
aggregates is fed through /ingest; a realtime view reads the request context and the stream view.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from deploy.cluster import Deployment
from events.codec import CODEC
from events.data import RecordDeadLettered
from events.topics import DEAD_LETTER
from tests.integration.helpers import apply, auth, eventually, operator_connection, produce_plain, read_topic

pytestmark = pytest.mark.integration

REPO = '''
from datetime import timedelta
import polars as pl
from sdk import (Aggregate, Attribute, Entity, FeatureService, Field, PushSource, RealtimeFeatureView,
                 RequestSource, StreamFeatureView, StreamSource, TimeWindow)

user = Entity(name="user", join_keys=["user_id"])
payments = StreamSource(name="payments", topic="{topic}", timestamp_field="ts",
                        schema=[Field("user_id", "string"), Field("ts", "timestamp"), Field("amount", "float64"),
                                Field("merchant", "string")])
scaled = StreamFeatureView(
    name="scaled", source=payments, entities=[user],
    transformation="SELECT user_id, ts, amount * 100 AS cents, CAST(merchant AS BIGINT) AS merchant_id FROM source",
    features=[Attribute("cents", "float64"), Attribute("merchant_id", "int64")],
    cache_max_age=timedelta(seconds=1))
clicks = PushSource(name="clicks", timestamp_field="ts",
                    schema=[Field("user_id", "string"), Field("ts", "timestamp"), Field("dwell", "float64")])
dwell = StreamFeatureView(
    name="dwell", source=clicks, entities=[user], transformation=[pl.col("dwell").clip(0, 60).alias("capped")],
    features=[Aggregate("capped", "sum", TimeWindow(timedelta(hours=1)))])
risk = RealtimeFeatureView(
    name="risk", sources=[RequestSource([Field("amount", "float64"), Field("channel", "string")]), scaled],
    transformation="SELECT amount * 100 > 2 * scaled__cents AS unusual, "
                   "concat_ws(':', channel, CAST(scaled__merchant_id AS VARCHAR)) AS route FROM source",
    features=[Attribute("unusual", "bool"), Attribute("route", "string")])
checkout = FeatureService(name="checkout", features=[risk, scaled, dwell])
'''


@pytest.fixture(scope="module")
async def setup(deployment: Deployment, admin_key: str,
                tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    folder: Path = tmp_path_factory.mktemp("realtime_repo")
    topic = f"{deployment.settings.topic_prefix}-payments-{uuid.uuid4().hex[:6]}"
    (folder / "features.py").write_text(REPO.format(topic=topic))
    workspace = f"rt_{uuid.uuid4().hex[:6]}"
    await apply(operator_connection(deployment), folder, workspace,
                admin_key)
    return workspace, topic


async def _post(url: str, path: str, key: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.post(f"{url}{path}", json=body, headers=auth(key)) as resp:
        return resp.status, await resp.json()


def _request(workspace: str, user: str, context: dict[str, Any]) -> dict[str, Any]:
    return {"params": {"workspace_name": workspace, "feature_service_name": "checkout",
                       "join_key_map": {"user_id": user}, "request_context_map": context,
                       "metadata_options": {"include_names": True, "include_serving_status": True}}}


async def test_transformed_stream_rows_and_realtime_features_are_served(
        deployment: Deployment, kafka_bootstrap: str, admin_key: str, setup: tuple[str, str]) -> None:
    workspace, topic = setup
    url = deployment.gateway_url
    now = datetime.now(UTC)
    records = [{"user_id": "u1", "ts": now.isoformat(), "amount": 2.5, "merchant": "17"},
               {"user_id": "u2", "ts": now.isoformat(), "amount": 9.0, "merchant": "bakery"},  # the CAST fails
               {"user_id": "u3", "ts": now.isoformat(), "amount": 1.0, "merchant": "5"}]
    await produce_plain(kafka_bootstrap, topic, [json.dumps(r).encode() for r in records])

    async def served(user: str) -> Any:
        status, body = await _post(url, "/api/v1/feature-service/get-features", admin_key,
                                   _request(workspace, user, {"amount": 10.0, "channel": "web"}))
        assert status == 200, body
        return body if body["result"]["features"][2] is not None else None

    body = await eventually(lambda: served("u3"), 60, "u3's transformed row to be served")
    # service order: risk (realtime) first, then scaled, then dwell
    assert body["result"]["features"] == [True, "web:5", 100.0, 5, None]  # no clicks: an empty sum is null
    assert [m["name"] for m in body["metadata"]["features"]] == [
        "risk.unusual", "risk.route", "scaled.cents", "scaled.merchant_id", "dwell.capped_sum_1h_continuous"]
    u1 = (await served("u1"))["result"]["features"]
    assert u1[:4] == [True, "web:17", 250.0, 17]  # 10 * 100 > 2 * 250

    dead = [CODEC.decode(r.value).body for r in await read_topic(kafka_bootstrap,
                                                                  deployment.settings.topics.name(DEAD_LETTER))]
    mine = [d for d in dead if isinstance(d, RecordDeadLettered) and d.source.topic == topic]
    assert [json.loads(d.payload)["user_id"] for d in mine] == ["u2"]
    assert "the transformation of feature view 'scaled' failed" in mine[0].reason
    status, u2 = await _post(url, "/api/v1/feature-service/get-features", admin_key,
                             _request(workspace, "u2", {"amount": 10.0, "channel": "web"}))
    assert status == 200
    assert u2["result"]["features"][2:4] == [None, None]


async def test_pushed_records_are_transformed_before_they_are_aggregated(
        deployment: Deployment, admin_key: str, setup: tuple[str, str]) -> None:
    workspace, _ = setup
    url = deployment.gateway_url
    at = datetime.now(UTC) - timedelta(minutes=5)
    body = {"workspace_name": workspace, "records": {"clicks": [
        {"record": {"user_id": "p1", "ts": at.isoformat(), "dwell": 30.0}},
        {"record": {"user_id": "p1", "ts": at.isoformat(), "dwell": 500.0}}]}}  # capped to 60
    status, answer = await _post(url, "/ingest", admin_key, body)
    assert status == 200, answer
    status, served = await _post(url, "/api/v1/feature-service/get-features", admin_key,
                                 _request(workspace, "p1", {"amount": 1.0, "channel": "app"}))
    assert status == 200, served
    assert served["result"]["features"][4] == 90.0
    assert served["result"]["features"][:2] == [None, "app"]  # no scaled row for p1: null inputs, no error


async def test_realtime_errors_are_per_feature_and_a_missing_request_field_is_a_400(
        deployment: Deployment, admin_key: str, setup: tuple[str, str]) -> None:
    workspace, _ = setup
    url = deployment.gateway_url
    status, body = await _post(url, "/api/v1/feature-service/get-features", admin_key,
                               _request(workspace, "u1", {"amount": "lots", "channel": "web"}))
    assert status == 200, body
    risk = body["metadata"]["features"][:2]
    assert [m["status"] for m in risk] == ["ERROR", "ERROR"]
    assert "request field 'amount' is str, expected float64" in risk[0]["errorMessage"]
    assert body["result"]["features"][:2] == [None, None]
    assert body["metadata"]["features"][2]["status"] != "ERROR"

    status, body = await _post(url, "/api/v1/feature-service/get-features", admin_key,
                               _request(workspace, "u1", {"amount": 1.0}))
    assert status == 400
    assert "'channel'" in body["requestError"]["errorMessage"]

    batch = {"params": {"workspace_name": workspace, "feature_service_name": "checkout", "request_data": [
        {"join_key_map": {"user_id": "u1"}, "request_context_map": {"amount": 1.0, "channel": "a"}},
        {"join_key_map": {"user_id": "u1"}, "request_context_map": {"amount": 100.0, "channel": "b"}}]}}
    status, body = await _post(url, "/api/v1/feature-service/get-features-batch", admin_key, batch)
    assert status == 200, body
    assert [r["features"][:2] for r in body["result"]] == [[False, "a:17"], [True, "b:17"]]

    status, meta = await _post(url, "/api/v1/feature-service/metadata", admin_key,
                               {"params": {"workspace_name": workspace, "feature_service_name": "checkout"}})
    assert status == 200, meta
    assert [k["name"] for k in meta["inputRequestContextKeys"]] == ["amount", "channel"]
    assert meta["featureValues"][0] == {"name": "risk.unusual", "dataType": {"type": "bool"}}
