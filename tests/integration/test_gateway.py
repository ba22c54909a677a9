"""The HTTP edge against a real deployment: bad input gets clear 4xx answers in the Tecton shape."""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from deploy.cluster import Deployment
from tests.integration.helpers import apply, auth, eventually, get_features, operator_connection, write_repo

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def workspace(deployment: Deployment, admin_key: str,
                    tmp_path_factory: pytest.TempPathFactory) -> str:
    name = f"ws_{uuid.uuid4().hex[:6]}"
    repo = write_repo(tmp_path_factory.mktemp("repo"), f"{deployment.settings.topic_prefix}-gw-source")
    conn = operator_connection(deployment)
    await apply(conn, repo, name, admin_key)
    return name


async def _post(url: str, payload: bytes, key: str | None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.post(
            f"{url}/api/v1/feature-service/get-features", data=io.BytesIO(payload), headers=auth(key)) as resp:
        return resp.status, await resp.json()


def _error_type(body: Any) -> str:
    return str(body["requestError"]["errorType"])


async def test_a_just_applied_service_is_served_not_404(deployment: Deployment, workspace: str,
                                                        admin_key: str) -> None:
    async with aiohttp.ClientSession() as http:
        status, body = await get_features(http, deployment.gateway_url, workspace, "fraud", {"user_id": "u"},
                                          admin_key)
    assert status == 200, body
    assert body["result"]["features"] == [None, None]


async def test_the_gateway_lists_applied_workspaces_but_healthz_names_none(deployment: Deployment, workspace: str,
                                                                          admin_key: str) -> None:
    async def listed() -> bool | None:
        async with aiohttp.ClientSession() as http, http.get(f"{deployment.gateway_url}/api/v1/workspaces",
                                                             headers=auth(admin_key)) as resp:
            assert resp.status == 200
            return True if workspace in {w["name"] for w in (await resp.json())["workspaces"]} else None

    assert await eventually(listed, 10, f"workspace {workspace} in GET /api/v1/workspaces")
    async with aiohttp.ClientSession() as http, http.get(f"{deployment.gateway_url}/healthz") as resp:
        assert resp.status == 200
        health = await resp.text()
    assert workspace not in health  # /healthz needs no key, so it shows no metadata


async def test_unknown_workspace_and_service_are_404(deployment: Deployment, workspace: str,
                                                     admin_key: str) -> None:
    async with aiohttp.ClientSession() as http:
        status, body = await get_features(http, deployment.gateway_url, "nowhere", "fraud", {"user_id": "u"},
                                          admin_key)
        assert (status, _error_type(body)) == (404, "NOT_FOUND")
        assert "nowhere" in body["requestError"]["errorMessage"]
        status, body = await get_features(http, deployment.gateway_url, workspace, "nothing", {"user_id": "u"},
                                          admin_key)
        assert (status, _error_type(body)) == (404, "NOT_FOUND")
        assert "nothing" in body["requestError"]["errorMessage"]


async def test_unknown_workspace_is_404_for_a_caller_without_an_admin_role(deployment: Deployment, workspace: str,
                                                                          admin_key: str, tmp_path: Path) -> None:
    """A consumer of one workspace asking for another that does not exist learns that it does not exist
    (404), not that it lacks a role there (403); a workspace that exists still answers 403."""
    url = deployment.gateway_url
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/api/v1/service-accounts", json={"name": "gw-consumer"},
                             headers=auth(admin_key)) as resp:
            assert resp.status == 201
            made = await resp.json()
        async with http.post(f"{url}/api/v1/workspaces/{workspace}/roles", headers=auth(admin_key),
                             json={"principal_id": made["principal_id"], "role": "consumer"}) as resp:
            assert resp.status == 200, await resp.text()
        other = f"ws_{uuid.uuid4().hex[:6]}"
        other_repo = write_repo(tmp_path, f"{deployment.settings.topic_prefix}-gw-other")
        await apply(operator_connection(deployment), other_repo, other, admin_key)
        status, body = await get_features(http, url, "nowhere", "fraud", {"user_id": "u"}, made["api_key"])
        assert (status, _error_type(body)) == (404, "NOT_FOUND"), body
        assert "nowhere" in body["requestError"]["errorMessage"]
        status, body = await get_features(http, url, other, "fraud", {"user_id": "u"}, made["api_key"])
        assert (status, _error_type(body)) == (403, "PERMISSION_DENIED"), body
        status, body = await get_features(http, url, workspace, "fraud", {"user_id": "u"}, made["api_key"])
        assert status == 200, body


@pytest.mark.parametrize(("payload", "fragment"), [
    (b"{this is not json", "not valid JSON"),
    (b'{"params": {"workspace_name": "w"}}', "feature_service_name"),
    (b"[]", "params"),
])
async def test_malformed_requests_are_400(deployment: Deployment, payload: bytes, fragment: str,
                                         admin_key: str) -> None:
    status, body = await _post(deployment.gateway_url, payload, admin_key)
    assert (status, _error_type(body)) == (400, "INVALID_ARGUMENT")
    assert fragment in body["requestError"]["errorMessage"]


async def test_missing_join_key_is_400(deployment: Deployment, workspace: str, admin_key: str) -> None:
    async with aiohttp.ClientSession() as http:
        status, body = await get_features(http, deployment.gateway_url, workspace, "fraud", {"account": "a"},
                                          admin_key)
    assert status == 400
    assert "user_id" in body["requestError"]["errorMessage"]


async def test_oversized_body_is_413(deployment: Deployment, admin_key: str) -> None:
    status, body = await _post(deployment.gateway_url, b"{" + b" " * (2 * 1024 * 1024) + b"}", admin_key)
    assert (status, _error_type(body)) == (413, "PAYLOAD_TOO_LARGE")


async def test_unknown_path_is_404_with_an_error_body(deployment: Deployment) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{deployment.gateway_url}/api/v1/nope") as resp:
        assert resp.status == 404
        assert "requestError" in await resp.json()


@pytest.mark.parametrize("limit", ["0", "abc", "-3", "100000"])
async def test_audit_limit_is_validated(deployment: Deployment, limit: str, admin_key: str) -> None:
    async with aiohttp.ClientSession() as http, http.get(
            f"{deployment.gateway_url}/api/v1/audit/flows", params={"limit": limit}, headers=auth(admin_key)) as resp:
        assert resp.status == 400


async def test_audit_flows_returns_recent_records_without_feature_values(deployment: Deployment,
                                                                         workspace: str, admin_key: str) -> None:
    async with aiohttp.ClientSession() as http:
        await get_features(http, deployment.gateway_url, workspace, "fraud", {"user_id": "someone"}, admin_key)
        async with http.get(f"{deployment.gateway_url}/api/v1/audit/flows", params={"limit": "50"},
                            headers=auth(admin_key)) as resp:
            assert resp.status == 200
            body = await resp.json()
    assert body["total"] >= len(body["records"]) > 0
    assert len(body["records"]) <= 50
    fields = set(body["records"][0])
    assert {"flow", "digest", "byte_count", "principal", "correlation_id", "topic"} <= fields
    assert "values" not in fields
    assert "rows" not in fields


def test_repo_file_helper_writes_python(tmp_path: Path) -> None:
    assert (write_repo(tmp_path, "x") / "features.py").read_text().count("StreamSource(") == 1


async def test_get_features_batch_serves_many_entities_in_request_order(deployment: Deployment, workspace: str,
                                                                        admin_key: str) -> None:
    body = {"params": {"workspace_name": workspace, "feature_service_name": "fraud",
                       "request_data": [{"join_key_map": {"user_id": u}} for u in ("a", "b", "c")],
                       "metadata_options": {"include_serving_status": True}}}
    async with aiohttp.ClientSession() as http, http.post(
            f"{deployment.gateway_url}/api/v1/feature-service/get-features-batch", json=body,
            headers=auth(admin_key)) as resp:
        assert resp.status == 200, await resp.text()
        answer = await resp.json()
    assert len(answer["result"]) == 3
    assert all(r["statuses"] == ["MISSING_DATA", "MISSING_DATA"] for r in answer["result"])
    assert [f["name"] for f in answer["metadata"]["features"]] == ["user_last.last_amount", "user_last.merchant"]
    too_many = {"params": {**body["params"], "request_data": [{"join_key_map": {"user_id": "x"}}] * 1001}}
    async with aiohttp.ClientSession() as http, http.post(
            f"{deployment.gateway_url}/api/v1/feature-service/get-features-batch", json=too_many,
            headers=auth(admin_key)) as resp:
        assert resp.status == 400


async def test_feature_service_metadata(deployment: Deployment, workspace: str, admin_key: str) -> None:
    url = f"{deployment.gateway_url}/api/v1/feature-service/metadata"
    body = {"params": {"workspace_name": workspace, "feature_service_name": "fraud"}}
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json=body, headers=auth(admin_key)) as resp:
            assert resp.status == 200
            answer = await resp.json()
        async with http.post(url, data=b"{nope", headers=auth(admin_key)) as resp:
            assert resp.status == 400
    assert answer["inputJoinKeys"] == [{"name": "user_id", "dataType": {"type": "string"}}]
    assert [v["name"] for v in answer["featureValues"]] == ["user_last.last_amount", "user_last.merchant"]
    assert answer["featureValues"][0]["dataType"] == {"type": "float64"}
