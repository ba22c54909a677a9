"""Rows and column types of the offline store, shared by its Parquet and in-memory backends.

A column's type is fixed by its first non-null value; ints widen to floats, any other change is refused
with StoreError before anything is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date
from typing import Literal, get_args

import polars as pl
import pyarrow as pa

from events.data import Coordinates, FeatureRow, Scalar, WriteOfflineRows
from events.errors import StoreError

EVENT_TIME = "event_time"
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

ViewId = tuple[str, str]  # (workspace, feature view)
Row = dict[str, object]


@dataclass(frozen=True, slots=True)
class OfflineWrite:
    """One consumed offline-write message; `written_by` is its event id, kept in every row (lineage)."""

    coordinates: Coordinates
    workspace: str
    write: WriteOfflineRows
    written_by: str



@dataclass(frozen=True, slots=True)
class ViewSchema:
    join_keys: tuple[str, ...]
    columns: Mapping[str, ColumnType]  # join keys, then features in first-seen order

    def frame_types(self) -> dict[str, ColumnType]:
        keys = {name: self.columns[name] for name in self.join_keys}
        features = {name: t for name, t in self.columns.items() if name not in keys}
        return {**keys, EVENT_TIME: "timestamp", **features, WRITTEN_BY: "string"}


def _extended_schemas(
    schemas: Mapping[ViewId, ViewSchema], writes: Sequence[OfflineWrite]
) -> dict[ViewId, ViewSchema]:
    """The view schemas once `writes` are appended; StoreError for a row that does not fit."""
    extended = dict(schemas)
    for write in writes:
        if not isinstance(write.written_by, str):
            raise StoreError(f"written_by is {type(write.written_by).__name__}, not a string")
        view = (write.workspace, write.write.feature_view)
        extended[view] = _extended(extended.get(view), write.write)
    return extended


def _extended(schema: ViewSchema | None, write: WriteOfflineRows) -> ViewSchema:
    join_keys = tuple(write.join_keys)
    if schema is None:
        names_ok = all(isinstance(k, str) and k not in (EVENT_TIME, WRITTEN_BY) for k in join_keys)
        if not names_ok or len(set(join_keys)) != len(join_keys):
            raise StoreError(f"{write.feature_view} has unusable join keys {join_keys!r}")
        columns: dict[str, ColumnType] = dict.fromkeys(join_keys, "null")
    elif schema.join_keys != join_keys:
        raise StoreError(f"{write.feature_view} has join keys {schema.join_keys}, not {join_keys}")
    else:
        columns = dict(schema.columns)
    for row in write.rows:
        _check_row(row, join_keys)
        for name, value in zip(join_keys, row.entity_key, strict=True):
            columns[name] = _merged(columns[name], _type_of(value), name)
        for name, value in row.values.items():
            if not isinstance(name, str) or name in (EVENT_TIME, WRITTEN_BY) or name in join_keys:
                raise StoreError(f"{write.feature_view} cannot have a feature named {name!r}")
            columns[name] = _merged(columns.get(name, "null"), _type_of(value), name)
    return ViewSchema(join_keys, columns)


def _check_row(row: FeatureRow, join_keys: tuple[str, ...]) -> None:
    if not isinstance(row.entity_key, tuple) or len(row.entity_key) != len(join_keys):
        raise StoreError(f"entity key {row.entity_key!r} does not match join keys {join_keys}")
    if row.event_time.tzinfo is None or row.event_time.utcoffset() is None:
        raise StoreError(f"event time {row.event_time} has no time zone")


def _type_of(value: Scalar) -> ColumnType:
    # bool before int: bool is an int subclass.
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise StoreError(f"{value} does not fit in 64 bits")
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


def _grouped(writes: Sequence[OfflineWrite]) -> dict[tuple[ViewId, date], list[Row]]:
    """The rows of the writes as column maps, per (view, UTC date of the event time), in write order."""
    groups: dict[tuple[ViewId, date], list[Row]] = {}
    for write in writes:
        view = (write.workspace, write.write.feature_view)
        for row in write.write.rows:
            event_time = row.event_time.astimezone(UTC)
            columns: Row = dict(zip(write.write.join_keys, row.entity_key, strict=True))
            columns.update(row.values)
            columns[EVENT_TIME] = event_time
            columns[WRITTEN_BY] = write.written_by
            groups.setdefault((view, event_time.date()), []).append(columns)
    return groups


def _column(rows: Sequence[Row], name: str, column_type: ColumnType) -> list[object]:
    values = [row.get(name) for row in rows]
    if column_type == "float64":  # ints in a column that widened to floats
        return [float(v) if isinstance(v, int) else v for v in values]
    return values


def _frame(schema: ViewSchema | None, rows: Sequence[Row]) -> pl.DataFrame:
    # A view never written has no join keys or features yet: just the columns every view has.
    types = (schema or ViewSchema((), {})).frame_types()
    return pl.DataFrame([pl.Series(name, _column(rows, name, t), dtype=_POLARS_TYPES[t])
                         for name, t in types.items()])


def _coordinates_of(write: OfflineWrite) -> Coordinates:
    return write.coordinates
