"""The batch job runner on real temporary Parquet and CSV files: range, transformation, rows and tiles,
lineage, and a failing job that writes nothing."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from actors.components.batch_job import JobOutput, job_decision, run_job
from events.codec import CODEC
from events.data import OFFLINE_EVENT_TIME, WriteOfflineColumns, WriteOnlineRows, WriteTiles
from events.flows import Flow
from events.jobs import Compute, JobState, JobStatusReported, JobTrigger, MaterializationJob
from events.planes import Component
from events.specs import (
    AggregateSpec,
    BatchSourceSpec,
    DType,
    FeatureSpec,
    FeatureViewKind,
    FeatureViewSpec,
    FieldSpec,
    FileFormat,
    LifetimeWindowSpec,
    TransformationMode,
    TransformationSpec,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SCHEMA = (FieldSpec("user_id", DType.STRING), FieldSpec("ts", DType.TIMESTAMP), FieldSpec("amount", DType.FLOAT64))
DATA = {"user_id": ["u1", "u2", "u1", "u1"], "amount": [1.0, 2.0, 3.0, 4.0],
        "ts": [T0 + timedelta(hours=h) for h in (1, 2, 3, 30)]}


def parquet_source(tmp_path: Path) -> BatchSourceSpec:
    pl.DataFrame(DATA).write_parquet(tmp_path / "tx.parquet")
    return BatchSourceSpec("tx", str(tmp_path / "tx.parquet"), FileFormat.PARQUET, "ts", SCHEMA)


def csv_source(tmp_path: Path) -> BatchSourceSpec:
    frame = pl.DataFrame(DATA).with_columns(pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%S%:z"))
    frame.write_csv(tmp_path / "tx.csv")
    return BatchSourceSpec("tx", str(tmp_path / "tx.csv"), FileFormat.CSV, "ts", SCHEMA)


def job(source: BatchSourceSpec, view: FeatureViewSpec, days: int = 1) -> MaterializationJob:
    return MaterializationJob("j1", "ws", view, source, ("user_id",), T0, T0 + timedelta(days=days), 1,
                              Compute.RIFT, JobTrigger.BACKFILL)


SQL = TransformationSpec(TransformationMode.SQL, "SELECT user_id, ts, amount * 10 AS tenfold FROM source")
ROWS_VIEW = FeatureViewSpec("spend", ("user",), "tx", (FeatureSpec("tenfold", "tenfold", DType.FLOAT64),),
                            kind=FeatureViewKind.BATCH, transformation=SQL, batch_schedule_s=86_400)


def offline_rows(out: JobOutput) -> list[tuple[tuple[Any, ...], datetime, dict[str, Any]]]:
    """The rows of the job's offline Arrow tables, as (entity key, event time, features)."""
    rows = []
    for payload, count in out.offline_tables:
        table = pl.read_ipc_stream(io.BytesIO(payload))
        assert table.height == count
        for record in table.iter_rows(named=True):
            rows.append(((record.pop("user_id"),), record.pop(OFFLINE_EVENT_TIME), record))
    return rows


def test_parquet_rows_of_the_range_through_the_sql_transformation(tmp_path: Path) -> None:
    out = run_job(job(parquet_source(tmp_path), ROWS_VIEW))
    assert out.source_rows == 3  # the row at +30 h is in the next day's job
    assert out.rows_written == 3
    assert offline_rows(out) == [
        (("u1",), T0 + timedelta(hours=1), {"tenfold": 10.0}), (("u2",), T0 + timedelta(hours=2), {"tenfold": 20.0}),
        (("u1",), T0 + timedelta(hours=3), {"tenfold": 30.0})]
    lineage = out.lineage
    assert (lineage.topic, lineage.first_offset, lineage.last_offset) == (str(tmp_path / "tx.parquet"), 0, 2)


def test_rows_go_offline_in_time_order_and_online_only_each_entitys_latest(tmp_path: Path) -> None:
    data = {"user_id": ["u1", "u2", "u1", "u2", "u1"], "amount": [1.0, 2.0, 3.0, 4.0, 5.0],
            "ts": [T0 + timedelta(hours=h) for h in (5, 2, 1, 2, 3)]}  # u2's two rows share a time
    pl.DataFrame(data).write_parquet(tmp_path / "tx.parquet")
    source = BatchSourceSpec("tx", str(tmp_path / "tx.parquet"), FileFormat.PARQUET, "ts", SCHEMA)
    out = run_job(job(source, ROWS_VIEW))
    assert [(key[0], values["tenfold"]) for key, _, values in offline_rows(out)] == [
        ("u1", 30.0), ("u2", 20.0), ("u2", 40.0), ("u1", 50.0), ("u1", 10.0)]
    # what applying every row would leave: the latest time wins, of equal times the later row
    assert sorted((r.entity_key[0], r.values["tenfold"]) for r in out.online_rows) == [("u1", 10.0), ("u2", 40.0)]


def test_csv_sources_read_the_same(tmp_path: Path) -> None:
    parquet = run_job(job(parquet_source(tmp_path), ROWS_VIEW, days=2))
    csv = run_job(job(csv_source(tmp_path), ROWS_VIEW, days=2))
    assert offline_rows(csv) == offline_rows(parquet)
    assert csv.online_rows == parquet.online_rows
    assert len(offline_rows(csv)) == 4


def test_aggregates_become_tile_deltas(tmp_path: Path) -> None:
    view = FeatureViewSpec("total", ("user",), "tx", (), kind=FeatureViewKind.BATCH, batch_schedule_s=86_400,
                           aggregates=(AggregateSpec("total", "amount", "sum", LifetimeWindowSpec()),),
                           aggregation_interval_s=86_400)
    out = run_job(job(parquet_source(tmp_path), view, days=2))
    assert (out.rows_written, out.online_rows, out.offline_tables) == (0, (), ())
    tiles = {(d.entity_key, d.tile.tile) for d in out.tiles}
    assert tiles == {(("u1",), T0.timestamp()), (("u2",), T0.timestamp()), (("u1",), T0.timestamp() + 86_400)}
    # offline, the inputs the aggregates read, from which training data computes them at each event's time
    assert [(r.entity_key, r.event_time, dict(r.values)) for r in out.aggregate_inputs] == [
        ((u,), t, {"amount": a}) for u, a, t in zip(DATA["user_id"], DATA["amount"], DATA["ts"], strict=True)]


def test_aggregate_views_skip_events_before_their_feature_start_time(tmp_path: Path) -> None:
    view = FeatureViewSpec("total", ("user",), "tx", (), kind=FeatureViewKind.BATCH, batch_schedule_s=86_400,
                           aggregates=(AggregateSpec("total", "amount", "sum", LifetimeWindowSpec()),),
                           aggregation_interval_s=86_400, feature_start_time=T0 + timedelta(hours=2))
    out = run_job(job(parquet_source(tmp_path), view, days=2))
    assert [r.event_time for r in out.aggregate_inputs] == [T0 + timedelta(hours=h) for h in (2, 3, 30)]
    day1 = T0.timestamp()
    assert {(d.entity_key, d.tile.tile): d.tile.states for d in out.tiles} == {
        (("u2",), day1): (2.0,), (("u1",), day1): (3.0,), (("u1",), day1 + 86_400): (4.0,)}  # u1's +1 h is out


async def test_rift_audits_the_batch_rows_and_sends_writes_and_status(tmp_path: Path) -> None:
    message = CODEC.message(job(parquet_source(tmp_path), ROWS_VIEW), producer=Component.CONTROL_PLANE,
                            workspace="ws")
    decision = await job_decision(Component.RIFT, CODEC, message)
    bodies = [o.message.body for o in decision.outputs]
    assert [type(b) for b in bodies] == [WriteOnlineRows, WriteOfflineColumns, JobStatusReported]
    status = bodies[-1]
    assert (status.state, status.source_rows, status.rows_written) == (JobState.SUCCEEDED, 3, 3)
    assert [(a.flow, a.row_count) for a in decision.consumed_audits] == [(Flow.F6, 3)]
    assert all(o.message.envelope.causation_id == message.envelope.event_id for o in decision.outputs)
    tiles_only = [b for b in bodies if isinstance(b, WriteTiles)]
    assert tiles_only == []


async def test_external_compute_crosses_no_plane_and_a_failing_job_writes_nothing(tmp_path: Path) -> None:
    ok = CODEC.message(job(parquet_source(tmp_path), ROWS_VIEW), producer=Component.CONTROL_PLANE, workspace="ws")
    assert (await job_decision(Component.EXTERNAL_COMPUTE, CODEC, ok)).consumed_audits == []
    missing = BatchSourceSpec("tx", str(tmp_path / "nothing-*.parquet"), FileFormat.PARQUET, "ts", SCHEMA)
    bad = CODEC.message(job(missing, ROWS_VIEW), producer=Component.CONTROL_PLANE, workspace="ws")
    decision = await job_decision(Component.RIFT, CODEC, bad)
    assert [type(o.message.body) for o in decision.outputs] == [JobStatusReported]
    status = decision.outputs[0].message.body
    assert status.state is JobState.FAILED
    assert status.error
