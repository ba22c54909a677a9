"""`featureplane up` (secure by default): the broker itself keeps the planes apart (SASL/SCRAM, one Kafka
principal per plane, ACLs from the declared flows), the normal flows still work under it, and no secret (API
keys, Kafka passwords) shows up in any log, audit record, error body or replay report afterwards.

The deployment is started as a user starts it (the CLI, its own broker, Ray and state folder).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import TopicAuthorizationFailedError

from actors.bus import Outgoing
from actors.kafka_bus import KafkaBus
from actors.settings import KafkaCredentials
from deploy.client import http_json
from deploy.cluster import ray_temp_dir
from deploy.kafka import KAFKA_VERSION, REPO_ROOT
from deploy.kafka_sasl import KafkaUsers, load_users
from deploy.runinfo import RunInfo
from events.errors import PermissionDenied, Unavailable
from events.planes import Plane
from events.topics import AUDIT, CONTROL_COMMANDS, CONTROL_EVENTS, ONLINE_REPLIES, ONLINE_WRITES, TopicNames
from tests.integration.conftest import free_ports

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "deploy.cli"]
# A whole API key as the gateway hands it out: `fpk_<key id>_<secret>`; the key id alone is not secret.
API_KEY = re.compile(rb"fpk_[0-9a-f]{16}_[A-Za-z0-9_\-]{8,}")
# Files whose purpose is to hold a secret, readable by their owner only; every other file is searched.
SECRET_FILES = {"admin.key", "kafka-credentials.json", "metadata.key", "server.properties",
                "operator-client.properties"}


@dataclass
class Secure:
    state_dir: Path
    info: RunInfo
    users: KafkaUsers
    admin_key: str
    service_key: str = ""


def _run(state_dir: Path, *args: str, stdin: str | None = None,
         timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FEATUREPLANE_STATE_DIR": str(state_dir)}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, input=stdin, timeout=timeout,
                          cwd=REPO_ROOT, env=env, check=False)


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secure]:
    state_dir = tmp_path_factory.mktemp("secure") / "st"
    libs = state_dir / "kafka" / f"libs-{KAFKA_VERSION}"
    libs.parent.mkdir(parents=True)
    libs.symlink_to(REPO_ROOT / ".state" / "kafka" / f"libs-{KAFKA_VERSION}")
    gateway_port, kafka_port, controller_port = free_ports(3)
    up = _run(state_dir, "up", "--port", str(gateway_port), "--kafka-port", str(kafka_port),
              "--kafka-controller-port", str(controller_port))
    try:
        assert up.returncode == 0, up.stderr[-3000:] + up.stdout
        info, users = RunInfo.read(state_dir.resolve()), load_users(state_dir.resolve())
        assert info is not None
        assert info.secure
        assert users is not None
        assert (state_dir / "kafka-credentials.json").stat().st_mode & 0o777 == 0o600
        yield Secure(state_dir, info, users, (state_dir / "admin.key").read_text().strip())
    finally:
        _run(state_dir, "down", timeout=120)


async def _read(bootstrap: str, credentials: KafkaCredentials, topic: str) -> None:
    """Start a reader and fetch: a topic the principal may not even see is refused at start, one it may see
    (the data plane's wildcard read, with a DENY on the topic) on the first fetch."""
    bus = KafkaBus(bootstrap, client_id="acl-test", credentials=credentials)
    try:
        reader = await bus.reader([topic], "earliest")
        try:
            for _ in range(8):
                await reader.poll(250, 10)
        finally:
            await reader.close()
    finally:
        await bus.close()


async def _write(bootstrap: str, credentials: KafkaCredentials, topic: str) -> None:
    bus = KafkaBus(bootstrap, client_id="acl-test", credentials=credentials)
    try:
        await bus.send([Outgoing(topic, b"not a featureplane message")])
    finally:
        await bus.close()


async def test_each_plane_reaches_only_the_topics_of_its_flows(secure: Secure) -> None:
    names, bootstrap = TopicNames(secure.info.topic_prefix), secure.info.bootstrap_servers
    control, data, customer = (secure.users.plane(p) for p in (Plane.CONTROL, Plane.DATA, Plane.CUSTOMER))
    # The control plane holds metadata only: no feature topic is readable with its login.
    for feature_topic in (ONLINE_WRITES, ONLINE_REPLIES):
        with pytest.raises(PermissionDenied, match="TopicAuthorizationFailed"):
            await _read(bootstrap, control, names.name(feature_topic))
    # The data plane writes audit records, but may neither read the audit log's topic nor forge control events.
    with pytest.raises((PermissionDenied, TopicAuthorizationFailedError), match="TopicAuthorizationFailed"):
        await _read(bootstrap, data, names.name(AUDIT))
    with pytest.raises(TopicAuthorizationFailedError):
        await _write(bootstrap, data, names.name(CONTROL_EVENTS))
    with pytest.raises(TopicAuthorizationFailedError):
        await _write(bootstrap, customer, names.name(CONTROL_COMMANDS))
    # The customer's applications produce (and create) source topics, outside the prefix (F5); no plane
    # that only reads them may.
    source = f"acl-source-{uuid.uuid4().hex[:6]}"
    await _write(bootstrap, customer, source)
    with pytest.raises(TopicAuthorizationFailedError):
        await _write(bootstrap, data, source)
    # What a plane's flows need stays open to it: the data plane follows the registry.
    await _read(bootstrap, data, names.name(CONTROL_EVENTS))
    # A wrong password gets no connection at all (aiokafka reports the refused login as a failed bootstrap).
    with pytest.raises(Unavailable):
        await _read(bootstrap, KafkaCredentials(data.username, data.password + "x"), names.name(CONTROL_EVENTS))


def _get_features(gateway: str, key: str) -> tuple[int, Any]:
    body = {"params": {"workspace_name": "prod", "feature_service_name": "fraud_detection",
                       "join_key_map": {"user_id": "u1"}}}
    return http_json(f"{gateway}/api/v1/feature-service/get-features", body, api_key=key)


def test_the_normal_flows_work_under_acls(secure: Secure) -> None:
    state_dir = secure.state_dir
    # The quickstart on a source topic of its own: the scenario replayed later has `transactions` to itself.
    repo = state_dir.parent / "quickstart"
    shutil.copytree(REPO_ROOT / "examples" / "quickstart", repo)
    source = (repo / "features.py").read_text()
    (repo / "features.py").write_text(source.replace('topic="transactions"', 'topic="acl-transactions"'))
    applied = _run(state_dir, "apply", str(repo), "--workspace", "prod")
    assert applied.returncode == 0, applied.stderr
    events = (REPO_ROOT / "examples" / "quickstart" / "events.jsonl").read_text()
    ingested = _run(state_dir, "ingest", "transactions", "-", stdin=events)
    assert ingested.returncode == 0, ingested.stderr
    made = _run(state_dir, "service-account", "create", "--name", "fraud-model")
    assert made.returncode == 0, made.stderr
    principal = re.search(r"service account (sa-[0-9a-f]+)", made.stdout)
    key = re.search(r"(fpk_[0-9a-f]{16}_\S+)", made.stdout)
    assert principal, made.stdout
    assert key, made.stdout
    secure.service_key = key.group(1)
    granted = _run(state_dir, "access", "assign-role", "--role", "consumer", "--principal", principal.group(1))
    assert granted.returncode == 0, granted.stderr
    deadline = time.monotonic() + 90
    while (answer := _get_features(secure.info.gateway_url, secure.service_key))[0] != 200 \
            or answer[1]["result"]["features"][0] != 42.0:
        assert time.monotonic() < deadline, f"u1 was never served its latest value: {answer}"
        time.sleep(0.5)
    assert answer[1]["result"]["features"] == [42.0, "books", True]
    # Rift (data plane) wrote the stores (F7) and its audit records through its own login.
    queried = _run(state_dir, "audit", "query", "--flow", "F7", "--limit", "5")
    assert queried.returncode == 0, queried.stderr
    assert {json.loads(line)["from_component"] for line in queried.stdout.splitlines()} == {"rift"}


def _files(*folders: Path) -> Iterator[Path]:
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink() and path.name not in SECRET_FILES \
                    and "libs-" not in str(path.relative_to(folder)):
                yield path


def test_no_secret_in_logs_audit_records_error_bodies_or_reports(secure: Secure) -> None:
    if not secure.service_key:
        pytest.fail("the flows test did not create a service account")
    state_dir, gateway = secure.state_dir, secure.info.gateway_url
    out = state_dir.parent / "replay"
    replayed = _run(state_dir, "replay", "scenarios/quickstart.yaml", "--against", gateway, "--out", str(out),
                    timeout=600)
    assert (out / "report.json").is_file(), replayed.stderr[-3000:]
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr[-3000:]
    # Error bodies for keys that are almost right: the key is never echoed back.
    near_misses = [secure.admin_key + "x", secure.service_key[:-1], "Bearer " + secure.admin_key]
    bodies = [json.dumps(_get_features(gateway, key)[1]) for key in near_misses]
    assert all('"requestError"' in body for body in bodies), bodies
    audited = _run(state_dir, "audit", "query", "--limit", "10000")
    assert audited.returncode == 0, audited.stderr
    assert len(audited.stdout.splitlines()) > 10
    _run(state_dir, "down", timeout=120)  # every log flushed and closed
    secrets = [secure.admin_key, secure.service_key, *secure.users.secrets()]
    places: dict[str, bytes] = {f"error body {i}": b.encode() for i, b in enumerate(bodies)}
    places["audit records"] = audited.stdout.encode()
    places.update({str(p): p.read_bytes() for p in _files(state_dir, out, ray_temp_dir(state_dir.resolve()))})
    assert any("broker.log" in p for p in places)
    assert any("featureplane.log" in p for p in places)
    assert any("report.html" in p for p in places)
    assert any(re.search(r"session_[^/]+/logs/.*worker.*\.(out|err)$", p) for p in places)  # the actors' output
    assert API_KEY.search(secure.service_key.encode())  # the pattern does find a whole key
    leaks = [(where, secret[:6] + "...") for where, content in places.items()
             for secret in secrets if secret.encode() in content]
    leaks += [(where, "an API key") for where, content in places.items() if API_KEY.search(content)]
    assert not leaks, leaks
