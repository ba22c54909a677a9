"""Authentication and roles at the gateway: the full matrix of roles by routes, revocation, dev workspaces."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import polars as pl
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
from tests.integration.route_matrix import CALLERS, CASES, ROLES, Case

pytestmark = pytest.mark.integration

# Definition bodies planted in the repo: the control plane keeps them encrypted, the audit log never sees them.
PLANTED_SQL = "SELECT user_id, ts, amount * 7 AS sevenfold FROM source"
PLANTED_DESCRIPTION = "PLANTED-DESCRIPTION clicks pushed by the web shop"
MORE_DEFINITIONS = f"""
from datetime import timedelta
from sdk import BatchFeatureView, BatchSource, PushSource

clicks = PushSource(name="clicks", timestamp_field="ts", description="{PLANTED_DESCRIPTION}",
                    schema=[Field("user_id", "string"), Field("ts", "timestamp"), Field("page", "string")])
last_click = StreamFeatureView(name="last_click", source=clicks, entities=[user],
                               features=[Attribute("page", "string", name="last_page")])
purchases = BatchSource(name="purchases", path="{{path}}", timestamp_field="ts",
                        schema=[Field("user_id", "string"), Field("ts", "timestamp"), Field("amount", "float64")])
spend = BatchFeatureView(name="spend", source=purchases, entities=[user], transformation="{PLANTED_SQL}",
                         features=[Attribute("sevenfold", "float64")], batch_schedule=timedelta(days=1))
"""

# Callers that hold no valid key: each must get 401 on every route.
BAD_KEYS = {"missing": "", "malformed": "not-a-key", "unknown": "fpk_0123456789abcdef_" + "A" * 43}
SLOTS = [*CALLERS, *BAD_KEYS]  # one call per slot and route; each slot has its own target account


async def _call(url: str, method: str, path: str, key: str | None, body: Any = None,
                data: bytes | None = None, scheme: str = "Bearer") -> tuple[int, Any]:
    headers = auth(key, scheme)
    if data is not None:
        headers["Content-Type"] = "application/x-msgpack"
    async with aiohttp.ClientSession() as http, http.request(
            method, f"{url}{path}", json=body, data=data, headers=headers) as resp:
        return resp.status, await resp.json()


def _write_access_repo(folder: Path, topic: str) -> Path:
    write_repo(folder, topic)
    rows = pl.DataFrame({"user_id": ["u1"], "ts": [datetime(2026, 1, 1, tzinfo=UTC)], "amount": [2.0]})
    rows.write_parquet(folder / "purchases.parquet")
    with (folder / "features.py").open("a") as repo:
        repo.write(MORE_DEFINITIONS.format(path=folder / "purchases.parquet"))
    return folder


async def _service_account(url: str, admin_key: str, name: str, role: str | None, ws: str) -> dict[str, Any]:
    status, made = await _call(url, "POST", "/api/v1/service-accounts", admin_key, {"name": name})
    assert status == 201, made
    if role is not None:
        status, body = await _call(url, "POST", f"/api/v1/workspaces/{ws}/roles", admin_key,
                                   {"principal_id": made["principal_id"], "role": role})
        assert status == 200, body
    return dict(made)


@pytest.fixture(scope="module")
async def setup(deployment: Deployment, admin_key: str,
                tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A workspace with a stream, a push and a batch feature view; one service account per role (plus one
    with none); and per matrix slot a target account holding the viewer role and a key, for the routes that
    act on another principal (assign/unassign a role, issue/revoke a key) to act on."""
    url, ws = deployment.gateway_url, f"acl_{uuid.uuid4().hex[:6]}"
    repo_dir = _write_access_repo(tmp_path_factory.mktemp("repo"), f"{deployment.settings.topic_prefix}-acl-source")
    await apply(operator_connection(deployment), repo_dir, ws, admin_key)
    callers = await asyncio.gather(*(_service_account(url, admin_key, f"sa-{role}", None if role == "none" else role,
                                                      ws) for role in [*ROLES, "none"]))
    targets = await asyncio.gather(*(_service_account(url, admin_key, f"target-{slot}", "viewer", ws)
                                     for slot in SLOTS))
    # a second key per target to watch role changes through, whether or not revoke-key ran before
    probes = await asyncio.gather(*(_call(url, "POST", f"/api/v1/principals/{t['principal_id']}/keys", admin_key,
                                          {"description": "probe"}) for t in targets))
    for target, (status, probe) in zip(targets, probes, strict=True):
        assert status == 201, probe
        target["probe_key"] = probe["api_key"]
    keys = {"admin": admin_key, **{role: made["api_key"] for role, made in zip([*ROLES, "none"], callers, strict=True)},
            **BAD_KEYS}
    principals = {role: made["principal_id"] for role, made in zip([*ROLES, "none"], callers, strict=True)}
    return {"url": url, "ws": ws, "keys": keys, "principals": principals, "repo": repo_dir,
            "targets": dict(zip(SLOTS, targets, strict=True))}


def _features_body(ws: str) -> dict[str, Any]:
    return {"params": {"workspace_name": ws, "feature_service_name": "fraud", "join_key_map": {"user_id": "u1"}}}


def _request(case: str, setup: dict[str, Any], slot: str) -> tuple[str, dict[str, Any]]:
    """The path and request options of one call of `case`, acting on `slot`'s own target account (and, for
    materialize, its own day: the same range twice would be refused as overlapping)."""
    ws, target = setup["ws"], setup["targets"][slot]
    day = datetime(2026, 2, 1, tzinfo=UTC) + timedelta(days=SLOTS.index(slot))
    repo = {"data": CODEC.encode_value(load_repo(Path(setup["repo"])))}
    requests: dict[str, tuple[str, dict[str, Any]]] = {
        "get-features": ("/api/v1/feature-service/get-features", {"json": _features_body(ws)}),
        "get-features-batch": ("/api/v1/feature-service/get-features-batch", {"json": {"params": {
            "workspace_name": ws, "feature_service_name": "fraud",
            "request_data": [{"join_key_map": {"user_id": "u1"}}, {"join_key_map": {"user_id": "u2"}}]}}}),
        "service-metadata": ("/api/v1/feature-service/metadata", {"json": {"params": {
            "workspace_name": ws, "feature_service_name": "fraud"}}}),
        "ingest": ("/ingest", {"json": {"workspace_name": ws, "records": {"clicks": [{"record": {
            "user_id": f"u-{slot}", "ts": datetime.now(UTC).isoformat(), "page": "home"}}]}}}),
        "lineage": ("/api/v1/lineage", {"json": _features_body(ws)}),
        "lineage-of-write": (f"/api/v1/lineage/writes/{uuid.uuid4().hex}", {}),  # unknown: 200, no sources
        "audit-flows": ("/api/v1/audit/flows?limit=5", {}),
        "materialize": ("/api/v1/materialize", {"json": {
            "workspace": ws, "feature_view": "spend", "start": day.isoformat(),
            "end": (day + timedelta(days=1)).isoformat()}}),
        "jobs": (f"/api/v1/jobs?workspace={ws}", {}),
        "plan": (f"/api/v1/workspaces/{ws}/plan", repo),
        "apply": (f"/api/v1/workspaces/{ws}/apply", repo),
        "list-workspaces": ("/api/v1/workspaces", {}),
        "create-workspace": ("/api/v1/workspaces", {"json": {"name": f"w_{uuid.uuid4().hex[:6]}"}}),
        "describe-workspace": (f"/api/v1/workspaces/{ws}", {}),
        "assign-role": (f"/api/v1/workspaces/{ws}/roles", {"json": {
            "principal_id": target["principal_id"], "role": "consumer"}}),
        "unassign-role": (f"/api/v1/workspaces/{ws}/roles", {"json": {
            "principal_id": target["principal_id"], "role": "viewer"}}),
        "create-service-account": ("/api/v1/service-accounts", {"json": {"name": f"made-by-{slot}"}}),
        "create-user": ("/api/v1/users", {"json": {"name": f"user-by-{slot}"}}),
        "list-keys": ("/api/v1/keys", {}),
        "issue-key": (f"/api/v1/principals/{target['principal_id']}/keys", {"json": {"description": slot}}),
        "revoke-key": (f"/api/v1/keys/{target['key_id']}", {}),
        "ui-lineage-of-workspace": (f"/ui/lineage?workspace={ws}", {}),
        "ui-lineage-of-all": ("/ui/lineage", {}),
    }
    return requests[case]


async def _outcome(http: aiohttp.ClientSession, setup: dict[str, Any], case: Case, slot: str) -> str:
    """"2xx", "401" or "403" (anything else with the body, to show what went wrong)."""
    path, options = _request(case.name, setup, slot)
    headers = auth(setup["keys"][slot])
    if "data" in options:
        headers["Content-Type"] = "application/x-msgpack"
    async with http.request(case.method, f"{setup['url']}{path}", headers=headers, **options) as resp:
        text = await resp.text()
        if 200 <= resp.status < 300:
            return "2xx"
        expected_type = {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED"}.get(resp.status)
        if expected_type is not None and json.loads(text)["requestError"]["errorType"] == expected_type:
            return str(resp.status)
        return f"{resp.status}: {text[:300]}"


# What the calls that act on another principal did to their target, seen through the target's own key:
# case -> (a probe, its status when the call was allowed, its status when it was refused). Each slot has
# its own target (role changes are watched through its second key, revoke-key revokes its first), so the
# answer does not depend on which of these cases ran first.
EFFECTS: dict[str, tuple[str, str, int, int]] = {
    "assign-role": ("POST", "/api/v1/feature-service/get-features", 200, 403),  # consumer given, or still viewer
    "unassign-role": ("GET", "/api/v1/workspaces/{ws}", 403, 200),  # no role left, or still viewer
    "revoke-key": ("GET", "/api/v1/workspaces", 401, 200),  # the key is gone, or still valid
}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_every_caller_on_every_route(setup: dict[str, Any], case: Case) -> None:
    """Each role and the admin get 2xx or 403 as route_matrix.py's table says; no key, a malformed key and
    an unknown key get 401. The calls of one route run concurrently: each acts on its own target."""
    async with aiohttp.ClientSession() as http:
        got = await asyncio.gather(*(_outcome(http, setup, case, slot) for slot in SLOTS))
    expected = {**{c: "2xx" if case.allows(c) else "403" for c in CALLERS}, **dict.fromkeys(BAD_KEYS, "401")}
    assert dict(zip(SLOTS, got, strict=True)) == expected
    if case.name in EFFECTS:
        method, path, if_allowed, if_refused = EFFECTS[case.name]
        key = "api_key" if case.name == "revoke-key" else "probe_key"
        seen = {slot: (await _call(setup["url"], method, path.format(ws=setup["ws"]),
                                   setup["targets"][slot][key], _features_body(setup["ws"])))[0]
                for slot in SLOTS}
        assert seen == {slot: if_allowed if slot in CALLERS and case.allows(slot) else if_refused
                        for slot in SLOTS}


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


async def test_every_audit_record_of_a_read_carries_the_callers_principal(setup: dict[str, Any]) -> None:
    """One get-features call by a consumer: its request (F1), the online read (F2), the read's reply (F3) and
    the response (F4) are each audited with the consumer as principal. The API takes no correlation id, so
    the call's F1 record is found as the only F1 of the workspace since the call started (this module's tests
    run one at a time), and the others by its correlation id."""
    url, admin, ws, consumer = setup["url"], setup["keys"]["admin"], setup["ws"], setup["principals"]["consumer"]
    since = datetime.now(UTC).isoformat()
    async with aiohttp.ClientSession() as http:
        status, _ = await get_features(http, url, ws, "fraud", {"user_id": f"u-{uuid.uuid4().hex}"},
                                       setup["keys"]["consumer"])
    assert status == 200

    async def query(filters: dict[str, str]) -> list[dict[str, Any]]:
        async with aiohttp.ClientSession() as http, http.get(f"{url}/api/v1/audit/flows", headers=auth(admin),
                                                             params={"limit": "200", **filters}) as resp:
            assert resp.status == 200, await resp.text()
            return list((await resp.json())["records"])

    async def the_request() -> list[dict[str, Any]] | None:
        found = await query({"flow": "F1", "workspace": ws, "since": since})
        return found or None

    requests = await eventually(the_request, 20, "the call's F1 record")
    assert len({r["correlation_id"] for r in requests}) == 1, requests
    correlation = requests[0]["correlation_id"]

    async def all_four_flows() -> list[dict[str, Any]] | None:
        records = [r for r in await query({"correlation_id": correlation}) if r["flow"] in ("F1", "F2", "F3", "F4")]
        return records if {r["flow"] for r in records} == {"F1", "F2", "F3", "F4"} else None

    records = await eventually(all_four_flows, 20, "the F1..F4 records of the call")
    assert {(r["flow"], r["principal"]) for r in records} == {(f, consumer) for f in ("F1", "F2", "F3", "F4")}


async def test_a_refused_read_is_audited_as_denied_and_reads_nothing(setup: dict[str, Any]) -> None:
    """The viewer's get-features: its F1 record says denied, and nothing else carries its correlation id (no
    online read, no response). (The viewer's other F2 records are lineage's reads, which return no values.)"""
    url, viewer = setup["url"], setup["principals"]["viewer"]
    since = datetime.now(UTC).isoformat()
    async with aiohttp.ClientSession() as http:
        status, _ = await get_features(http, url, setup["ws"], "fraud", {"user_id": "u7"}, setup["keys"]["viewer"])
    assert status == 403

    async def query(filters: dict[str, str]) -> list[dict[str, Any]]:
        async with aiohttp.ClientSession() as http, http.get(
                f"{url}/api/v1/audit/flows", headers=auth(setup["keys"]["admin"]),
                params={"limit": "200", **filters}) as resp:
            assert resp.status == 200, await resp.text()
            return list((await resp.json())["records"])

    async def the_request() -> list[dict[str, Any]] | None:
        return await query({"flow": "F1", "principal": viewer, "since": since}) or None

    requests = await eventually(the_request, 20, "the viewer's refused read in the audit log")
    assert [(r["outcome"], r["row_count"]) for r in requests] == [("denied", 0)]
    # refused before any read: no online read, reply or response of this call exists, nor ever will
    records = await query({"correlation_id": requests[0]["correlation_id"]})
    assert [r["flow"] for r in records] == ["F1"]


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
    # and through the ingest API, whose records the audit log sees arrive (flow F5)
    status, body = await _call(setup["url"], "POST", "/ingest", setup["keys"]["editor"], {
        "workspace_name": setup["ws"], "records": {"clicks": [{"record": {
            "user_id": "u-planted", "ts": datetime.now(UTC).isoformat(), "page": planted}}]}})
    assert status == 200, body
    # one more command, so the control plane snapshots a registry that holds everything above
    await _call(setup["url"], "POST", "/api/v1/workspaces", setup["keys"]["admin"],
                {"name": f"w_{uuid.uuid4().hex[:6]}"})

    folder = deployment.settings.store_dir("control_plane-0")
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert files, f"the control plane stored nothing under {folder}"
    plaintext = [planted, setup["ws"], "user_last", "fraud", "sa-consumer", "transactions", "user_id",
                 PLANTED_SQL, PLANTED_DESCRIPTION]
    _assert_unreadable(files, plaintext)
    # The audit log, the control plane's other component, keeps names in plain text (workspaces, views,
    # principals: what an auditor filters by) but never a feature value nor a definition's body.
    audit_files = [p for p in deployment.settings.store_dir("audit_log-0").rglob("*") if p.is_file()]
    assert audit_files, "the audit log stored nothing"
    assert any(setup["ws"].encode() in p.read_bytes() for p in audit_files)  # the scan reads what is there
    _assert_unreadable(audit_files, [planted, PLANTED_SQL, PLANTED_DESCRIPTION])

    key = MetadataKey.from_file(deployment.settings.metadata_key_file)  # type: ignore[arg-type]
    registry = _decrypt_snapshot(folder / "metadata", key)
    assert setup["ws"] in registry.workspaces  # the definitions are there, only not readable without the key
    assert planted.encode() not in encode_snapshot(registry)  # nor in the control plane's state at all


def _assert_unreadable(files: list[Path], texts: list[str]) -> None:
    for path in files:
        content = path.read_bytes()
        for text in texts:
            assert text.encode() not in content, f"{text!r} is readable in {path}"


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
