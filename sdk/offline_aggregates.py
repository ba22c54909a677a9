"""Aggregate features offline: each event's windows, merged from the view's stored input rows by the engine.

Rift writes every projected input event of an aggregated stream view offline: its entity key, event time
and the aggregates' input columns. An event at time T gets what get-features serves at request time T:
the same tiles (`engine.tile_key`), the same window spans (`engine.window_spans`: sliding windows end at
the last interval boundary at or before T, continuous windows are (T + offset - size, T + offset]),
the same aggregators merging tile states oldest first, then finalizing. So an empty window gives 0 for
counts and null otherwise, nulls and NaNs are no values, time-window series are lists (oldest first),
lifetime windows start at the view's feature_start_time (rows before it are ignored, as Rift ignores
them), and aggregates have only their implicit TTL: rows outside every window do not count, and the
view's `ttl` is not applied to them (as in serving). Ties on equal event times go to the later write.

Times are integer UTC microseconds here; the engine's float seconds are exact to well below a
microsecond for any date before year 2200, so every comparison comes out the same as in serving.

How it scales: rows and events are grouped by entity and sorted by time once. The tiles an event's window
needs are an index range into its entity's sorted tiles, found for all events at once by one sort; as
the events of an entity move forward in time the range only moves forward, so a two-stack sliding-window
queue merges each tile a constant number of times (amortized) instead of once per event. Python runs only
the engine's own update/merge/finalize, O(rows + events) per aggregate (and per window of a series).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import polars as pl

from engine import Aggregator, aggregator_for, read_span
from events.specs import (
    AggregateSpec,
    AggregationFunction,
    LifetimeWindowSpec,
    TimeWindowSeriesSpec,
    TimeWindowSpec,
    WindowSpec,
)
from stores.offline import EVENT_TIME

ROW = "__fp_row"
TS = "__fp_ts"
_EID, _KEY, _ORDER, _AT = "__fp_entity", "__fp_tile", "__fp_order", "__fp_at"
_US = 1_000_000
_NO_LOWER = -(1 << 62)  # below every tile key: a lifetime window's lower bound
F = AggregationFunction


@dataclass(frozen=True, slots=True)
class AggregatePlan:
    """What the offline aggregation needs of one aggregated feature view."""

    name: str
    join_keys: tuple[str, ...]
    aggregates: tuple[AggregateSpec, ...]
    interval_s: int | None
    feature_start_time: datetime | None

    def output(self, aggregate: str) -> str:
        """Tecton's name for a feature in training data."""
        return f"{self.name}__{aggregate}"

    def columns(self) -> tuple[str, ...]:
        """The distinct input columns of the aggregates: the columns Rift keeps offline for this view."""
        return tuple(dict.fromkeys(a.column for a in self.aggregates))


def input_rows(scan: pl.LazyFrame, plan: AggregatePlan, events: pl.Schema) -> pl.LazyFrame:
    """The stored rows with keys cast to the events' types, `TS` (event time in microseconds) and each
    input column (typed nulls when never written), in write order; rows before feature_start_time dropped."""
    schema = scan.collect_schema()

    def column(name: str) -> pl.Expr:
        return pl.col(name) if name in schema else pl.lit(None).alias(name)

    rows = scan.with_row_index(_ORDER)
    if plan.feature_start_time is not None:
        rows = rows.filter(pl.col(EVENT_TIME) >= plan.feature_start_time)
    keys = [(pl.col(k) if k in schema else pl.lit(None)).cast(events[k], strict=False).alias(k)
            for k in plan.join_keys]
    values = [column(c).alias(_value(i)) for i, c in enumerate(plan.columns())]
    return rows.select(_ORDER, *keys, pl.col(EVENT_TIME).dt.cast_time_unit("us").dt.epoch("us").alias(TS), *values)


def aggregate_events(events: pl.DataFrame, rows: pl.LazyFrame, plan: AggregatePlan) -> pl.DataFrame:
    """`ROW` and one column per aggregate for each event of `events` (columns ROW, TS in microseconds and
    the join keys); an event without a timestamp or with a null key gets nulls."""
    asked = events.select(ROW, pl.col(TS).dt.epoch("us").alias(TS), *plan.join_keys).drop_nulls()
    entities = asked.select(plan.join_keys).unique(maintain_order=True).with_row_index(_EID)
    asked = asked.join(entities, on=list(plan.join_keys)).sort(_EID, TS, maintain_order=True)
    visible = _visible_rows(rows, plan, asked)
    stored = visible.join(entities.lazy(), on=list(plan.join_keys)).with_columns(_tile_key(plan.interval_s))
    stored_rows = stored.sort(_EID, _KEY, _ORDER).collect()
    tiles = stored_rows.select(_EID, _KEY).with_columns(
        (pl.struct(_EID, _KEY) != pl.struct(_EID, _KEY).shift(1)).fill_null(True).alias("__new"))
    starts = tiles["__new"].to_list()
    tile_frame = tiles.filter(pl.col("__new")).select(_EID, _KEY)
    seconds = [t / _US for t in stored_rows[TS].to_list()]  # the engine's event time, as serving has it
    columns = {c: stored_rows[_value(i)].to_list() for i, c in enumerate(plan.columns())}
    out: dict[str, pl.Series] = {ROW: asked[ROW]}
    for spec in plan.aggregates:
        aggregator = aggregator_for(spec)
        states = _tile_states(aggregator, starts, columns[spec.column], seconds)
        windows = [_window_values(aggregator, states, _ranges(tile_frame, asked, span, plan.interval_s))
                   for span in _spans(spec.window, asked[TS], plan.interval_s)]
        values: list[Any] = list(zip(*windows, strict=True)) if isinstance(spec.window, TimeWindowSeriesSpec) \
            else windows[0]
        if isinstance(spec.window, TimeWindowSeriesSpec) and not windows:
            values = [()] * asked.height
        dtype = output_type(spec, stored_rows.schema[_value(plan.columns().index(spec.column))])
        out[plan.output(spec.name)] = pl.Series(plan.output(spec.name), values, dtype=dtype, strict=False)
    return pl.DataFrame(out)


def output_type(spec: AggregateSpec, column: pl.DataType) -> pl.DataType:
    """The polars type of an aggregate's values, from its input column's type."""
    function = F(spec.function)
    base: pl.DataType
    if function in (F.COUNT, F.APPROX_COUNT_DISTINCT):
        base = pl.Int64()
    elif function in (F.SUM, F.MIN, F.MAX, F.LAST):
        base = column if column != pl.Null() else pl.Float64()
    elif function in (F.LAST_N, F.FIRST_N, F.LAST_DISTINCT_N, F.FIRST_DISTINCT_N):
        base = pl.List(column if column != pl.Null() else pl.String())
    else:
        base = pl.Float64()
    return pl.List(base) if isinstance(spec.window, TimeWindowSeriesSpec) else base


def _value(index: int) -> str:
    return f"__fp_value_{index}"


def _tile_key(interval_s: int | None) -> pl.Expr:
    if interval_s is None:
        return pl.col(TS).alias(_KEY)  # continuous: every event time is its own tile
    width = interval_s * _US
    return ((pl.col(TS) // width) * width).alias(_KEY)  # floor division, also before 1970


def _visible_rows(rows: pl.LazyFrame, plan: AggregatePlan, asked: pl.DataFrame) -> pl.LazyFrame:
    """The rows some event's windows can cover: none after the last event, none before every read span of
    the first (a superset: the exact bounds are the spans)."""
    if asked.is_empty():
        return rows.clear()
    earliest, latest = cast(int, asked[TS].min()), cast(int, asked[TS].max())  # not empty: ints
    visible = pl.col(TS) <= latest
    lowers = [read_span(a.window, earliest / _US, plan.interval_s).lower for a in plan.aggregates]
    if None not in lowers:
        lowest = min(x for x in lowers if x is not None)
        visible &= pl.col(TS) >= int(lowest * _US) - _US  # a second of slack for float rounding
    return rows.filter(visible, *(pl.col(k).is_not_null() for k in plan.join_keys))


@dataclass(frozen=True, slots=True)
class _Span:
    """The window of every event as [lower, upper) tile keys (tiled) or (lower, upper] (continuous)."""

    lower: pl.Series
    upper: pl.Series


def _spans(window: WindowSpec, times: pl.Series, interval_s: int | None) -> list[_Span]:
    """`engine.window_spans` for a column of request times in microseconds: one span per window of a
    series (oldest first), else one."""
    def end(moment: pl.Series) -> pl.Series:
        if interval_s is None:
            return moment
        width = interval_s * _US
        return (moment // width) * width

    if isinstance(window, TimeWindowSpec):
        upper = end(times + window.offset_s * _US)
        return [_Span(upper - window.size_s * _US, upper)]
    if isinstance(window, LifetimeWindowSpec):
        upper = end(times)
        return [_Span(pl.Series([_NO_LOWER] * len(times), dtype=pl.Int64()), upper)]
    if window.step_s <= 0 or window.window_s <= 0:
        raise ValueError(f"a series needs a positive step and window size: {window!r}")
    anchor = end(times)
    return [_Span(anchor + start * _US, anchor + (start + window.window_s) * _US)
            for start in range(window.series_start_s, window.series_end_s - window.window_s + 1, window.step_s)]


def _ranges(tiles: pl.DataFrame, asked: pl.DataFrame, span: _Span, interval_s: int | None) -> list[tuple[int, int]]:
    """For each event (in `asked` order), the [first, last) indices of the tiles its span covers; tiles are
    sorted by (entity, key), so the indices count tiles of earlier entities too."""
    continuous = interval_s is None
    return list(zip(_positions(tiles, asked[_EID], span.lower, after_equal=continuous),
                    _positions(tiles, asked[_EID], span.upper, after_equal=continuous), strict=True))


def _positions(tiles: pl.DataFrame, entities: pl.Series, bounds: pl.Series, *, after_equal: bool) -> list[int]:
    """How many tiles sort before (entity, bound): those of earlier entities, and those of the same entity
    with a key below the bound (or at most the bound, `after_equal`). One sort of tiles and bounds together."""
    tile = pl.lit(1, dtype=pl.Int64())
    both = pl.concat([
        tiles.select(pl.col(_EID), pl.col(_KEY), tile.alias("__tile"), pl.lit(None, dtype=pl.Int64()).alias(_AT)),
        pl.DataFrame({_EID: entities, _KEY: bounds, "__tile": pl.Series([0] * len(bounds), dtype=pl.Int64()),
                      _AT: pl.int_range(len(bounds), eager=True, dtype=pl.Int64())}),
    ], how="vertical_relaxed")
    # At an equal key a bound sorts before the tiles (key < bound counted) or after them (key <= bound).
    tie = pl.col("__tile") if not after_equal else 1 - pl.col("__tile")
    counted = both.sort(_EID, _KEY, tie).with_columns((pl.col("__tile").cum_sum() - pl.col("__tile")).alias("__n"))
    return counted.filter(pl.col(_AT).is_not_null()).sort(_AT)["__n"].to_list()


def _tile_states(aggregator: Aggregator[Any], starts: Sequence[bool], values: Sequence[Any],
                 seconds: Sequence[float]) -> list[Any]:
    """One state per tile: its rows (sorted by tile, in write order within one) folded in with `update`."""
    update, empty = aggregator.update, aggregator.empty
    states: list[Any] = []
    for first, value, second in zip(starts, values, seconds, strict=True):
        if first:
            states.append(empty())
        states[-1] = update(states[-1], value, second)
    return states


def _window_values(aggregator: Aggregator[Any], states: Sequence[Any], ranges: Sequence[tuple[int, int]]) -> list[Any]:
    """The finalized merge of states[first:last] for each range; both ends never move back between
    consecutive ranges of one entity, and ranges of later entities lie after earlier ones."""
    queue = _SlidingMerge(aggregator, states)
    values: list[Any] = []
    previous: tuple[int, int] | None = None
    value: Any = None
    for bounds in ranges:
        if bounds != previous:  # events in one interval share their windows
            value = aggregator.finalize(queue.merged(*bounds))
            previous = bounds
        values.append(value)
    return values


class _SlidingMerge:
    """The merge of states[lo:hi] in order, as lo and hi only move forward: Tangwongsan et al.'s two stacks.

    `front[-1]` is the merge of states[lo:mid], `front[-2]` that of states[lo + 1:mid], and so on; `back` is
    the merge of states[mid:hi]. Dropping the oldest state pops `front`; when `front` is empty, the back
    part is turned into suffix merges. Merges keep the states' order, so `last` ties resolve as in serving.
    """

    def __init__(self, aggregator: Aggregator[Any], states: Sequence[Any]) -> None:
        self._agg, self._states = aggregator, states
        self._lo = self._mid = self._hi = 0
        self._front: list[Any] = []
        self._back: Any = aggregator.empty()

    def merged(self, lo: int, hi: int) -> Any:
        merge, states = self._agg.merge, self._states
        if lo >= self._hi or lo < self._lo or hi < self._hi:  # no overlap (a new entity), or not forward: start over
            self._lo = self._mid = self._hi = lo
            self._front, self._back = [], self._agg.empty()
        while self._hi < hi:
            self._back = merge(self._back, states[self._hi])
            self._hi += 1
        while self._lo < lo:
            if not self._front:
                self._flip()
            self._front.pop()
            self._lo += 1
        return merge(self._front[-1], self._back) if self._front else self._back

    def _flip(self) -> None:
        merge, states = self._agg.merge, self._states
        suffix = self._agg.empty()
        for index in range(self._hi - 1, self._mid - 1, -1):
            suffix = merge(states[index], suffix)
            self._front.append(suffix)
        self._mid, self._back = self._hi, self._agg.empty()


def ranged_request_times(rows: pl.LazyFrame, plan: AggregatePlan, start: datetime, end: datetime) -> pl.LazyFrame:
    """For `get_features_in_range`: one request per entity and tile holding an event in [start, end), at
    the moment that tile is first served (its end; continuous: the event time), and until the next one can
    change the values (interval: one interval later; continuous: null, as windows slide continuously)."""
    key = _tile_key(plan.interval_s)
    first, stop = _micros(start), _micros(end)
    width = 0 if plan.interval_s is None else plan.interval_s * _US
    requests = (rows.filter(pl.col(TS) >= first, pl.col(TS) < stop, *(pl.col(k).is_not_null() for k in plan.join_keys))
                .select(*plan.join_keys, (key + width).alias(_AT)).unique(maintain_order=True))
    valid_to = pl.lit(None, dtype=pl.Int64()) if not width else pl.col(_AT) + width
    return requests.select(*plan.join_keys, _as_time(pl.col(_AT)).alias("_valid_from"),
                           _as_time(valid_to).alias("_valid_to"))


def _micros(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _as_time(micros: pl.Expr) -> pl.Expr:
    return micros.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
