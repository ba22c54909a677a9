"""The replay report: what a replay observed, judged against the scenario and the invariants.

Pure: `build_report` turns `Observations` (collected by `deploy.replay` over HTTP and from the audit
store) into a JSON-able document; `report_digest` hashes its normalized content, so two replays of one
scenario give one digest; `scenarios.html.render_html` draws it.

Invariants come with findings; a misuse step of the scenario *claims* the findings it was meant to
cause. The report passes when every expectation is met, every misuse step was flagged, and no finding is
left unclaimed: a misuse is flagged exactly where it should be, and nowhere else.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from events.flows import FLOW_RULES, Flow
from scenarios.batch import TrainingResult, job_json, jobs_digest, judge_training
from scenarios.expect import feature_value, matches
from scenarios.spec import Query, Scenario

CACHE_LIMIT_S = 24 * 3600
# Normalized away before the digest: these differ on every replay by nature.
_VOLATILE = {"record_id", "digest", "occurred_at", "correlation_id", "causation_id", "event_id", "at",
             "started_at", "finished_at", "gateway", "topic_prefix", "state_dir", "out_dir", "duration_s",
             "offset", "first_offset", "last_offset", "partition", "bytes", "byte_count", "records", "messages",
             "message_count", "rows", "row_count", "event_time", "count", "folder", "detail", "evidence", "step",
             "seen", "statuses", "seq", "lineage", "edges", "steps", "audit", "attempt"}


@dataclass(frozen=True, slots=True)
class QueryResult:
    query: Query
    status: int
    features: dict[str, Any]  # feature name -> value
    statuses: dict[str, str] = field(default_factory=dict)
    error: str = ""


@dataclass(frozen=True, slots=True)
class ChainCheck:
    checked: bool
    count: int = 0
    broken: int | None = None
    reason: str = ""  # why it was not checked


@dataclass
class Observations:
    scenario: Scenario
    mode: str  # "fresh" or "against"
    workspace: str
    topic_prefix: str
    gateway: str
    principal_names: dict[str, str]  # principal id -> scenario name
    rows_sent: int
    queries: list[QueryResult]
    lineage: list[dict[str, Any]]
    records: list[dict[str, Any]]  # audit records as the audit API returns them
    audit_total: int
    chain: ChainCheck
    cache_max_age_s: float | None  # None: not observable (a running deployment's setting)
    misuse: dict[str, dict[str, Any]] = field(default_factory=dict)  # step name -> evidence
    steps: list[dict[str, Any]] = field(default_factory=list)
    started_at: str = ""
    finished_at: str = ""
    jobs: list[dict[str, Any]] = field(default_factory=list)  # the workspace's batch jobs, as the jobs API lists them
    materialized: list[dict[str, Any]] = field(default_factory=list)  # scenarios.batch.materialize_result each
    training: list[TrainingResult] = field(default_factory=list)


def _who(principal: str, names: Mapping[str, str]) -> str:
    return names.get(principal, principal if principal in ("", "admin", "operator", "system") else "other")


def flow_table(records: Sequence[Mapping[str, Any]], names: Mapping[str, str]) -> list[dict[str, Any]]:
    """Audited flows by type and outcome: records, messages, rows, bytes, principals and routes."""
    table: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        entry = table.setdefault((r["flow"], r["outcome"]), {
            "flow": r["flow"], "outcome": r["outcome"], "description": FLOW_RULES[Flow(r["flow"])].description,
            "records": 0, "messages": 0, "rows": 0, "bytes": 0, "principals": set(), "routes": set()})
        entry["records"] += 1
        entry["messages"] += r["message_count"]
        entry["rows"] += r["row_count"]
        entry["bytes"] += r["byte_count"]
        entry["principals"].add(_who(r["principal"], names) or "(none)")
        entry["routes"].add(f"{r['from_component']} ({r['from_plane']}) -> {r['to_component']} ({r['to_plane']})")
    return [{**e, "principals": sorted(e["principals"]), "routes": sorted(e["routes"])}
            for _, e in sorted(table.items())]


def _finding(kind: str, detail: str, **facts: Any) -> dict[str, Any]:
    return {"kind": kind, "detail": detail, **facts}


def _audited_once(obs: Observations) -> dict[str, Any]:
    findings = []
    seen: dict[tuple[Any, ...], int] = {}
    for r in obs.records:
        if r["outcome"] == "allowed" and r["topic"] and r["first_offset"] >= 0:
            key = (r["flow"], r["topic"], r["partition"], r["first_offset"], r["last_offset"])
            seen[key] = seen.get(key, 0) + 1
    for (flow, topic, partition, first, last), n in sorted(seen.items()):
        if n > 1:
            findings.append(_finding("audited_twice", f"{flow} message {topic}[{partition}]@{first}..{last} "
                                     f"has {n} audit records", flow=flow))
    ingested = sum(r["row_count"] for r in obs.records if r["flow"] == "F5" and r["outcome"] == "allowed")
    if ingested != obs.rows_sent:
        findings.append(_finding("ingest_not_audited", f"{obs.rows_sent} rows were sent, the audit log holds "
                                 f"F5 records for {ingested}", flow="F5"))
    return {"name": "every data message audited exactly once", "status": "broken" if findings else "held",
            "detail": f"{len(seen)} Kafka data messages audited; F5 rows audited {ingested} of {obs.rows_sent} sent",
            "findings": findings}


def _all_allowed(obs: Observations) -> dict[str, Any]:
    findings = [_finding("flow_denied", f"{r['flow']} {r['from_component']} -> {r['to_component']} on "
                         f"'{r['topic']}' ({r['subject']}, {r['row_count']} row(s)) was refused and recorded denied",
                         flow=r["flow"], principal=_who(r["principal"], obs.principal_names),
                         from_component=r["from_component"], to_plane=r["to_plane"])
                for r in obs.records if r["outcome"] != "allowed"]
    return {"name": "all flows allowed", "status": "broken" if findings else "held",
            "detail": f"{len(obs.records) - len(findings)} allowed, {len(findings)} denied", "findings": findings}


def _control_plane_clean(obs: Observations) -> dict[str, Any]:
    into_control = [r for r in obs.records if r["to_plane"] == "control" and r["outcome"] == "allowed"]
    findings = [_finding("feature_data_in_control_plane", f"{r['flow']} {r['from_component']} -> "
                         f"{r['to_component']} delivered {r['row_count']} row(s)", flow=r["flow"])
                for r in into_control if FLOW_RULES[Flow(r["flow"])].carries_feature_data or r["row_count"] > 0]
    refused = sum(1 for r in obs.records if r["to_plane"] == "control" and r["outcome"] != "allowed")
    return {"name": "no feature data in the control plane", "status": "broken" if findings else "held",
            "detail": f"{len(into_control)} message(s) reached the control plane, all metadata-only flows "
                      f"without rows" + (f"; {refused} refused at the seam" if refused else ""),
            "findings": findings}


def _cache_age(obs: Observations) -> dict[str, Any]:
    name = "serving cache entries never older than 24 h"
    if obs.cache_max_age_s is None:
        return {"name": name, "status": "unchecked", "findings": [],
                "detail": "a running deployment does not expose its cache setting; replay a fresh one to check"}
    ok = 0 <= obs.cache_max_age_s <= CACHE_LIMIT_S
    return {"name": name, "status": "held" if ok else "broken",
            "detail": f"the feature server's cache max age is {obs.cache_max_age_s:g} s (limit {CACHE_LIMIT_S} s)",
            "findings": [] if ok else [_finding("cache_too_old", f"max age {obs.cache_max_age_s:g} s")]}


def _chain(obs: Observations) -> dict[str, Any]:
    name = "audit hash chain intact"
    if not obs.chain.checked:
        return {"name": name, "status": "unchecked", "detail": obs.chain.reason, "findings": []}
    if obs.chain.broken is None:
        return {"name": name, "status": "held", "detail": f"{obs.chain.count} links verified", "findings": []}
    return {"name": name, "status": "broken", "detail": f"first broken link at record {obs.chain.broken} "
            f"of {obs.chain.count}", "findings": [_finding("chain_broken", f"first broken link: record "
                                                           f"{obs.chain.broken}", seq=obs.chain.broken)]}


def invariants(obs: Observations) -> list[dict[str, Any]]:
    return [_audited_once(obs), _all_allowed(obs), _control_plane_clean(obs), _cache_age(obs), _chain(obs)]


def _claims(kind: str, evidence: Mapping[str, Any], finding: Mapping[str, Any]) -> bool:
    """Whether a finding is what this misuse step was meant to cause."""
    if kind == "feature_rows_to_control_plane":
        return bool(finding["kind"] == "flow_denied" and finding["principal"] == evidence.get("principal_name")
                    and finding["to_plane"] == "control")
    if kind == "unauthorized_read":  # the gateway audits the refused request as F1, denied
        return bool(finding["kind"] == "flow_denied" and finding["flow"] == "F1"
                    and finding["principal"] == evidence.get("principal"))
    if kind == "tamper_audit_record":
        return bool(finding["kind"] == "chain_broken" and finding["seq"] == evidence.get("tampered_seq"))
    return False


def judge_misuse(obs: Observations, checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each misuse step, flagged or not, with the findings it claims (marked claimed in `checks`)."""
    results = []
    for step in obs.scenario.misuse:
        evidence = {"principal": step.principal, **obs.misuse.get(step.name, {})}
        claimed = []
        for check in checks:
            for finding in check["findings"]:
                if _claims(step.kind, evidence, finding):
                    finding["claimed_by"] = step.name
                    claimed.append(finding["detail"])
        if step.kind == "unauthorized_read":  # refused, audited as refused, and nothing served
            served = [r for r in obs.records if r["outcome"] == "allowed" and r["flow"] in ("F1", "F4")
                      and _who(r["principal"], obs.principal_names) == step.principal]
            flagged = evidence.get("status") == 403 and not served and bool(claimed)
            claimed = [f"HTTP {evidence.get('status')} {evidence.get('error_type', '')}".strip(),
                       *(f"audited: {c}" for c in claimed),
                       f"{len(served)} allowed F1/F4 audit record(s) for {step.principal}: no data left the store"]
        elif step.kind == "feature_rows_to_control_plane":  # refused, and its values nowhere in the audit log
            flagged = bool(claimed) and evidence.get("leaked_value_in_audit_log") is False
        else:
            flagged = bool(claimed)
        results.append({"name": step.name, "kind": step.kind, "flagged": flagged, "evidence": claimed,
                        "step": {k: v for k, v in evidence.items() if k not in ("principal_name", "principal")}})
    return results


def judge_queries(queries: Sequence[QueryResult]) -> list[dict[str, Any]]:
    out = []
    for result in queries:
        q = result.query
        checks = []
        for name, expected in q.expect.items():
            found, actual = feature_value(result.features, name)
            checks.append({"feature": name, "expected": expected, "actual": actual,
                           "met": result.status == 200 and found and matches(expected, actual)})
        out.append({"service": q.service, "keys": q.keys, "principal": q.principal or "admin",
                    "request_context": q.request_context, "status": result.status, "error": result.error,
                    "features": result.features, "statuses": result.statuses, "checks": checks,
                    "met": result.status == 200 and all(c["met"] for c in checks)})
    return out


def judge_flows(scenario: Scenario, flows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for flow, minimum in scenario.expect_flows.items():
        seen = sum(f["messages"] for f in flows if f["flow"] == flow and f["outcome"] == "allowed")
        out.append({"flow": flow, "min": minimum, "seen": seen, "met": seen >= minimum})
    return out


def build_report(obs: Observations) -> dict[str, Any]:
    flows = flow_table(obs.records, obs.principal_names)
    checks = invariants(obs)
    misuse = judge_misuse(obs, checks)
    queries = judge_queries(obs.queries)
    expected_flows = judge_flows(obs.scenario, flows)
    training = judge_training(obs.training)
    unclaimed = [f["detail"] for c in checks for f in c["findings"] if "claimed_by" not in f]
    expectations = (
        [{"what": f"query {q['service']} {q['keys']} as {q['principal']}", "met": q["met"]} for q in queries]
        + [{"what": f"at least {f['min']} {f['flow']} message(s)", "seen": f["seen"], "met": f["met"]}
           for f in expected_flows]
        + [{"what": f"materialize {m['feature_view']} [{m['start']}, {m['end']}) as {m['principal']} succeeded",
            "met": m["met"]} for m in obs.materialized]
        + _jobs_expectation(obs)
        + [{"what": f"training data of {t['service']}", "met": t["met"]} for t in training]
        + [{"what": f"misuse '{m['name']}' flagged", "met": m["flagged"]} for m in misuse]
        + [{"what": f"no unexpected finding: {detail}", "met": False} for detail in unclaimed]
    )
    report: dict[str, Any] = {
        "scenario": obs.scenario.name, "description": obs.scenario.description,
        "deployment": {"mode": obs.mode, "gateway": obs.gateway, "topic_prefix": obs.topic_prefix,
                       "workspace": obs.workspace},
        "started_at": obs.started_at, "finished_at": obs.finished_at, "steps": obs.steps,
        "audit": {"records": len(obs.records), "total_in_log": obs.audit_total},
        "flows": flows, "edges": _edges(obs.records), "queries": queries, "lineage": obs.lineage,
        "jobs": [job_json(j) for j in obs.jobs], "materialize": obs.materialized, "training": training,
        "invariants": checks, "misuse": misuse, "expected_flows": expected_flows, "expectations": expectations,
        "passed": all(e["met"] for e in expectations),
    }
    report["digest"] = report_digest(report)
    return report


def _jobs_expectation(obs: Observations) -> list[dict[str, Any]]:
    """When the scenario runs batch jobs: every job of its workspace succeeded (none failed or pending)."""
    if not obs.jobs and not obs.scenario.materialize and not obs.scenario.batch_files:
        return []
    done = sum(1 for j in obs.jobs if j["state"] == "succeeded")
    return [{"what": "every batch job succeeded", "seen": f"{done} of {len(obs.jobs)}",
             "met": bool(obs.jobs) and done == len(obs.jobs)}]


def _edges(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    counts: dict[tuple[str, str, str, str], int] = {}
    for r in records:
        key = (r["flow"], r["from_component"], r["to_component"], r["outcome"])
        counts[key] = counts.get(key, 0) + r["message_count"]
    return [{"flow": f, "source": s, "target": t, "outcome": o, "messages": n}
            for (f, s, t, o), n in sorted(counts.items())]


def normalize(value: Any, workspace: str, prefix: str) -> Any:
    """The report without what differs between replays by nature: times, ids, ports, the topic prefix,
    the workspace's suffix, and counts that depend on how Kafka batched the messages."""
    if isinstance(value, dict):
        return {k: normalize(v, workspace, prefix) for k, v in sorted(value.items())
                if k not in _VOLATILE}
    if isinstance(value, list):
        return [normalize(v, workspace, prefix) for v in value]
    if isinstance(value, str):
        text = value.replace(f"{prefix}.", "<prefix>.") if prefix else value
        return text.replace(workspace, "<workspace>") if workspace else text
    return value


def report_digest(report: Mapping[str, Any]) -> str:
    deployment = report["deployment"]
    core = normalize(dict(report), deployment["workspace"], deployment["topic_prefix"])
    # F5 rows are exact (one per event sent); other counts depend on batching and polling, so they are not hashed.
    core["ingested_rows"] = sum(f["rows"] for f in report["flows"] if f["flow"] == "F5" and f["outcome"] == "allowed")
    prefix = deployment["topic_prefix"]
    core["lineage"] = sorted((c["feature_view"], json.dumps(c["entity_key"]), "online_write" in c,
                              sorted({_source_name(s["topic"], prefix) for s in c.get("sources", [])}))
                             for c in report["lineage"])
    core["jobs"] = jobs_digest(report.get("jobs", []))
    core["denied_messages"] = {f["flow"]: f["messages"] for f in report["flows"] if f["outcome"] != "allowed"}
    return hashlib.sha256(json.dumps(core, sort_keys=True, default=str).encode()).hexdigest()


def _source_name(topic: str, prefix: str) -> str:
    """A source topic without the replay's prefix; a batch file by its name (its folder is the replay's)."""
    return PurePath(topic).name if "/" in topic else str(normalize(topic, "", prefix))
