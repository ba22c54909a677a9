"""Running one batch materialization job: source files → transformation → rows or tile deltas.

`run_job` is the pure-ish part (it only reads the job's batch source files, lazily, with polars);
`job_decision` turns its result into the same write messages stream materialization sends, plus the
job's status, for whichever worker ran it: Rift in the data plane (the rows it read cross from the
customer plane: flow F6, audited here) or ExternalCompute next to the data (no plane crossed).

Each source row with start <= timestamp < end is read by exactly one job (the scheduler never lets two
jobs' ranges overlap), and the writes, the status and the consumed job commit in one Kafka transaction,
so a retried or replayed job writes nothing twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import repeat
from typing import Any

import polars as pl

from actors.auditing import make_record
from actors.components.chunks import MESSAGE_BUDGET_BYTES, chunks
from actors.components.tiling import TileBuilder, aggregate_input
from actors.outbox import Outbound
from actors.runtime import Decision
from events.codec import Codec
from events.data import (
    OFFLINE_EVENT_TIME,
    FeatureRow,
    Scalar,
    SourceRange,
    TileDelta,
    WriteOfflineColumns,
    WriteOfflineRows,
    WriteOnlineRows,
    WriteTiles,
)
from events.envelope import Message
from events.errors import FeatureplaneError
from events.flows import Flow
from events.jobs import JobState, JobStatusReported, MaterializationJob
from events.planes import PLANE_OF, Component
from events.specs import BatchSourceSpec, DType, FileFormat
from events.topics import JOB_STATUS, OFFLINE_WRITES, ONLINE_WRITES
from sdk.transforms import apply, polars_type

ROWS_PER_WRITE = 5_000  # rows per Arrow write at most (rows and tiles: actors/components/chunks.py)
MAX_ERROR_CHARS = 500
_ROW = "__featureplane_row"


@dataclass(frozen=True, slots=True)
class JobOutput:
    rows_written: int  # rows of an attribute view, all of them offline
    online_rows: tuple[FeatureRow, ...]  # of those, each entity's latest: all the online store keeps
    offline_tables: tuple[tuple[bytes, int], ...]  # all of them as Arrow IPC streams (and their row counts)
    tiles: tuple[TileDelta, ...]
    source_rows: int
    source_bytes: int
    source_digest: str
    lineage: SourceRange  # the source path and the first and last row (in file order) the job read
    # aggregated views: the input rows kept offline, from which training data computes the aggregates
    aggregate_inputs: tuple[FeatureRow, ...] = ()


def scan_source(source: BatchSourceSpec) -> pl.LazyFrame:
    """The source's files (a path or a glob) with the timestamp column as UTC datetimes."""
    if source.file_format is FileFormat.PARQUET:
        frame = pl.scan_parquet(source.path)
    else:
        overrides = {f.name: pl.String() if f.dtype is DType.TIMESTAMP else polars_type(f.dtype)
                     for f in source.schema}
        frame = pl.scan_csv(source.path, schema_overrides=overrides)
    ts = source.timestamp_field
    dtype = frame.collect_schema().get(ts)
    if dtype is None:
        raise FeatureplaneError(f"batch source '{source.name}' has no column '{ts}'")
    return frame.with_columns(_as_utc(pl.col(ts), dtype))


def _as_utc(column: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if isinstance(dtype, pl.Datetime):
        zoned = column.dt.replace_time_zone("UTC") if dtype.time_zone is None else column
        return zoned.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
    if dtype == pl.String():
        return column.str.to_datetime(time_zone="UTC", time_unit="us")
    if dtype.is_integer() or dtype.is_float():  # epoch seconds
        return pl.from_epoch(column.cast(pl.Float64).mul(1_000_000).cast(pl.Int64), time_unit="us") \
            .dt.replace_time_zone("UTC")
    raise FeatureplaneError(f"timestamp column is {dtype}, not a timestamp, text or epoch seconds")


def read_range(source: BatchSourceSpec, start: datetime, end: datetime) -> tuple[pl.DataFrame, SourceRange]:
    """The source rows with start <= timestamp < end, and which rows of the files they were."""
    ts = pl.col(source.timestamp_field)
    selected = scan_source(source).with_row_index(_ROW).filter((ts >= start) & (ts < end)).collect()
    rows = selected[_ROW]
    first, last = (int(rows.min()), int(rows.max())) if len(rows) else (-1, -1)  # type: ignore[arg-type]
    return selected.drop(_ROW), SourceRange(source.path, 0, first, last)


def run_job(job: MaterializationJob) -> JobOutput:
    """Read, transform and project one job's range; raises on a source or transformation error."""
    view = job.feature_view
    frame, lineage = read_range(job.source, job.start, job.end)
    out = frame.lazy() if view.transformation is None else apply(view.transformation, frame.lazy())
    result = out.collect()
    ts = job.source.timestamp_field
    if ts not in result.columns or any(k not in result.columns for k in job.join_keys):
        raise FeatureplaneError(f"the output of '{view.name}' lacks '{ts}' or a join key {list(job.join_keys)}")
    result = result.with_columns(_as_utc(pl.col(ts), result.schema[ts]))
    for key in job.join_keys:  # a row without its entity cannot be served or joined
        result = result.filter(pl.col(key).is_not_null())
    # In time order (stable: rows of equal times keep their order), so each write message covers a short
    # span of days and the offline store writes a few files per message, not one per day of the range.
    result = result.sort(ts, maintain_order=True)
    online_rows: list[FeatureRow] = []
    offline_tables: list[tuple[bytes, int]] = []
    inputs: list[FeatureRow] = []
    tiles = None
    if view.aggregates:
        tiles, inputs = _aggregate_rows(result, job, ts)
    else:
        features = [(f.name, f.column) for f in view.features]
        latest = result[_latest_per_entity(result, job.join_keys)]
        online_rows = _attribute_rows(latest, job.join_keys, ts, features)
        offline_tables = _offline_tables(result, job.join_keys, ts, features)
    payload = io.BytesIO()
    frame.write_ipc(payload)
    return JobOutput(0 if view.aggregates else result.height, tuple(online_rows), tuple(offline_tables),
                     tiles.deltas() if tiles else (), frame.height, len(payload.getvalue()),
                     hashlib.sha256(payload.getvalue()).hexdigest(), lineage, tuple(inputs))


def _offline_tables(result: pl.DataFrame, join_keys: Sequence[str], ts: str,
                    features: Sequence[tuple[str, str]]) -> list[tuple[bytes, int]]:
    """The rows as the offline store's columns (join keys, event time, features by name), in Arrow IPC
    streams of at most ROWS_PER_WRITE rows and about half a MiB: no Python object per row on either end."""
    def column(name: str, source: str) -> pl.Expr | pl.Series:
        if source not in result.columns:
            return pl.lit(None).alias(name)
        if isinstance(result.schema[source], pl.Datetime):  # as ISO text, like stream records and online rows
            return pl.Series(name, _values(result, source), dtype=pl.String())
        if isinstance(result.schema[source], pl.Categorical | pl.Enum):
            return pl.col(source).cast(pl.String()).alias(name)
        return pl.col(source).alias(name)

    table = result.select(*(column(key, key) for key in join_keys), pl.col(ts).alias(OFFLINE_EVENT_TIME),
                          *(column(name, source) for name, source in features))
    # Arrow's size is close to what the message carries: the budget with a margin for wide text
    rows = max(1, min(ROWS_PER_WRITE, 2 * MESSAGE_BUDGET_BYTES * table.height // max(int(table.estimated_size()), 1)))
    tables = []
    for start in range(0, table.height, rows):
        chunk, out = table.slice(start, rows), io.BytesIO()
        chunk.write_ipc_stream(out, compat_level=pl.CompatLevel.oldest())  # plain Arrow types for any reader
        tables.append((out.getvalue(), chunk.height))
    return tables


def _latest_per_entity(result: pl.DataFrame, join_keys: Sequence[str]) -> list[int]:
    """Positions of each entity's last row in `result` (in time order): the row the online store would
    keep of them all (latest event time; of equal times the later one), so only it is sent online."""
    if not join_keys:
        return list(range(result.height))[-1:]
    positions = result.select(join_keys).with_row_index(_ROW).unique(subset=list(join_keys), keep="last")
    return sorted(positions[_ROW].to_list())


def _attribute_rows(result: pl.DataFrame, join_keys: Sequence[str], ts: str,
                    features: Sequence[tuple[str, str]]) -> list[FeatureRow]:
    """One row per record, built column by column: each column converted to Python values in one call."""
    keys = _tuples(result, join_keys)
    names = [name for name, _ in features]
    values = _tuples(result, [column for _, column in features])
    return [FeatureRow(key, event_time, dict(zip(names, row, strict=True)))
            for key, event_time, row in zip(keys, result[ts].to_list(), values, strict=True)]


def _tuples(result: pl.DataFrame, columns: Sequence[str]) -> Iterator[tuple[Any, ...]]:
    """The values of `columns`, a tuple per row."""
    if not columns:
        return repeat((), result.height)
    return zip(*(_values(result, column) for column in columns), strict=True)


def _values(result: pl.DataFrame, column: str) -> list[Any]:
    if column not in result.columns:
        return [None] * result.height
    if isinstance(result.schema[column], pl.Datetime):  # as ISO text, like stream records
        return [_scalar(v) for v in result[column].to_list()]
    return result[column].to_list()


def _aggregate_rows(result: pl.DataFrame, job: MaterializationJob, ts: str) -> tuple[TileBuilder, list[FeatureRow]]:
    """Tile deltas of the aggregated view, and the input rows kept offline."""
    view = job.feature_view
    tiles, inputs = TileBuilder(view), []
    for record in result.iter_rows(named=True):
        key = tuple(_scalar(record[k]) for k in job.join_keys)
        event_time: datetime = record[ts]
        if view.feature_start_time is not None and event_time < view.feature_start_time:
            continue  # as in stream views: aggregates (lifetime windows too) count from feature_start_time on
        fields = {c: _scalar(v) for c, v in record.items()}
        tiles.add(key, event_time, fields)
        inputs.append(aggregate_input(job.join_keys, view, FeatureRow(key, event_time, {}), fields))
    return tiles, inputs


def _scalar(value: Any) -> Scalar:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    return value  # type: ignore[no-any-return]


def _writes(job: MaterializationJob, output: JobOutput) -> list[tuple[Any, Any]]:
    """(topic, body) of every write: rows online and offline as the view asks, tiles online."""
    view, found = job.feature_view, output.lineage
    writes: list[tuple[Any, Any]] = []
    # A view has rows (attributes) or tiles and their inputs (aggregates), never both: one of each pair is empty.
    if view.online:
        writes += [(ONLINE_WRITES, WriteOnlineRows(view.name, chunk, found)) for chunk in chunks(output.online_rows)]
        writes += [(ONLINE_WRITES, WriteTiles(view.name, chunk, found)) for chunk in chunks(output.tiles)]
    if view.offline:
        writes += [(OFFLINE_WRITES, WriteOfflineColumns(view.name, job.join_keys, table, rows, found))
                   for table, rows in output.offline_tables]
        writes += [(OFFLINE_WRITES, WriteOfflineRows(view.name, job.join_keys, chunk, found))
                   for chunk in chunks(output.aggregate_inputs)]
    return writes


async def job_decision(worker: Component, codec: Codec, message: Message[MaterializationJob]) -> Decision:
    """Run the job and decide its writes and status; a failing job writes nothing and reports why."""
    job = message.body

    def send(topic: Any, body: Any) -> Outbound:
        return Outbound(topic, codec.message(body, producer=worker, workspace=job.workspace,
                                             caused_by=message.envelope))

    try:
        output = await asyncio.to_thread(run_job, job)
    except (FeatureplaneError, pl.exceptions.PolarsError, OSError, ValueError) as exc:
        error = (getattr(exc, "message", None) or str(exc) or type(exc).__name__)[:MAX_ERROR_CHARS]
        failed = JobStatusReported(job.job_id, job.feature_view.name, job.attempt, JobState.FAILED, error=error)
        return Decision([send(JOB_STATUS, failed)])
    outputs = [send(topic, body) for topic, body in _writes(job, output)]
    done = JobStatusReported(job.job_id, job.feature_view.name, job.attempt, JobState.SUCCEEDED, output.source_rows,
                             output.rows_written, len(output.tiles))
    outputs.append(send(JOB_STATUS, done))
    audits = []
    if PLANE_OF[worker] is not PLANE_OF[Component.CUSTOMER_APP]:
        # The batch rows left the customer's storage for the data plane (F6).
        audits.append(make_record(
            Flow.F6, Component.CUSTOMER_APP, worker, message.envelope, subject=job.source.name, message_count=1,
            row_count=output.source_rows, byte_count=output.source_bytes, digest=output.source_digest,
            topic=job.source.path, first_offset=output.lineage.first_offset, last_offset=output.lineage.last_offset))
    return Decision(outputs, audits)
