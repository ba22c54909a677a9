"""Offline aggregates against the plain-Python reference and against serving's engine path, on random data.

Rows arrive in random commits (out of order and late, with equal event times), events ask at random
times (on interval boundaries too); windows of every kind, with an interval and continuous. For each
event and aggregate the offline value must be the reference's value over the events its window covers
(written for clarity: which events fall in the window, then `reference`), and exactly what serving
computes from tiles (`engine.aggregate_events`, the online path) at that request time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import aggregate_events
from events.data import Coordinates, FeatureRow, Scalar, SourceRange, WriteOfflineRows
from events.specs import (
    NUMERIC_FUNCTIONS,
    AggregateSpec,
    EntitySpec,
    FeatureServiceSpec,
    FeatureViewSpec,
    LifetimeWindowSpec,
    RepoSpec,
    TimeWindowSeriesSpec,
    TimeWindowSpec,
    WindowSpec,
)
from sdk.offline import OfflineFeatures, workspace_of
from stores.offline import InMemoryOfflineStore, OfflineWrite
from tests.unit.engine.reference import assert_same, reference
from tests.unit.engine.strategies import APPROXIMATE, F, params_for

T0 = datetime(2026, 11, 26, 12, tzinfo=UTC)
US = timedelta(microseconds=1)
USERS = ("u0", "u1", "u2")

# On a 30-second grid give or take a microsecond: ties, and times exactly on interval boundaries.
times = st.builds(lambda steps, jitter: T0 + timedelta(seconds=30 * steps) + jitter * US,
                  st.integers(0, 40), st.sampled_from([-1, 0, 0, 0, 1]))
amounts = st.none() | st.integers(-50, 50) | st.sampled_from([0.5, -2.25, math.nan])
merchants = st.none() | st.sampled_from(["a", "b", "c", "d"])
rows = st.tuples(st.sampled_from(USERS), times, amounts, merchants)
commits = st.lists(st.lists(rows, min_size=1, max_size=10), min_size=1, max_size=5)
windows: st.SearchStrategy[WindowSpec] = st.one_of(
    st.builds(TimeWindowSpec, st.sampled_from([60, 300, 600, 900]), st.sampled_from([0, 0, -60, -300])),
    st.just(LifetimeWindowSpec()),
    st.builds(lambda step, count, end: TimeWindowSeriesSpec(end - step * count, end, step, step),
              st.sampled_from([60, 300]), st.integers(1, 4), st.sampled_from([0, -60])),
)


@st.composite
def aggregates(draw: st.DrawFn) -> AggregateSpec:
    function = draw(st.sampled_from(sorted(F)))
    column = "amount" if function in NUMERIC_FUNCTIONS else draw(st.sampled_from(["amount", "merchant"]))
    params = params_for(function)
    if function is F.APPROX_PERCENTILE:
        params = {"percentile": 0.5, "precision": 100}
    return AggregateSpec(f"f{draw(st.integers(0, 10**6))}", column, function.value, draw(windows), params)


specs = st.lists(aggregates(), min_size=1, max_size=4, unique_by=lambda a: a.name)
intervals = st.sampled_from([None, 60, 300])
starts = st.none() | st.builds(lambda m: T0 + timedelta(minutes=m), st.integers(5, 20))
request_times = st.builds(lambda t, s: t + timedelta(seconds=s), times, st.sampled_from([0, 1, 45, 600]))
requests = st.lists(st.tuples(st.sampled_from([*USERS, "nobody"]), request_times), min_size=1, max_size=25)

Row = tuple[str, datetime, Scalar, Scalar]


def offline_for(commits: Sequence[Sequence[Row]], aggs: Sequence[AggregateSpec], interval: int | None,
                start: datetime | None) -> OfflineFeatures:
    view = FeatureViewSpec("spend", ("user",), "src", (), aggregates=tuple(aggs), aggregation_interval_s=interval,
                           feature_start_time=start)
    repo = RepoSpec(entities=(EntitySpec("user", ("user_id",)),), feature_views=(view,),
                    feature_services=(FeatureServiceSpec("svc", ("spend",)),))
    store = InMemoryOfflineStore()
    for offset, commit in enumerate(commits):
        written = tuple(FeatureRow((user,), when, {"amount": amount, "merchant": merchant})
                        for user, when, amount, merchant in commit)
        write = WriteOfflineRows("spend", ("user_id",), written, SourceRange("src", 0, offset, offset))
        store.append([OfflineWrite(Coordinates("offline-writes", 0, offset), "prod", write, f"e{offset}")])
    return OfflineFeatures(store, workspace_of(repo, "prod"))


def in_window(window: WindowSpec, interval: int | None, request: float) -> list[tuple[float | None, float]]:
    """The windows of a request at `request` (seconds), as documented: (lower, upper) of event times
    (continuous: lower < t <= upper) or of tile starts (interval: lower <= start < upper)."""
    def end(moment: float) -> float:
        return moment if interval is None else math.floor(moment / interval) * interval

    if isinstance(window, TimeWindowSpec):
        upper = end(request + window.offset_s)
        return [(upper - window.size_s, upper)]
    if isinstance(window, LifetimeWindowSpec):
        return [(None, end(request))]
    anchor, spans = end(request), []
    start = window.series_start_s
    while start + window.window_s <= window.series_end_s:
        spans.append((anchor + start, anchor + start + window.window_s))
        start += window.step_s
    return spans


def covered(time: float, span: tuple[float | None, float], interval: int | None) -> bool:
    lower, upper = span
    if interval is None:
        return (lower is None or lower < time) and time <= upper
    tile = math.floor(time / interval) * interval
    return (lower is None or lower <= tile) and tile < upper


def expected(spec: AggregateSpec, interval: int | None, events: list[tuple[float, Scalar]], request: float) -> Any:
    values = [reference(F(spec.function), spec.params, [e for e in events if covered(e[0], span, interval)])
              for span in in_window(spec.window, interval, request)]
    return tuple(values) if isinstance(spec.window, TimeWindowSeriesSpec) else values[0]


def tuples(value: Any) -> Any:
    """Polars gives lists (and Series for list cells); the engine gives tuples."""
    if isinstance(value, pl.Series):
        value = value.to_list()
    return tuple(tuples(v) for v in value) if isinstance(value, list | tuple) else value


def check(spec: AggregateSpec, actual: Any, wanted: Any, events: list[tuple[float, Scalar]]) -> None:
    actual, wanted = tuples(actual), tuples(wanted)
    if isinstance(spec.window, TimeWindowSeriesSpec):
        assert isinstance(actual, tuple), actual
        assert len(actual) == len(wanted), (actual, wanted)
        for one, other in zip(actual, wanted, strict=True):
            assert_same(F(spec.function), one, other, events)
    else:
        assert_same(F(spec.function), actual, wanted, events)


@settings(max_examples=200, deadline=None)
@given(commits, specs, intervals, starts, requests)
def test_offline_aggregates_equal_the_reference_and_serving(
        commits: list[list[Row]], aggs: list[AggregateSpec], interval: int | None, start: datetime | None,
        asked: list[tuple[str, datetime]]) -> None:
    offline = offline_for(commits, aggs, interval, start)
    frame = pl.DataFrame({"user_id": [u for u, _ in asked], "ts": [t for _, t in asked]},
                         schema={"user_id": pl.String(), "ts": pl.Datetime("us", "UTC")})
    result = offline.get_features_for_events(frame, "svc", "ts")
    assert result.height == len(asked)
    stored = [row for commit in commits for row in commit if start is None or row[1] >= start]  # write order
    widened = any(isinstance(r[2], float) for r in stored)  # the store widens an int column to floats
    for index, (user, when) in enumerate(asked):
        request = when.timestamp()
        for spec in aggs:
            column = 2 if spec.column == "amount" else 3
            events = [(r[1].timestamp(), float(v) if widened and isinstance(v := r[column], int) else r[column])
                      for r in stored if r[0] == user]
            actual = result[f"spend__{spec.name}"][index]
            served = aggregate_events(spec, interval, events, request)  # the online path: tiles, then windows
            check(spec, actual, served, events)
            if F(spec.function) not in APPROXIMATE:
                check(spec, actual, expected(spec, interval, events, request), events)
