"""Transformations at materialization time: a view's TransformationSpec over the parsed records of a batch.

Rift builds one polars frame per source and batch (typed by the source's schema, timestamps as UTC
datetimes), registers it as the table `source`, applies each transformed view's SQL or expressions
(`sdk.transforms.apply`, which refuses unsafe ones) and projects the output rows into feature rows
exactly as it projects untransformed records.

Transformations are meant to be row-wise: Rift's micro-batches are arbitrary slices of a stream, so a
result that depends on the other rows of a batch (GROUP BY, window functions) is not well defined.

Isolation: the whole batch goes through each transformation at once (the fast path). If that fails, or
an output row cannot be projected (which cannot be traced back to its record), the batch is run again
one record at a time, so that only the records that fail are dead-lettered, each with its reason.
Pure: no I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import polars as pl

from events.data import FeatureRow, Scalar
from events.errors import InvalidRequest, InvalidSpec
from events.registry import Workspace
from events.specs import DType, FeatureViewSpec, PushSourceSpec, StreamSourceSpec
from sdk.transforms import apply, polars_type

RecordSource = StreamSourceSpec | PushSourceSpec
Fields = dict[str, Scalar]
# One transformed row as one feature view sees it: the view, its feature row and the row's columns.
TransformedRow = tuple[FeatureViewSpec, FeatureRow, Fields]
# What can go wrong running a transformation on data: polars errors (also its panics, which are not
# Exceptions), a transformation refused as unsafe, or values polars cannot hold.
_RUN_ERRORS = (pl.exceptions.PolarsError, pl.exceptions.PanicException, InvalidSpec, TypeError, ValueError,
               OverflowError)


class TransformFailed(InvalidRequest):
    """A transformation failed on a batch of records, or its output did not project."""


def source_frame(source: RecordSource, records: Sequence[Mapping[str, Scalar]]) -> pl.DataFrame:
    """The records as the table `source`: one column per schema field, typed by it."""
    schema = {f.name: polars_type(f.dtype) for f in source.schema}
    stamps = {f.name for f in source.schema if f.dtype is DType.TIMESTAMP}
    columns: dict[str, list[Any]] = {name: [] for name in schema}
    for record in records:
        for name in schema:
            value = record.get(name)
            # parse_record keeps timestamps as ISO text in UTC; the table holds them as datetimes
            columns[name].append(instant(name, value) if name in stamps and value is not None else value)
    return pl.DataFrame(columns, schema=schema)


def instant(name: str, value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value)
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000 if abs(value) > 1e11 else value, UTC)
    raise InvalidRequest(f"column '{name}' is not a timestamp: {value!r}")


def transform(view: FeatureViewSpec, frame: pl.DataFrame) -> list[dict[str, Any]]:
    """The view's transformation of `frame`, as rows; TransformFailed says why it did not run."""
    if view.transformation is None:
        raise ValueError(f"feature view '{view.name}' has no transformation")
    try:
        return apply(view.transformation, frame.lazy()).collect().to_dicts()
    except _RUN_ERRORS as exc:
        raise TransformFailed(f"the transformation of feature view '{view.name}' failed: {_first_line(exc)}"
                              ) from None


def project_row(ws: Workspace, view: FeatureViewSpec, source: RecordSource, row: Mapping[str, Any]) -> TransformedRow:
    """One output row of a transformation as the view's feature row (and the columns aggregates read)."""
    fields = {name: _scalar(value) for name, value in row.items() if _is_scalar(value)}
    keys = ws.join_keys(view)
    missing = [k for k in keys if fields.get(k) is None]
    if missing:
        raise TransformFailed(f"join key(s) {missing} missing in the transformed row of feature view '{view.name}'")
    stamp = row.get(source.timestamp_field)
    if stamp is None:
        raise TransformFailed(f"timestamp field '{source.timestamp_field}' is missing in the transformed row "
                              f"of feature view '{view.name}'")
    try:
        event_time = instant(source.timestamp_field, stamp)
    except (InvalidRequest, ValueError, OverflowError, OSError) as exc:
        raise TransformFailed(f"feature view '{view.name}': the transformed timestamp field "
                              f"'{source.timestamp_field}' is not a timestamp: {stamp!r}") from exc
    feature_row = FeatureRow(entity_key=tuple(fields[k] for k in keys), event_time=event_time,
                             values={f.name: fields.get(f.column) for f in view.features})
    return view, feature_row, fields


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool | datetime)


def _scalar(value: Any) -> Scalar:
    """A column value as featureplane keeps it: timestamps as ISO text in UTC, like parsed records."""
    if isinstance(value, datetime):
        return instant("", value).isoformat()
    return value  # type: ignore[no-any-return]


def transform_batch(ws: Workspace, source: RecordSource, views: Sequence[FeatureViewSpec],
                    records: Sequence[Mapping[str, Scalar]]) -> list[TransformedRow]:
    """Every transformed view's rows for the whole batch at once; TransformFailed if any part fails."""
    if not records or not views:
        return []
    try:
        frame = source_frame(source, records)
    except _RUN_ERRORS as exc:  # a value polars cannot hold, e.g. an integer beyond 64 bits
        raise TransformFailed(f"the records do not fit the schema of '{source.name}': {_first_line(exc)}") from None
    return [project_row(ws, view, source, row) for view in views for row in transform(view, frame)]


def transform_each(ws: Workspace, source: RecordSource, views: Sequence[FeatureViewSpec],
                   records: Sequence[Mapping[str, Scalar]]) -> list[list[TransformedRow] | str]:
    """Per record: its rows in every transformed view, or why it failed (the slow, exact path)."""
    outcomes: list[list[TransformedRow] | str] = []
    for record in records:
        try:
            outcomes.append(transform_batch(ws, source, views, [record]))
        except InvalidRequest as exc:
            outcomes.append(exc.message)
    return outcomes


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# A transformed row with the workspace whose view it belongs to: the shape of Rift's projections.
Projected = tuple[Workspace, FeatureViewSpec, FeatureRow, Fields]
# One source as one workspace reads it, with the transformed views it materializes.
Reader = tuple[Workspace, RecordSource, Sequence[FeatureViewSpec]]


def transform_records(readers: Sequence[Reader], parsed: Sequence[Sequence[Fields]],
                      ) -> tuple[list[Projected], dict[int, str]]:
    """The transformed rows of a batch, and why each failing record failed (by its index).

    `parsed[i][r]` is record i as reader r parsed it. A record that fails in any reader's view adds no
    row anywhere; the others are unaffected.
    """
    try:
        return [(ws, *row) for r, (ws, source, views) in enumerate(readers)
                for row in transform_batch(ws, source, views, [record[r] for record in parsed])], {}
    except TransformFailed:
        pass  # find the records that fail, one by one
    outcomes = [transform_each(ws, source, views, [record[r] for record in parsed])
                for r, (ws, source, views) in enumerate(readers)]
    rows: list[Projected] = []
    failed: dict[int, str] = {}
    for index in range(len(parsed)):
        mine = [per_reader[index] for per_reader in outcomes]
        reason = next((o for o in mine if isinstance(o, str)), None)
        if reason is not None:
            failed[index] = reason
            continue
        rows.extend((ws, *row) for (ws, _, _), found in zip(readers, mine, strict=True)
                    if not isinstance(found, str) for row in found)
    return rows, failed
