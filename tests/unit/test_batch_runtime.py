"""Batch materialization over the in-memory bus: apply → backfill jobs (F8) → Rift runs them (F6, F7) →
status (F9) → the control plane's job table; the same runtime and transactions as everything else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from actors.bus import Outgoing
from actors.components.control_plane import ControlPlane
from actors.components.job_table import JobTableFollower
from actors.components.rift import RiftWorker
from actors.follower import RegistryFollower
from actors.memory_bus import MemoryBus
from actors.runtime import ComponentRuntime
from events import control
from events.access import new_api_key
from events.codec import CODEC
from events.data import WriteOfflineRows, WriteOnlineRows
from events.flows import Flow
from events.jobs import JobState, JobUpdated, MaterializationJob
from events.planes import Component
from events.specs import (
    BatchSourceSpec,
    DType,
    EntitySpec,
    FeatureSpec,
    FeatureViewKind,
    FeatureViewSpec,
    FieldSpec,
    FileFormat,
    RepoSpec,
)
from events.topics import AUDIT, CONTROL_COMMANDS, CONTROL_EVENTS, JOBS_EXTERNAL, JOBS_RIFT, ONLINE_WRITES, TopicNames
from tests.unit.fixtures import ADMIN

NAMES = TopicNames("t")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=3, hours=2)


def _bodies(bus: MemoryBus, topic: Any) -> list[Any]:
    return [CODEC.decode(r.value).body for r in bus.records(NAMES.name(topic))]


def repo(path: Path) -> RepoSpec:
    source = BatchSourceSpec("tx", str(path), FileFormat.PARQUET, "ts",
                             (FieldSpec("user_id", DType.STRING), FieldSpec("ts", DType.TIMESTAMP),
                              FieldSpec("amount", DType.FLOAT64)))
    views = tuple(FeatureViewSpec(name, ("user",), "tx", (FeatureSpec(name, "amount", DType.FLOAT64),),
                                  kind=FeatureViewKind.BATCH, batch_schedule_s=86_400, feature_start_time=T0,
                                  compute=compute) for name, compute in (("spend", "rift"), ("spend_ext", "external")))
    return RepoSpec(entities=(EntitySpec("user", ("user_id",)),), feature_views=views, batch_sources=(source,))


async def test_apply_backfills_rift_runs_the_jobs_and_the_status_reaches_the_job_table(tmp_path: Path) -> None:
    path = tmp_path / "tx.parquet"
    pl.DataFrame({"user_id": ["u1", "u2"], "ts": [T0 + timedelta(hours=1), T0 + timedelta(days=2)],
                  "amount": [1.0, 2.0]}).write_parquet(path)
    bus = MemoryBus()
    key = new_api_key("admin", "", "operator")
    commands = [CODEC.message(control.BootstrapAdmin("c1", ADMIN, key.spec), producer=Component.OPERATOR, workspace=""),
                CODEC.message(control.ApplyRepo("a1", repo(path)), producer=Component.FEATURE_SERVER, workspace="prod",
                              principal="admin")]
    await bus.send([Outgoing(NAMES.name(CONTROL_COMMANDS), CODEC.encode(m)) for m in commands])
    registry, jobs = RegistryFollower(bus, NAMES), JobTableFollower(bus, NAMES)
    await registry.start()
    await jobs.start()
    control_plane = ComponentRuntime(bus, NAMES, ControlPlane(NAMES, registry, jobs=jobs, clock=lambda: NOW),
                                     instance_id="cp-0", group_id="t.cp")
    await control_plane.start()
    assert await control_plane.step() == 2

    sent = _bodies(bus, JOBS_RIFT)
    assert all(isinstance(j, MaterializationJob) for j in sent)
    assert (sent[0].start, sent[-1].end) == (T0, T0 + timedelta(days=3))  # the intervals that have ended
    assert {j.feature_view.name for j in _bodies(bus, JOBS_EXTERNAL)} == {"spend_ext"}
    queued = [b.job for b in _bodies(bus, CONTROL_EVENTS) if isinstance(b, JobUpdated)]
    assert {j.state for j in queued} == {JobState.QUEUED}

    rift_registry = RegistryFollower(bus, NAMES)
    await rift_registry.start()
    rift = ComponentRuntime(bus, NAMES, RiftWorker(NAMES, rift_registry), instance_id="rift-0", group_id="t.rift")
    await rift.start()
    assert await rift.step() == len(sent)
    writes = _bodies(bus, ONLINE_WRITES)
    assert sorted(r.entity_key for w in writes if isinstance(w, WriteOnlineRows) for r in w.rows) == [("u1",), ("u2",)]
    flows = [a.flow for a in _bodies(bus, AUDIT) if a.from_component in (Component.RIFT, Component.CUSTOMER_APP)]
    assert Flow.F6 in flows
    assert Flow.F9 in flows
    assert Flow.F7 in flows
    assert not any(isinstance(b, WriteOfflineRows) for b in _bodies(bus, CONTROL_EVENTS))

    assert await control_plane.step() == len(sent)  # the status reports
    table = await jobs.sync(2)
    rift_jobs = [j for j in table.values() if j.feature_view == "spend"]
    assert {j.state for j in rift_jobs} == {JobState.SUCCEEDED}
    assert sum(j.source_rows for j in rift_jobs) == 2
    for follower in (registry, jobs, rift_registry):
        await follower.close()
