"""Realtime feature views: computed in the feature server at request time, never materialized.

A realtime view's transformation reads the table `source`: one row whose columns are the request
context's fields (typed by the view's request schema) and each input view's served features as
`<view>__<feature>`. The view's features are columns of the single output row.

Errors stay inside the view: a request field of the wrong type, a transformation that fails on the
values, an output that is not one row or not of the declared type give the view's features a null
value and an error message, never a failed request. (A request field that is missing altogether is
the caller's mistake, refused before anything is read: `missing_request_fields`.) Pure: no I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

from actors.components.transform import instant, transform
from events.errors import InvalidRequest
from events.registry import Workspace
from events.specs import DType, FeatureViewKind, FeatureViewSpec, FieldSpec
from sdk.transforms import polars_type
from sdk.views import aggregate_type

_BUILD_ERRORS = (pl.exceptions.PolarsError, pl.exceptions.PanicException, TypeError, ValueError, OverflowError)
_PYTHON_TYPES: Mapping[DType, tuple[type, ...]] = {
    DType.STRING: (str,), DType.INT64: (int,), DType.FLOAT64: (int, float), DType.BOOL: (bool,),
    DType.TIMESTAMP: (str, int, float, datetime),
}


@dataclass(frozen=True, slots=True)
class RealtimeValue:
    """One feature of a realtime view: its value, or why there is none (`error`, or no output row)."""

    name: str
    value: Any
    dtype: DType
    error: str | None = None
    missing: bool = False


def is_realtime(view: FeatureViewSpec) -> bool:
    return view.kind is FeatureViewKind.REALTIME


def missing_request_fields(view: FeatureViewSpec, context: Mapping[str, Any]) -> list[str]:
    return [f.name for f in view.request_schema if f.name not in context]


def input_types(ws: Workspace, view: FeatureViewSpec) -> dict[str, pl.DataType]:
    """The columns of the table the view's transformation reads, with their polars types."""
    types = {f.name: polars_type(f.dtype) for f in view.request_schema}
    for name in view.inputs:
        upstream = ws.feature_views.get(name)
        if upstream is not None:
            types |= {f"{name}__{feature}": dtype for feature, dtype in _served_types(ws, upstream).items()}
    return types


def _served_types(ws: Workspace, view: FeatureViewSpec) -> dict[str, pl.DataType]:
    source = ws.stream_sources.get(view.source) or ws.push_sources.get(view.source) or \
        ws.batch_sources.get(view.source)
    schema: tuple[FieldSpec, ...] = view.transformation.output_schema if view.transformation else \
        source.schema if source is not None else ()
    columns = {f.name: polars_type(f.dtype) for f in schema}
    served = {f.name: polars_type(f.dtype) for f in view.features}
    for aggregate in view.aggregates:
        served[aggregate.name] = aggregate_type(aggregate, columns.get(aggregate.column, pl.Null()))
    return served


def compute(view: FeatureViewSpec, types: Mapping[str, pl.DataType], context: Mapping[str, Any],
            inputs: Mapping[str, Any]) -> list[RealtimeValue]:
    """The view's features for one request: `context` holds the request fields, `inputs` the input views'
    feature values by `<view>__<feature>`."""
    try:
        rows = transform(view, _table(view, types, context, inputs))
    except InvalidRequest as exc:
        return [RealtimeValue(f.name, None, f.dtype, error=exc.message) for f in view.features]
    if not rows:
        return [RealtimeValue(f.name, None, f.dtype, missing=True) for f in view.features]
    if len(rows) > 1:
        problem = f"the transformation of feature view '{view.name}' returned {len(rows)} rows, expected one"
        return [RealtimeValue(f.name, None, f.dtype, error=problem) for f in view.features]
    return [_output(view, f.name, f.column, f.dtype, rows[0]) for f in view.features]


def _table(view: FeatureViewSpec, types: Mapping[str, pl.DataType], context: Mapping[str, Any],
           inputs: Mapping[str, Any]) -> pl.DataFrame:
    row: dict[str, Any] = {}
    for request_field in view.request_schema:
        row[request_field.name] = _request_value(view, request_field, context.get(request_field.name))
    for column, dtype in types.items():
        if column not in row:
            row[column] = _column_value(inputs.get(column), dtype)
    try:
        return pl.DataFrame({name: [value] for name, value in row.items()}, schema=dict(types))
    except _BUILD_ERRORS as exc:
        raise InvalidRequest(f"feature view '{view.name}': the inputs do not fit their types: "
                             f"{(str(exc).strip().splitlines() or [type(exc).__name__])[0]}") from None


def _request_value(view: FeatureViewSpec, spec: FieldSpec, value: Any) -> Any:
    if value is None:
        return None
    if not _fits(value, spec.dtype):
        raise InvalidRequest(f"feature view '{view.name}': request field '{spec.name}' is "
                             f"{type(value).__name__}, expected {spec.dtype.value}")
    if spec.dtype is DType.TIMESTAMP:
        try:
            return instant(spec.name, value)
        except (ValueError, OverflowError, OSError):
            raise InvalidRequest(f"feature view '{view.name}': request field '{spec.name}' is not a timestamp: "
                                 f"{value!r}") from None
    return float(value) if spec.dtype is DType.FLOAT64 else value


def _column_value(value: Any, dtype: Any) -> Any:
    """An input feature as served (tuples for lists, ISO text for timestamps) as polars takes it; `dtype` is
    a polars type (an instance, or a class for a list's inner type)."""
    if isinstance(value, tuple):
        return [_column_value(item, dtype.inner if isinstance(dtype, pl.List) else dtype) for item in value]
    if isinstance(dtype, pl.Datetime) and isinstance(value, str):
        return instant("", value)
    return value


def _output(view: FeatureViewSpec, name: str, column: str, dtype: DType, row: Mapping[str, Any]) -> RealtimeValue:
    if column not in row:
        return RealtimeValue(name, None, dtype, error=f"the transformation of feature view '{view.name}' "
                                                      f"returned no column '{column}'")
    value = row[column]
    if value is None:
        return RealtimeValue(name, None, dtype)
    if isinstance(value, datetime) and dtype is DType.TIMESTAMP:
        return RealtimeValue(name, instant(column, value).isoformat(), dtype)
    if not _fits(value, dtype) or isinstance(value, datetime):
        return RealtimeValue(name, None, dtype, error=f"feature view '{view.name}': column '{column}' is "
                                                      f"{type(value).__name__}, declared {dtype.value}")
    return RealtimeValue(name, float(value) if dtype is DType.FLOAT64 else value, dtype)


def _fits(value: Any, dtype: DType) -> bool:
    """Whether a Python value is of the type (ints count as floats; bools are not numbers)."""
    return isinstance(value, _PYTHON_TYPES[dtype]) and (dtype is DType.BOOL or not isinstance(value, bool))
