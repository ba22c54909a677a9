"""Transformations: polars SQL text or polars expressions, checked and typed when a repository compiles.

A transformation reads one table, `source`, whose columns are the view's inputs typed by their schema
(timestamps as UTC datetimes). SQL is one SELECT over `source` and must keep every column the view
needs, join keys and timestamp included. Expressions are applied with `with_columns`: they add or
replace columns and keep the others.

Expressions cross planes as JSON (`Expr.meta.serialize(format="json")`), never pickled. Polars does
pickle Python functions into that JSON (`map_elements`, `map_batches`, `name.map`) and can load native
plugins, and deserializing them would run code: `load_expression` refuses such expressions, and every
consumer should deserialize through it.

The cheapest real check is to run the transformation on an empty frame of the input schema: that parses
the SQL, resolves every column and type without touching data, and yields the output schema that the
spec records for validation and the runtime.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import polars as pl

from events.errors import InvalidSpec
from events.expressions import expression_problem
from events.specs import DType, FieldSpec, TransformationMode, TransformationSpec
from sdk import _checks as check

Transformation = str | pl.Expr | Sequence[pl.Expr]

_POLARS: Mapping[DType, pl.DataType] = {
    DType.STRING: pl.String(), DType.INT64: pl.Int64(), DType.FLOAT64: pl.Float64(), DType.BOOL: pl.Boolean(),
    DType.TIMESTAMP: pl.Datetime("us", "UTC"),
}
_QUERY = re.compile(r"(\s|--[^\n]*\n|/\*.*?\*/)*(select|with)\b", re.IGNORECASE | re.DOTALL)
_FILE_READ = re.compile(r"\bread_\w+\s*\(", re.IGNORECASE)
_POLARS_ERRORS = (pl.exceptions.PolarsError, pl.exceptions.PanicException)


@dataclass(frozen=True, slots=True)
class Compiled:
    """A compiled transformation; `unsupported` maps output columns featureplane cannot serve to their type."""

    spec: TransformationSpec
    errors: list[str] = field(default_factory=list)
    unsupported: dict[str, str] = field(default_factory=dict)


def check_type(owner: str, value: object) -> None:
    """Construction-time check: SQL text, one polars expression or a list of them."""
    if value is None or isinstance(value, str | pl.Expr):
        return
    check.items(owner, "transformation", value, pl.Expr, "polars expressions (or SQL text)")


def polars_type(dtype: DType) -> pl.DataType:
    return _POLARS[dtype]


def featureplane_type(dtype: pl.DataType) -> DType | None:
    """The DType that serves a polars type; integers and floats widen to 64 bits. None: not servable."""
    if dtype.is_integer():
        return DType.INT64
    if dtype.is_float():
        return DType.FLOAT64
    if isinstance(dtype, pl.Datetime):
        return DType.TIMESTAMP
    return {pl.String(): DType.STRING, pl.Boolean(): DType.BOOL}.get(dtype)


def serialize(expr: pl.Expr) -> str:
    return expr.meta.serialize(format="json")


def load_expression(text: str) -> pl.Expr:
    """A serialized expression, deserialized only if it carries no code; InvalidSpec says why not."""
    problem = expression_problem(text)  # the control plane's own check: the same reason on both sides
    if problem is not None:
        raise InvalidSpec(f"the expression {problem}")
    try:
        return pl.Expr.deserialize(io.StringIO(text), format="json")
    except _POLARS_ERRORS as exc:
        raise InvalidSpec(f"not a deserializable polars expression: {_first_line(exc)}") from None


def apply(spec: TransformationSpec, frame: pl.LazyFrame) -> pl.LazyFrame:
    """`frame` (registered as the table `source`) transformed; InvalidSpec if the transformation is unsafe."""
    if spec.mode is TransformationMode.SQL:
        if not _QUERY.match(spec.sql):
            raise InvalidSpec("SQL must be one SELECT (or WITH ... SELECT) query")
        if _FILE_READ.search(spec.sql):
            raise InvalidSpec("SQL may read only the table `source`, not files")
        return pl.SQLContext(source=frame).execute(spec.sql)
    return frame.with_columns(*(load_expression(text) for text in spec.expressions))


def compile_transformation(value: Transformation, inputs: Mapping[str, pl.DataType]) -> Compiled:
    """`value` as a spec, with the output schema it yields for `inputs`, or the errors that prevent it."""
    if isinstance(value, str):
        spec = TransformationSpec(TransformationMode.SQL, sql=value)
    else:
        exprs = [value] if isinstance(value, pl.Expr) else list(value)
        texts: list[str] = []
        for position, expr in enumerate(exprs, 1):
            try:
                texts.append(serialize(expr))
            except _POLARS_ERRORS as exc:
                return Compiled(TransformationSpec(TransformationMode.EXPRESSIONS),
                                [f"expression {position} cannot be serialized: {_first_line(exc)}"])
        spec = TransformationSpec(TransformationMode.EXPRESSIONS, expressions=tuple(texts))
    try:
        schema = apply(spec, pl.LazyFrame(schema=dict(inputs))).collect_schema()
    except InvalidSpec as exc:
        return Compiled(spec, [f"transformation is invalid: {exc.message}"])
    except _POLARS_ERRORS as exc:
        problem = ("transformation is not valid polars SQL" if spec.mode is TransformationMode.SQL
                   else "transformation's expressions do not apply to its inputs")
        return Compiled(spec, [f"{problem}: {_first_line(exc)}"])
    output: list[FieldSpec] = []
    unsupported: dict[str, str] = {}
    for name, dtype in schema.items():
        served = featureplane_type(dtype)
        if served is None:
            unsupported[name] = str(dtype)
        else:
            output.append(FieldSpec(name, served))
    return Compiled(TransformationSpec(spec.mode, spec.sql, spec.expressions, tuple(output)), [], unsupported)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
