"""`featureplane replay`: the shipped scenarios on fresh deployments of their own (each its own broker, Ray,
topic prefix and ports, as `featureplane up` starts them), one scenario against the session's running
deployment, the report in headless Chromium, and the gateway's /ui/lineage page."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from deploy import replay
from deploy.cluster import Deployment
from deploy.kafka import REPO_ROOT
from tests.integration.helpers import auth, operator_connection, write_repo

pytestmark = pytest.mark.integration

REPLAY_TIMEOUT_S = 600


def run_replay(scenario: str, out: Path) -> tuple[int, dict[str, Any], str]:
    """The CLI, as a user runs it: exit code, report.json, stdout."""
    done = subprocess.run([sys.executable, "-m", "deploy.cli", "replay", str(REPO_ROOT / "scenarios" / scenario),
                           "--out", str(out)], capture_output=True, text=True, timeout=REPLAY_TIMEOUT_S,
                          cwd=REPO_ROOT, check=False)
    assert (out / "report.json").exists(), done.stderr[-3000:]
    return done.returncode, json.loads((out / "report.json").read_text()), done.stdout


def run_replays(runs: list[tuple[str, Path]]) -> list[tuple[int, dict[str, Any], str]]:
    """Scenarios replayed into their folders, two at a time: each replay is its own deployment (broker, Ray,
    ports, topic prefix), and most of a replay is waiting for those to start."""
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda run: run_replay(*run), runs))


def assert_passed(code: int, report: dict[str, Any]) -> None:
    unmet = [e for e in report["expectations"] if not e["met"]]
    assert code == 0, unmet
    assert report["passed"], unmet


@pytest.fixture(scope="module")
def quickstart_reports(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[int, dict[str, Any], Path]]:
    """The quickstart replayed twice, each time on a fresh deployment."""
    outs = [tmp_path_factory.mktemp(f"quickstart{i}") for i in range(2)]
    reports = run_replays([("quickstart.yaml", out) for out in outs])
    return [(code, report, out) for (code, report, _), out in zip(reports, outs, strict=True)]


@pytest.fixture(scope="module")
def misuse_and_fraud(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, dict[str, Any], str]]:
    """The misuse and fraud_detection scenarios, each on a fresh deployment, replayed side by side."""
    names = ["misuse", "fraud_detection"]
    reports = run_replays([(f"{name}.yaml", tmp_path_factory.mktemp(name)) for name in names])
    return dict(zip(names, reports, strict=True))


def test_quickstart_replays_green(quickstart_reports: list[tuple[int, dict[str, Any], Path]]) -> None:
    code, report, out = quickstart_reports[0]
    assert_passed(code, report)
    assert [i["status"] for i in report["invariants"]] == ["held"] * 5
    flows = {f["flow"]: f for f in report["flows"]}
    assert {"F1", "F2", "F3", "F4", "F5", "F7", "F8", "F9"} <= set(flows)
    assert flows["F5"]["rows"] == 5
    assert flows["F1"]["principals"] == ["fraud-model"]
    assert all(f["outcome"] == "allowed" for f in report["flows"])
    u1 = next(c for c in report["lineage"] if c["entity_key"] == ["u1"])
    assert [(s["topic"], s["first_offset"] <= 2 <= s["last_offset"]) for s in u1["sources"]] == [("transactions", True)]
    assert (out / "report.html").read_text().count('class="plane"') == 3


def test_two_replays_of_one_scenario_give_one_digest(
        quickstart_reports: list[tuple[int, dict[str, Any], Path]]) -> None:
    (_, first, _), (_, second, _) = quickstart_reports
    assert first["deployment"]["topic_prefix"] != second["deployment"]["topic_prefix"]
    assert first["deployment"]["gateway"] != second["deployment"]["gateway"]
    assert first["digest"] == second["digest"]


def test_the_report_opens_in_headless_chromium_and_shows_the_planes(
        quickstart_reports: list[tuple[int, dict[str, Any], Path]]) -> None:
    browser = shutil.which("chromium")
    assert browser, "headless Chromium is missing: run `make chromium` (make test does)"
    page = quickstart_reports[0][2] / "report.html"
    done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=120, check=True)
    dom = done.stdout
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="planes"' in dom
    for plane in ("control", "data", "customer"):
        assert f'data-plane="{plane}"' in dom
    assert 'data-flow="F7"' in dom
    assert "PASSED" in dom


def test_misuse_is_flagged_exactly(misuse_and_fraud: dict[str, tuple[int, dict[str, Any], str]]) -> None:
    code, report, stdout = misuse_and_fraud["misuse"]
    assert_passed(code, report)
    assert [(m["name"], m["flagged"]) for m in report["misuse"]] == [
        ("viewer-reads-features", True), ("rift-sends-rows-to-control-plane", True),
        ("stored-f7-record-changed", True)]
    broken = {i["name"]: i["findings"] for i in report["invariants"] if i["status"] == "broken"}
    assert sorted(broken) == ["all flows allowed", "audit hash chain intact"]
    refused_read, refused_send = sorted(broken["all flows allowed"], key=lambda f: f["flow"])
    assert (refused_read["flow"], refused_read["principal"], refused_read["claimed_by"]) == (
        "F1", "analyst", "viewer-reads-features")  # the gateway audits the refused read
    assert (refused_send["flow"], refused_send["from_component"], refused_send["to_plane"],
            refused_send["claimed_by"]) == ("F9", "rift", "control", "rift-sends-rows-to-control-plane")
    [chain] = broken["audit hash chain intact"]
    tampered = report["misuse"][2]["step"]
    assert chain["seq"] == tampered["tampered_seq"]
    assert tampered["chain_before"] == "intact"
    assert report["misuse"][0]["step"] == {"status": 403, "error_type": "PERMISSION_DENIED"}
    assert report["misuse"][1]["step"]["leaked_value_in_audit_log"] is False
    assert "misuse flagged: stored-f7-record-changed" in stdout


def test_fraud_detection_replays_green(misuse_and_fraud: dict[str, tuple[int, dict[str, Any], str]]) -> None:
    code, report, _ = misuse_and_fraud["fraud_detection"]
    assert_passed(code, report)
    flows = {f["flow"]: f for f in report["flows"]}
    assert flows["F5"]["rows"] == 305  # 300 generated + 3 known on the topic, 2 chargebacks over HTTP
    assert "disputes-service" in flows["F5"]["principals"]
    # The realtime view, computed from the request context and the user's stored aggregates.
    risk = next(q for q in report["queries"] if q["service"] == "authorization_risk")
    assert risk["request_context"] == {"amount": 120.0, "country": "DE"}
    assert (risk["features"]["transaction_risk.amount_vs_mean_1h"], risk["features"]["transaction_risk.new_country"],
            risk["statuses"]["transaction_risk.unusual_amount"]) == (6.0, True, "PRESENT")


def test_batch_backfill_replays_green_with_its_jobs_f6_and_training_data(tmp_path: Path) -> None:
    (code, report, stdout), (_, again, _) = run_replays([("batch_backfill.yaml", tmp_path / "first"),
                                                         ("batch_backfill.yaml", tmp_path / "second")])
    assert_passed(code, report)
    assert [i["status"] for i in report["invariants"]] == ["held"] * 5
    flows = {f["flow"]: f for f in report["flows"]}
    assert {"F6", "F8", "F9"} <= set(flows)
    assert flows["F6"]["routes"] == ["customer_app (customer) -> rift (data)"]
    assert flows["F6"]["rows"] == 10  # the 6 rows of the CSV by the backfill on Rift, 4 by the manual range
    assert "batch-operator" in flows["F8"]["principals"]  # the manual trigger's job
    assert "F6 allowed" in stdout

    jobs = report["jobs"]
    assert {j["state"] for j in jobs} == {"succeeded"}
    rows_read: dict[tuple[str, str, str], int] = {}
    for j in jobs:
        key = (j["feature_view"], j["trigger"], j["compute"])
        rows_read[key] = rows_read.get(key, 0) + j["source_rows"]
    assert rows_read == {("user_spending", "backfill", "rift"): 6, ("user_totals", "backfill", "external"): 6,
                         ("user_merchants", "manual", "rift"): 4}
    [manual] = [j for j in jobs if j["trigger"] == "manual"]
    assert (manual["start"], manual["end"]) == ("2026-01-01T00:00:00+00:00", "2026-01-04T00:00:00+00:00")
    assert report["materialize"][0]["met"]

    [training] = report["training"]
    assert training["met"], training["checks"]
    assert training["rows"][1]["user_spending.last_amount"] == 60.0  # as of 2026-01-03 12:00, not the last row
    page = (tmp_path / "first" / "report.html").read_text()
    assert "<h2>Batch jobs</h2>" in page
    assert 'data-flow="F6"' in page

    assert again["digest"] == report["digest"]


async def test_replay_against_a_running_deployment_and_its_lineage_page(
        deployment: Deployment, admin_key: str, tmp_path: Path) -> None:
    settings = deployment.settings
    topic = f"tx-{uuid.uuid4().hex[:8]}"
    write_repo(tmp_path / "repo", topic)
    (tmp_path / "s.yaml").write_text("""
name: against
repo: repo
workspace: shared
principals: [{name: model, roles: [consumer]}, {name: auditor, roles: [viewer]}]
streams: [{source: transactions, rows: [{user_id: a1, ts: "2026-11-26T09:00:00Z", amount: 3.5, merchant: m}]}]
queries: [{service: fraud, principal: model, keys: {user_id: a1}, expect: {last_amount: 3.5}, lineage: true}]
expect_flows: {F5: {min: 1}, F4: {min: 1}}
""")
    options = replay.ReplayOptions(tmp_path / "s.yaml", tmp_path / "out", deployment.gateway_url, admin_key,
                                   settings.bootstrap_servers, settings.topic_prefix, settings.state_dir,
                                   settings.kafka_credentials)  # the operator's login, as the CLI passes it
    report = await asyncio.to_thread(replay.run, options)
    assert report["passed"], [e for e in report["expectations"] if not e["met"]]
    workspace = report["deployment"]["workspace"]
    assert workspace.startswith("shared-")
    assert report["deployment"]["mode"] == "against"
    assert {f["flow"] for f in report["flows"]} >= {"F1", "F4", "F5", "F7"}
    chain = next(i for i in report["invariants"] if i["name"] == "audit hash chain intact")
    assert chain["status"] == "held"

    conn = operator_connection(deployment)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{conn.gateway_url}/api/v1/service-accounts", json={"name": "auditor2"},
                             headers=auth(admin_key)) as resp:
            viewer = await resp.json()
        async with http.post(f"{conn.gateway_url}/api/v1/workspaces/{workspace}/roles",
                             json={"principal_id": viewer["principal_id"], "role": "viewer"},
                             headers=auth(admin_key)) as resp:
            assert resp.status == 200
        page_url = f"{conn.gateway_url}/ui/lineage?workspace={workspace}"
        async with http.get(page_url, headers=auth(viewer["api_key"])) as resp:
            assert resp.status == 200
            assert resp.content_type == "text/html"
            page = await resp.text()
        async with http.get(page_url) as resp:
            assert resp.status == 401
        async with http.get(f"{conn.gateway_url}/ui/lineage", headers=auth(viewer["api_key"])) as resp:
            assert resp.status == 403  # every workspace's flows: account admins only
    assert page.count('class="plane"') == 3
    assert 'data-flow="F5"' in page
    assert 'data-flow="F4"' in page
