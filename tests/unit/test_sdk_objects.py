"""Every DSL object compiles, with every option, to the spec values expected; wrong types fail on construction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import polars as pl
import pytest

from events.errors import InvalidSpec
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
    LifetimeWindowSpec,
    PushSourceSpec,
    RecordFormat,
    StreamSourceSpec,
    TimeWindowSeriesSpec,
    TimeWindowSpec,
    TransformationMode,
)
from sdk import (
    Aggregate,
    Attribute,
    BatchFeatureView,
    BatchSource,
    Entity,
    FeatureService,
    Field,
    LifetimeWindow,
    PushSource,
    RealtimeFeatureView,
    RequestSource,
    StreamFeatureView,
    StreamSource,
    TimeWindow,
    TimeWindowSeries,
)
from sdk.transforms import load_expression

H, D = timedelta(hours=1), timedelta(days=1)
SCHEMA = [Field("user_id", "string"), Field("ts", "timestamp"), Field("amount", "float64")]
SCHEMA_SPEC = (FieldSpec("user_id", DType.STRING), FieldSpec("ts", DType.TIMESTAMP),
               FieldSpec("amount", DType.FLOAT64))
META: dict[str, Any] = {"tags": {"team": "risk"}, "owner": "ana@example.com", "prevent_destroy": True}
USER = Entity("user", ["user_id"], "A customer", **META)
FILES = BatchSource("history", "s3://b/tx/*.csv", "ts", SCHEMA, "csv", "Settled", **META)
TOPIC = StreamSource("tx", "transactions", "ts", SCHEMA, "msgpack", "Live", batch_source=FILES, **META)
PUSHED = PushSource("pushed", "ts", SCHEMA, "Pushed", batch_source=FILES, **META)


def test_entity_and_sources_compile_every_option() -> None:
    assert USER.spec() == EntitySpec("user", ("user_id",), "A customer", {"team": "risk"}, "ana@example.com", True)
    assert FILES.spec() == BatchSourceSpec("history", "s3://b/tx/*.csv", FileFormat.CSV, "ts", SCHEMA_SPEC, "Settled",
                                           {"team": "risk"}, "ana@example.com", True)
    assert TOPIC.spec() == StreamSourceSpec("tx", "transactions", "ts", SCHEMA_SPEC, RecordFormat.MSGPACK, "Live",
                                            "history", {"team": "risk"}, "ana@example.com", True)
    assert PUSHED.spec() == PushSourceSpec("pushed", "ts", SCHEMA_SPEC, "Pushed", "history", {"team": "risk"},
                                           "ana@example.com", True)


def test_defaults_are_the_plain_ones() -> None:
    assert Entity("user", ["user_id"]).spec() == EntitySpec("user", ("user_id",))
    assert BatchSource("h", "p", "ts", SCHEMA).spec().file_format is FileFormat.PARQUET
    assert StreamSource("s", "t", "ts", SCHEMA).spec().batch_source == ""
    assert PushSource("p", "ts", SCHEMA).spec() == PushSourceSpec("p", "ts", SCHEMA_SPEC)


def test_batch_view_compiles_every_option() -> None:
    start = datetime(2024, 1, 1, 2, tzinfo=timezone(timedelta(hours=2)))
    view = BatchFeatureView(
        "daily", FILES, [USER], [Aggregate("amount", "sum", TimeWindow(7 * D), description="Weekly spend")],
        False, True, "Daily", transformation="SELECT user_id, ts, amount FROM source", batch_schedule=D,
        ttl=30 * D, feature_start_time=start, **META)
    spec = view.spec()
    assert spec == FeatureViewSpec(
        "daily", ("user",), "history", (), False, True, "Daily", FeatureViewKind.BATCH,
        (AggregateSpec("amount_sum_7d_1d", "amount", "sum", TimeWindowSpec(604_800), {}, "Weekly spend"),),
        spec.transformation, 86_400, 2_592_000, 86_400, datetime(2024, 1, 1, tzinfo=UTC), (), (),
        {"team": "risk"}, "ana@example.com", True)
    assert spec.transformation is not None
    assert spec.transformation.mode is TransformationMode.SQL
    assert spec.transformation.sql == "SELECT user_id, ts, amount FROM source"
    assert spec.transformation.output_schema == SCHEMA_SPEC
    assert spec.feature_start_time is not None
    assert spec.feature_start_time.utcoffset() == timedelta(0)


def test_stream_view_compiles_every_option() -> None:
    view = StreamFeatureView(
        "velocity", TOPIC, [USER], [Aggregate("amount", "last_n", TimeWindow(H, -H), params={"n": 3})],
        description="Recent", transformation=(pl.col("amount") * 2).alias("double"),
        aggregation_interval=timedelta(minutes=10), batch_schedule=D, ttl=H,
        feature_start_time=datetime(2024, 5, 1, tzinfo=UTC), **META)
    spec = view.spec()
    assert spec.kind is FeatureViewKind.STREAM
    assert spec.aggregates == (AggregateSpec("amount_last_n_3_1h_offset_1h_10m", "amount", "last_n",
                                             TimeWindowSpec(3600, -3600), {"n": 3}),)
    assert (spec.aggregation_interval_s, spec.batch_schedule_s, spec.ttl_s) == (600, 86_400, 3600)
    assert (spec.tags, spec.owner, spec.prevent_destroy, spec.description) == (
        {"team": "risk"}, "ana@example.com", True, "Recent")
    assert spec.transformation is not None
    assert spec.transformation.mode is TransformationMode.EXPRESSIONS
    assert spec.transformation.output_schema == (*SCHEMA_SPEC, FieldSpec("double", DType.FLOAT64))


def test_attribute_view_keeps_the_legacy_shape() -> None:
    view = StreamFeatureView("last", TOPIC, [USER], [Attribute("amount", "float64", "last_amount", "Latest")])
    assert view.spec() == FeatureViewSpec("last", ("user",), "tx", (
        FeatureSpec("last_amount", "amount", DType.FLOAT64, "Latest"),))


def test_realtime_view_compiles_request_fields_and_inputs() -> None:
    velocity = StreamFeatureView("velocity", TOPIC, [USER], [Aggregate("amount", "mean", TimeWindow(H))])
    view = RealtimeFeatureView(
        "risk", [RequestSource([Field("amount", "float64")]), velocity],
        [Attribute("ratio", "float64"), Attribute("big", "bool")],
        [(pl.col("amount") / pl.col("velocity__amount_mean_1h_continuous")).alias("ratio"),
         (pl.col("amount") > 1000).alias("big")],
        online=True, offline=False, description="Risk", **META)
    spec = view.spec()
    assert (spec.kind, spec.entities, spec.source, spec.inputs) == (FeatureViewKind.REALTIME, (), "", ("velocity",))
    assert spec.request_schema == (FieldSpec("amount", DType.FLOAT64),)
    assert spec.features == (FeatureSpec("ratio", "ratio", DType.FLOAT64), FeatureSpec("big", "big", DType.BOOL))
    assert (spec.online, spec.offline, spec.description, spec.prevent_destroy) == (True, False, "Risk", True)
    assert spec.transformation is not None
    assert [f.name for f in spec.transformation.output_schema] == [
        "amount", "velocity__amount_mean_1h_continuous", "ratio", "big"]
    assert load_expression(spec.transformation.expressions[1]).meta.eq((pl.col("amount") > 1000).alias("big"))


def test_windows_compile_to_seconds() -> None:
    assert TimeWindow(H, -D).spec() == TimeWindowSpec(3600, -86_400)
    assert LifetimeWindow().spec() == LifetimeWindowSpec()
    assert TimeWindowSeries(-7 * D, timedelta(0), D).spec() == TimeWindowSeriesSpec(-604_800, 0, 86_400, 86_400)
    assert TimeWindowSeries(-D, -H, H, 2 * H).spec() == TimeWindowSeriesSpec(-86_400, -3600, 3600, 7200)


def test_service_lists_views_of_every_kind() -> None:
    batch = BatchFeatureView("b", FILES, [USER], [Attribute("amount", "float64")], batch_schedule=D)
    stream = StreamFeatureView("s", TOPIC, [USER], [Attribute("amount", "float64")])
    realtime = RealtimeFeatureView("r", [stream], [Attribute("x", "float64")], "SELECT s__amount AS x FROM source")
    service = FeatureService("svc", [batch, stream, realtime], "For the model", {"a": "b"}, owner="o",
                             prevent_destroy=True)
    assert service.spec() == FeatureServiceSpec("svc", ("b", "s", "r"), "For the model", {"a": "b"}, "o", True)


def _view(**options: Any) -> StreamFeatureView:
    return StreamFeatureView("v", TOPIC, [USER], [Attribute("amount", "float64")], **options)


@pytest.mark.parametrize(("build", "message"), [
    (lambda: Entity("user", "user_id"), "entity 'user': join_keys must be a list of column names, got str"),
    (lambda: Entity(3, ["id"]), "entity: name must be a string, got int 3"),
    (lambda: Field("a", "strng"), "field 'a': dtype must be one of string, int64, float64, bool, timestamp"),
    (lambda: BatchSource("b", "p", "ts", SCHEMA, "xlsx"), "batch source 'b': file_format must be one of parquet, csv"),
    (lambda: StreamSource("s", "t", "ts", [("a", "string")]), "stream source 's': each of schema must be Field"),
    (lambda: StreamSource("s", "t", "ts", SCHEMA, batch_source=TOPIC),
     "stream source 's': batch_source must be a BatchSource, got StreamSource 'tx'"),
    (lambda: _view(ttl="1 day"), "feature view 'v': ttl must be a datetime.timedelta, got str '1 day'"),
    (lambda: _view(ttl=timedelta(seconds=1.5)), "feature view 'v': ttl must be a whole number of seconds"),
    (lambda: _view(feature_start_time=datetime(2024, 1, 1)),  # noqa: DTZ001
     "feature view 'v': feature_start_time must be timezone-aware"),
    (lambda: _view(online="yes"), "feature view 'v': online must be True or False, got str 'yes'"),
    (lambda: _view(transformation=42), "feature view 'v': transformation must be a list of polars expressions"),
    (lambda: _view(tags={"a": 1}), "feature view 'v': tags must map strings to strings"),
    (lambda: StreamFeatureView("v", "tx", [USER], []), "feature view 'v': source must be a BatchSource"),
    (lambda: StreamFeatureView("v", TOPIC, [USER], ["amount"]),
     "feature view 'v': each of features must be Attribute or Aggregate, got str 'amount'"),
    (lambda: Aggregate("amount", "sum", H),
     r"aggregate sum\(amount\): time_window must be a TimeWindow, LifetimeWindow or TimeWindowSeries"),
    (lambda: Aggregate("amount", "last_n", TimeWindow(H), params={"n": "5"}),
     r"aggregate last_n\(amount\): params must map names to numbers"),
    (lambda: TimeWindow(3600), "time window: size must be a datetime.timedelta, got int 3600"),
    (lambda: RealtimeFeatureView("r", [RequestSource([]), RequestSource([])], [], "SELECT 1"),
     "feature view 'r': sources may hold one RequestSource"),
    (lambda: RealtimeFeatureView("r", [USER], [], "SELECT 1"),
     "feature view 'r': each of sources must be RequestSource, BatchFeatureView or StreamFeatureView, got Entity"),
    (lambda: FeatureService("s", [USER]), "feature service 's': each of features must be feature views"),
])
def test_wrong_types_fail_on_construction_naming_the_object(build: Any, message: str) -> None:
    with pytest.raises(InvalidSpec, match="^" + message) as error:
        build()
    assert isinstance(error.value, TypeError)  # also a TypeError, as Python code expects of wrong types


def test_view_spec_raises_when_the_transformation_does_not_compile() -> None:
    view = _view(transformation="SELECT amount FROM source WHERE")
    with pytest.raises(InvalidSpec) as error:
        view.spec()
    assert error.value.message.startswith("feature view 'v': transformation is not valid polars SQL: sql parser")
