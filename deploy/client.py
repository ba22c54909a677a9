"""Client operations of the CLI: apply a repository, ingest events, read the audit log.

`apply` is the operator acting on the control plane (Tecton's `tecton apply`); `ingest` plays the
customer's application producing raw events to a source topic (flow F5 starts there).
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgpack

from actors.bus import Outgoing
from actors.follower import RegistryFollower
from actors.kafka_bus import KafkaBus
from actors.settings import KafkaCredentials
from deploy.kafka_sasl import load_users
from events import control
from events.access import PrincipalKind, PrincipalSpec, new_api_key, parse_api_key, rehash_key
from events.codec import CODEC
from events.envelope import new_id
from events.errors import DeadlineExceeded, FeatureplaneError, InvalidRequest
from events.planes import Component, Plane
from events.registry import Registry, Workspace
from events.topics import CONTROL_COMMANDS, TopicNames
from sdk.repo import load_repo
from stores.audit_log import LmdbAuditStore

INGEST_CHUNK = 1000
ADMIN_ID = "admin"
# How `featureplane keys list` shows the admin key that `up` made (or registered again).
BOOTSTRAP_KEY_DESCRIPTION = "bootstrap admin key"
BOOTSTRAP_KEY_CREATOR = "featureplane up"


@dataclass(frozen=True, slots=True)
class Connection:
    bootstrap_servers: str
    topics: TopicNames
    gateway_url: str
    # The Kafka login of whoever this connection acts as (the operator, or the customer's application when it
    # ingests); None when the broker takes no logins (`featureplane up --insecure`).
    kafka: KafkaCredentials | None = None


def operator_credentials(state_dir: Path) -> KafkaCredentials | None:
    """The operator's Kafka login of a deployment with SASL, from its state folder (None: no logins there)."""
    users = load_users(state_dir)
    return users.operator if users else None


def customer_credentials(state_dir: Path) -> KafkaCredentials | None:
    """The customer plane's Kafka login, the one its applications produce source topics with (flow F5):
    deploy/acls.py lets it write every topic outside the platform's prefix and none of the platform's
    topics it has no route to."""
    users = load_users(state_dir)
    return users.plane(Plane.CUSTOMER) if users else None


def as_customer_app(conn: Connection, state_dir: Path | None) -> Connection:
    """`conn` as the customer's application that produces source topics (F5): with the customer plane's
    login from `state_dir` when the broker takes logins and that folder holds them, else `conn`'s own."""
    login = customer_credentials(state_dir) if state_dir is not None and conn.kafka else None
    return replace(conn, kafka=login or conn.kafka)


def apply_repo(conn: Connection, folder: Path, workspace: str, api_key: str) -> dict[str, Any]:
    """Compile the repository here and apply it through the gateway, as the key's principal."""
    return _send_repo(conn, "apply", workspace, CODEC.encode_value(load_repo(folder)), api_key)


def plan_repo(conn: Connection, folder: Path, workspace: str, api_key: str, plans_dir: Path) -> dict[str, Any]:
    """What applying the repository would change; the plan is saved so that it can be applied as planned."""
    repo_bytes = CODEC.encode_value(load_repo(folder))
    plan = _send_repo(conn, "plan", workspace, repo_bytes, api_key)
    plans_dir.mkdir(parents=True, exist_ok=True)
    saved = {"workspace": workspace, "base_digest": plan["base_digest"], "repo": repo_bytes}
    (plans_dir / f"{plan['plan_id']}.plan").write_bytes(msgpack.packb(saved))
    return plan


def apply_plan(conn: Connection, plan_id: str, api_key: str, plans_dir: Path) -> tuple[str, dict[str, Any]]:
    """Apply a saved plan; the control plane refuses it if the workspace changed since it was made."""
    path = plans_dir / f"{plan_id}.plan"
    try:
        saved = msgpack.unpackb(path.read_bytes())
    except FileNotFoundError:
        raise InvalidRequest(f"no saved plan '{plan_id}' in {plans_dir}: run featureplane plan first") from None
    workspace = str(saved["workspace"])
    query = f"?expected_digest={quote(str(saved['base_digest']))}"
    return workspace, _send_repo(conn, "apply", workspace, bytes(saved["repo"]), api_key, query)


def _send_repo(conn: Connection, verb: str, workspace: str, repo_bytes: bytes, api_key: str,
               query: str = "") -> dict[str, Any]:
    status, body = http_call("POST", f"{conn.gateway_url}/api/v1/workspaces/{quote(workspace)}/{verb}{query}",
                             api_key=api_key, data=repo_bytes, content_type="application/x-msgpack", timeout_s=90)
    return expect_ok(status, body)


def expect_ok(status: int, body: Any) -> dict[str, Any]:
    """The JSON body of a 2xx answer; otherwise the gateway's own error, as an exception."""
    if 200 <= status < 300 and isinstance(body, dict):
        return body
    message = body.get("requestError", {}).get("errorMessage") if isinstance(body, dict) else None
    raise RequestFailed(status, message or f"the gateway answered HTTP {status}")


class RequestFailed(FeatureplaneError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


def admin_key_path(state_dir: Path) -> Path:
    return state_dir / "admin.key"


def read_key_file(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def write_key_file(path: Path, key_text: str) -> None:
    """Create the file readable by its owner only, from the first byte on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key_text + "\n")
    os.chmod(path, 0o600)


async def bootstrap_admin(conn: Connection, key_text: str | None, timeout_s: float = 60) -> str:
    """Make sure the admin exists with this key (a new one when None); returns the key's text.

    The operator sends this straight to the control plane (same plane): there is no principal yet that
    the gateway could authenticate. Only the key's salted hash leaves this process.
    """
    if key_text is None:
        new = new_api_key(ADMIN_ID, BOOTSTRAP_KEY_DESCRIPTION, BOOTSTRAP_KEY_CREATOR)
        key_text, spec = new.secret_text, new.spec
    else:  # the admin.key of an earlier `up`, on a broker that forgot it: registered again, described the same
        key_id, secret = parse_api_key(key_text)
        spec = rehash_key(key_id, secret, ADMIN_ID, BOOTSTRAP_KEY_DESCRIPTION, BOOTSTRAP_KEY_CREATOR)
    admin = PrincipalSpec(ADMIN_ID, PrincipalKind.USER, "admin", "account admin", "operator", is_admin=True)
    command = control.BootstrapAdmin(new_id(), admin, spec)
    bus = KafkaBus(conn.bootstrap_servers, client_id="featureplane-operator", credentials=conn.kafka)
    follower = RegistryFollower(bus, conn.topics)
    try:
        await follower.start()
        message = CODEC.message(command, producer=Component.OPERATOR, workspace="", principal="operator")
        await bus.send([Outgoing(conn.topics.name(CONTROL_COMMANDS), CODEC.encode(message))])
        registry = await follower.wait_for(lambda r: command.command_id in r.commands, timeout_s)
    finally:
        await follower.close()
        await bus.close()
    refusal = registry.commands[command.command_id]
    if refusal is not None:
        raise InvalidRequest(f"could not bootstrap the admin: {refusal}")
    return key_text


async def workspace_of(conn: Connection, workspace: str, has: Callable[[Workspace], bool], missing: str,
                       timeout_s: float = 15) -> Workspace:
    """The workspace as the control events describe it, once `has` holds for it; InvalidRequest(missing)
    if it does not within the timeout."""
    bus = KafkaBus(conn.bootstrap_servers, client_id="featureplane-cli", credentials=conn.kafka)
    follower = RegistryFollower(bus, conn.topics)

    def known(registry: Registry) -> bool:
        ws = registry.workspaces.get(workspace)
        return ws is not None and has(ws)

    try:
        await follower.start()
        registry = await follower.wait_for(known, timeout_s)
    except DeadlineExceeded:
        raise InvalidRequest(missing) from None
    finally:
        await follower.close()
        await bus.close()
    return registry.workspaces[workspace]


async def source_topic(conn: Connection, workspace: str, source: str, timeout_s: float = 15) -> str:
    ws = await workspace_of(conn, workspace, lambda ws: source in ws.stream_sources,
                            f"stream source '{source}' is not applied in workspace '{workspace}'", timeout_s)
    return ws.stream_sources[source].topic


def read_json_lines(lines: Iterable[str], origin: str) -> Iterator[bytes]:
    """Each non-blank line as compact JSON bytes; InvalidRequest names the first bad line."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            document = json.loads(line)
        except ValueError as exc:
            raise InvalidRequest(f"{origin}:{number}: not valid JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise InvalidRequest(f"{origin}:{number}: a record must be a JSON object")
        yield json.dumps(document, separators=(",", ":")).encode()


async def ingest(conn: Connection, topic: str, records: Iterable[bytes]) -> int:
    """Produce the records to `topic` (idempotent, acks=all), in chunks, reporting progress."""
    bus = KafkaBus(conn.bootstrap_servers, client_id="featureplane-ingest", credentials=conn.kafka)
    sent = 0
    chunk: list[Outgoing] = []
    try:
        for value in records:
            chunk.append(Outgoing(topic, value))
            if len(chunk) >= INGEST_CHUNK:
                sent += len(await bus.send(chunk))
                chunk = []
                print(f"  sent {sent} records ...", file=sys.stderr, flush=True)
        if chunk:
            sent += len(await bus.send(chunk))
    finally:
        await bus.close()
    return sent


def verify_audit_chain(store_dir: Path) -> tuple[int, int | None]:
    """(records in the chain, first broken sequence number or None); opens the store read-only."""
    with LmdbAuditStore(store_dir, readonly=True) as store:
        return store.count(), store.verify()


def http_json(url: str, body: dict[str, Any] | None = None, timeout_s: float = 10,
              api_key: str | None = None) -> tuple[int, Any]:
    method = "GET" if body is None else "POST"
    data = None if body is None else json.dumps(body).encode()
    return http_call(method, url, api_key=api_key, data=data, timeout_s=timeout_s)


def http_call(method: str, url: str, *, api_key: str | None, data: bytes | None = None,
              content_type: str = "application/json", timeout_s: float = 10) -> tuple[int, Any]:
    headers = {"Content-Type": content_type}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        try:
            return error.code, json.loads(error.read() or b"null")
        except ValueError:
            return error.code, None


def audit_summary(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Counts per flow: audit records, messages, rows and bytes, and the planes each flow joined."""
    summary: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"records": 0, "messages": 0, "rows": 0, "bytes": 0, "routes": set()})
    for record in records:
        entry = summary[record["flow"]]
        entry["records"] += 1
        entry["messages"] += record["message_count"]
        entry["rows"] += record["row_count"]
        entry["bytes"] += record["byte_count"]
        entry["routes"].add(f"{record['from_component']} ({record['from_plane']}) -> "
                            f"{record['to_component']} ({record['to_plane']})")
    for entry in summary.values():
        entry["route"] = "; ".join(sorted(entry.pop("routes")))
    return dict(sorted(summary.items()))


FINAL_JOB_STATES = ("succeeded", "abandoned")


def describe_job(job: Mapping[str, Any]) -> str:
    """One line per job: when it covers, how it is doing, what it wrote (or why it failed)."""
    line = (f"{job['job_id'][:12]}  {job['feature_view']}  {job['start']} .. {job['end']}  {job['trigger']:<8} "
            f"on {job['compute']:<8} {job['state'].upper():<9} attempt {job['attempt']}")
    if job["state"] == "succeeded":
        line += f"  read {job['source_rows']} rows, wrote {job['rows_written']} rows, {job['tiles_written']} tiles"
    if job.get("error"):
        line += f"  error: {job['error']}"
    return line


def wait_for_job(list_jobs: Callable[[], list[dict[str, Any]]], job_id: str, timeout_s: float,
                 poll_s: float = 1.0) -> dict[str, Any]:
    """The job once it succeeded or was abandoned; DeadlineExceeded if not within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = next((j for j in list_jobs() if j["job_id"] == job_id), None)
        if found is not None and found["state"] in FINAL_JOB_STATES:
            return found
        if time.monotonic() > deadline:
            raise DeadlineExceeded(f"job {job_id} did not finish in {timeout_s}s")
        time.sleep(poll_s)
