"""Tiles and windows: boundaries, offsets, lifetime, series, and aggregates against the reference."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import (
    Span,
    aggregate,
    aggregate_events,
    aggregator_for,
    build_tiles,
    epoch_seconds,
    read_span,
    tile_key,
    tile_start,
    window_spans,
)
from events.specs import AggregateSpec, LifetimeWindowSpec, TimeWindowSeriesSpec, TimeWindowSpec, WindowSpec
from tests.unit.engine.reference import Event, assert_same, reference
from tests.unit.engine.strategies import EXACT, F, columns, params_for

DAY = 86_400


def _spec(function: F, window: WindowSpec) -> AggregateSpec:
    return AggregateSpec(f"x_{function}", "x", function.value, window, params_for(function))


@pytest.mark.parametrize(("time", "interval", "start"), [
    (120, 60, 120),  # exactly on a boundary: the tile that starts there
    (119.999, 60, 60),
    (0, 60, 0),
    (-0.5, 60, -60),  # before 1970: still floor, not truncation
    (1_700_000_123.25, 3600, 1_699_999_200),
])
def test_tile_start_is_the_floor_to_the_interval(time: float, interval: int, start: int) -> None:
    assert tile_start(time, interval) == start
    assert tile_key(time, interval) == start
    assert tile_key(time, None) == time  # continuous: one tile per event time


def test_a_window_ends_at_the_last_interval_boundary() -> None:
    window = TimeWindowSpec(300)
    assert window_spans(window, 1000, 60) == (Span(660, 960, continuous=False),)
    assert window_spans(window, 960, 60) == (Span(660, 960, continuous=False),)  # a request on a boundary
    assert window_spans(TimeWindowSpec(300, -120), 1000, 60) == (Span(540, 840, continuous=False),)
    tiled, continuous = Span(660, 960, continuous=False), Span(700, 1000, continuous=True)
    assert [tiled.covers(k) for k in (600, 660, 900, 960)] == [False, True, True, False]
    assert [continuous.covers(k) for k in (700, 700.5, 1000, 1000.5)] == [False, True, True, False]


def test_events_on_window_boundaries() -> None:
    spec = _spec(F.LAST_N, TimeWindowSpec(300))  # n = 3
    events: list[Event] = [(659.5, "before"), (660.0, "first"), (959.9, "last"), (960.0, "tile not closed")]
    assert aggregate_events(spec, 60, events, 1000.0) == ("first", "last")
    # continuous: (T - S, T], so the event at T - S is out and the one at T is in
    continuous: list[Event] = [(700.0, "out"), (700.5, "in"), (1000.0, "at T"), (1000.5, "future")]
    assert aggregate_events(spec, None, continuous, 1000.0) == ("in", "at T")


def test_an_offset_window_shifts_back_whole_intervals() -> None:
    spec = _spec(F.SUM, TimeWindowSpec(2 * DAY, -DAY))
    events = [(d * DAY + 5.0, 10**d) for d in range(6)]  # day d holds 10^d
    assert aggregate_events(spec, DAY, events, 5 * DAY + 100.0) == 10**2 + 10**3  # days 2 and 3
    # hourly tiles: the window ends at the hour, [2d 2h, 4d 2h), so it holds the events of days 3 and 4
    assert aggregate_events(spec, 3600, events, 5 * DAY + 7300.0) == 10**3 + 10**4


def test_lifetime_covers_every_closed_tile() -> None:
    spec = _spec(F.COUNT, LifetimeWindowSpec())
    events: list[Event] = [(-1e9, 1), (0.0, 1), (899.0, 1), (900.0, 1)]
    assert window_spans(LifetimeWindowSpec(), 1000, 300) == (Span(None, 900, continuous=False),)
    assert aggregate_events(spec, 300, events, 1000.0) == 3
    assert aggregate_events(spec, None, events, 900.0) == 4


def test_the_series_of_the_tecton_example() -> None:
    # seven daily sums before the request, oldest first; empty days are None
    start = datetime(2022, 5, 14, tzinfo=UTC)
    events = [(epoch_seconds(start + timedelta(days=i)), v) for i, v in enumerate((1, 3, 6, 11, 23))]
    spec = _spec(F.SUM, TimeWindowSeriesSpec(-7 * DAY, 0, DAY, DAY))
    request = epoch_seconds(datetime(2022, 5, 19, 0, 0, 1, tzinfo=UTC))
    assert aggregate_events(spec, DAY, events, request) == (None, None, 1, 3, 6, 11, 23)


def test_series_windows_may_overlap_and_end_before_the_request() -> None:
    series = TimeWindowSeriesSpec(-180, -60, 60, 120)
    assert window_spans(series, 1000, 60) == (Span(780, 900, continuous=False),)
    overlapping = TimeWindowSeriesSpec(-180, 0, 60, 120)
    assert window_spans(overlapping, 1000, 60) == (Span(780, 900, False), Span(840, 960, False))
    assert window_spans(TimeWindowSeriesSpec(-60, 0, 60, 120), 1000, 60) == ()  # no window fits
    assert window_spans(TimeWindowSeriesSpec(-30, 0, 10, 10), 1000.5, None) == (
        Span(970.5, 980.5, True), Span(980.5, 990.5, True), Span(990.5, 1000.5, True))


def test_read_span_holds_every_window_of_a_series() -> None:
    series = TimeWindowSeriesSpec(-7 * 60, -60, 120, 180)
    spans = window_spans(series, 1000, 60)
    hull = read_span(series, 1000, 60)
    assert spans == (Span(540, 720, False), Span(660, 840, False))
    assert hull == Span(540, 840, False)
    assert hull.tile_starts(60) == range(540, 840, 60)
    assert read_span(LifetimeWindowSpec(), 1000, 60).lower is None
    with pytest.raises(ValueError, match="bounded"):
        read_span(LifetimeWindowSpec(), 1000, 60).tile_starts(60)


def test_out_of_order_events_update_their_own_tile() -> None:
    agg = aggregator_for(_spec(F.COUNT, LifetimeWindowSpec()))
    tiles = build_tiles(agg, 60, [(500.0, "x"), (100.0, "late"), (505.0, "y"), (119.9, "later"), (120.0, "z")])
    assert tiles == {480: 2, 60: 2, 120: 1}
    in_order = build_tiles(agg, 60, [(100.0, "late"), (119.9, "later"), (120.0, "z"), (500.0, "x"), (505.0, "y")])
    assert tiles == in_order


def test_aggregate_reads_stored_tiles_and_ignores_the_others() -> None:
    spec = _spec(F.MAX, TimeWindowSpec(120))
    agg = aggregator_for(spec)
    stored = {t: agg.decode(agg.encode(agg.update(agg.empty(), v, t))) for t, v in [(0, 9), (60, 1), (120, 2),
                                                                                       (180, 7)]}
    assert aggregate(spec, 60, stored, 185.0) == 2  # tiles 60 and 120; 0 too old, 180 still open


def test_naive_datetimes_have_no_epoch() -> None:
    assert epoch_seconds(datetime(1970, 1, 1, 0, 1, tzinfo=UTC)) == 60
    with pytest.raises(ValueError, match="naive"):
        epoch_seconds(datetime(2024, 1, 1))  # noqa: DTZ001


# --- the property: aggregates over tiles equal the reference over the raw events of each window ---

@st.composite
def windows(draw: st.DrawFn, interval: int | None) -> WindowSpec:
    unit = interval or draw(st.integers(1, 7))  # continuous windows need not be whole intervals
    kind = draw(st.sampled_from(["time", "lifetime", "series"]))
    if kind == "time":
        return TimeWindowSpec(unit * draw(st.integers(1, 6)), -unit * draw(st.integers(0, 3)))
    if kind == "lifetime":
        return LifetimeWindowSpec()
    end = -unit * draw(st.integers(0, 3))
    start = end - unit * draw(st.integers(1, 8))
    return TimeWindowSeriesSpec(start, end, unit * draw(st.integers(1, 3)), unit * draw(st.integers(1, 4)))


def _reference_windows(window: WindowSpec, request: float, interval: int | None) -> list[tuple[float, float]]:
    """(lower, upper) event-time bounds, written out from the definitions in the engine's docs."""
    def end(time: float) -> float:
        return time if interval is None else math.floor(time / interval) * interval
    if isinstance(window, TimeWindowSpec):
        upper = end(request + window.offset_s)
        return [(upper - window.size_s, upper)]
    if isinstance(window, LifetimeWindowSpec):
        return [(-math.inf, end(request))]
    bounds, start = [], window.series_start_s  # offsets from the end, in whole seconds: no float drift
    while start + window.window_s <= window.series_end_s:
        bounds.append((end(request) + start, end(request) + start + window.window_s))
        start += window.step_s
    return bounds


def _inside(time: float, lower: float, upper: float, continuous: bool) -> bool:
    return lower < time <= upper if continuous else lower <= time < upper


@settings(max_examples=400)
@given(st.data(), st.sampled_from(EXACT), st.sampled_from([None, 1, 5, 10]))
def test_aggregate_over_tiles_equals_the_reference_over_raw_events(
        data: st.DataObject, function: F, interval: int | None) -> None:
    events = data.draw(columns(function))
    window = data.draw(windows(interval))
    request = data.draw(st.one_of(st.integers(-5, 60).map(float), st.floats(-5, 60)))
    spec = AggregateSpec("f", "x", function.value, window, params_for(function))
    agg = aggregator_for(spec)
    # the tiles as a store would hold them: encoded and decoded
    tiles = {k: agg.decode(agg.encode(s)) for k, s in build_tiles(agg, interval, events).items()}
    actual = aggregate(spec, interval, tiles, request)
    expected = [reference(function, spec.params, [e for e in events if _inside(e[0], lo, hi, interval is None)])
                for lo, hi in _reference_windows(window, request, interval)]
    if not isinstance(window, TimeWindowSeriesSpec):
        assert_same(function, actual, expected[0], events)
        return
    assert isinstance(actual, tuple)
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        assert_same(function, got, want, events)
