"""Transformations: SQL and expressions are checked, typed and made safe to ship when a repo compiles."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import polars as pl
import pytest

from events.errors import InvalidSpec
from events.expressions import expression_problem
from events.specs import DType, FieldSpec, TransformationMode, TransformationSpec
from sdk import Attribute, Entity, Field, StreamFeatureView, StreamSource
from sdk.transforms import apply, compile_transformation, load_expression

INPUTS = {"user_id": pl.String(), "ts": pl.Datetime("us", "UTC"), "amount": pl.Float64()}
ROWS = pl.LazyFrame({"user_id": ["a", "b"], "ts": [datetime(2024, 1, 1, tzinfo=UTC)] * 2, "amount": [1.5, 4.0]},
                    schema=INPUTS)


def test_sql_compiles_to_its_output_schema_and_runs_on_data() -> None:
    compiled = compile_transformation("SELECT user_id, amount * 2 AS doubled, ts FROM source", INPUTS)
    assert compiled.errors == []
    assert compiled.spec == TransformationSpec(
        TransformationMode.SQL, "SELECT user_id, amount * 2 AS doubled, ts FROM source",
        output_schema=(FieldSpec("user_id", DType.STRING), FieldSpec("doubled", DType.FLOAT64),
                       FieldSpec("ts", DType.TIMESTAMP)))
    assert apply(compiled.spec, ROWS).collect()["doubled"].to_list() == [3.0, 8.0]


@pytest.mark.parametrize("sql", [
    "WITH big AS (SELECT * FROM source WHERE amount > 2) SELECT user_id, ts FROM big",
    "-- the latest amounts\nSELECT user_id, ts, CAST(amount AS INTEGER) AS cents FROM source",
    "select user_id, ts, amount > 2 as big from source",
])
def test_queries_of_other_shapes_are_accepted(sql: str) -> None:
    compiled = compile_transformation(sql, INPUTS)
    assert compiled.errors == []
    assert {f.dtype for f in compiled.spec.output_schema} <= set(DType)  # narrower ints widen to int64


@pytest.mark.parametrize(("sql", "message"), [
    ("SELEC user_id FROM source", "transformation is invalid: SQL must be one SELECT"),
    ("SELECT user_id FROM source WHERE", "transformation is not valid polars SQL: sql parser error"),
    ("SELECT nope FROM source", "transformation is not valid polars SQL: unable to find column \"nope\""),
    ("SELECT * FROM other", "transformation is not valid polars SQL: relation 'other' was not found"),
    ("SELECT user_id FROM source; SELECT 1", "transformation is not valid polars SQL: one (and only one) statement"),
    ("DROP TABLE source", "transformation is invalid: SQL must be one SELECT"),
    ("SELECT * FROM read_parquet('/etc/data.parquet')",
     "transformation is invalid: SQL may read only the table `source`, not files"),
])
def test_garbage_sql_is_rejected_with_the_reason(sql: str, message: str) -> None:
    compiled = compile_transformation(sql, INPUTS)
    assert len(compiled.errors) == 1
    assert compiled.errors[0].startswith(message), compiled.errors
    assert compiled.spec.output_schema == ()


def test_expressions_round_trip_through_json_and_add_columns() -> None:
    exprs = [(pl.col("amount") * 2).alias("doubled"), pl.col("user_id").str.to_uppercase().alias("upper")]
    compiled = compile_transformation(exprs, INPUTS)
    assert compiled.errors == []
    assert compiled.spec.mode is TransformationMode.EXPRESSIONS
    assert compiled.spec.expressions == tuple(e.meta.serialize(format="json") for e in exprs)
    for text, expr in zip(compiled.spec.expressions, exprs, strict=True):
        assert isinstance(text, str)
        assert load_expression(text).meta.eq(expr)
    assert [f.name for f in compiled.spec.output_schema] == ["user_id", "ts", "amount", "doubled", "upper"]
    out = apply(compiled.spec, ROWS).collect()
    assert out["doubled"].to_list() == [3.0, 8.0]
    assert out["upper"].to_list() == ["A", "B"]


def test_one_expression_alone_is_accepted() -> None:
    compiled = compile_transformation(pl.col("amount").log1p().alias("log_amount"), INPUTS)
    assert compiled.errors == []
    assert compiled.spec.output_schema[-1] == FieldSpec("log_amount", DType.FLOAT64)


def test_expression_over_a_missing_column_is_rejected() -> None:
    compiled = compile_transformation([pl.col("nope") + 1], INPUTS)
    assert compiled.errors[0].startswith("transformation's expressions do not apply to its inputs:")
    assert "nope" in compiled.errors[0]


@pytest.mark.parametrize(("text", "message"), [
    ("not json", "not a serialized polars expression"),
    ('{"Nope": 1}', "not a deserializable polars expression"),
    (json.dumps({"AnonymousFunction": {"input": [{"Column": "a"}], "function": [1, 2]}}),
     "runs Python or native code (AnonymousFunction)"),
    (json.dumps({"RenameAlias": {"function": {"Map": [1, 11, 7, 128, 5]}, "expr": {"Column": "a"}}}),
     "runs Python or native code (Map)"),
    (json.dumps({"Alias": [{"Literal": {"Scalar": [*b"PLPYFN", 1, 2]}}, "x"]}),
     "runs Python or native code (a pickled Python function)"),
    (json.dumps({"Function": {"input": [], "function": {"FfiPlugin": {"lib": "/tmp/evil.so"}}}}),
     "runs Python or native code (FfiPlugin)"),
])
def test_expressions_carrying_code_or_garbage_are_never_deserialized(text: str, message: str) -> None:
    with pytest.raises(InvalidSpec, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_expression(text)


def test_the_sdk_and_the_control_plane_refuse_the_same_code_carrying_expression() -> None:
    pickled = json.dumps({"Alias": [{"AnonymousFunction": {"input": [{"Column": "amount"}],
                                                           "function": [*b"PLPYFN", 1, 2]}}, "x"]})
    spec = TransformationSpec(TransformationMode.EXPRESSIONS, expressions=(pickled,))
    with pytest.raises(InvalidSpec, match=r"runs Python or native code \(AnonymousFunction\)"):
        apply(spec, ROWS)  # what Rift runs: nothing is deserialized
    assert expression_problem(pickled) == ("runs Python or native code (AnonymousFunction); only built-in polars "
                                           "expressions may cross a plane")


def test_python_functions_in_expressions_are_refused_at_compile_time() -> None:
    udf = pl.col("amount").map_batches(lambda s: s * 2, return_dtype=pl.Float64)
    compiled = compile_transformation([udf], INPUTS)
    # Without cloudpickle polars cannot even serialize it; with it, the JSON carries the pickled function.
    assert len(compiled.errors) == 1
    assert ("cannot be serialized" in compiled.errors[0]) or ("runs Python" in compiled.errors[0])


def test_a_served_column_of_an_unservable_type_is_named() -> None:
    source = StreamSource("s", "t", "ts", [Field("user_id", "string"), Field("ts", "timestamp")])
    view = StreamFeatureView("v", source, [Entity("user", ["user_id"])], [Attribute("day", "string")],
                             transformation=pl.col("ts").dt.date().alias("day"))
    spec, errors = view.compile()
    assert errors == ["feature view 'v': column 'day' of the transformation's output is Date, which featureplane "
                      "cannot serve: cast it to string, int64, float64, bool or timestamp"]
    assert spec.transformation is not None
    assert spec.transformation.field("day") is None
