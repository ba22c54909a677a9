"""`featureplane replay SCENARIO`: run a scenario against a deployment and write its audit report.

A fresh deployment (default) is started like `featureplane up` does it, in its own state folder with its
own broker, Ray, topic prefix and free ports, and stopped at the end. `--against URL` uses a running one
instead, in a new workspace of its own. Progress goes to stderr; report.json and report.html go to
`--out`. The exit code is 1 when an expectation is not met.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from actors.settings import KafkaCredentials, Settings, store_dir
from deploy import client, replay_batch, supervisor
from deploy.client import Connection
from deploy.ports import free_ports
from events.audit import AuditRecord
from events.codec import CODEC
from events.errors import InvalidRequest
from events.topics import TopicNames
from scenarios import faults
from scenarios.expect import feature_value, matches
from scenarios.generate import stream_rows
from scenarios.html import render_html
from scenarios.report import ChainCheck, Observations, QueryResult, build_report
from scenarios.spec import Query, Scenario, load_scenario
from stores.audit_log import LmdbAuditStore

_HTTP_CHUNK = 5000


def say(text: str) -> None:
    print(f"replay: {text}", file=sys.stderr, flush=True)


@dataclass
class Target:
    """The deployment a replay drives."""

    mode: str
    conn: Connection
    admin_key: str
    workspace: str
    state_dir: Path | None  # where its audit store lives, when known
    cache_max_age_s: float | None


@contextlib.contextmanager
def fresh_deployment(scenario: Scenario) -> Iterator[Target]:
    """A deployment of its own (broker, Ray, actors, gateway), stopped and deleted afterwards."""
    state_dir = Path(tempfile.mkdtemp(prefix="fp-replay-"))
    prefix = f"replay{uuid.uuid4().hex[:8]}"
    gateway_port, kafka_port, controller_port = free_ports(3)
    options = supervisor.UpOptions(state_dir=state_dir, gateway_port=gateway_port, kafka_port=kafka_port,
                                   kafka_controller_port=controller_port, topic_prefix=prefix)
    argv = ["--state-dir", str(state_dir), "--topic-prefix", prefix, "up", "--port", str(gateway_port),
            "--kafka-port", str(kafka_port), "--kafka-controller-port", str(controller_port)]
    say(f"starting a fresh deployment in {state_dir} (topic prefix {prefix})")
    try:
        info = supervisor.start_background(options, argv)
        key = client.read_key_file(client.admin_key_path(state_dir))
        if key is None:
            raise RuntimeError(f"the fresh deployment wrote no admin key in {state_dir}")
        # `up` leaves the serving cache at the Settings default; this is the age the deployment enforces.
        cache_age = Settings(bootstrap_servers=info.bootstrap_servers, state_dir=state_dir).serving_cache_max_age_s
        conn = Connection(info.bootstrap_servers, TopicNames(prefix), info.gateway_url,
                          client.operator_credentials(state_dir))  # None only if `up` ran --insecure
        yield Target("fresh", conn, key, scenario.workspace, state_dir, cache_age)
    finally:
        say("stopping the fresh deployment")
        supervisor.stop_background(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)


def call(target: Target, method: str, path: str, body: Any = None, key: str | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    return client.http_call(method, f"{target.conn.gateway_url}{path}", api_key=key or target.admin_key,
                            data=data, timeout_s=60)


def setup(scenario: Scenario, target: Target, steps: list[dict[str, Any]]) -> tuple[dict[str, str], dict[str, str]]:
    """Apply the repository (its batch sources on the scenario's files), create the principals and grant
    their roles; (name -> key, id -> name)."""
    if scenario.batch_files:
        files = replay_batch.place_batch_files(scenario, target.state_dir)
        applied = replay_batch.apply_with_files(scenario, target.conn.gateway_url, target.workspace,
                                                target.admin_key, files)
        for source, path in sorted(files.items()):
            steps.append({"step": "batch file", "detail": f"{source} reads {path.name}"})
            say(f"batch source {source} reads {path}")
    else:
        applied = client.apply_repo(target.conn, scenario.repo, target.workspace, target.admin_key)
    steps.append({"step": "apply", "detail": f"{scenario.repo.name}: {applied['object_count']} change(s)"})
    say(steps[-1]["detail"])
    keys, names = {}, {"admin": "admin"}
    for principal in scenario.principals:
        made = client.expect_ok(*call(target, "POST", "/api/v1/service-accounts", {"name": principal.name}))
        keys[principal.name], names[made["principal_id"]] = made["api_key"], principal.name
        for role in principal.roles:
            client.expect_ok(*call(target, "POST", f"/api/v1/workspaces/{target.workspace}/roles",
                                   {"principal_id": made["principal_id"], "role": role}))
        steps.append({"step": "principal", "detail": f"{principal.name}: roles {', '.join(principal.roles) or 'none'}"})
        say(steps[-1]["detail"])
    return keys, names


def ingest(scenario: Scenario, target: Target, keys: dict[str, str], start: datetime,
           steps: list[dict[str, Any]]) -> int:
    sent = 0
    for stream in scenario.streams:
        rows = stream_rows(stream, start)
        if stream.via == "topic":
            topic = asyncio.run(client.source_topic(target.conn, target.workspace, stream.source))
            encoded = [json.dumps(row, separators=(",", ":")).encode() for row in rows]
            # the customer plane's login where the deployment's state folder is known, else the operator's
            asyncio.run(client.ingest(client.as_customer_app(target.conn, target.state_dir), topic, encoded))
        else:
            key = keys.get(stream.principal) if stream.principal else None
            for i in range(0, len(rows), _HTTP_CHUNK):
                body = {"workspace_name": target.workspace,
                        "records": {stream.source: [{"record": r} for r in rows[i:i + _HTTP_CHUNK]]}}
                client.expect_ok(*call(target, "POST", "/ingest", body, key))
        sent += len(rows)
        steps.append({"step": "ingest", "detail": f"{len(rows)} rows to {stream.source} via {stream.via}"})
        say(steps[-1]["detail"])
    return sent


def ask(target: Target, query: Query, key: str | None) -> QueryResult:
    body = {"params": {"workspace_name": target.workspace, "feature_service_name": query.service,
                       "join_key_map": query.keys, "request_context_map": query.request_context,
                       "metadata_options": {"include_names": True, "include_serving_status": True}}}
    if not query.request_context:
        del body["params"]["request_context_map"]
    status, answer = call(target, "POST", "/api/v1/feature-service/get-features", body, key)
    if status != 200 or not isinstance(answer, dict):
        error = answer.get("requestError", {}) if isinstance(answer, dict) else {}
        return QueryResult(query, status, {}, error=f"{error.get('errorType', '')}: {error.get('errorMessage', '')}")
    names = [m.get("name", str(i)) for i, m in enumerate(answer["metadata"]["features"])]
    statuses = [m.get("status", "") for m in answer["metadata"]["features"]]
    return QueryResult(query, status, dict(zip(names, answer["result"]["features"], strict=True)),
                       dict(zip(names, statuses, strict=True)))


def run_queries(scenario: Scenario, target: Target, keys: dict[str, str], deadline: float,
                steps: list[dict[str, Any]]) -> list[QueryResult]:
    """Each query, asked again until its expectations hold (the pipelines are asynchronous) or time is up."""
    results = []
    for query in scenario.queries:
        key = keys.get(query.principal) if query.principal else None
        while True:
            result = ask(target, query, key)
            met = result.status == 200 and all(
                matches(v, _value(result, k)) for k, v in query.expect.items())
            if met or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        results.append(result)
        steps.append({"step": "query", "detail": f"{query.service} {query.keys}: HTTP {result.status}, "
                                                 f"{'expectations met' if met else 'expectations NOT met'}"})
        say(steps[-1]["detail"])
    return results


def _value(result: QueryResult, name: str) -> Any:
    return feature_value(result.features, name)[1]


def sample_lineage(scenario: Scenario, target: Target) -> list[dict[str, Any]]:
    chains: list[dict[str, Any]] = []
    for query in scenario.queries:
        if query.lineage:
            body = {"params": {"workspace_name": target.workspace, "feature_service_name": query.service,
                               "join_key_map": query.keys}}
            chains.extend(client.expect_ok(*call(target, "POST", "/api/v1/lineage", body))["lineage"])
    return chains


def misuse_online(scenario: Scenario, target: Target, keys: dict[str, str],
                  steps: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The misuse steps that act on the running deployment (tampering waits until it is stopped)."""
    evidence: dict[str, dict[str, Any]] = {}
    for step in scenario.misuse:
        if step.kind == "unauthorized_read":
            result = ask(target, Query(step.service, step.keys, step.principal), keys[step.principal])
            evidence[step.name] = {"status": result.status, "error_type": result.error.split(":")[0]}
            detail = f"{step.principal} reads {step.service}: HTTP {result.status}"
        elif step.kind == "feature_rows_to_control_plane":
            principal = f"misconfigured-{step.name}"
            refused = asyncio.run(faults.send_feature_rows_to_control_plane(
                target.conn.bootstrap_servers, target.conn.topics, target.workspace, principal, target.conn.kafka))
            evidence[step.name] = {"principal_name": principal, "refused": [r.message for r in refused]}
            detail = f"misconfigured Rift sends feature rows to the control plane: {len(refused)} refused"
        else:
            continue
        steps.append({"step": f"misuse {step.name}", "detail": detail})
        say(steps[-1]["detail"])
    return evidence


def audit_records(target: Target, rows_sent: int, denied_wanted: int, batch_rows: int,
                  deadline: float) -> tuple[list[dict[str, Any]], int]:
    """The audit log's records (this workspace's, on a shared deployment), once every sent row, every
    batch row Rift read and every provoked refusal is in it, or when time is up."""
    query = "limit=10000" + (f"&workspace={target.workspace}" if target.mode == "against" else "")
    while True:
        answer = client.expect_ok(*call(target, "GET", f"/api/v1/audit/flows?{query}"))
        records: list[dict[str, Any]] = answer["records"]
        ingested = sum(r["row_count"] for r in records if r["flow"] == "F5" and r["outcome"] == "allowed")
        denied = sum(1 for r in records if r["outcome"] != "allowed")
        read = sum(r["row_count"] for r in records if r["flow"] == "F6" and r["outcome"] == "allowed")
        if (ingested >= rows_sent and denied >= denied_wanted and read >= batch_rows) or time.monotonic() > deadline:
            return sorted(records, key=lambda r: (r["occurred_at"], r["record_id"])), int(answer["total"])
        time.sleep(0.5)


def check_chain(target: Target) -> ChainCheck:
    if target.state_dir is None:
        return ChainCheck(False, reason="the deployment's state folder is not known here (pass --state-dir)")
    folder = store_dir(target.state_dir, target.conn.topics.prefix, "audit_log-0")
    if not folder.is_dir():
        return ChainCheck(False, reason=f"no audit store at {folder}")
    count, broken = client.verify_audit_chain(folder)
    return ChainCheck(True, count, broken)


def tamper(target: Target, flow: str) -> dict[str, Any]:
    """Flip a byte of the first allowed `flow` record in the stopped deployment's audit store."""
    assert target.state_dir is not None
    folder = store_dir(target.state_dir, target.conn.topics.prefix, "audit_log-0")
    with LmdbAuditStore(folder, readonly=True) as store:
        for link in store.links():
            record = CODEC.decode(link.record).body
            if isinstance(record, AuditRecord) and record.flow.value == flow and record.outcome.value == "allowed":
                seq, record_id = link.seq, record.record_id
                break
        else:
            raise InvalidRequest(f"the audit log holds no allowed {flow} record to tamper with")
    copies = faults.flip_record_bytes(folder, record_id.encode())
    say(f"tampered audit record {seq} ({flow}): changed one byte in {copies} stored cop(ies)")
    return {"tampered_seq": seq, "flow": flow, "copies_changed": copies}


def replay(scenario: Scenario, target: Target, stop: Any = None) -> Observations:
    """Every step of the scenario against `target`; `stop` stops a fresh deployment before tampering."""
    started = datetime.now(UTC)
    steps: list[dict[str, Any]] = []
    keys, names = setup(scenario, target, steps)
    rows_sent = ingest(scenario, target, keys, started, steps)
    deadline = time.monotonic() + scenario.timeout_s
    bound = functools.partial(call, target)
    materialized = replay_batch.materialize(scenario, bound, target.workspace, keys, deadline, steps, say)
    results = run_queries(scenario, target, keys, deadline, steps)
    training = replay_batch.training(scenario, target.state_dir, target.conn.topics.prefix, target.workspace,
                                     deadline, steps, say)
    jobs = replay_batch.settled_jobs(bound, target.workspace, deadline) if scenario.batch_files or \
        scenario.materialize else replay_batch.list_jobs(bound, target.workspace)
    evidence = misuse_online(scenario, target, keys, steps)
    for step in scenario.misuse:
        if step.kind == "feature_rows_to_control_plane":
            names[evidence[step.name]["principal_name"]] = evidence[step.name]["principal_name"]
    lineage = sample_lineage(scenario, target)
    # Refusals the misuse steps provoke, each audited as denied: a refused read (F1), a refused send (F9).
    denied_wanted = sum(1 for m in scenario.misuse if m.kind in ("feature_rows_to_control_plane", "unauthorized_read"))
    batch_rows = sum(j["source_rows"] for j in jobs if j["compute"] == "rift" and j["state"] == "succeeded")
    records, total = audit_records(target, rows_sent, denied_wanted, batch_rows, time.monotonic() + scenario.timeout_s)
    for step in scenario.misuse:
        if step.kind == "feature_rows_to_control_plane":
            evidence[step.name]["leaked_value_in_audit_log"] = str(faults.LEAKED_VALUE) in json.dumps(records)
    say(f"audit log: {len(records)} records collected ({total} in the log)")
    chain = check_chain(target)
    tampering = [m for m in scenario.misuse if m.kind == "tamper_audit_record"]
    if tampering:
        if stop is None:
            raise InvalidRequest("tamper_audit_record needs a fresh deployment")
        stop()
        for step in tampering:
            evidence[step.name] = {"chain_before": "intact" if chain.broken is None else f"broken at {chain.broken}",
                                   **tamper(target, step.flow)}
        chain = check_chain(target)
    verdict = "intact" if chain.broken is None else f"broken at record {chain.broken}"
    steps.append({"step": "verify", "detail": f"hash chain: {verdict}" if chain.checked else chain.reason})
    say(steps[-1]["detail"])
    return Observations(scenario, target.mode, target.workspace, target.conn.topics.prefix, target.conn.gateway_url,
                        names, rows_sent, results, lineage, records, total, chain, target.cache_max_age_s, evidence,
                        steps, started.isoformat(), datetime.now(UTC).isoformat(), jobs, materialized, training)


def write_report(report: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out_dir / "report.html").write_text(render_html(report))
    say(f"wrote {out_dir / 'report.json'} and {out_dir / 'report.html'}")


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    scenario: Path
    out_dir: Path
    against: str | None = None  # a running deployment's gateway URL
    api_key: str = ""  # --against: an admin's key
    bootstrap: str = ""  # --against: its Kafka (for source-topic ingest)
    topic_prefix: str = "fp"
    state_dir: Path | None = None  # --against: its state folder, to verify the hash chain
    kafka: KafkaCredentials | None = None  # --against a broker with SASL: the operator's login


def run(options: ReplayOptions) -> dict[str, Any]:
    """Replay the scenario, write the report, return it."""
    scenario = load_scenario(options.scenario)
    if options.against:
        if any(m.kind == "tamper_audit_record" for m in scenario.misuse):
            raise InvalidRequest("this scenario tampers with the audit log: replay it on a fresh deployment, "
                                 "not --against a running one")
        workspace = f"{scenario.workspace}-{uuid.uuid4().hex[:6]}"
        target = Target("against", Connection(options.bootstrap, TopicNames(options.topic_prefix),
                                              options.against.rstrip("/"), options.kafka),
                        options.api_key, workspace, options.state_dir, None)
        say(f"replaying {scenario.name} against {options.against} in the new workspace {workspace}")
        observed = replay(scenario, target)
    else:
        with fresh_deployment(scenario) as target:
            state_dir = target.state_dir
            assert state_dir is not None
            observed = replay(scenario, target, stop=lambda: supervisor.stop_background(state_dir))
    report = build_report(observed)
    write_report(report, options.out_dir)
    return report
