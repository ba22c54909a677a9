"""Rows and column types of the offline store, shared by its Parquet and in-memory backends.

A column's type is fixed by its first non-null value; ints widen to floats, any other change is refused
with StoreError before anything is written. The rows of an append are checked and typed column by column
(one pass over each column's values in C, not a Python call per value), then become one Arrow table per
view, split by the UTC day of the event time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import chain, groupby, pairwise
from typing import Literal, get_args

import numpy as np
import polars as pl
import pyarrow as pa

from events.data import OFFLINE_EVENT_TIME, Coordinates, FeatureRow, WriteOfflineColumns, WriteOfflineRows
from events.errors import StoreError

EVENT_TIME = OFFLINE_EVENT_TIME
WRITTEN_BY = "_written_by"

ColumnType = Literal["null", "bool", "int64", "float64", "string", "timestamp"]
_COLUMN_TYPES: frozenset[str] = frozenset(get_args(ColumnType))
_ARROW_TYPES = {
    "null": pa.null(), "bool": pa.bool_(), "int64": pa.int64(), "float64": pa.float64(),
    "string": pa.string(), "timestamp": pa.timestamp("us", tz="UTC"),
}
_POLARS_TYPES: dict[str, pl.DataType] = {
    "null": pl.Null(), "bool": pl.Boolean(), "int64": pl.Int64(), "float64": pl.Float64(),
    "string": pl.String(), "timestamp": pl.Datetime("us", "UTC"),
}
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 63) - 1
_MICROS_PER_DAY = 86_400_000_000
_EPOCH = date(1970, 1, 1)

ViewId = tuple[str, str]  # (workspace, feature view)


@dataclass(frozen=True, slots=True)
class OfflineWrite:
    """One consumed offline-write message; `written_by` is its event id, kept in every row (lineage)."""

    coordinates: Coordinates
    workspace: str
    write: WriteOfflineRows | WriteOfflineColumns
    written_by: str


@dataclass(frozen=True, slots=True)
class ViewSchema:
    join_keys: tuple[str, ...]
    columns: Mapping[str, ColumnType]  # join keys, then features in first-seen order

    def frame_types(self) -> dict[str, ColumnType]:
        keys = {name: self.columns[name] for name in self.join_keys}
        features = {name: t for name, t in self.columns.items() if name not in keys}
        return {**keys, EVENT_TIME: "timestamp", **features, WRITTEN_BY: "string"}


def _prepared(
    schemas: Mapping[ViewId, ViewSchema], writes: Sequence[OfflineWrite]
) -> tuple[dict[ViewId, ViewSchema], dict[ViewId, pa.Table]]:
    """The view schemas once `writes` are appended, and each view's new rows as one table in write order
    (event times in UTC); StoreError for anything that does not fit, before anything is written."""
    by_view: dict[ViewId, list[OfflineWrite]] = {}
    for write in writes:
        if not isinstance(write.written_by, str):
            raise StoreError(f"written_by is {type(write.written_by).__name__}, not a string")
        by_view.setdefault((write.workspace, write.write.feature_view), []).append(write)
    extended = dict(schemas)
    tables: dict[ViewId, pa.Table] = {}
    for view, view_writes in by_view.items():
        schema = extended.get(view)
        parts: list[dict[str, list[object]] | pa.Table] = []
        # Consecutive writes of one kind at a time, so the rows keep their write order.
        for columnar, run in groupby(view_writes, key=lambda w: isinstance(w.write, WriteOfflineColumns)):
            if columnar:
                schema, arrow_tables = _arrow_columns(schema, list(run))
                parts.extend(arrow_tables)
            else:
                schema, columns = _view_columns(schema, list(run))
                parts.append(columns)
        assert schema is not None  # a view here has at least one write
        extended[view] = schema
        tables[view] = pa.concat_tables([_table(schema, part, view[1]) for part in parts])
    return extended, tables


def _arrow_columns(schema: ViewSchema | None, writes: Sequence[OfflineWrite]) -> tuple[ViewSchema, list[pa.Table]]:
    """The view's extended schema and the tables of columnar writes, each with its `written_by` column."""
    first = writes[0].write
    join_keys = _checked_join_keys(schema, first)
    types: dict[str, ColumnType] = dict(schema.columns) if schema else dict.fromkeys(join_keys, "null")
    tables = []
    for write in writes:
        body = write.write
        if not isinstance(body, WriteOfflineColumns):  # grouped by kind above
            raise StoreError(f"{type(body).__name__} is not a columnar write")
        _check_same_join_keys(body, join_keys)
        table = _read_ipc(body)
        names = table.column_names
        missing = [name for name in (*join_keys, EVENT_TIME) if name not in names]
        if missing or len(set(names)) != len(names) or WRITTEN_BY in names:
            raise StoreError(f"the columns {names} of {body.feature_view} are not its join keys {list(join_keys)}, "
                             f"{EVENT_TIME!r} and uniquely named features")
        event_time = table.column(EVENT_TIME).type
        if not pa.types.is_timestamp(event_time) or event_time.tz is None:
            raise StoreError(f"{EVENT_TIME} of {body.feature_view} is {event_time}, not a timestamp with a time zone")
        if table.column(EVENT_TIME).null_count:
            raise StoreError(f"{body.feature_view} has rows without an {EVENT_TIME}")
        for name in names:
            if name != EVENT_TIME:
                types[name] = _merged(types.get(name, "null"), _arrow_type(name, table.column(name).type), name)
        tables.append(table.append_column(WRITTEN_BY, pa.array([write.written_by] * table.num_rows, pa.string())))
    return ViewSchema(join_keys, types), tables


def _read_ipc(body: WriteOfflineColumns) -> pa.Table:
    try:
        table = pa.ipc.open_stream(body.arrow_ipc).read_all()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise StoreError(f"the columns of {body.feature_view} are not an Arrow IPC stream: {exc}") from exc
    if table.num_rows != body.row_count:
        raise StoreError(f"{body.feature_view}'s write says {body.row_count} rows but holds {table.num_rows}")
    return table


def _arrow_type(column: str, arrow: pa.DataType) -> ColumnType:
    """The column type of an Arrow column: the same types the row path knows (text in dictionaries too)."""
    if pa.types.is_dictionary(arrow):
        arrow = arrow.value_type
    if pa.types.is_null(arrow):
        return "null"
    if pa.types.is_boolean(arrow):
        return "bool"
    if pa.types.is_integer(arrow):
        return "int64"  # an unsigned value over 2^63 fails the cast to int64 below, as a StoreError
    if pa.types.is_floating(arrow):
        return "float64"
    if pa.types.is_string(arrow) or pa.types.is_large_string(arrow) or pa.types.is_string_view(arrow):
        return "string"
    raise StoreError(f"the offline store cannot hold column {column!r} of type {arrow}")


def _view_columns(
    schema: ViewSchema | None, writes: Sequence[OfflineWrite]
) -> tuple[ViewSchema, dict[str, list[object]]]:
    """The view's extended schema and its rows of `writes` column by column."""
    first = writes[0].write
    join_keys = _checked_join_keys(schema, first)
    rows: list[FeatureRow] = []
    written_by: list[object] = []
    for write in writes:
        body = write.write
        if not isinstance(body, WriteOfflineRows):  # grouped by kind by the caller
            raise StoreError(f"{type(body).__name__} is not a write of rows")
        _check_same_join_keys(body, join_keys)
        rows.extend(body.rows)
        written_by.extend([write.written_by] * len(body.rows))
    _check_rows(rows, join_keys)
    feature_names = list(dict.fromkeys(chain.from_iterable(row.values for row in rows)))
    for name in feature_names:
        if not isinstance(name, str) or name in (EVENT_TIME, WRITTEN_BY) or name in join_keys:
            raise StoreError(f"{first.feature_view} cannot have a feature named {name!r}")
    key_columns = [list(c) for c in zip(*(row.entity_key for row in rows), strict=True)] if rows else \
        [[] for _ in join_keys]
    columns: dict[str, list[object]] = dict(zip(join_keys, key_columns, strict=True))
    columns[EVENT_TIME] = [row.event_time for row in rows]
    columns.update({name: [row.values.get(name) for row in rows] for name in feature_names})
    columns[WRITTEN_BY] = written_by
    types: dict[str, ColumnType] = dict(schema.columns) if schema else dict.fromkeys(join_keys, "null")
    for name in (*join_keys, *feature_names):
        types[name] = _column_type(name, columns[name], types.get(name, "null"))
    return ViewSchema(join_keys, types), columns


def _check_same_join_keys(write: WriteOfflineRows | WriteOfflineColumns, join_keys: tuple[str, ...]) -> None:
    """StoreError unless `write` names the view's join keys (every write of a view names the same ones)."""
    if tuple(write.join_keys) != join_keys:
        raise StoreError(f"{write.feature_view} has join keys {join_keys}, not {tuple(write.join_keys)}")


def _checked_join_keys(schema: ViewSchema | None, write: WriteOfflineRows | WriteOfflineColumns) -> tuple[str, ...]:
    join_keys = tuple(write.join_keys)
    if schema is None:
        names_ok = all(isinstance(k, str) and k not in (EVENT_TIME, WRITTEN_BY) for k in join_keys)
        if not names_ok or len(set(join_keys)) != len(join_keys):
            raise StoreError(f"{write.feature_view} has unusable join keys {join_keys!r}")
    elif schema.join_keys != join_keys:
        raise StoreError(f"{write.feature_view} has join keys {schema.join_keys}, not {join_keys}")
    return join_keys


def _check_rows(rows: Sequence[FeatureRow], join_keys: tuple[str, ...]) -> None:
    arity = len(join_keys)
    for row in rows:
        if not isinstance(row.entity_key, tuple) or len(row.entity_key) != arity:
            raise StoreError(f"entity key {row.entity_key!r} does not match join keys {join_keys}")
        if row.event_time.tzinfo is None or row.event_time.utcoffset() is None:
            raise StoreError(f"event time {row.event_time} has no time zone")


def _column_type(column: str, values: Sequence[object], old: ColumnType) -> ColumnType:
    """`old` merged with the type of every value: one check per Python type present, not per value."""
    merged = old
    for kind in set(map(type, values)):
        new = _type_of(next(v for v in values if type(v) is kind))
        if new == "int64":
            ints = [v for v in values if type(v) is kind and isinstance(v, int)]
            if min(ints) < _INT_MIN or max(ints) > _INT_MAX:
                raise StoreError(f"a value of {column!r} does not fit in 64 bits")
        merged = _merged(merged, new, column)
    return merged


def _type_of(value: object) -> ColumnType:
    # bool before int: bool is an int subclass.
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    raise StoreError(f"the offline store cannot hold a {type(value).__name__} value")


def _merged(old: ColumnType, new: ColumnType, column: str) -> ColumnType:
    if new in ("null", old):
        return old
    if old == "null":
        return new
    if {old, new} == {"int64", "float64"}:
        return "float64"
    raise StoreError(f"column {column!r} holds {old} values; {new} does not fit")


def _table(schema: ViewSchema, part: Mapping[str, list[object]] | pa.Table, feature_view: str) -> pa.Table:
    """Rows (Python columns or an Arrow table) as Arrow columns of the view's types: ints widen to floats,
    event times become UTC, columns the rows lack are null."""
    height = part.num_rows if isinstance(part, pa.Table) else len(part[EVENT_TIME])
    present = set(part.column_names if isinstance(part, pa.Table) else part)
    try:
        return pa.table({name: _column(part, name, t) if name in present else pa.nulls(height, _ARROW_TYPES[t])
                         for name, t in schema.frame_types().items()})
    except (pa.ArrowException, OverflowError, TypeError, ValueError) as exc:
        raise StoreError(f"rows of {feature_view} do not fit its columns: {exc}") from exc


def _column(part: Mapping[str, list[object]] | pa.Table, name: str,
            column_type: ColumnType) -> pa.Array | pa.ChunkedArray:
    if isinstance(part, pa.Table):
        return part.column(name).cast(_ARROW_TYPES[column_type])
    return pa.array(part[name], type=_ARROW_TYPES[column_type])


def _by_day(table: pa.Table) -> list[tuple[date, pa.Table]]:
    """The table's rows per UTC day of their event time, days in order, rows in their order within a day."""
    micros = table.column(EVENT_TIME).combine_chunks().cast(pa.int64()).to_numpy(zero_copy_only=False)
    days = micros // _MICROS_PER_DAY
    if len(days) == 0:
        return []
    if days.min() == days.max():
        return [(_EPOCH + timedelta(days=int(days[0])), table)]
    order = np.argsort(days, kind="stable")
    ordered, sorted_days = table.take(pa.array(order)), days[order]
    starts = np.flatnonzero(np.diff(sorted_days)) + 1
    bounds = [0, *starts.tolist(), len(sorted_days)]
    return [(_EPOCH + timedelta(days=int(sorted_days[lo])), ordered.slice(lo, hi - lo))
            for lo, hi in pairwise(bounds)]


def _frame(schema: ViewSchema | None, tables: Sequence[pl.LazyFrame]) -> pl.LazyFrame:
    """The view's rows in its current types: `tables` may be older (fewer columns, ints not yet widened);
    a view never written has no join keys or features yet, just the columns every view has."""
    types = (schema or ViewSchema((), {})).frame_types()
    if not tables:
        return pl.LazyFrame(schema={name: _POLARS_TYPES[t] for name, t in types.items()})
    # "relaxed" fills columns that older tables lack and widens ints; the casts give each the view's types.
    return pl.concat(tables, how="diagonal_relaxed").select(
        pl.col(name).cast(_POLARS_TYPES[t]) for name, t in types.items())


def _coordinates_of(write: OfflineWrite) -> Coordinates:
    return write.coordinates
