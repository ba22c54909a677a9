"""The replay report, judged from observations without a deployment: invariants, misuse claims, the
digest's normalization, and the HTML page with the picture of the planes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.picture import Edge, edges_from_records, render_svg
from scenarios.batch import TrainingResult
from scenarios.html import render_html
from scenarios.report import ChainCheck, Observations, QueryResult, build_report
from scenarios.spec import Scenario, load_scenario

ROOT = Path(__file__).resolve().parents[2]


def record(flow: str, src: str, dst: str, *, principal: str = "sa-1", outcome: str = "allowed", rows: int = 1,
           topic: str = "p1.online.writes", offset: int = 0, seq: int = 0, **extra: Any) -> dict[str, Any]:
    planes = {"customer_app": "customer", "feature_server": "data", "rift": "data", "online_store": "customer",
              "control_plane": "control", "audit_log": "control", "offline_store": "customer"}
    return {"record_id": f"r{seq}-{flow}-{offset}", "flow": flow, "outcome": outcome, "from_component": src,
            "from_plane": planes[src], "to_component": dst, "to_plane": planes[dst], "principal": principal,
            "workspace": "prod-abc123", "subject": "user_last", "message_count": 1, "row_count": rows,
            "byte_count": 100 + seq, "digest": f"d{seq}", "topic": topic, "partition": 0, "first_offset": offset,
            "last_offset": offset, "correlation_id": f"c{seq}", "causation_id": f"e{seq}",
            "occurred_at": f"2026-11-26T10:00:0{seq % 10}+00:00", **extra}


def healthy_records(seq: int = 0) -> list[dict[str, Any]]:
    return [
        record("F1", "customer_app", "feature_server", topic="", offset=-1, seq=seq),
        record("F4", "feature_server", "customer_app", topic="", offset=-1, seq=seq),
        record("F5", "customer_app", "rift", principal="system", topic="transactions", rows=2, seq=seq,
               message_count=2),
        record("F7", "rift", "online_store", principal="system", offset=seq, seq=seq),
        record("F9", "feature_server", "control_plane", principal="admin", topic="p1.audit.queries", rows=0,
               offset=seq, seq=seq),
    ]


def observe(scenario: Scenario, records: list[dict[str, Any]], **changes: Any) -> Observations:
    query = scenario.queries[0]
    fields: dict[str, Any] = {
        "scenario": scenario, "mode": "fresh", "workspace": "prod-abc123", "topic_prefix": "p1",
        "gateway": "http://127.0.0.1:23456", "principal_names": {"sa-1": "fraud-model", "admin": "admin"},
        "rows_sent": 2, "queries": [QueryResult(query, 200, {f"user_last_transaction.{k}": v if v != "present" else 1
                                                              for k, v in query.expect.items()})],
        "lineage": [], "records": records, "audit_total": len(records), "chain": ChainCheck(True, len(records)),
        "cache_max_age_s": 60.0,
    }
    fields.update(changes)
    return Observations(**fields)


@pytest.fixture
def quickstart() -> Scenario:
    return load_scenario(ROOT / "scenarios" / "quickstart.yaml")


@pytest.fixture
def misuse() -> Scenario:
    return load_scenario(ROOT / "scenarios" / "misuse.yaml")


def test_a_clean_replay_passes_with_every_invariant_held(quickstart: Scenario) -> None:
    report = build_report(observe(quickstart, healthy_records(), queries=[
        QueryResult(q, 200, {f"v.{k}": (1 if v == "present" else v) for k, v in q.expect.items()})
        for q in quickstart.queries]))
    assert [i["status"] for i in report["invariants"]] == ["held"] * 5
    assert report["passed"] is False  # expect_flows asks for more F1..F8 than these records show
    unmet = [e["what"] for e in report["expectations"] if not e["met"]]
    assert unmet
    assert all(w.startswith("at least") for w in unmet)
    f5 = next(f for f in report["flows"] if f["flow"] == "F5")
    assert (f5["rows"], f5["principals"]) == (2, ["system"])


def test_a_wrong_value_fails_its_expectation(quickstart: Scenario) -> None:
    query = quickstart.queries[0]
    report = build_report(observe(quickstart, healthy_records(), queries=[
        QueryResult(query, 200, {"v.last_amount": 41.0, "v.last_merchant": "books", "v.last_is_online": True})]))
    checks = report["queries"][0]["checks"]
    assert [(c["feature"], c["met"]) for c in checks] == [("last_amount", False), ("last_merchant", True),
                                                          ("last_is_online", True)]


@pytest.mark.parametrize(("change", "invariant", "kind"), [
    ({"rows_sent": 3}, "every data message audited exactly once", "ingest_not_audited"),
    ({"extra": [record("F7", "rift", "online_store", principal="system", offset=0, seq=9)]},
     "every data message audited exactly once", "audited_twice"),
    ({"extra": [record("F9", "rift", "control_plane", outcome="denied", seq=9)]}, "all flows allowed", "flow_denied"),
    ({"extra": [record("F9", "feature_server", "control_plane", rows=3, offset=7, seq=9)]},
     "no feature data in the control plane", "feature_data_in_control_plane"),
    ({"cache_max_age_s": 90_000.0}, "serving cache entries never older than 24 h", "cache_too_old"),
    ({"chain": ChainCheck(True, 5, 3)}, "audit hash chain intact", "chain_broken"),
])
def test_each_invariant_flags_its_violation_unless_a_misuse_step_claims_it(
        quickstart: Scenario, change: dict[str, Any], invariant: str, kind: str) -> None:
    extra = change.pop("extra", [])
    report = build_report(observe(quickstart, healthy_records() + extra, **change))
    broken = [i for i in report["invariants"] if i["status"] == "broken"]
    assert [(i["name"], [f["kind"] for f in i["findings"]]) for i in broken] == [(invariant, [kind])]
    assert not report["passed"]
    assert any(e["what"].startswith("no unexpected finding") and not e["met"] for e in report["expectations"])


def test_misuse_is_flagged_exactly_where_it_should_be(misuse: Scenario) -> None:
    fault = "misconfigured-rift-sends-rows-to-control-plane"
    refused_read = record("F1", "customer_app", "feature_server", principal="sa-2", outcome="denied", rows=0,
                          topic="", offset=-1, seq=9)
    records = [*healthy_records(), record("F9", "rift", "control_plane", principal=fault, outcome="denied", seq=8),
               refused_read]
    evidence = {
        "viewer-reads-features": {"status": 403, "error_type": "PERMISSION_DENIED"},
        "rift-sends-rows-to-control-plane": {"principal_name": fault, "leaked_value_in_audit_log": False},
        "stored-f7-record-changed": {"tampered_seq": 3},
    }
    names = {"sa-1": "fraud-model", "sa-2": "analyst", "admin": "admin", fault: fault}
    obs = observe(misuse, records, misuse=evidence, principal_names=names, chain=ChainCheck(True, 6, 3))
    report = build_report(obs)
    assert [(m["name"], m["flagged"]) for m in report["misuse"]] == [
        ("viewer-reads-features", True), ("rift-sends-rows-to-control-plane", True),
        ("stored-f7-record-changed", True)]
    assert report["passed"], [e for e in report["expectations"] if not e["met"]]
    denied = next(i for i in report["invariants"] if i["name"] == "all flows allowed")["findings"]
    assert sorted(f["claimed_by"] for f in denied) == ["rift-sends-rows-to-control-plane", "viewer-reads-features"]

    # A refused read that the audit log does not show as refused is not flagged.
    unaudited = [r for r in records if r is not refused_read]
    report = build_report(observe(misuse, unaudited, misuse=evidence, principal_names=names,
                                  chain=ChainCheck(True, 6, 3)))
    assert report["misuse"][0]["flagged"] is False

    # A break at another record than the tampered one is not the misuse: flagged neither, and unexplained.
    report = build_report(observe(misuse, records, misuse=evidence, principal_names=names,
                                  chain=ChainCheck(True, 6, 2)))
    assert [m["flagged"] for m in report["misuse"]] == [True, True, False]
    assert not report["passed"]

    # The viewer's read returned data: not flagged.
    served = [*records, record("F4", "feature_server", "customer_app", principal="sa-2", topic="", offset=-1, seq=7)]
    report = build_report(observe(misuse, served, misuse=evidence, principal_names=names,
                                  chain=ChainCheck(True, 6, 3)))
    assert report["misuse"][0]["flagged"] is False


def test_the_digest_ignores_times_ids_ports_prefix_and_batching_but_not_values(quickstart: Scenario) -> None:
    first = build_report(observe(quickstart, healthy_records(0)))
    other = [dict(r, message_count=2) for r in healthy_records(5)]
    second = build_report(observe(quickstart, other, workspace="prod-zzz999", topic_prefix="p2",
                                  gateway="http://127.0.0.1:29999", started_at="later"))
    assert first["digest"] == second["digest"]
    query = quickstart.queries[0]
    changed = build_report(observe(quickstart, healthy_records(0), queries=[
        QueryResult(query, 200, {"v.last_amount": 41.0, "v.last_merchant": "books", "v.last_is_online": True})]))
    assert changed["digest"] != first["digest"]
    assert build_report(observe(quickstart, healthy_records(0), rows_sent=3))["digest"] != first["digest"]


def test_the_picture_draws_three_planes_every_component_and_each_flow_with_its_count() -> None:
    records = [*healthy_records(), record("F9", "rift", "control_plane", outcome="denied", seq=4)]
    svg = render_svg(edges_from_records(records))
    assert svg.startswith("<svg")
    assert svg.endswith("</svg>")
    assert [svg.count(f'data-plane="{p}"') for p in ("control", "data", "customer")] == [1, 1, 1]
    assert svg.count('class="component"') == 9
    assert "F7 \u00d71" in svg
    assert "F5 \u00d72" in svg
    assert 'data-outcome="denied"' in svg
    assert "DENIED" in svg
    assert "<script" not in svg
    assert "http://" not in svg.replace("http://www.w3.org/2000/svg", "")


def test_edges_add_up_messages_per_route_and_outcome() -> None:
    records = [record("F7", "rift", "online_store", offset=i, seq=i) for i in range(3)]
    assert edges_from_records(records) == [Edge("F7", "rift", "online_store", "allowed", 3)]


def test_the_html_report_is_self_contained_and_escapes_what_it_shows(misuse: Scenario) -> None:
    report = build_report(observe(misuse, healthy_records(), lineage=[
        {"feature_view": "<b>v</b>", "entity_key": ["u1"], "sources": [{"topic": "t"}]}]))
    page = render_html(report)
    assert "<svg" in page
    assert 'data-plane="customer"' in page
    assert "<b>v</b>" not in page
    assert "&lt;b&gt;v&lt;/b&gt;" in page
    assert "<script" not in page
    assert "src=" not in page
    assert "href=" not in page
    assert "FAILED" in page  # the misuse steps were not provoked in these observations


def batch_job(start: str, end: str, trigger: str = "backfill", state: str = "succeeded", rows: int = 3,
              job_id: str = "j1") -> dict[str, Any]:
    return {"job_id": job_id, "workspace": "history", "feature_view": "user_spending", "trigger": trigger,
            "compute": "rift", "start": start, "end": end, "state": state, "attempt": 1, "source_rows": rows,
            "rows_written": rows, "tiles_written": 0, "error": "", "updated_at": "2026-11-26T10:00:00+00:00"}


def test_a_batch_replay_lists_its_jobs_and_judges_them_and_its_training_data() -> None:
    scenario = load_scenario(ROOT / "scenarios" / "batch_backfill.yaml")
    [training_query] = scenario.training
    expected = [dict(e) for e in training_query.expect]
    training = [TrainingResult(training_query, expected)]
    jobs = [batch_job("2026-01-01T00:00:00+00:00", "2026-06-01T00:00:00+00:00"),
            batch_job("2026-06-01T00:00:00+00:00", "2026-11-26T00:00:00+00:00", rows=0, job_id="j2")]
    base = observe(scenario, healthy_records(), rows_sent=2, jobs=jobs, training=training)
    report = build_report(base)
    assert [(j["start"], j["state"], j["source_rows"]) for j in report["jobs"]] == [
        ("2026-01-01T00:00:00+00:00", "succeeded", 3), ("2026-06-01T00:00:00+00:00", "succeeded", 0)]
    assert "job_id" not in report["jobs"][0]
    verdicts = {e["what"]: e["met"] for e in report["expectations"]}
    assert verdicts["every batch job succeeded"] is True
    assert verdicts["training data of spending_training"] is True
    page = render_html(report)
    assert "<h2>Batch jobs</h2>" in page
    assert "[2026-06-01T00:00:00+00:00, 2026-11-26T00:00:00+00:00)" in page
    assert "Training data: <code>spending_training</code>" in page

    # Another split of the same backfill (the replay ran on another day) gives the same digest.
    resplit = [batch_job("2026-01-01T00:00:00+00:00", "2026-11-27T00:00:00+00:00", job_id="x")]
    assert build_report(observe(scenario, healthy_records(), rows_sent=2, jobs=resplit,
                                training=training))["digest"] == report["digest"]
    # A job left pending fails the replay; so does a training value that differs.
    pending = build_report(observe(scenario, healthy_records(), rows_sent=2, training=training,
                                   jobs=[*jobs, batch_job("2026-11-26T00:00:00+00:00", "2026-11-27T00:00:00+00:00",
                                                          state="queued", rows=0)]))
    assert not pending["passed"]
    wrong = [dict(expected[0], **{"user_spending.last_amount": 6.0}), *expected[1:]]
    changed = build_report(observe(scenario, healthy_records(), rows_sent=2, jobs=jobs,
                                   training=[TrainingResult(training_query, wrong)]))
    assert not changed["passed"]
    assert changed["digest"] != report["digest"]
