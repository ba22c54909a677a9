"""Spec-level validation: each problem is one sentence naming its object, and a valid repo has none."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

import pytest

from events.specs import (
    AggregateSpec,
    BatchSourceSpec,
    DType,
    EntitySpec,
    FeatureServiceSpec,
    FeatureSpec,
    FeatureViewKind,
    FeatureViewSpec,
    FieldSpec,
    FileFormat,
    PushSourceSpec,
    RepoSpec,
    StreamSourceSpec,
    TimeWindowSeriesSpec,
    TimeWindowSpec,
    TransformationMode,
    TransformationSpec,
)
from events.validation import SOURCE, VIEW, Problem, repo_errors, repo_problems

H, D = 3600, 86_400
TX = (FieldSpec("user_id", DType.STRING), FieldSpec("ts", DType.TIMESTAMP), FieldSpec("amount", DType.FLOAT64),
      FieldSpec("merchant", DType.STRING))
HISTORY = BatchSourceSpec("history", "s3://bucket/tx/*.parquet", FileFormat.PARQUET, "ts", TX)
STREAM = StreamSourceSpec("tx", "tx", "ts", TX, batch_source="history")
PUSH = PushSourceSpec("pushed", "ts", TX)
USER = EntitySpec("user", ("user_id",))
DAILY = FeatureViewSpec("daily", ("user",), "history", (), kind=FeatureViewKind.BATCH,
                        aggregates=(AggregateSpec("amount_sum_1d_1d", "amount", "sum", TimeWindowSpec(D)),),
                        aggregation_interval_s=D, batch_schedule_s=D)
VELOCITY = FeatureViewSpec("velocity", ("user",), "tx", (), aggregation_interval_s=600,
                           aggregates=(AggregateSpec("amount_sum_1h_10m", "amount", "sum", TimeWindowSpec(H)),))
LAST = FeatureViewSpec("last", ("user",), "pushed", (FeatureSpec("last_amount", "amount", DType.FLOAT64),), ttl_s=D)
RISK = FeatureViewSpec(
    "risk", (), "", (FeatureSpec("big", "big", DType.BOOL),), kind=FeatureViewKind.REALTIME,
    transformation=TransformationSpec(TransformationMode.SQL, "SELECT amount > 10 AS big FROM source",
                                      output_schema=(FieldSpec("big", DType.BOOL),)),
    request_schema=(FieldSpec("amount", DType.FLOAT64),), inputs=("velocity",))
# An expression transformation keeping the push source's columns: the expressions are what a case varies.
PASS_THROUGH = TransformationSpec(TransformationMode.EXPRESSIONS, expressions=(
    json.dumps({"Alias": [{"Column": "amount"}, "a"]}),), output_schema=TX)
REPO = RepoSpec((USER,), (STREAM,), (DAILY, VELOCITY, LAST, RISK),
                (FeatureServiceSpec("fraud", ("daily", "velocity", "last", "risk")),), (HISTORY,), (PUSH,))

Change = Callable[[RepoSpec], RepoSpec]


def view(name: str, **changes: object) -> Change:
    """The repo with feature view `name` changed."""
    def change(repo: RepoSpec) -> RepoSpec:
        views = tuple(replace(v, **changes) if v.name == name else v for v in repo.feature_views)  # type: ignore[arg-type]
        return replace(repo, feature_views=views)
    return change


def aggregate(name: str, **changes: object) -> Change:
    """The repo with the first aggregate of view `name` changed."""
    def change(repo: RepoSpec) -> RepoSpec:
        target = next(v for v in repo.feature_views if v.name == name)
        first = replace(target.aggregates[0], **changes)  # type: ignore[arg-type]
        return view(name, aggregates=(first, *target.aggregates[1:]))(repo)
    return change


def test_the_valid_repo_has_no_problems() -> None:
    assert repo_errors(REPO) == []


CASES: list[tuple[str, Change, list[str]]] = [
    ("no entities", view("daily", entities=()), ["feature view 'daily': has no entities"]),
    ("unknown entity", view("daily", entities=("merchant",)), ["feature view 'daily': unknown entity 'merchant'"]),
    ("unknown source", view("last", source="clicks"), ["feature view 'last': unknown source 'clicks'"]),
    ("duplicate across source kinds", lambda r: replace(r, push_sources=(replace(PUSH, name="history"),),
                                                          feature_views=(DAILY, VELOCITY, RISK),
                                                          feature_services=()),
     ["push source 'history' is declared twice"]),
    ("duplicate view", lambda r: replace(r, feature_views=(*r.feature_views, replace(LAST, ttl_s=None))),
     ["feature view 'last' is declared twice"]),
    ("bad feature column", view("last", features=(FeatureSpec("x", "nope", DType.STRING),)),
     ["feature view 'last': feature 'x' reads column 'nope', which source 'pushed' does not have"]),
    ("bad aggregate column", aggregate("velocity", column="nope"),
     ["feature view 'velocity': aggregate 'amount_sum_1h_10m' reads column 'nope', which source 'tx' does not have"]),
    ("join key not in source", lambda r: replace(r, entities=(EntitySpec("user", ("uid",)),)),
     [f"feature view '{v}': join key 'uid' is not a column of source '{s}'"
      for v, s in (("daily", "history"), ("velocity", "tx"), ("last", "pushed"))]),
    ("field not an identifier", lambda r: replace(r, push_sources=(replace(PUSH, schema=(
        *TX, FieldSpec("bad name", DType.STRING))),)),
     ["push source 'pushed': field 'bad name' is not a Python identifier"]),
    ("feature name not an identifier", view("last", features=(FeatureSpec("1st", "amount", DType.FLOAT64),)),
     ["feature view 'last': feature '1st': name must be a Python identifier"]),
    ("join key not an identifier", lambda r: replace(r, entities=(EntitySpec("user", ("user_id", "user id")),)),
     ["entity 'user': join key 'user id' is not a Python identifier",
      *(f"feature view '{v}': join key 'user id' is not a column of source '{s}'"
        for v, s in (("daily", "history"), ("velocity", "tx"), ("last", "pushed")))]),
    ("window smaller than interval", aggregate("velocity", window=TimeWindowSpec(300)),
     ["feature view 'velocity': aggregate 'amount_sum_1h_10m': window 5m is smaller than the aggregation "
      "interval 10m"]),
    ("window not a multiple", aggregate("velocity", window=TimeWindowSpec(900)),
     ["feature view 'velocity': aggregate 'amount_sum_1h_10m': window 15m is not a multiple of the aggregation "
      "interval 10m"]),
    ("offset not a multiple", aggregate("velocity", window=TimeWindowSpec(H, -60)),
     ["feature view 'velocity': aggregate 'amount_sum_1h_10m': window offset 1m is not a multiple of the "
      "aggregation interval 10m"]),
    ("positive offset", aggregate("velocity", window=TimeWindowSpec(H, 600)),
     ["feature view 'velocity': aggregate 'amount_sum_1h_10m': window offset must be zero or negative, got 600s"]),
    ("series out of order", aggregate("velocity", window=TimeWindowSeriesSpec(0, -H, 600, 600)),
     ["feature view 'velocity': aggregate 'amount_sum_1h_10m': series must start before it ends, both at or "
      "before the feature time: start 0s, end -3600s"]),
    ("series step not a multiple", aggregate("velocity", window=TimeWindowSeriesSpec(-H, 0, 900, 1200)),
     ["feature view 'velocity': aggregate 'amount_sum_1h_10m': series step 15m is not a multiple of the "
      "aggregation interval 10m"]),
    ("unknown function", aggregate("velocity", function="median"),
     ["feature view 'velocity': aggregate 'amount_sum_1h_10m': unknown aggregation function 'median'"]),
    ("last_n without n", aggregate("velocity", function="last_n"),
     ["feature view 'velocity': aggregate 'amount_sum_1h_10m': function 'last_n' needs parameter 'n'"]),
    ("n out of range", aggregate("velocity", function="first_distinct_n", params={"n": 0}),
     ["feature view 'velocity': aggregate 'amount_sum_1h_10m': parameter n must be an integer from 1 to 1000, got 0"]),
    ("n not an integer", aggregate("velocity", function="last_n", params={"n": 2.5}),
     ["feature view 'velocity': aggregate 'amount_sum_1h_10m': parameter n must be an integer from 1 to 1000, "
      "got 2.5"]),
    ("percentile outside (0, 1)", aggregate("velocity", function="approx_percentile", params={"percentile": 1.5}),
     ["feature view 'velocity': aggregate 'amount_sum_1h_10m': parameter percentile must be between 0 and 1 "
      "(exclusive), got 1.5"]),
    ("percentile missing", aggregate("velocity", function="approx_percentile"),
     ["feature view 'velocity': aggregate 'amount_sum_1h_10m': function 'approx_percentile' needs parameter "
      "'percentile'"]),
    ("precision out of range", aggregate("velocity", function="approx_count_distinct", params={"precision": 30}),
     ["feature view 'velocity': aggregate 'amount_sum_1h_10m': parameter precision must be an integer from 4 to "
      "16, got 30"]),
    ("unknown parameter", aggregate("velocity", params={"n": 3}),
     ["feature view 'velocity': aggregate 'amount_sum_1h_10m': function 'sum' takes no parameter 'n'"]),
    ("numeric function on text", aggregate("velocity", column="merchant"),
     ["feature view 'velocity': aggregate 'amount_sum_1h_10m': function 'sum' needs a numeric column, but "
      "'merchant' is string"]),
    ("ttl zero", view("last", ttl_s=0), ["feature view 'last': ttl must be positive, got 0s"]),
    ("ttl negative", view("last", ttl_s=-5), ["feature view 'last': ttl must be positive, got -5s"]),
    ("batch view without schedule", view("daily", batch_schedule_s=None),
     ["feature view 'daily': a batch feature view needs a batch_schedule"]),
    ("batch aggregates without interval", view("daily", aggregation_interval_s=None),
     ["feature view 'daily': batch aggregates need an aggregation_interval: only stream views aggregate "
      "continuously"]),
    ("interval without aggregates", view("last", aggregation_interval_s=H),
     ["feature view 'last': has an aggregation_interval but no aggregates"]),
    ("stream view on a batch source", view("velocity", source="history"),
     ["feature view 'velocity': a stream feature view reads a stream or push source, but 'history' is a batch "
      "source"]),
    ("batch view on a stream source", view("daily", source="tx"),
     ["feature view 'daily': a batch feature view reads a batch source, but 'tx' is a stream source"]),
    ("backfill without a batch source", view("last", batch_schedule_s=D),
     ["feature view 'last': batch_schedule needs source 'pushed' to have a batch source for backfills"]),
    ("naive feature_start_time", view("daily", feature_start_time=datetime(2024, 1, 1)),  # noqa: DTZ001
     ["feature view 'daily': feature_start_time must be timezone-aware (UTC)"]),
    ("mixed attributes and aggregates", view("velocity", features=LAST.features),
     ["feature view 'velocity': mixes attributes and aggregates: a view serves one or the other"]),
    ("no features", view("last", features=()), ["feature view 'last': declares no features"]),
    ("feature declared twice", view("last", features=LAST.features * 2),
     ["feature view 'last': feature 'last_amount' is declared twice"]),
    ("feature type differs from column", view("last", features=(FeatureSpec("a", "amount", DType.STRING),)),
     ["feature view 'last': feature 'a' is declared string but column 'amount' is float64"]),
    ("transformation drops timestamp", view("last", transformation=TransformationSpec(
        TransformationMode.SQL, "SELECT user_id, amount FROM source",
        output_schema=(FieldSpec("user_id", DType.STRING), FieldSpec("amount", DType.FLOAT64)))),
     ["feature view 'last': its transformation drops the timestamp field 'ts'"]),
    ("transformation without output", view("last", transformation=TransformationSpec(
        TransformationMode.EXPRESSIONS)),
     ["feature view 'last': its expression transformation has no expressions",
      "feature view 'last': its transformation produces no columns"]),
    ("transformation output columns", view("last", transformation=TransformationSpec(
        TransformationMode.SQL, "SELECT ts FROM source", output_schema=(FieldSpec("ts", DType.TIMESTAMP),))),
     ["feature view 'last': join key 'user_id' is not a column of the transformation's output",
      "feature view 'last': feature 'last_amount' reads column 'amount', which the transformation's output "
      "does not have"]),
    ("realtime unknown input", view("risk", inputs=("ghost",)),
     ["feature view 'risk': unknown input feature view 'ghost'"]),
    ("realtime reading realtime", lambda r: view("risk", inputs=("risk2",))(
        replace(r, feature_views=(*r.feature_views, replace(RISK, name="risk2")))),
     ["feature view 'risk': input 'risk2' is a realtime feature view; realtime views read batch and stream views"]),
    ("realtime with a source", view("risk", source="tx"),
     ["feature view 'risk': a realtime feature view reads no source, got 'tx'"]),
    ("realtime with entities", view("risk", entities=("user",)),
     ["feature view 'risk': a realtime feature view takes its entities from its input feature views"]),
    ("realtime without transformation", view("risk", transformation=None),
     ["feature view 'risk': a realtime feature view needs a transformation"]),
    ("realtime without inputs", view("risk", inputs=(), request_schema=()),
     ["feature view 'risk': a realtime feature view needs request fields or input feature views"]),
    ("realtime aggregating", view("risk", aggregates=VELOCITY.aggregates, features=()),
     ["feature view 'risk': a realtime feature view cannot aggregate",
      "feature view 'risk': aggregate 'amount_sum_1h_10m' reads column 'amount', which the transformation's "
      "output does not have"]),
    ("service naming an unknown view", lambda r: replace(r, feature_services=(FeatureServiceSpec("s", ("ghost",)),)),
     ["feature service 's': unknown feature view 'ghost'"]),
    ("empty service", lambda r: replace(r, feature_services=(FeatureServiceSpec("s", ()),)),
     ["feature service 's': lists no feature views"]),
    ("entity without join keys", lambda r: replace(r, entities=(*r.entities, EntitySpec("shop", ()))),
     ["entity 'shop': has no join keys"]),
    ("timestamp of the wrong type", lambda r: replace(r, push_sources=(replace(
        PUSH, schema=(FieldSpec("user_id", DType.STRING), FieldSpec("ts", DType.INT64),
                      FieldSpec("amount", DType.FLOAT64))),)),
     ["push source 'pushed': timestamp field 'ts' is int64, not timestamp"]),
    ("unknown backfill source", lambda r: replace(r, stream_sources=(replace(STREAM, batch_source="ghost"),)),
     ["stream source 'tx': unknown batch source 'ghost'"]),
    ("backfill lacks a field", lambda r: replace(r, batch_sources=(replace(HISTORY, schema=TX[:2]),)),
     ["stream source 'tx': batch source 'history' has no float64 field 'amount'",
      "stream source 'tx': batch source 'history' has no string field 'merchant'",
      "feature view 'daily': aggregate 'amount_sum_1d_1d' reads column 'amount', which source 'history' does "
      "not have"]),
    ("batch source without path", lambda r: replace(r, batch_sources=(replace(HISTORY, path=" "),)),
     ["batch source 'history': has no path"]),
    ("expression carrying a pickled function", view("last", transformation=replace(PASS_THROUGH, expressions=(
        json.dumps({"Alias": [{"Column": "amount"}, "a"]}),
        json.dumps({"AnonymousFunction": {"input": [{"Column": "a"}], "function": [*b"PLPYFN", 1, 2]}})))),
     ["feature view 'last': expression 2 of its transformation runs Python or native code (AnonymousFunction); "
      "only built-in polars expressions may cross a plane"]),
    ("expression loading a native plugin", view("last", transformation=replace(PASS_THROUGH, expressions=(
        json.dumps({"Function": {"input": [], "function": {"FfiPlugin": {"lib": "/tmp/evil.so"}}}}),))),
     ["feature view 'last': expression 1 of its transformation runs Python or native code (FfiPlugin); "
      "only built-in polars expressions may cross a plane"]),
    ("expression that is not JSON", view("last", transformation=replace(PASS_THROUGH, expressions=("nope",))),
     ["feature view 'last': expression 1 of its transformation is not a serialized polars expression: "
      "Expecting value: line 1 column 1 (char 0)"]),
]


@pytest.mark.parametrize(("change", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_problem_is_one_sentence_naming_the_object(change: Change, expected: list[str]) -> None:
    assert repo_errors(change(REPO)) == expected


def test_problems_carry_the_namespace_and_name_of_their_object() -> None:
    repo = view("velocity", source="history")(replace(REPO, push_sources=(replace(PUSH, timestamp_field="t"),)))
    assert repo_problems(repo) == [
        Problem(SOURCE, "pushed", "push source 'pushed': timestamp field 't' is not in its schema"),
        Problem(VIEW, "velocity", "feature view 'velocity': a stream feature view reads a stream or push source, "
                                  "but 'history' is a batch source"),
    ]


def test_realtime_views_need_no_entities() -> None:
    assert not [e for e in repo_errors(REPO) if "risk" in e]
    assert repo_errors(view("daily", kind=FeatureViewKind.REALTIME)(REPO))  # the same check applies to others


def test_a_plain_expression_transformation_is_valid() -> None:
    assert repo_errors(view("last", transformation=PASS_THROUGH)(REPO)) == []
