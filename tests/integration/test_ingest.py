"""The ingest API against a real deployment: synchronous read-after-write, dry runs, record errors."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from deploy.cluster import Deployment
from events.topics import ONLINE_WRITES
from tests.integration.helpers import apply, auth, get_features, operator_connection

pytestmark = pytest.mark.integration

PUSH_REPO = '''
from datetime import timedelta
from sdk import Aggregate, Attribute, Entity, FeatureService, Field, PushSource, StreamFeatureView, TimeWindow

user = Entity(name="user", join_keys=["user_id"])
clicks = PushSource(name="clicks", timestamp_field="ts",
                    schema=[Field("user_id", "string"), Field("ts", "timestamp"), Field("page", "string"),
                            Field("dwell", "float64")])
last_click = StreamFeatureView(name="last_click", source=clicks, entities=[user],
                               features=[Attribute("page", "string", name="last_page")], ttl=timedelta(days=1))
site = FeatureService(name="site", features=[last_click])
activity = StreamFeatureView(name="activity", source=clicks, entities=[user], features=[
    Aggregate("page", "count", TimeWindow(timedelta(hours=1))),
    Aggregate("page", "last_distinct_n", TimeWindow(timedelta(hours=2)), params={"n": 2}),
    Aggregate("dwell", "mean", TimeWindow(timedelta(hours=1))),
])
activity_10m = StreamFeatureView(name="activity_10m", source=clicks, entities=[user],
                                 aggregation_interval=timedelta(minutes=10),
                                 features=[Aggregate("dwell", "sum", TimeWindow(timedelta(hours=1)))])
engagement = FeatureService(name="engagement", features=[activity, activity_10m])
'''


@pytest.fixture(scope="module")
async def workspace(deployment: Deployment, admin_key: str,
                    tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("push_repo")
    (folder / "features.py").write_text(PUSH_REPO)
    name = f"push_{uuid.uuid4().hex[:6]}"
    await apply(operator_connection(deployment), folder, name,
                admin_key)
    return name


def _now(minus: timedelta = timedelta(0)) -> str:
    return (datetime.now(UTC) - minus).isoformat()


async def _ingest(url: str, key: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.post(f"{url}/ingest", json=body, headers=auth(key)) as resp:
        return resp.status, await resp.json()


async def _page(url: str, ws: str, user: str, key: str) -> Any:
    async with aiohttp.ClientSession() as http:
        status, body = await get_features(http, url, ws, "site", {"user_id": user}, key)
    assert status == 200, body
    return body["result"]["features"][0]


async def test_ingest_is_read_after_write(deployment: Deployment, workspace: str, admin_key: str) -> None:
    url = deployment.gateway_url
    body = {"workspace_name": workspace, "records": {"clicks": [
        {"record": {"user_id": "alice", "ts": _now(timedelta(minutes=2)), "page": "/home"}},
        {"record": {"user_id": "alice", "ts": _now(timedelta(minutes=1)), "page": "/cart"}},
        {"record": {"user_id": "bob", "ts": _now(), "page": "/help"}},
    ]}}
    status, answer = await _ingest(url, admin_key, body)
    assert status == 200, answer
    metrics = {m["featureViewName"]: m for m in answer["ingestMetrics"]["featureViewIngestMetrics"]}
    assert metrics["last_click"] == {"featureViewName": "last_click", "onlineRecordIngestCount": 3,
                                     "offlineRecordIngestCount": 3}
    assert metrics["activity"]["offlineRecordIngestCount"] == 3  # their input rows, for training data
    # no polling: the ingest returned only once the online store had applied the rows
    assert await _page(url, workspace, "alice", admin_key) == "/cart"
    assert await _page(url, workspace, "bob", admin_key) == "/help"
    batch = {"params": {"workspace_name": workspace, "feature_service_name": "site",
                        "request_data": [{"join_key_map": {"user_id": u}} for u in ("bob", "nobody", "alice")]}}
    async with aiohttp.ClientSession() as http, http.post(f"{url}/api/v1/feature-service/get-features-batch",
                                                          json=batch, headers=auth(admin_key)) as resp:
        assert resp.status == 200
        assert [r["features"] for r in (await resp.json())["result"]] == [["/help"], [None], ["/cart"]]


async def test_dry_run_checks_and_counts_but_writes_nothing(deployment: Deployment, workspace: str,
                                                           admin_key: str) -> None:
    url = deployment.gateway_url
    body = {"workspaceName": workspace, "dryRun": True, "records": {"clicks": [
        {"record": {"user_id": "carol", "ts": _now(), "page": "/dry"}}]}}
    status, answer = await _ingest(url, admin_key, body)
    assert status == 200, answer
    assert {m["onlineRecordIngestCount"] for m in answer["ingestMetrics"]["featureViewIngestMetrics"]} == {1}
    assert await _page(url, workspace, "carol", admin_key) is None


async def test_bad_records_are_reported_and_nothing_is_ingested(deployment: Deployment, workspace: str,
                                                               admin_key: str) -> None:
    url = deployment.gateway_url
    body = {"workspace_name": workspace, "records": {"clicks": [
        {"record": {"user_id": "dave", "ts": _now(), "page": "/fine"}},
        {"record": {"user_id": "dave", "ts": _now(), "page": 42}},
        {"record": {"user_id": "dave", "ts": _now(timedelta(days=3)), "page": "/old"}},
        {"record": {"ts": _now(), "page": "/nobody"}},
    ]}}
    status, answer = await _ingest(url, admin_key, body)
    assert status == 400, answer
    errors = {e["recordIndex"]: e for e in answer["recordErrors"]}
    assert sorted(errors) == [1, 2, 3]
    assert "expected string" in errors[1]["errorMessage"]
    assert "outside the TTL of feature view 'last_click'" in errors[2]["errorMessage"]
    assert "join key" in errors[3]["errorMessage"]
    assert await _page(url, workspace, "dave", admin_key) is None  # the valid record was not sent either


@pytest.mark.parametrize(("body", "status"), [
    ({"records": {}}, 400),
    ({"workspace_name": "W", "records": {"clicks": [{"nope": 1}]}}, 400),
    ({"workspace_name": "W", "records": {"ghost_source": [{"record": {}}]}}, 404),
    ({"workspace_name": "W", "dry_run": "yes", "records": {"clicks": [{"record": {}}]}}, 400),
])
async def test_malformed_ingest_requests(deployment: Deployment, workspace: str, admin_key: str,
                                         body: dict[str, Any], status: int) -> None:
    if body.get("workspace_name") == "W":
        body = {**body, "workspace_name": workspace}
    got, answer = await _ingest(deployment.gateway_url, admin_key, body)
    assert got == status, answer
    assert "requestError" in answer


async def test_ingest_needs_the_editor_role_and_is_audited_with_the_principal(
        deployment: Deployment, workspace: str, admin_key: str) -> None:
    url = deployment.gateway_url
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/api/v1/service-accounts", json={"name": "reader"},
                             headers=auth(admin_key)) as resp:
            made = await resp.json()
        async with http.post(f"{url}/api/v1/workspaces/{workspace}/roles", headers=auth(admin_key),
                             json={"principal_id": made["principal_id"], "role": "consumer"}) as resp:
            assert resp.status == 200
    body = {"workspace_name": workspace, "records": {"clicks": [{"record": {"user_id": "e", "ts": _now(),
                                                                           "page": "/x"}}]}}
    assert (await _ingest(url, made["api_key"], body))[0] == 403
    assert (await _ingest(url, "", body))[0] == 401
    status, _ = await _ingest(url, admin_key, body)
    assert status == 200
    async with aiohttp.ClientSession() as http, http.get(f"{url}/api/v1/audit/flows?limit=500",
                                                         headers=auth(admin_key)) as resp:
        records = (await resp.json())["records"]
    f5 = [r for r in records if r["flow"] == "F5" and r["from_component"] == "customer_app"
          and r["to_component"] == "feature_server"]
    assert f5
    assert {r["principal"] for r in f5} == {"admin"}



async def test_aggregates_are_computed_from_tiles_at_request_time(deployment: Deployment, workspace: str,
                                                                   admin_key: str) -> None:
    url = deployment.gateway_url
    clicks = [("/old", 100.0, timedelta(hours=3)), ("/a", 1.0, timedelta(minutes=40)),
              ("/b", 2.0, timedelta(minutes=30)), ("/a", 3.0, timedelta(minutes=20))]
    body = {"workspace_name": workspace, "records": {"clicks": [
        {"record": {"user_id": "frank", "ts": _now(ago), "page": page, "dwell": dwell}}
        for page, dwell, ago in clicks]}}
    status, answer = await _ingest(url, admin_key, body)
    assert status == 200, answer
    assert {m["featureViewName"] for m in answer["ingestMetrics"]["featureViewIngestMetrics"]} == {
        "last_click", "activity", "activity_10m"}
    async with aiohttp.ClientSession() as http:
        status, got = await get_features(http, url, workspace, "engagement", {"user_id": "frank"}, admin_key)
        assert status == 200, got
        values = dict(zip([f["name"] for f in got["metadata"]["features"]], got["result"]["features"], strict=True))
        assert values == {
            "activity.page_count_1h_continuous": 3,  # the 3-hour-old click is outside the hour
            "activity.page_last_distinct_n_2_2h_continuous": ["/b", "/a"],  # oldest to newest, by last use
            "activity.dwell_mean_1h_continuous": 2.0,
            "activity_10m.dwell_sum_1h_10m": 6.0,  # the hour ending at the last 10-minute boundary
        }
        status, nobody = await get_features(http, url, workspace, "engagement", {"user_id": "nobody"}, admin_key)
        assert status == 200
        assert nobody["result"]["features"] == [0, None, None, None]  # empty windows: count 0, others null

        # lineage of a merged value: the deltas its windows read, and the one ingest that wrote them all
        lineage = {"params": {"workspace_name": workspace, "feature_service_name": "engagement",
                              "join_key_map": {"user_id": "frank"}}}
        async with http.post(f"{url}/api/v1/lineage", json=lineage, headers=auth(admin_key)) as resp:
            assert resp.status == 200, await resp.text()
            chains = {c["feature_view"]: c for c in (await resp.json())["lineage"]}
    activity = chains["activity"]
    assert activity["deltas"] == 3  # the three clicks inside the widest (2 h) window
    assert activity["online_writes_total"] == 1
    (write,) = activity["online_writes"]
    assert write["write"]["topic"] == deployment.settings.topics.name(ONLINE_WRITES)
    assert [s["from"] for s in write["sources"]] == ["customer_app"]  # the pushed records, audited as F5
    assert write["sources"][0]["rows"] == len(clicks)


async def test_the_serving_cache_answers_repeats_and_refreshes_on_write(deployment: Deployment, workspace: str,
                                                                       admin_key: str) -> None:
    url = deployment.gateway_url

    async def status_and_page() -> tuple[str, Any]:
        async with aiohttp.ClientSession() as http:
            status, body = await get_features(http, url, workspace, "site", {"user_id": "gina"}, admin_key)
        assert status == 200
        return body["metadata"]["features"][0]["status"], body["result"]["features"][0]

    record = {"workspace_name": workspace, "records": {"clicks": [{"record": {"user_id": "gina", "ts": _now(),
                                                                             "page": "/first"}}]}}
    assert (await _ingest(url, admin_key, record))[0] == 200
    assert await status_and_page() == ("PRESENT", "/first")
    assert await status_and_page() == ("CACHED_PRESENT", "/first")
    record["records"]["clicks"][0]["record"]["page"] = "/second"  # type: ignore[index]
    assert (await _ingest(url, admin_key, record))[0] == 200
    assert await status_and_page() == ("PRESENT", "/second")  # the changelog dropped the cached value
