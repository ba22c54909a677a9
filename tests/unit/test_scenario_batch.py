"""The batch steps of a scenario as values: binding batch files to sources, training events and results,
materialize results, and what of the jobs the digest keeps."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from events.errors import InvalidRequest
from events.specs import FileFormat
from scenarios.batch import (
    TrainingResult,
    bind_batch_files,
    events_frame,
    jobs_digest,
    judge_training,
    materialize_result,
    training_rows,
)
from scenarios.spec import PRESENT, Materialize, TrainingQuery
from sdk.repo import load_repo

ROOT = Path(__file__).resolve().parents[2]
REPO = ROOT / "scenarios" / "repos" / "batch_history"


def job(view: str = "v", trigger: str = "backfill", start: str = "2026-01-01T00:00:00+00:00",
        end: str = "2026-01-02T00:00:00+00:00", state: str = "succeeded", rows: int = 1,
        **extra: Any) -> dict[str, Any]:
    return {"job_id": f"j-{view}-{start}", "workspace": "w", "feature_view": view, "trigger": trigger,
            "compute": "rift", "start": start, "end": end, "state": state, "attempt": 1, "source_rows": rows,
            "rows_written": rows, "tiles_written": 0, "error": "", "updated_at": "2026-11-26T10:00:00+00:00", **extra}


def test_a_batch_file_replaces_the_declared_path_and_format_of_its_source(tmp_path: Path) -> None:
    repo = load_repo(REPO)
    assert repo.batch_sources[0].path.startswith("s3://")
    bound = bind_batch_files(repo, {"transactions_history": tmp_path / "tx.parquet"})
    [source] = bound.batch_sources
    assert (source.path, source.file_format) == (str(tmp_path / "tx.parquet"), FileFormat.PARQUET)
    assert source.schema == repo.batch_sources[0].schema
    assert bound.feature_views == repo.feature_views
    assert bind_batch_files(repo, {}) == repo


@pytest.mark.parametrize(("files", "problem"), [
    ({"nope": Path("x.csv")}, "does not declare"), ({"transactions_history": Path("x.json")}, ".csv or .parquet")])
def test_a_batch_file_for_an_unknown_source_or_of_another_format_is_refused(files: dict[str, Path],
                                                                            problem: str) -> None:
    with pytest.raises(InvalidRequest, match=problem):
        bind_batch_files(load_repo(REPO), files)


def test_training_events_come_inline_or_from_a_file_with_utc_times(tmp_path: Path) -> None:
    inline = TrainingQuery("s", rows=({"user_id": "u1", "ts": "2026-01-02T09:00:00Z"},
                                      {"user_id": "u2", "ts": datetime(2026, 1, 3, tzinfo=UTC)}))
    frame = events_frame(inline)
    assert frame["ts"].to_list() == [datetime(2026, 1, 2, 9, tzinfo=UTC), datetime(2026, 1, 3, tzinfo=UTC)]
    path = tmp_path / "events.csv"
    path.write_text("user_id,at\nu1,2026-01-02T09:00:00Z\n")
    from_file = events_frame(TrainingQuery("s", events=path, timestamp_key="at"))
    assert from_file["at"].to_list() == [datetime(2026, 1, 2, 9, tzinfo=UTC)]
    with pytest.raises(InvalidRequest, match="no column 'when'"):
        events_frame(TrainingQuery("s", events=path, timestamp_key="when"))


def test_training_rows_name_features_as_get_features_does() -> None:
    events = pl.DataFrame({"user_id": ["u1"], "ts": [datetime(2026, 1, 2, tzinfo=UTC)]})
    result = events.with_columns(pl.lit(5.0).alias("user_spending__last_amount"),
                                 pl.lit(None, pl.String).alias("user_merchants__last_merchant"))
    assert training_rows(result, events) == [{"user_spending.last_amount": 5.0, "user_merchants.last_merchant": None}]


def test_training_expectations_are_checked_per_event_and_row_count() -> None:
    query = TrainingQuery("s", rows=({"a": 1}, {"a": 2}), expect_rows=2,
                          expect=({"last_amount": 5.0}, {"v.last_merchant": None, "last_amount": PRESENT}))
    good = TrainingResult(query, [{"v.last_amount": 5.0, "v.last_merchant": "m1"},
                                  {"v.last_amount": 7.0, "v.last_merchant": None}])
    [judged] = judge_training([good])
    assert judged["met"]
    assert [(c["event"], c["feature"]) for c in judged["checks"]] == [
        (None, "rows"), (0, "last_amount"), (1, "v.last_merchant"), (1, "last_amount")]
    [wrong] = judge_training([TrainingResult(query, [{"v.last_amount": 5.0}])])  # one row, event 1 missing
    assert not wrong["met"]
    assert [c["met"] for c in wrong["checks"]] == [False, True, False, False]
    [failed] = judge_training([TrainingResult(query, [], "InvalidRequest: no such service")])
    assert not failed["met"]


def test_a_materialize_step_is_met_when_its_manual_jobs_all_succeeded() -> None:
    step = Materialize("v", "2026-01-01T00:00:00Z", "2026-01-04")
    mine = job(trigger="manual", end="2026-01-04T00:00:00+00:00", rows=4)
    others = [job(), job(view="w", trigger="manual", end="2026-01-04T00:00:00+00:00")]
    result = materialize_result(step, 202, "", [mine, *others])
    assert result["met"]
    assert [(j["feature_view"], j["source_rows"]) for j in result["jobs"]] == [("v", 4)]
    assert "job_id" not in result["jobs"][0]
    assert not materialize_result(step, 202, "", [dict(mine, state="queued")])["met"]
    assert not materialize_result(step, 202, "", others)["met"]
    refused = materialize_result(step, 400, "overlaps", [mine])
    assert not refused["met"]


def test_the_jobs_digest_keeps_states_rows_and_manual_ranges_not_the_backfill_split() -> None:
    one_split = [job(end="2026-06-01T00:00:00+00:00", rows=6), job(trigger="manual", rows=4)]
    other_split = [job(end="2026-03-01T00:00:00+00:00", rows=6),
                   job(start="2026-03-01T00:00:00+00:00", end="2026-06-01T00:00:00+00:00", rows=0),
                   job(trigger="manual", rows=4, job_id="other")]
    assert jobs_digest(one_split) == jobs_digest(other_split)
    assert jobs_digest(one_split) != jobs_digest([one_split[0], dict(one_split[1], end="2026-01-03T00:00:00+00:00")])
    assert jobs_digest(one_split) != jobs_digest([dict(one_split[0], state="abandoned"), one_split[1]])
    assert jobs_digest(one_split) != jobs_digest([dict(one_split[0], source_rows=5), one_split[1]])
