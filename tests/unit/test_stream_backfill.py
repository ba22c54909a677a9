"""Backfilling stream views from their source's batch source: the control plane stamps a cutoff at creation,
backfill jobs cover events before it and the stream the rest, so together they count every event once."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from actors.bus import Record
from actors.components.batch_job import run_job
from actors.components.control_plane import decide_apply
from actors.components.ingest import plan_ingest
from actors.components.rift import RiftWorker
from actors.components.scheduler import due_jobs, manual_job, queued
from actors.components.stream_backfill import stamped
from actors.follower import RegistryFollower
from actors.memory_bus import MemoryBus
from actors.runtime import Inbound
from events import control
from events.codec import CODEC
from events.control import ApplyRepo
from events.data import TileDelta, WriteTiles
from events.envelope import new_message
from events.jobs import JobTrigger, MaterializationJob
from events.plan import plan_changes
from events.planes import Component
from events.registry import Registry
from events.specs import (
    AggregateSpec,
    BatchSourceSpec,
    DType,
    EntitySpec,
    FeatureServiceSpec,
    FeatureViewKind,
    FeatureViewSpec,
    FieldSpec,
    FileFormat,
    PushSourceSpec,
    RepoSpec,
    StreamSourceSpec,
    TimeWindowSpec,
)
from events.topics import TopicNames
from tests.unit.fixtures import admin_registry

NAMES = TopicNames("t")
DAY = 86_400
START = datetime(2026, 1, 1, tzinfo=UTC)
CUTOFF = START + timedelta(days=3, hours=5)  # the apply time: not on a day boundary
SCHEMA = (FieldSpec("user_id", DType.STRING), FieldSpec("ts", DType.TIMESTAMP), FieldSpec("amount", DType.FLOAT64))
# The archive names its time column differently: the backfill reads it by the stream's field.
HISTORY = BatchSourceSpec("history", "/data/tx.parquet", FileFormat.PARQUET, "archived_at",
                          (*SCHEMA, FieldSpec("archived_at", DType.TIMESTAMP)))
TX = StreamSourceSpec("tx", "tx", "ts", SCHEMA, batch_source="history")
COUNT = FeatureViewSpec("tx_count", ("user",), "tx", (), aggregation_interval_s=3600, batch_schedule_s=DAY,
                        feature_start_time=START,
                        aggregates=(AggregateSpec("amount_count_1d_1h", "amount", "count", TimeWindowSpec(DAY)),))
REPO = RepoSpec((EntitySpec("user", ("user_id",)),), (TX,), (COUNT,), (FeatureServiceSpec("svc", ("tx_count",)),),
                (HISTORY,))


def _apply(registry: Registry, repo: RepoSpec, at: datetime, apply_id: str = "a1") -> list[object]:
    envelope = new_message(None, type_tag="t", schema_version=1, producer=Component.FEATURE_SERVER,
                           workspace="prod", principal="admin", occurred_at=at).envelope
    return decide_apply(registry, envelope, ApplyRepo(apply_id, repo))


def _fold(registry: Registry, events: list[object]) -> Registry:
    return registry.apply_all(CODEC.message(e, producer=Component.CONTROL_PLANE, workspace="prod") for e in events)


def _applied(view: FeatureViewSpec = COUNT, at: datetime = CUTOFF) -> Registry:
    return _fold(admin_registry(), _apply(admin_registry(), replace(REPO, feature_views=(view,)), at))


def test_creating_a_backfilled_stream_view_stamps_the_apply_time_and_updates_keep_it() -> None:
    registry = _applied()
    stored = registry.workspace("prod").feature_views["tx_count"]
    assert stored.backfill_until == CUTOFF
    assert plan_changes(registry.workspace("prod"), REPO) == ()  # the stamp is not a change of the repository
    updated = _fold(registry, _apply(registry, replace(REPO, feature_views=(replace(COUNT, description="d"),)),
                                     CUTOFF + timedelta(days=9), "a2"))
    assert updated.workspace("prod").feature_views["tx_count"].backfill_until == CUTOFF


def test_a_stream_view_without_batch_schedule_gets_no_cutoff_and_cannot_get_one_later() -> None:
    plain = replace(COUNT, batch_schedule_s=None)
    registry = _applied(plain)
    assert registry.workspace("prod").feature_views["tx_count"].backfill_until is None
    events = _apply(registry, REPO, CUTOFF + timedelta(days=1), "a2")
    assert len(events) == 1
    assert isinstance(events[0], control.RepoRejected)
    assert events[0].errors[0].startswith("feature view 'tx_count': a stream view is backfilled (batch_schedule) "
                                          "only from its creation")


def test_the_backfill_covers_feature_start_to_the_cutoff_once_from_the_batch_source() -> None:
    registry = _applied()
    jobs = due_jobs(registry, {}, CUTOFF + timedelta(days=30), iter(map(str, range(100))).__next__)
    assert [(j.start, j.end) for j in jobs] == [(START + timedelta(days=d), min(START + timedelta(days=d + 1), CUTOFF))
                                                for d in range(4)]
    assert {j.trigger for j in jobs} == {JobTrigger.BACKFILL}
    assert all(j.source == replace(HISTORY, timestamp_field="ts") for j in jobs)
    done = {j.job_id: queued(j, CUTOFF) for j in jobs}
    assert due_jobs(registry, done, CUTOFF + timedelta(days=60), lambda: "more") == []  # no recurring jobs


def test_manual_backfills_must_end_by_the_cutoff_and_need_a_batch_source() -> None:
    registry = _applied()
    late = manual_job(registry, {}, "prod", "tx_count", (START, CUTOFF + timedelta(seconds=1)), "m")
    assert late == (f"the stream of 'tx_count' materializes events from {CUTOFF.isoformat()} on: a backfill must "
                    f"end at or before that, not at {(CUTOFF + timedelta(seconds=1)).isoformat()}")
    ok = manual_job(registry, {}, "prod", "tx_count", (START, CUTOFF), "m")
    assert isinstance(ok, MaterializationJob)
    assert ok.source.path == HISTORY.path
    no_archive = _fold(admin_registry(), _apply(admin_registry(), replace(
        REPO, stream_sources=(replace(TX, batch_source=""),), batch_sources=(),
        feature_views=(replace(COUNT, batch_schedule_s=None),)), CUTOFF))
    assert manual_job(no_archive, {}, "prod", "tx_count", (START, CUTOFF), "m") == (
        "'tx_count' is a stream feature view whose source 'tx' has no batch source to backfill from")
    unstamped = _applied(replace(COUNT, batch_schedule_s=None))
    assert manual_job(unstamped, {}, "prod", "tx_count", (START, CUTOFF), "m") == (
        "'tx_count' was created without a batch_schedule: its stream materializes every event, so a backfill "
        "would count events twice")


def _counts(deltas: list[TileDelta]) -> int:
    return sum(int(d.tile.states[0]) for d in deltas)


async def test_backfill_and_stream_together_count_each_event_once(tmp_path: Path) -> None:
    """The same events are in the archive and on the topic (the usual case): each is counted by one side."""
    times = [START + timedelta(hours=h) for h in range(0, 24 * 5, 7)]  # before and after the cutoff
    archive = tmp_path / "tx.parquet"
    pl.DataFrame({"user_id": ["u1"] * len(times), "ts": times, "amount": [1.0] * len(times),
                  "archived_at": times}).write_parquet(archive)
    registry = _fold(admin_registry(), _apply(admin_registry(), replace(
        REPO, batch_sources=(replace(HISTORY, path=str(archive)),)), CUTOFF))
    backfilled = [d for job in due_jobs(registry, {}, CUTOFF, lambda: "j") for d in run_job(job).tiles]
    rift = RiftWorker(NAMES, RegistryFollower(MemoryBus(), NAMES, registry=registry))
    records = [Inbound(Record("tx", 0, i, None, json.dumps({"user_id": "u1", "ts": t.isoformat(), "amount": 1.0})
                              .encode(), 0), None) for i, t in enumerate(times)]
    decision = await rift.handle(records)
    streamed = [d for o in decision.outputs if isinstance(o.message.body, WriteTiles) for d in o.message.body.tiles]
    assert _counts(backfilled) == sum(t < CUTOFF for t in times)
    assert _counts(streamed) == sum(t >= CUTOFF for t in times)
    assert _counts(backfilled) + _counts(streamed) == len(times)


def test_ingest_refuses_an_event_the_backfill_owns() -> None:
    pushed = PushSourceSpec("pushed", "ts", SCHEMA, batch_source="history")
    view = replace(COUNT, source="pushed")
    registry = _fold(admin_registry(), _apply(admin_registry(), replace(
        REPO, stream_sources=(), push_sources=(pushed,), feature_views=(view,)), CUTOFF))
    early = {"user_id": "u1", "ts": (CUTOFF - timedelta(minutes=1)).isoformat(), "amount": 1.0}
    plan = plan_ingest(registry.workspace("prod"), {"pushed": [early, {**early, "ts": CUTOFF.isoformat()}]},
                       CUTOFF + timedelta(hours=1))
    assert [(e.index, e.feature_view) for e in plan.errors] == [(0, "tx_count")]
    assert "materialized by its stream; earlier events come from its backfill" in plan.errors[0].message


def test_only_stream_views_created_with_a_batch_schedule_are_stamped() -> None:
    batch = replace(COUNT, kind=FeatureViewKind.BATCH, source="history")
    assert stamped(None, batch, CUTOFF) == batch
    plain = replace(COUNT, batch_schedule_s=None)
    assert stamped(None, plain, CUTOFF) == plain
    assert stamped(None, COUNT, CUTOFF) == replace(COUNT, backfill_until=CUTOFF)
