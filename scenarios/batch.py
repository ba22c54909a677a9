"""The batch steps of a scenario, as values: where its files go, what its training data must hold, and how
its jobs enter the report and the digest.

Pure but for reading an events file: `deploy.replay_batch` does the HTTP and the copying.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from events.errors import InvalidRequest
from events.specs import FileFormat, RepoSpec
from scenarios.expect import feature_value, matches
from scenarios.spec import Materialize, TrainingQuery, utc_instant

_FORMATS = {".csv": FileFormat.CSV, ".parquet": FileFormat.PARQUET}
_SEPARATOR = "__"  # the offline result's `<view>__<feature>` columns


def bind_batch_files(repo: RepoSpec, files: Mapping[str, Path]) -> RepoSpec:
    """The repository with each named batch source reading the given file instead of its declared path."""
    declared = {s.name for s in repo.batch_sources}
    unknown = sorted(set(files) - declared)
    if unknown:
        raise InvalidRequest(f"batch_files name source(s) {', '.join(unknown)}, which the repository does not "
                             f"declare as batch sources (it declares {', '.join(sorted(declared)) or 'none'})")
    sources = []
    for source in repo.batch_sources:
        path = files.get(source.name)
        if path is not None:
            file_format = _FORMATS.get(path.suffix.lower())
            if file_format is None:
                raise InvalidRequest(f"batch file {path} for '{source.name}': a .csv or .parquet file is needed")
            source = dataclasses.replace(source, path=str(path), file_format=file_format)
        sources.append(source)
    return dataclasses.replace(repo, batch_sources=tuple(sources))


def events_frame(query: TrainingQuery) -> pl.DataFrame:
    """The query's events (inline or from its file) with `timestamp_key` as UTC datetimes."""
    if query.events is not None:
        frame = pl.read_csv(query.events) if query.events.suffix.lower() == ".csv" else pl.read_parquet(query.events)
    else:
        frame = pl.DataFrame([{k: _instant_text(v) for k, v in row.items()} for row in query.rows])
    ts = query.timestamp_key
    if ts not in frame.columns:
        raise InvalidRequest(f"the training events of '{query.service}' have no column '{ts}'")
    if frame.schema[ts] == pl.String():
        frame = frame.with_columns(pl.col(ts).str.to_datetime(time_zone="UTC", time_unit="us"))
    return frame


def _instant_text(value: Any) -> Any:
    # YAML reads unquoted times itself; written back as text, one column parses them all alike.
    return value.isoformat() if hasattr(value, "isoformat") else value


def training_rows(frame: pl.DataFrame, events: pl.DataFrame) -> list[dict[str, Any]]:
    """The features of each result row by `view.feature` (as get-features names them), times as text."""
    added = [c for c in frame.columns if c not in events.columns and _SEPARATOR in c]
    return [{c.replace(_SEPARATOR, ".", 1): _instant_text(v) for c, v in row.items()}
            for row in frame.select(added).iter_rows(named=True)]


def job_json(job: Mapping[str, Any]) -> dict[str, Any]:
    """A job as the report lists it (the jobs API's fields, without its id and update time)."""
    return {k: job.get(k) for k in ("feature_view", "trigger", "compute", "start", "end", "state", "attempt",
                                    "source_rows", "rows_written", "tiles_written", "error")}


def materialize_result(step: Materialize, status: int, error: str, jobs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A materialize step with the jobs of its range; met when the trigger was taken and they all succeeded."""
    start, end = utc_instant(step.start), utc_instant(step.end)
    mine = [job_json(j) for j in jobs if j["feature_view"] == step.feature_view and j["trigger"] == "manual"
            and (utc_instant(j["start"]), utc_instant(j["end"])) == (start, end)]
    return {"feature_view": step.feature_view, "start": start.isoformat(), "end": end.isoformat(),
            "principal": step.principal or "admin", "status": status, "error": error, "jobs": mine,
            "met": status == 202 and bool(mine) and all(j["state"] == "succeeded" for j in mine)}


def jobs_digest(jobs: Sequence[Mapping[str, Any]]) -> list[Any]:
    """What of the jobs two replays share: per view, trigger and compute the states and rows; the ranges of
    manual jobs only (a backfill's split and the scheduler's next job depend on when the replay runs)."""
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for job in jobs:
        group = groups.setdefault((job["feature_view"], job["trigger"], job["compute"]),
                                  {"states": set(), "source_rows": 0, "rows_written": 0, "ranges": set()})
        group["states"].add(job["state"])
        group["source_rows"] += job["source_rows"]
        group["rows_written"] += job["rows_written"]
        if job["trigger"] == "manual":
            group["ranges"].add((job["start"], job["end"]))
    return [[*key, sorted(g["states"]), g["source_rows"], g["rows_written"], sorted(g["ranges"])]
            for key, g in sorted(groups.items())]


@dataclass(frozen=True, slots=True)
class TrainingResult:
    query: TrainingQuery
    rows: list[dict[str, Any]]  # per event, in order: `view.feature` -> value
    error: str = ""


def judge_training(results: Sequence[TrainingResult]) -> list[dict[str, Any]]:
    """Each training query with a check per expected value (event i, feature) and of the row count."""
    out = []
    for result in results:
        q = result.query
        checks = []
        if q.expect_rows is not None:
            checks.append({"event": None, "feature": "rows", "expected": q.expect_rows, "actual": len(result.rows),
                           "met": not result.error and len(result.rows) == q.expect_rows})
        for i, expect in enumerate(q.expect):
            row = result.rows[i] if i < len(result.rows) else {}
            for name, expected in expect.items():
                found, actual = feature_value(row, name)
                checks.append({"event": i, "feature": name, "expected": expected, "actual": actual,
                               "met": not result.error and found and matches(expected, actual)})
        out.append({"service": q.service, "events": len(result.rows), "error": result.error, "rows": result.rows,
                    "checks": checks, "met": not result.error and all(c["met"] for c in checks)})
    return out
