"""The batch scheduler's policy: backfill without gaps or overlaps, schedule ticks, bounded retries, and
manual triggers that never overlap what is materialized."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from actors.components.scheduler import (
    SchedulerPolicy,
    decide_jobs,
    due_jobs,
    gaps,
    manual_job,
    queued,
    reported,
    split,
)
from events import control
from events.access import PrincipalKind, PrincipalSpec, is_denial
from events.codec import CODEC
from events.jobs import JobRecord, JobState, JobStatusReported, JobTrigger, MaterializationJob
from events.planes import Component
from events.registry import Registry
from events.specs import (
    BatchSourceSpec,
    DType,
    EntitySpec,
    FeatureSpec,
    FeatureViewKind,
    FeatureViewSpec,
    FieldSpec,
    FileFormat,
)

START = datetime(2026, 1, 1, tzinfo=UTC)
DAY = 86_400
SOURCE = BatchSourceSpec("tx", "/data/tx.parquet", FileFormat.PARQUET, "ts",
                         (FieldSpec("user_id", DType.STRING), FieldSpec("ts", DType.TIMESTAMP)))


def registry(live: bool = True, start: datetime | None = START, compute: str = "rift") -> Registry:
    view = FeatureViewSpec("spend", ("user",), "tx", (FeatureSpec("amount", "amount", DType.FLOAT64),),
                           kind=FeatureViewKind.BATCH, batch_schedule_s=DAY, feature_start_time=start, compute=compute)
    events = [control.WorkspaceCreated("ws", live), control.EntityApplied(EntitySpec("user", ("user_id",))),
              control.BatchSourceApplied(SOURCE), control.FeatureViewApplied(view),
              control.PrincipalCreated(PrincipalSpec("admin", PrincipalKind.USER, "a", "", "", is_admin=True))]
    return Registry().apply_all(CODEC.message(e, producer=Component.CONTROL_PLANE, workspace="ws") for e in events)


def new_ids() -> Callable[[], str]:
    counter = itertools.count()
    return lambda: f"job-{next(counter)}"


def table(jobs: list[MaterializationJob], now: datetime) -> dict[str, JobRecord]:
    return {j.job_id: queued(j, now) for j in jobs}


def test_backfill_covers_feature_start_to_the_last_ended_interval_in_bounded_chunks() -> None:
    now = START + timedelta(days=40, hours=5)
    jobs = due_jobs(registry(), {}, now, new_ids(), SchedulerPolicy(max_backfill_jobs=16))
    assert 1 < len(jobs) <= 16
    assert jobs[0].start == START
    assert jobs[-1].end == START + timedelta(days=40)
    assert all(a.end == b.start for a, b in itertools.pairwise(jobs))
    assert {j.trigger for j in jobs} == {JobTrigger.BACKFILL}
    assert all((j.end - j.start).total_seconds() % DAY == 0 for j in jobs)


def test_a_schedule_tick_emits_only_the_interval_that_just_ended() -> None:
    first = START + timedelta(days=3, hours=1)
    done = table(due_jobs(registry(), {}, first, new_ids()), first)
    assert due_jobs(registry(), done, first + timedelta(hours=1), new_ids()) == []
    later = due_jobs(registry(), done, START + timedelta(days=4, minutes=1), new_ids())
    assert [(j.start, j.end, j.trigger) for j in later] == [
        (START + timedelta(days=3), START + timedelta(days=4), JobTrigger.SCHEDULE)]


def test_development_workspaces_and_views_without_start_time_are_not_scheduled() -> None:
    now = START + timedelta(days=5)
    assert due_jobs(registry(live=False), {}, now, new_ids()) == []
    assert due_jobs(registry(start=None), {}, now, new_ids()) == []


def test_jobs_go_to_the_compute_the_view_chose() -> None:
    now = START + timedelta(days=2)
    jobs = due_jobs(registry(compute="external"), {}, now, new_ids())
    assert {j.compute.value for j in jobs} == {"external"}


def test_failures_retry_with_backoff_and_are_abandoned_after_max_attempts() -> None:
    policy = SchedulerPolicy(max_attempts=3, backoff_s=10)
    now = START + timedelta(days=1, minutes=1)
    job = due_jobs(registry(), {}, now, new_ids(), policy)[0]
    record = queued(job, now)
    for attempt in (1, 2):
        failed = reported(record, JobStatusReported(job.job_id, "spend", attempt, JobState.FAILED, error="x"), now,
                          policy)
        assert failed is not None
        assert failed.state is JobState.FAILED
        wait = policy.backoff(attempt)
        assert due_jobs(registry(), {job.job_id: failed}, now + wait - timedelta(seconds=1), new_ids(), policy) == []
        retry = due_jobs(registry(), {job.job_id: failed}, now + wait, new_ids(), policy)
        assert [(r.job_id, r.attempt, r.start) for r in retry] == [(job.job_id, attempt + 1, job.start)]
        now += wait
        record = queued(retry[0], now)
    last = reported(record, JobStatusReported(job.job_id, "spend", 3, JobState.FAILED, error="x"), now, policy)
    assert last is not None
    assert last.state is JobState.ABANDONED
    later = due_jobs(registry(), {job.job_id: last}, now + timedelta(days=1), new_ids(), policy)
    assert later
    assert all(j.start >= job.end for j in later)


def test_a_report_of_an_older_attempt_changes_nothing() -> None:
    now = START + timedelta(days=1, minutes=1)
    job = due_jobs(registry(), {}, now, new_ids())[0]
    record = queued(job, now)
    assert reported(record, JobStatusReported(job.job_id, "spend", 2, JobState.SUCCEEDED), now) is None


def test_manual_trigger_is_refused_when_it_overlaps_or_the_caller_lacks_the_role() -> None:
    now = START + timedelta(days=3, hours=1)
    done = table(due_jobs(registry(), {}, now, new_ids()), now)
    refused = manual_job(registry(), done, "ws", "spend", (START, START + timedelta(hours=1)), "m")
    assert isinstance(refused, str)
    assert "overlaps" in refused
    ok = manual_job(registry(), done, "ws", "spend", (START + timedelta(days=5), START + timedelta(days=6)), "m")
    assert isinstance(ok, MaterializationJob)
    assert ok.trigger is JobTrigger.MANUAL
    assert isinstance(manual_job(registry(), {}, "ws", "nope", (START, START + timedelta(days=1)), "m"), str)
    assert isinstance(manual_job(registry(), {}, "ws", "spend", (START, START), "m"), str)
    command = control.TriggerMaterialization("c1", "spend", START, START + timedelta(days=1))
    stranger = CODEC.message(command, producer=Component.FEATURE_SERVER, workspace="ws", principal="bob").envelope
    answer = decide_jobs(registry(), {}, stranger, command, now, lambda: "j")
    assert [type(a) for a in answer] == [control.CommandRejected]
    assert is_denial(answer[0].reason)  # a missing right (403), not a bad range (400)
    assert not is_denial(str(manual_job(registry(), {}, "ws", "nope", (START, START + timedelta(days=1)), "m")))


@given(st.integers(1, 2000), st.integers(1, 48), st.integers(1, 40))
def test_split_chunks_cover_the_gap_exactly(hours: int, step_h: int, max_jobs: int) -> None:
    gap = (START, START + timedelta(hours=hours))
    chunks = split(gap, step_h * 3600, max_jobs)
    assert chunks[0][0] == gap[0]
    assert chunks[-1][1] == gap[1]
    assert all(a[1] == b[0] for a, b in itertools.pairwise(chunks))
    assert len(chunks) <= max_jobs


@given(st.lists(st.tuples(st.integers(0, 100), st.integers(1, 20)), max_size=6))
def test_gaps_and_covered_ranges_partition_the_wanted_range(spans: list[tuple[int, int]]) -> None:
    hour = timedelta(hours=1)
    covered = [(START + lo * hour, START + (lo + size) * hour) for lo, size in spans]
    want = (START, START + 100 * hour)
    found = gaps(want, covered)
    for h in range(100):
        t = START + h * hour
        in_gap = any(lo <= t < hi for lo, hi in found)
        in_covered = any(lo <= t < hi for lo, hi in covered)
        assert in_gap != in_covered
    assert all(a[1] < b[0] for a, b in itertools.pairwise(found))


def test_a_manual_trigger_in_a_development_workspace_is_refused() -> None:
    window = (START, START + timedelta(days=1))
    assert manual_job(registry(live=False), {}, "ws", "spend", window, "m") == (
        "workspace 'ws' is a development workspace: it does not materialize")
    command = control.TriggerMaterialization("c1", "spend", *window)
    admin = CODEC.message(command, producer=Component.FEATURE_SERVER, workspace="ws", principal="admin").envelope
    answer = decide_jobs(registry(live=False), {}, admin, command, START + timedelta(days=2), lambda: "j")
    assert answer == [control.CommandRejected("c1", "workspace 'ws' is a development workspace: it does not "
                                                    "materialize")]
    assert isinstance(manual_job(registry(), {}, "ws", "spend", window, "m"), MaterializationJob)  # live: runs
