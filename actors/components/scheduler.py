"""When batch materialization jobs run: the control plane's pure scheduling policy.

A batch feature view with a `batch_schedule` and a `feature_start_time` wants every interval
[feature_start_time + k*schedule, + schedule) materialized once it has ended. Whatever no job covers yet
(backfill at the first apply, one interval per schedule tick after) becomes new jobs, at most
`max_backfill_jobs` per gap (a long backfill is split into that many chunks of whole intervals). A failed
attempt is retried with exponential backoff up to `max_attempts`, then abandoned. A manual trigger is
refused when it overlaps a range that is materialized or on its way: each source row is written once,
which is what keeps re-runs from adding tiles twice.

A stream view created with a `batch_schedule` and a `feature_start_time` gets one backfill, from
`feature_start_time` to its cutoff, from its stream source's batch source, through the same jobs; manual
backfills of it must end by the cutoff (actors/components/stream_backfill.py says why).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from actors.components.stream_backfill import backfill_source
from events import control
from events.access import Action, denial
from events.envelope import Envelope
from events.jobs import Compute, JobRecord, JobState, JobStatusReported, JobTrigger, JobUpdated, MaterializationJob
from events.registry import Registry, Workspace
from events.specs import BatchSourceSpec, FeatureViewKind, FeatureViewSpec

Range = tuple[datetime, datetime]
JobTable = Mapping[str, JobRecord]


@dataclass(frozen=True, slots=True)
class SchedulerPolicy:
    max_attempts: int = 3
    backoff_s: float = 10.0  # first retry after this, doubling per attempt
    max_backfill_jobs: int = 16

    def backoff(self, attempt: int) -> timedelta:
        return timedelta(seconds=self.backoff_s * 2 ** max(attempt - 1, 0))


DEFAULT_POLICY = SchedulerPolicy()


@dataclass(frozen=True, slots=True)
class BatchView:
    """A view as its jobs need it: its specs, the batch source they read and its entities' join keys."""

    workspace: str
    view: FeatureViewSpec
    source: BatchSourceSpec
    join_keys: tuple[str, ...]

    def job(self, job_id: str, window: Range, trigger: JobTrigger, attempt: int = 1) -> MaterializationJob:
        return MaterializationJob(job_id, self.workspace, self.view, self.source, self.join_keys, window[0],
                                  window[1], attempt, Compute(self.view.compute), trigger)

    def wanted(self, now: datetime) -> Range | None:
        """What the view's jobs should have covered by `now`: a batch view every schedule interval ended
        since feature_start_time, a stream view from feature_start_time to its cutoff (the stream does the
        rest). None: not scheduled."""
        start, step = self.view.feature_start_time, self.view.batch_schedule_s
        if start is None or not step:
            return None
        if self.view.kind is FeatureViewKind.STREAM:
            return None if self.view.backfill_until is None else (start, self.view.backfill_until)
        return start, horizon(start, step, now)


def job_view(ws: Workspace, name: str) -> BatchView | str:
    """The view as its jobs read it: a batch view from its batch source, a stream view from its stream
    source's batch source (actors/components/stream_backfill.py); or why it has no jobs."""
    view = ws.feature_views.get(name)
    if view is None:
        return f"feature view '{name}' does not exist in workspace '{ws.name}'"
    if view.kind is FeatureViewKind.STREAM:
        backfill = backfill_source(ws, view)
        if isinstance(backfill, str):
            return backfill
        return BatchView(ws.name, view, backfill, ws.join_keys(view))
    source = ws.batch_sources.get(view.source)
    if view.kind is not FeatureViewKind.BATCH or source is None:
        return f"'{name}' is not a batch feature view with a batch source"
    return BatchView(ws.name, view, source, ws.join_keys(view))


def batch_view(ws: Workspace, name: str) -> BatchView | None:
    found = job_view(ws, name)
    return None if isinstance(found, str) else found


def scheduled_views(registry: Registry) -> list[BatchView]:
    """Views of live workspaces with jobs on a schedule (development workspaces never materialize): batch
    views, and stream views backfilled from their source's batch source."""
    found = [batch_view(ws, name) for ws in registry.workspaces.values() if ws.live for name in ws.feature_views]
    return [b for b in found if b is not None and b.view.batch_schedule_s and b.view.feature_start_time]


def horizon(start: datetime, step: int, now: datetime) -> datetime:
    """The end of the last schedule interval (from `start`, `step` seconds each) that has ended by `now`."""
    ended = max(math.floor((now - start).total_seconds() / step), 0)
    return start + timedelta(seconds=ended * step)


def gaps(want: Range, covered: Iterable[Range]) -> list[Range]:
    """The parts of `want` that no range in `covered` holds, in order."""
    found, cursor = [], want[0]
    for lo, hi in sorted(covered):
        if hi <= cursor or lo >= want[1]:
            continue
        if lo > cursor:
            found.append((cursor, lo))
        cursor = max(cursor, hi)
    if cursor < want[1]:
        found.append((cursor, want[1]))
    return found


def split(gap: Range, step_s: int, max_jobs: int) -> list[Range]:
    """`gap` cut into at most `max_jobs` consecutive chunks of whole steps (the last may be shorter)."""
    steps = math.ceil((gap[1] - gap[0]).total_seconds() / step_s)
    chunk = timedelta(seconds=step_s * max(1, math.ceil(steps / max_jobs)))
    chunks, lo = [], gap[0]
    while lo < gap[1]:
        chunks.append((lo, min(lo + chunk, gap[1])))
        lo += chunk
    return chunks


def _ranges_of(jobs: JobTable, workspace: str, view: str) -> list[Range]:
    return [(j.start, j.end) for j in jobs.values() if j.workspace == workspace and j.feature_view == view]


def due_jobs(registry: Registry, jobs: JobTable, now: datetime, new_id: Callable[[], str],
             policy: SchedulerPolicy = DEFAULT_POLICY) -> list[MaterializationJob]:
    """The jobs to send `now`: uncovered intervals of scheduled views, and retries whose backoff is over."""
    due: list[MaterializationJob] = []
    for batch in scheduled_views(registry):
        want, step = batch.wanted(now), batch.view.batch_schedule_s
        if want is None or not step:
            continue
        covered = _ranges_of(jobs, batch.workspace, batch.view.name)
        for gap in gaps(want, covered):
            one_tick = covered and (gap[1] - gap[0]).total_seconds() <= step \
                and batch.view.kind is FeatureViewKind.BATCH
            trigger = JobTrigger.SCHEDULE if one_tick else JobTrigger.BACKFILL
            due += [batch.job(new_id(), chunk, trigger) for chunk in split(gap, step, policy.max_backfill_jobs)]
    return due + retries(registry, jobs, now, policy)


def retries(registry: Registry, jobs: JobTable, now: datetime, policy: SchedulerPolicy) -> list[MaterializationJob]:
    """The failed jobs to run again: same id and range, the next attempt, the view's current definition."""
    found = []
    for job in jobs.values():
        if job.state is not JobState.FAILED or now < job.updated_at + policy.backoff(job.attempt):
            continue
        ws = registry.workspaces.get(job.workspace)
        batch = batch_view(ws, job.feature_view) if ws is not None and ws.live else None
        if batch is not None:
            found.append(batch.job(job.job_id, (job.start, job.end), job.trigger, job.attempt + 1))
    return found


def queued(job: MaterializationJob, now: datetime) -> JobRecord:
    return JobRecord(job.job_id, job.workspace, job.feature_view.name, job.start, job.end, job.attempt,
                     job.compute, job.trigger, JobState.QUEUED, now)


def reported(record: JobRecord, status: JobStatusReported, now: datetime,
             policy: SchedulerPolicy = DEFAULT_POLICY) -> JobRecord | None:
    """The job after a worker's report, None for a report of an older attempt (it changes nothing)."""
    if status.attempt != record.attempt or record.state.final:
        return None
    state = status.state
    if state is JobState.FAILED and status.attempt >= policy.max_attempts:
        state = JobState.ABANDONED
    return replace(record, state=state, updated_at=now, source_rows=status.source_rows,
                   rows_written=status.rows_written, tiles_written=status.tiles_written, error=status.error)


def manual_job(registry: Registry, jobs: JobTable, workspace: str, view_name: str, window: Range,
               job_id: str) -> MaterializationJob | str:
    """The job of a manual trigger, or why there is none."""
    ws = registry.workspaces.get(workspace)
    if ws is None or view_name not in ws.feature_views:
        return f"feature view '{view_name}' does not exist in workspace '{workspace}'"
    if not ws.live:
        return f"workspace '{workspace}' is a development workspace: it does not materialize"
    batch = job_view(ws, view_name)
    if isinstance(batch, str):
        return batch
    start, end = window
    if start.tzinfo is None or end.tzinfo is None:
        return "start and end need a time zone"
    if start >= end:
        return f"start {start.isoformat()} is not before end {end.isoformat()}"
    cutoff = batch.view.backfill_until
    if cutoff is not None and end > cutoff:
        return (f"the stream of '{view_name}' materializes events from {cutoff.isoformat()} on: a backfill "
                f"must end at or before that, not at {end.isoformat()}")
    overlapping = [j for j in jobs.values() if j.workspace == workspace and j.feature_view == view_name
                   and j.state is not JobState.ABANDONED and j.start < end and start < j.end]
    if overlapping:
        named = ", ".join(f"{j.start.isoformat()}..{j.end.isoformat()} ({j.state.value})"
                          for j in sorted(overlapping, key=lambda j: j.start))
        return f"the range overlaps materialized or pending jobs of '{view_name}': {named}"
    return batch.job(job_id, window, JobTrigger.MANUAL)


def _with_records(found: list[MaterializationJob], now: datetime) -> list[Any]:
    """Each job to send, followed by its queued record for the control-events topic."""
    return [body for job in found for body in (job, JobUpdated(queued(job, now)))]


def decide_jobs(registry: Registry, jobs: JobTable, envelope: Envelope, body: Any, now: datetime,
                new_id: Callable[[], str], policy: SchedulerPolicy = DEFAULT_POLICY) -> list[Any]:
    """The control plane's answer to a job message: jobs to send, `JobUpdated` records, command outcomes."""
    if isinstance(body, JobStatusReported):
        record = jobs.get(body.job_id)
        updated = reported(record, body, now, policy) if record is not None else None
        return [] if updated is None else [JobUpdated(updated)]
    if isinstance(body, control.TickSchedules):
        return _with_records(due_jobs(registry, jobs, now, new_id, policy), now)
    if isinstance(body, control.TriggerMaterialization):
        caller, workspace = envelope.principal, envelope.workspace
        if not registry.may(caller, Action.TRIGGER_JOBS, workspace):
            return [control.CommandRejected(body.command_id,
                                            denial(f"'{caller}' may not trigger jobs in workspace '{workspace}'"))]
        job = manual_job(registry, jobs, workspace, body.feature_view, (body.start, body.end), new_id())
        if isinstance(job, str):
            return [control.CommandRejected(body.command_id, job)]
        return [*_with_records([job], now), control.CommandSucceeded(body.command_id)]
    return []


JOB_MESSAGES = (JobStatusReported, control.TickSchedules, control.TriggerMaterialization)
