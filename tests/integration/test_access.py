"""Authentication and roles at the gateway: the full matrix of roles by routes, revocation, dev workspaces."""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from deploy.cluster import Deployment
from events.codec import CODEC
from events.registry import Registry
from events.snapshot import decode_snapshot, encode_snapshot
from sdk.repo import load_repo
from stores.metadata import EncryptedSnapshotStore, MetadataKey
from tests.integration.helpers import (
    apply,
    auth,
    eventually,
    get_features,
    operator_connection,
    produce_plain,
    write_repo,
)

pytestmark = pytest.mark.integration

ROLES = ["viewer", "consumer", "operator", "editor", "owner"]


async def _call(url: str, method: str, path: str, key: str | None, body: Any = None,
                data: bytes | None = None, scheme: str = "Bearer") -> tuple[int, Any]:
    headers = auth(key, scheme)
    if data is not None:
        headers["Content-Type"] = "application/x-msgpack"
    async with aiohttp.ClientSession() as http, http.request(
            method, f"{url}{path}", json=body, data=data, headers=headers) as resp:
        return resp.status, await resp.json()


@pytest.fixture(scope="module")
async def setup(deployment: Deployment, admin_key: str,
                tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A workspace with the quickstart-like repo, and one service account per role (plus one with none)."""
    url, ws = deployment.gateway_url, f"acl_{uuid.uuid4().hex[:6]}"
    repo_dir = write_repo(tmp_path_factory.mktemp("repo"), f"{deployment.settings.topic_prefix}-acl-source")
    await apply(operator_connection(deployment), repo_dir, ws, admin_key)
    keys: dict[str, str] = {"admin": admin_key}
    principals: dict[str, str] = {}
    for role in [*ROLES, "none"]:
        status, made = await _call(url, "POST", "/api/v1/service-accounts", admin_key, {"name": f"sa-{role}"})
        assert status == 201, made
        keys[role], principals[role] = made["api_key"], made["principal_id"]
        if role != "none":
            status, body = await _call(url, "POST", f"/api/v1/workspaces/{ws}/roles", admin_key,
                                       {"principal_id": made["principal_id"], "role": role})
            assert status == 200, body
    return {"url": url, "ws": ws, "keys": keys, "principals": principals, "repo": repo_dir}


def _features_body(ws: str) -> dict[str, Any]:
    return {"params": {"workspace_name": ws, "feature_service_name": "fraud", "join_key_map": {"user_id": "u1"}}}


# route -> the roles (besides the account admin) that may use it
ROUTES: dict[str, set[str]] = {
    "get-features": {"consumer", "operator", "editor", "owner"},
    "describe-workspace": {"viewer", "consumer", "operator", "editor", "owner"},
    "apply": {"editor", "owner"},
    "assign-role": {"owner"},
    "audit-flows": set(),
    "create-workspace": set(),
    "create-service-account": set(),
}


async def _use(route: str, setup: dict[str, Any], key: str) -> int:
    url, ws = setup["url"], setup["ws"]
    if route == "get-features":
        status, _ = await _call(url, "POST", "/api/v1/feature-service/get-features", key, _features_body(ws))
    elif route == "describe-workspace":
        status, _ = await _call(url, "GET", f"/api/v1/workspaces/{ws}", key)
    elif route == "apply":
        data = CODEC.encode_value(load_repo(Path(setup["repo"])))
        status, _ = await _call(url, "POST", f"/api/v1/workspaces/{ws}/apply", key, data=data)
    elif route == "assign-role":
        status, _ = await _call(url, "POST", f"/api/v1/workspaces/{ws}/roles", key,
                                {"principal_id": setup["principals"]["none"], "role": "viewer"})
        if status == 200:  # leave the principal without a role for the other cases
            await _call(url, "DELETE", f"/api/v1/workspaces/{ws}/roles", setup["keys"]["admin"],
                        {"principal_id": setup["principals"]["none"], "role": "viewer"})
    elif route == "audit-flows":
        status, _ = await _call(url, "GET", "/api/v1/audit/flows?limit=5", key)
    elif route == "create-workspace":
        status, _ = await _call(url, "POST", "/api/v1/workspaces", key, {"name": f"w_{uuid.uuid4().hex[:6]}"})
    else:
        status, _ = await _call(url, "POST", "/api/v1/service-accounts", key, {"name": "x"})
    return status


@pytest.mark.parametrize("route", list(ROUTES))
async def test_every_role_on_every_route(setup: dict[str, Any], route: str) -> None:
    got = {role: await _use(route, setup, setup["keys"][role]) for role in ["admin", *ROLES, "none"]}
    expected = {role: (403 if role not in ROUTES[route] else got[role]) for role in [*ROLES, "none"]}
    assert {r: s for r, s in got.items() if r != "admin"} == expected
    allowed = [role for role in ["admin", *ROLES] if role == "admin" or role in ROUTES[route]]
    assert all(200 <= got[role] < 300 for role in allowed), got


@pytest.mark.parametrize("route", list(ROUTES))
async def test_no_key_or_a_bad_key_is_401(setup: dict[str, Any], route: str) -> None:
    assert await _use(route, setup, "") == 401
    assert await _use(route, setup, "not-a-key") == 401
    assert await _use(route, setup, "fpk_0123456789abcdef_" + "A" * 43) == 401


async def test_the_tecton_key_scheme_is_accepted(setup: dict[str, Any]) -> None:
    status, body = await _call(setup["url"], "POST", "/api/v1/feature-service/get-features",
                               setup["keys"]["consumer"], _features_body(setup["ws"]), scheme="Tecton-key")
    assert status == 200, body


async def test_a_revoked_key_fails_on_the_next_request(setup: dict[str, Any]) -> None:
    url, admin = setup["url"], setup["keys"]["admin"]
    status, made = await _call(url, "POST", "/api/v1/service-accounts", admin, {"name": "short-lived"})
    assert status == 201
    await _call(url, "POST", f"/api/v1/workspaces/{setup['ws']}/roles", admin,
                {"principal_id": made["principal_id"], "role": "consumer"})
    key = made["api_key"]
    status, _ = await _call(url, "POST", "/api/v1/feature-service/get-features", key, _features_body(setup["ws"]))
    assert status == 200
    status, body = await _call(url, "DELETE", f"/api/v1/keys/{made['key_id']}", admin)
    assert (status, body["revoked"]) == (200, True)
    status, body = await _call(url, "POST", "/api/v1/feature-service/get-features", key, _features_body(setup["ws"]))
    assert status == 401
    assert body["requestError"]["errorType"] == "UNAUTHENTICATED"
    status, _ = await _call(url, "DELETE", f"/api/v1/keys/{made['key_id']}", admin)
    assert status == 404


async def test_a_wrong_secret_for_a_known_key_id_is_401(setup: dict[str, Any]) -> None:
    key = setup["keys"]["consumer"]
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    status, _ = await _call(setup["url"], "POST", "/api/v1/feature-service/get-features", forged,
                            _features_body(setup["ws"]))
    assert status == 401


async def test_audit_records_carry_the_principal(setup: dict[str, Any]) -> None:
    url = setup["url"]
    async with aiohttp.ClientSession() as http:
        status, _ = await get_features(http, url, setup["ws"], "fraud", {"user_id": "u7"}, setup["keys"]["consumer"])
    assert status == 200
    status, body = await _call(url, "GET", "/api/v1/audit/flows?limit=200", setup["keys"]["admin"])
    principals = {r["principal"] for r in body["records"] if r["flow"] in ("F1", "F2")}
    assert setup["principals"]["consumer"] in principals


async def test_a_refused_read_is_audited_as_denied_and_reads_nothing(setup: dict[str, Any]) -> None:
    url, viewer = setup["url"], setup["principals"]["viewer"]
    async with aiohttp.ClientSession() as http:
        status, _ = await get_features(http, url, setup["ws"], "fraud", {"user_id": "u7"}, setup["keys"]["viewer"])
    assert status == 403

    async def viewers_records() -> list[dict[str, Any]] | None:
        status, body = await _call(url, "GET", f"/api/v1/audit/flows?limit=50&principal={viewer}",
                                   setup["keys"]["admin"])
        assert status == 200, body
        records = [r for r in body["records"] if r["flow"] in ("F1", "F2", "F4")]
        return records or None

    records = await eventually(viewers_records, 20, "the viewer's refused read in the audit log")
    # every read the viewer tried (other tests try some too) was refused before anything was read
    assert {(r["flow"], r["outcome"], r["row_count"]) for r in records} == {("F1", "denied", 0)}


async def test_development_workspaces_store_definitions_but_do_not_serve(setup: dict[str, Any]) -> None:
    url, admin = setup["url"], setup["keys"]["admin"]
    name = f"dev_{uuid.uuid4().hex[:6]}"
    status, body = await _call(url, "POST", "/api/v1/workspaces", admin, {"name": name, "live": False})
    assert status == 201, body
    data = CODEC.encode_value(load_repo(Path(setup["repo"])))
    status, body = await _call(url, "POST", f"/api/v1/workspaces/{name}/apply", admin, data=data)
    assert status == 200, body
    status, body = await _call(url, "GET", f"/api/v1/workspaces/{name}", admin)
    assert (status, body["live"], body["feature_services"]) == (200, False, {"fraud": ["user_last"]})
    status, body = await _call(url, "POST", "/api/v1/feature-service/get-features", admin, _features_body(name))
    assert status == 400
    assert "development workspace" in body["requestError"]["errorMessage"]


async def test_bad_admin_requests_are_400_not_500(setup: dict[str, Any]) -> None:
    url, admin = setup["url"], setup["keys"]["admin"]
    assert (await _call(url, "POST", f"/api/v1/workspaces/{setup['ws']}/roles", admin,
                        {"principal_id": setup["principals"]["none"], "role": "king"}))[0] == 400
    assert (await _call(url, "POST", f"/api/v1/workspaces/{setup['ws']}/roles", admin,
                        {"principal_id": "sa-ghost", "role": "viewer"}))[0] == 400
    assert (await _call(url, "POST", f"/api/v1/workspaces/{setup['ws']}/apply", admin, data=b"\xc1junk"))[0] == 400
    assert (await _call(url, "POST", "/api/v1/workspaces", admin, {"name": setup["ws"]}))[0] == 400
    assert (await _call(url, "POST", "/api/v1/service-accounts", admin, {}))[0] == 400



async def test_control_plane_state_on_disk_is_encrypted_and_holds_no_feature_data(
        setup: dict[str, Any], deployment: Deployment, kafka_bootstrap: str) -> None:
    planted = "PLANTED-FEATURE-VALUE-9731"
    topic = f"{deployment.settings.topic_prefix}-acl-source"
    event = {"user_id": "u-planted", "ts": "2026-11-26T10:00:00Z", "amount": 1.0, "merchant": planted}
    await produce_plain(kafka_bootstrap, topic, [json.dumps(event).encode()])

    async def served() -> bool | None:
        async with aiohttp.ClientSession() as http:
            status, body = await get_features(http, setup["url"], setup["ws"], "fraud", {"user_id": "u-planted"},
                                              setup["keys"]["consumer"])
        return True if status == 200 and body["result"]["features"][1] == planted else None

    await eventually(served, 60, "the planted value to be served")
    # one more command, so the control plane snapshots a registry that holds everything above
    await _call(setup["url"], "POST", "/api/v1/workspaces", setup["keys"]["admin"],
                {"name": f"w_{uuid.uuid4().hex[:6]}"})

    folder = deployment.settings.store_dir("control_plane-0")
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert files, f"the control plane stored nothing under {folder}"
    plaintext = [planted, setup["ws"], "user_last", "fraud", "sa-consumer", "transactions", "user_id"]
    for path in files:
        content = path.read_bytes()
        for text in plaintext:
            assert text.encode() not in content, f"{text!r} is readable in {path}"

    key = MetadataKey.from_file(deployment.settings.metadata_key_file)  # type: ignore[arg-type]
    registry = _decrypt_snapshot(folder / "metadata", key)
    assert setup["ws"] in registry.workspaces  # the definitions are there, only not readable without the key
    assert planted.encode() not in encode_snapshot(registry)  # nor in the control plane's state at all


def _decrypt_snapshot(folder: Path, key: MetadataKey) -> Registry:
    """Read the live snapshot with the key, from a copy: the running writer holds the folder's lock."""
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "metadata"
        copy.mkdir(mode=0o700)
        shutil.copy(folder / "snapshot.fpmeta", copy / "snapshot.fpmeta")
        with EncryptedSnapshotStore(copy, key) as store:
            loaded = store.load()
    assert loaded is not None
    return decode_snapshot(loaded[0])
