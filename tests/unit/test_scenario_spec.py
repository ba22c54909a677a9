"""The scenario loader: the shipped scenarios load, and a broken document is refused with file, path and problem."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from scenarios.generate import generate_rows, resolve_time, stream_rows
from scenarios.spec import PRESENT, ScenarioError, load_scenario, parse_scenario

ROOT = Path(__file__).resolve().parents[2]
ORIGIN = ROOT / "scenarios" / "test.yaml"
BASE = "name: t\nrepo: ../examples/quickstart\n"
END = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("name", ["quickstart", "misuse", "fraud_detection"])
def test_the_shipped_scenarios_load(name: str) -> None:
    scenario = load_scenario(ROOT / "scenarios" / f"{name}.yaml")
    assert scenario.name == name
    assert scenario.repo.is_dir()
    assert scenario.queries
    assert scenario.streams


def test_misuse_declares_each_kind_of_misuse() -> None:
    scenario = load_scenario(ROOT / "scenarios" / "misuse.yaml")
    assert [m.kind for m in scenario.misuse] == ["unauthorized_read", "feature_rows_to_control_plane",
                                                 "tamper_audit_record"]
    assert scenario.misuse[0].principal == "analyst"
    assert scenario.misuse[2].flow == "F7"


def test_a_scenario_reads_queries_expectations_and_flows() -> None:
    scenario = parse_scenario(BASE + """
principals: [{name: model, roles: [consumer]}]
streams: [{source: s, via: http, principal: model, rows: [{a: 1}]}]
queries: [{service: svc, principal: model, keys: {user_id: u1}, expect: {x: 1.5, y: present},
           request_context: {amount: 3.0}, lineage: true}]
expect_flows: {F5: {min: 1}, F1: {min: 2}}
""", ORIGIN)
    assert scenario.repo == (ROOT / "examples" / "quickstart").resolve()
    query = scenario.queries[0]
    assert (query.expect, query.request_context, query.lineage) == ({"x": 1.5, "y": PRESENT}, {"amount": 3.0}, True)
    assert scenario.expect_flows == {"F1": 2, "F5": 1}
    assert scenario.streams[0].via == "http"


def test_the_format_expresses_batch_files_materialize_and_training_data() -> None:
    scenario = parse_scenario(BASE + """
principals: [{name: ops, roles: [operator]}]
batch_files: [{source: transactions_history, path: data/history.parquet}]
materialize: [{feature_view: user_spending, start: "2026-01-01", end: 2026-02-01T00:00:00Z, principal: ops}]
training_data:
  - {service: fraud_detection, events: data/events.parquet, expect_rows: 100}
  - service: spending
    timestamp_key: at
    events: [{user_id: u1, at: "2026-01-02T09:00:00Z"}, {user_id: u2, at: 2026-01-03T00:00:00Z}]
    expect: [{last_amount: 5.0, last_merchant: null}]
""", ORIGIN)
    assert scenario.batch_files[0].path == (ROOT / "scenarios" / "data" / "history.parquet").resolve()
    step = scenario.materialize[0]
    assert (step.feature_view, step.start, step.principal) == ("user_spending", "2026-01-01", "ops")
    assert step.end == "2026-02-01T00:00:00+00:00"  # YAML read the unquoted time; it is kept as ISO text
    from_file, inline = scenario.training
    events_file = (ROOT / "scenarios" / "data" / "events.parquet").resolve()
    assert (from_file.events, from_file.expect_rows) == (events_file, 100)
    assert (inline.events, inline.timestamp_key, len(inline.rows)) == (None, "at", 2)
    assert inline.expect == ({"last_amount": 5.0, "last_merchant": None},)


def test_batch_backfill_triggers_a_range_and_expects_training_values() -> None:
    scenario = load_scenario(ROOT / "scenarios" / "batch_backfill.yaml")
    assert scenario.batch_files[0].path.is_file()
    assert [m.principal for m in scenario.materialize] == ["batch-operator"]
    [training] = scenario.training
    assert len(training.expect) == len(training.rows) == training.expect_rows
    assert {"F6", "F8", "F9"} <= set(scenario.expect_flows)


@pytest.mark.parametrize(("step", "where", "problem"), [
    ("materialize: [{feature_view: v, start: '2026-01-02', end: '2026-01-01'}]", "materialize[0].end",
     "must be after start"),
    ("materialize: [{feature_view: v, start: yesterday, end: '2026-01-01'}]", "materialize[0].start",
     "ISO-8601"),
    ("materialize: [{feature_view: v, start: '2026-01-01', end: '2026-01-02', principal: nobody}]",
     "materialize[0].principal", "not in principals"),
    ("training_data: [{service: s}]", "training_data[0].events", "required"),
    ("training_data: [{service: s, events: [{a: 1}], expect: [{x: 1}, {x: 2}]}]", "training_data[0].expect",
     "one mapping per event"),
    ("training_data: [{service: s, events: [{a: 1}], expect: [{x: [1]}]}]", "training_data[0].expect[0].x",
     "scalar"),
])
def test_a_broken_batch_step_names_where(step: str, where: str, problem: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(BASE + step + "\n", ORIGIN)
    assert caught.value.where == where
    assert problem in caught.value.problem


@pytest.mark.parametrize(("text", "where", "problem"), [
    ("name: t\n", "repo", "required"),
    (BASE + "queries: [{service: s}]\n", "queries[0].keys", "required"),
    (BASE + "queries: [{service: s, keys: {a: 1}, principal: ghost}]\n", "queries[0].principal", "not in principals"),
    (BASE + "streams: [{source: s, rows: [{a: 1}], generator: {seed: 1}}]\n", "streams[0].rows", "not both"),
    (BASE + "streams: [{source: s, via: carrier-pigeon, rows: [{a: 1}]}]\n", "streams[0].via", "one of topic, http"),
    (BASE + "streams: [{source: s, generator: {seed: 1, count: 0, rate_per_s: 1, timestamp_field: ts, "
            "keys: {field: k, values: 3}}}]\n", "streams[0].generator.count", "at least 1"),
    (BASE + "streams: [{source: s, generator: {seed: 1, count: 5, rate_per_s: 1, timestamp_field: ts, "
            "keys: {field: k, values: 3, distribution: pareto}}}]\n", "streams[0].generator.keys.distribution",
     "one of uniform, zipf"),
    (BASE + "expect_flows: {F10: {min: 1}}\n", "expect_flows.F10", "F1 .. F9"),
    (BASE + "misuse: [{kind: steal}]\n", "misuse[0].kind", "one of"),
    (BASE + "principals: [{name: p, roles: [superuser]}]\n", "principals[0].roles", "list of roles"),
    (BASE + "queries: [{service: s, keys: {a: 1}, expect: {x: Present}}]\n", "queries[0].expect.x", "lower case"),
    (BASE + "colour: blue\n", "", "unknown key(s) colour"),
    (BASE + "queries: [{service: s, keys: {a: 1}, typo: 1}]\n", "queries[0]", "unknown key(s) typo"),
    ("name: [unclosed\n", "line 2, column 1", "not valid YAML"),
])
def test_a_broken_document_names_file_path_and_problem(text: str, where: str, problem: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, ORIGIN)
    assert caught.value.origin == str(ORIGIN)
    assert caught.value.where == where
    assert problem in caught.value.problem
    assert str(ORIGIN) in caught.value.message
    assert where in caught.value.message


def test_a_missing_repo_folder_is_named(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: t\nrepo: nowhere\n")
    with pytest.raises(ScenarioError, match="nowhere is not a folder"):
        load_scenario(path)


def _generator_scenario(distribution: str) -> str:
    return BASE + f"""
streams: [{{source: s, generator: {{seed: 7, count: 2000, rate_per_s: 10, timestamp_field: ts,
  keys: {{field: user_id, values: 20, distribution: {distribution}, prefix: u}},
  fields: {{amount: {{uniform: [1, 5]}}, kind: {{choice: [a, b]}}}}, constants: {{src: gen}}}}}}]
"""


def test_a_generator_is_seeded_spaced_by_its_rate_and_ends_before_the_replay() -> None:
    generator = parse_scenario(_generator_scenario("uniform"), ORIGIN).streams[0].generator
    assert generator is not None
    rows = generate_rows(generator, END)
    assert rows == generate_rows(generator, END)
    assert len(rows) == 2000
    assert {r["src"] for r in rows} == {"gen"}
    assert all(1 <= r["amount"] <= 5 and r["kind"] in ("a", "b") for r in rows)
    assert rows[-1]["ts"] == "2026-11-26T11:59:59.900000Z"
    assert rows[0]["ts"] == "2026-11-26T11:56:40Z"


def test_zipf_keys_favour_the_first_keys_and_uniform_ones_do_not() -> None:
    def share_of_u0(distribution: str) -> float:
        generator = parse_scenario(_generator_scenario(distribution), ORIGIN).streams[0].generator
        assert generator is not None
        rows = generate_rows(generator, END)
        return sum(r["user_id"] == "u0" for r in rows) / len(rows)

    assert share_of_u0("zipf") > 0.2 > 0.08 > share_of_u0("uniform")


def test_relative_times_in_inline_rows_resolve_against_the_replay_start() -> None:
    assert resolve_time("now-5m", END) == "2026-11-26T11:55:00Z"
    assert resolve_time("now", END) == "2026-11-26T12:00:00Z"
    assert resolve_time("nowhere", END) == "nowhere"
    stream = parse_scenario(BASE + "streams: [{source: s, rows: [{ts: now-2h, n: 1}]}]\n", ORIGIN).streams[0]
    assert stream_rows(stream, END) == [{"ts": "2026-11-26T10:00:00Z", "n": 1}]
