"""Aggregates: default names, parameter defaults and aggregation intervals."""

from __future__ import annotations

from datetime import timedelta

import pytest

from events.specs import AggregationFunction, FeatureViewKind, RepoSpec
from events.validation import repo_errors
from sdk import (
    Aggregate,
    BatchFeatureView,
    BatchSource,
    Entity,
    Field,
    LifetimeWindow,
    StreamFeatureView,
    StreamSource,
    TimeWindow,
    TimeWindowSeries,
)

M, H, D = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)


@pytest.mark.parametrize(("aggregate", "interval_s", "name"), [
    (Aggregate("amount", "sum", TimeWindow(H)), None, "amount_sum_1h_continuous"),
    (Aggregate("amount", "sum", TimeWindow(H)), 600, "amount_sum_1h_10m"),
    (Aggregate("amount", AggregationFunction.COUNT, TimeWindow(30 * D)), 86_400, "amount_count_30d_1d"),
    (Aggregate("amount", "sum", TimeWindow(timedelta(seconds=90))), None, "amount_sum_90s_continuous"),
    (Aggregate("amount", "sum", TimeWindow(D, -D)), 3600, "amount_sum_1d_offset_1d_1h"),
    (Aggregate("amount", "max", LifetimeWindow()), 3600, "amount_max_lifetime_1h"),
    (Aggregate("amount", "sum", TimeWindowSeries(-7 * D, timedelta(0), D)), 86_400,
     "amount_sum_1d_series_7d_to_0s_by_1d_1d"),
    (Aggregate("merchant", "last_n", TimeWindow(H), params={"n": 5}), None, "merchant_last_n_5_1h_continuous"),
    (Aggregate("merchant", "last_distinct_n", TimeWindow(7 * D), params={"n": 10}), 3600,
     "merchant_last_distinct_n_10_7d_1h"),
    (Aggregate("amount", "approx_percentile", TimeWindow(H), params={"percentile": 0.5}), 3600,
     "amount_approx_percentile_p50_1h_1h"),
    (Aggregate("amount", "approx_percentile", TimeWindow(H), params={"percentile": 0.999}), None,
     "amount_approx_percentile_p99_9_1h_continuous"),
    (Aggregate("merchant", "approx_count_distinct", TimeWindow(D), params={"precision": 12}), None,
     "merchant_approx_count_distinct_1d_continuous"),
    (Aggregate("amount", "sum", TimeWindow(H), name="spend_1h"), 600, "spend_1h"),
])
def test_default_names_follow_the_tecton_style_rule(aggregate: Aggregate, interval_s: int | None,
                                                    name: str) -> None:
    assert aggregate.spec(interval_s).name == name


def test_optional_parameters_are_written_with_their_defaults() -> None:
    assert Aggregate("a", "approx_percentile", TimeWindow(H), params={"percentile": 0.9}).spec(None).params == {
        "percentile": 0.9, "precision": 100}
    assert Aggregate("a", "approx_count_distinct", TimeWindow(H)).spec(None).params == {"precision": 8}
    assert Aggregate("a", "approx_count_distinct", TimeWindow(H), params={"precision": 12}).spec(None).params == {
        "precision": 12}
    assert Aggregate("a", "last_n", TimeWindow(H)).spec(None).params == {}  # missing n: validation reports it
    assert Aggregate("a", "median", TimeWindow(H)).spec(None).function == "median"  # likewise


SOURCE_FIELDS = [Field("user_id", "string"), Field("ts", "timestamp"), Field("amount", "float64"),
                 Field("merchant", "string")]
USER = Entity("user", ["user_id"])
FILES = BatchSource("files", "/data/*.parquet", "ts", SOURCE_FIELDS)
TOPIC = StreamSource("topic", "t", "ts", SOURCE_FIELDS)


def test_a_batch_view_tiles_by_its_schedule_unless_told_otherwise() -> None:
    by_schedule = BatchFeatureView("b", FILES, [USER], [Aggregate("amount", "sum", TimeWindow(7 * D))],
                                   batch_schedule=D).spec()
    assert by_schedule.aggregation_interval_s == 86_400
    assert by_schedule.aggregates[0].name == "amount_sum_7d_1d"
    explicit = BatchFeatureView("b", FILES, [USER], [Aggregate("amount", "sum", TimeWindow(D))],
                                batch_schedule=D, aggregation_interval=H).spec()
    assert (explicit.aggregation_interval_s, explicit.aggregates[0].name) == (3600, "amount_sum_1d_1h")
    stream = StreamFeatureView("s", TOPIC, [USER], [Aggregate("amount", "sum", TimeWindow(D))]).spec()
    assert (stream.kind, stream.aggregation_interval_s) == (FeatureViewKind.STREAM, None)


def _params(function: AggregationFunction) -> dict[str, int | float]:
    if function.value.endswith("_n"):
        return {"n": 3}
    return {"percentile": 0.25} if function is AggregationFunction.APPROX_PERCENTILE else {}


@pytest.mark.parametrize("window", [TimeWindow(H), TimeWindow(2 * H, -H), LifetimeWindow(),
                                    TimeWindowSeries(-D, -H, H, 2 * H)])
def test_every_function_and_window_gives_a_valid_unique_name(window: TimeWindow) -> None:
    features = [Aggregate("amount", f, window, params=_params(f)) for f in AggregationFunction]
    view = StreamFeatureView("s", TOPIC, [USER], features, aggregation_interval=10 * M).spec()
    repo = RepoSpec(entities=(USER.spec(),), stream_sources=(TOPIC.spec(),), feature_views=(view,))
    assert repo_errors(repo) == []
    assert len({a.name for a in view.aggregates}) == len(AggregationFunction)
