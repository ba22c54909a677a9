"""The `featureplane` command as a user runs it: up, `make demo`, apply, plan, ingest, users, roles, keys,
workspaces, query, status, down."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from deploy.client import http_json
from deploy.kafka import KAFKA_VERSION, REPO_ROOT, pid_alive
from deploy.runinfo import RunInfo
from tests.integration.conftest import free_ports

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "deploy.cli"]


def _run(state_dir: Path, *args: str, stdin: str | None = None,
         timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FEATUREPLANE_STATE_DIR": str(state_dir)}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, input=stdin, timeout=timeout,
                          cwd=REPO_ROOT, env=env, check=False)


def _get_features(gateway: str, user: str, key: str) -> tuple[int, Any]:
    body = {"params": {"workspace_name": "prod", "feature_service_name": "fraud_detection",
                       "join_key_map": {"user_id": user}}}
    return http_json(f"{gateway}/api/v1/feature-service/get-features", body, api_key=key)


def _plan_then_apply(state_dir: Path) -> None:
    """plan shows nothing to do for the applied repo, the diff for a changed one, and a stale plan is refused."""
    same = _run(state_dir, "plan", "examples/quickstart", "--workspace", "prod")
    assert same.returncode == 0, same.stderr
    assert "no change(s)" in same.stdout
    edited = state_dir.parent / "edited"
    shutil.copytree(REPO_ROOT / "examples" / "quickstart", edited)
    source = (edited / "features.py").read_text()
    (edited / "features.py").write_text(source.replace('"The most recent transaction of each user"',
                                                       '"The latest transaction of each user"'))
    planned = _run(state_dir, "plan", str(edited), "--workspace", "prod")
    assert planned.returncode == 0, planned.stderr
    assert "~ update feature view 'user_last_transaction' (description)" in planned.stdout
    plan_id = re.search(r"--plan-id ([0-9a-f]{16})", planned.stdout)
    assert plan_id, planned.stdout
    # someone else changes the workspace first: the saved plan no longer holds
    other = edited.parent / "other"
    shutil.copytree(REPO_ROOT / "examples" / "quickstart", other)
    (other / "features.py").write_text(source.replace('"The most recent transaction of each user"', '"Changed"'))
    assert _run(state_dir, "apply", str(other), "--workspace", "prod").returncode == 0
    stale = _run(state_dir, "apply", "--plan-id", plan_id.group(1))
    assert stale.returncode == 2
    assert "changed since the plan" in stale.stderr
    replanned = _run(state_dir, "plan", str(edited), "--workspace", "prod")
    fresh = re.search(r"--plan-id ([0-9a-f]{16})", replanned.stdout)
    assert fresh, replanned.stdout
    done = _run(state_dir, "apply", "--plan-id", fresh.group(1))
    assert done.returncode == 0, done.stderr
    assert "applied 1 change(s)" in done.stdout


# The latest event of each user in examples/quickstart/events.jsonl (u2's 08:59 event arrives late and loses).
DEMO_VALUES = {"u1": ("42.0", "books", "True"), "u2": ("250.0", "electronics", "True"),
               "u3": ("7.25", "coffee", "False")}
# What the demo crosses: get-features (F1, F4) and the store reads behind them (F2, F3), its events (F5) and
# their writes (F7), definitions and ACLs (F8), and the gateway's commands and audit queries (F9). No batch: no F6.
DEMO_FLOWS = {"F1", "F2", "F3", "F4", "F5", "F7", "F8", "F9"}
KEY_FIELDS = {"key_id", "principal_id", "description", "created_by", "created_at", "revoked"}


def _make_demo(state_dir: Path) -> None:
    """The rest of `make demo` after its `up` and `apply`: the demo script as the Makefile runs it, then
    `audit verify`."""
    env = {**os.environ, "FEATUREPLANE_STATE_DIR": str(state_dir)}
    demo = subprocess.run([sys.executable, "examples/quickstart/demo.py"], capture_output=True, text=True,
                          timeout=240, cwd=REPO_ROOT, env=env, check=False)
    assert demo.returncode == 0, demo.stderr + demo.stdout
    for user, (amount, merchant, online) in DEMO_VALUES.items():
        view = "  user_last_transaction"
        values = (f"user_id={user} -> HTTP 200\n{view}.last_amount +{re.escape(amount)}\n"
                  f"{view}.last_merchant +{merchant}\n{view}.last_is_online +{online}\n")
        assert re.search(values, demo.stdout), demo.stdout
    flows = re.findall(r"^  (F\d)  messages=[1-9]\d* +rows=\d+ +bytes=\d+ +\S.* -> ", demo.stdout, re.M)
    assert sorted(flows) == sorted(DEMO_FLOWS), demo.stdout  # one summary line per flow
    verify = _run(state_dir, "audit", "verify")
    assert verify.returncode == 0, verify.stderr
    assert "audit chain intact" in verify.stdout


def _key_of(output: str) -> str:
    found = re.search(r"(fpk_[0-9a-f]{16}_\S+)", output)
    assert found, output
    return found.group(1)


def _until_status(gateway: str, key: str, status: int) -> None:
    """get-features with `key` until it answers `status` (a role change reaches every replica's read model)."""
    deadline = time.monotonic() + 60
    while (answer := _get_features(gateway, "u1", key))[0] != status:
        assert time.monotonic() < deadline, f"still {answer}, expected HTTP {status}"
        time.sleep(0.3)


def _users_roles_and_keys(state_dir: Path, gateway: str, revoked_key_id: str) -> None:
    """A user gets and loses a role, a second key; only admins create users; the key list shows metadata only."""
    made = _run(state_dir, "user", "create", "--name", "alice", "--email", "alice@example.com")
    assert made.returncode == 0, made.stderr
    found = re.search(r"^created user (user-[0-9a-f]+) \('alice'\)$", made.stdout, re.M)
    assert found, made.stdout
    alice, alice_key = found.group(1), _key_of(made.stdout)
    assert _get_features(gateway, "u1", alice_key)[0] == 403  # no role yet
    granted = _run(state_dir, "access", "assign-role", "--role", "consumer", "--workspace", "prod",
                   "--principal", alice)
    assert granted.returncode == 0, granted.stderr
    assert f"assigned role consumer for {alice} in workspace 'prod'" in granted.stdout
    _until_status(gateway, alice_key, 200)
    removed = _run(state_dir, "access", "unassign-role", "--role", "consumer", "--workspace", "prod",
                   "--principal", alice)
    assert removed.returncode == 0, removed.stderr
    assert f"removed role consumer for {alice} in workspace 'prod'" in removed.stdout
    _until_status(gateway, alice_key, 403)

    second = _run(state_dir, "keys", "create", "--principal", alice, "--description", "alice's laptop")
    assert second.returncode == 0, second.stderr
    second_key = _key_of(second.stdout)
    second_id, first_id = second_key.split("_")[1], alice_key.split("_")[1]
    assert f"API key {second_id} for {alice}" in second.stdout
    status, own = http_json(f"{gateway}/api/v1/keys", api_key=second_key)  # a non-admin sees its own keys only
    assert status == 200, own
    assert {(k["key_id"], k["principal_id"], k["revoked"]) for k in own["keys"]} == {
        (first_id, alice, False), (second_id, alice, False)}

    refused = _run(state_dir, "--api-key", alice_key, "user", "create", "--name", "eve")
    assert refused.returncode == 2
    assert "not an account admin" in refused.stderr
    boss = _run(state_dir, "user", "create", "--name", "bob", "--email", "bob@example.com", "--admin")
    assert boss.returncode == 0, boss.stderr
    assert "(account admin)" in boss.stdout
    bob_key = _key_of(boss.stdout)
    by_bob = _run(state_dir, "--api-key", bob_key, "workspace", "create", "bobs")  # an admin's right
    assert by_bob.returncode == 0, by_bob.stderr
    assert "created live workspace 'bobs'" in by_bob.stdout

    listed = _run(state_dir, "keys", "list")
    assert listed.returncode == 0, listed.stderr
    assert re.search(rf"^{second_id}\s+{alice}\s+active\s+20\S+\s+admin\s+alice's laptop$", listed.stdout, re.M)
    assert re.search(rf"^{revoked_key_id}\s+sa-[0-9a-f]+\s+revoked\s", listed.stdout, re.M)
    assert re.search(r"\badmin\s+active\s+20\S+\s+featureplane up\s+bootstrap admin key$", listed.stdout, re.M)
    assert "fpk_" not in listed.stdout
    for secret in (alice_key, second_key, bob_key):
        assert secret.split("_", 2)[2] not in listed.stdout
    status, every = http_json(f"{gateway}/api/v1/keys", api_key=bob_key)
    assert status == 200, every
    assert len(every["keys"]) > len(own["keys"])
    assert all(set(k) == KEY_FIELDS for k in every["keys"])  # never a salt, hash or secret


def _workspaces_and_blocked_plan(state_dir: Path) -> None:
    """A selected workspace is the default of later commands; removing a prevent_destroy view is BLOCKED."""
    made = _run(state_dir, "workspace", "create", "staging", "--development")
    assert made.returncode == 0, made.stderr
    assert "created development workspace 'staging'" in made.stdout
    selected = _run(state_dir, "workspace", "select", "staging")
    assert selected.returncode == 0, selected.stderr
    listed = _run(state_dir, "workspace", "list")
    assert re.search(r"^\* staging\s+development$", listed.stdout, re.M), listed.stdout
    assert re.search(r"^  prod\s+live$", listed.stdout, re.M), listed.stdout

    source = (REPO_ROOT / "examples" / "quickstart" / "features.py").read_text()
    guarded = state_dir.parent / "guarded"
    shutil.copytree(REPO_ROOT / "examples" / "quickstart", guarded)
    (guarded / "features.py").write_text(source.replace(
        '    description="The most recent transaction of each user",\n',
        '    description="The most recent transaction of each user",\n    prevent_destroy=True,\n'))
    applied = _run(state_dir, "apply", str(guarded))  # no --workspace: the selected one
    assert applied.returncode == 0, applied.stderr
    assert "applied 4 change(s) to workspace 'staging'" in applied.stdout

    unguarded = state_dir.parent / "unguarded"
    shutil.copytree(REPO_ROOT / "examples" / "quickstart", unguarded)
    (unguarded / "features.py").write_text(source[:source.index("user_last_transaction = StreamFeatureView(")])
    plan = _run(state_dir, "plan", str(unguarded))
    assert plan.returncode == 1, plan.stderr
    assert "for workspace 'staging'" in plan.stdout
    assert "- delete feature view 'user_last_transaction': BLOCKED by prevent_destroy" in plan.stdout
    assert "- delete feature service 'fraud_detection'" in plan.stdout
    assert "cannot be applied" in plan.stderr
    assert "--plan-id" not in plan.stdout
    refused = _run(state_dir, "apply", str(unguarded))
    assert refused.returncode == 2
    assert "BLOCKED by prevent_destroy" in refused.stderr
    unchanged = _run(state_dir, "plan", str(guarded))  # the refused apply deleted nothing
    assert unchanged.returncode == 0, unchanged.stderr
    assert "for workspace 'staging': no change(s)" in unchanged.stdout
    assert _run(state_dir, "workspace", "select", "prod").returncode == 0


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "st"
    # Share the broker jars with the rest of the session instead of fetching them again.
    libs = folder / "kafka" / f"libs-{KAFKA_VERSION}"
    libs.parent.mkdir(parents=True)
    libs.symlink_to(REPO_ROOT / ".state" / "kafka" / f"libs-{KAFKA_VERSION}")
    return folder


def test_up_apply_ingest_query_down(state_dir: Path) -> None:
    # The controller port is picked free too: kafka port + 1 may belong to another process.
    gateway_port, *kafka_ports = free_ports(3)
    up = _run(state_dir, "up", "--port", str(gateway_port), *_kafka_args(kafka_ports))
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        assert f"http://127.0.0.1:{gateway_port}" in up.stdout
        info = RunInfo.read(state_dir.resolve())
        assert info is not None
        assert pid_alive(info.pid)
        admin_key = state_dir / "admin.key"
        assert admin_key.stat().st_mode & 0o777 == 0o600  # readable by its owner only

        status = _run(state_dir, "status")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["gateway_health"]["status"] == "ok"

        bad_repo = state_dir.parent / "bad_repo"
        bad_repo.mkdir()
        (bad_repo / "features.py").write_text("from sdk import Entity\nuser = Entity(name='user', join_keys=[\n")
        bad = _run(state_dir, "apply", str(bad_repo), "--workspace", "prod")
        assert bad.returncode == 2
        assert "features.py" in bad.stderr
        assert "SyntaxError" in bad.stderr

        applied = _run(state_dir, "apply", "examples/quickstart", "--workspace", "prod")
        assert applied.returncode == 0, applied.stderr
        assert "applied 4 change(s)" in applied.stdout
        _make_demo(state_dir)
        _plan_then_apply(state_dir)

        broken = _run(state_dir, "ingest", "transactions", "-", stdin='{"user_id": "u1"}\nnot json\n')
        assert broken.returncode == 2
        assert "<stdin>:2" in broken.stderr  # names the bad line; nothing was sent

        events = (REPO_ROOT / "examples" / "quickstart" / "events.jsonl").read_text()
        ingested = _run(state_dir, "ingest", "transactions", "-", stdin=events)
        assert ingested.returncode == 0, ingested.stderr
        assert "sent 5 records" in ingested.stdout
        later = state_dir.parent / "later.jsonl"
        later.write_text('{"user_id": "u3", "ts": "2026-11-26T10:00:00Z", "amount": 8.5, "merchant": "tea", '
                         '"is_online": true}\n')
        from_file = _run(state_dir, "ingest", "transactions", str(later))
        assert from_file.returncode == 0, from_file.stderr
        assert "sent 1 records" in from_file.stdout

        made = _run(state_dir, "service-account", "create", "--name", "fraud-model")
        assert made.returncode == 0, made.stderr
        principal = re.search(r"service account (sa-[0-9a-f]+)", made.stdout)
        key = re.search(r"(fpk_[0-9a-f]{16}_\S+)", made.stdout)
        assert principal, made.stdout
        assert key, made.stdout
        assert _get_features(info.gateway_url, "u1", key.group(1))[0] == 403  # no role yet
        granted = _run(state_dir, "access", "assign-role", "--role", "consumer", "--principal", principal.group(1))
        assert granted.returncode == 0, granted.stderr

        deadline = time.monotonic() + 60
        while (answer := _get_features(info.gateway_url, "u1", key.group(1)))[1]["result"]["features"][0] != 42.0:
            assert time.monotonic() < deadline, f"u1 was never served its latest value: {answer}"
            time.sleep(0.3)
        assert answer[0] == 200
        assert answer[1]["result"]["features"] == [42.0, "books", True]
        while (answer := _get_features(info.gateway_url, "u3", key.group(1)))[1]["result"]["features"][0] != 8.5:
            assert time.monotonic() < deadline, f"the record ingested from a file was never served: {answer}"
            time.sleep(0.3)
        assert answer[1]["result"]["features"] == [8.5, "tea", True]

        key_id = key.group(1).split("_")[1]
        revoked = _run(state_dir, "keys", "revoke", key_id)
        assert revoked.returncode == 0, revoked.stderr
        assert _get_features(info.gateway_url, "u1", key.group(1))[0] == 401
        _users_roles_and_keys(state_dir, info.gateway_url, key_id)
        _workspaces_and_blocked_plan(state_dir)

        summary = _run(state_dir, "audit", "summary")
        assert summary.returncode == 0, summary.stderr
        assert "F5" in summary.stdout
        assert "F7" in summary.stdout
        traced = _run(state_dir, "lineage", "--service", "fraud_detection", "--key", "user_id=u1",
                      "--workspace", "prod")
        assert traced.returncode == 0, traced.stderr
        (chain,) = json.loads(traced.stdout)
        assert chain["sources"][0]["topic"] == "transactions"
        # as of now, from the offline store: the same events, through the offline write
        offline = _run(state_dir, "lineage", "--service", "fraud_detection", "--key", "user_id=u1",
                       "--workspace", "prod", "--at", datetime.now(UTC).isoformat())
        assert offline.returncode == 0, offline.stderr
        (offline_chain,) = json.loads(offline.stdout)
        assert offline_chain["write"]["topic"].endswith("offline.writes")
        assert offline_chain["sources"][0]["topic"] == "transactions"
        too_early = _run(state_dir, "lineage", "--service", "fraud_detection", "--key", "user_id=u1",
                         "--workspace", "prod", "--at", "2000-01-01T00:00:00+00:00")
        assert "write" not in json.loads(too_early.stdout)[0]  # nothing was in effect yet
        queried = _run(state_dir, "audit", "query", "--flow", "F5", "--limit", "5")
        assert queried.returncode == 0, queried.stderr
        assert {json.loads(line)["flow"] for line in queried.stdout.splitlines()} == {"F5"}
        verify = _run(state_dir, "audit", "verify")
        assert verify.returncode == 0, verify.stderr
        assert "audit chain intact" in verify.stdout
    finally:
        down = _run(state_dir, "down", timeout=120)
    assert down.returncode == 0, down.stderr
    assert "featureplane stopped" in down.stdout
    assert not pid_alive(info.pid)
    assert RunInfo.read(state_dir.resolve()) is None
    assert _run(state_dir, "status").returncode == 1
    _rotate_and_restart(state_dir, kafka_ports)


def _kafka_args(kafka_ports: list[int]) -> list[str]:
    return ["--kafka-port", str(kafka_ports[0]), "--kafka-controller-port", str(kafka_ports[1])]


def _rotate_and_restart(state_dir: Path, kafka_ports: list[int]) -> None:
    """A new metadata key, then up again (same broker, its data kept): the control plane restores its
    snapshot under the new key."""
    old_key = (state_dir / "metadata.key").read_text()
    rotated = _run(state_dir, "metadata", "rotate-key")
    assert rotated.returncode == 0, rotated.stderr
    assert (state_dir / "metadata.key").read_text() != old_key
    (gateway_port,) = free_ports(1)
    up = _run(state_dir, "up", "--port", str(gateway_port), *_kafka_args(kafka_ports))
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        assert "restored" in (state_dir / "run" / "featureplane.log").read_text()
        listed = _run(state_dir, "workspace", "list")  # the admin key and workspace prod survived
        assert listed.returncode == 0, listed.stderr
        assert "prod" in listed.stdout
        keys = _run(state_dir, "keys", "list")  # and the keys' metadata, revoked ones too
        assert keys.returncode == 0, keys.stderr
        assert re.search(r"\badmin\s+active\s+\S+\s+featureplane up\s+bootstrap admin key$", keys.stdout, re.M)
        assert " revoked " in keys.stdout
    finally:
        assert _run(state_dir, "down", timeout=120).returncode == 0
