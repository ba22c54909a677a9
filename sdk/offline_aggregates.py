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

How it scales (`sdk.offline_tiles`): rows and events are grouped by entity and sorted by time once; an
event's window is a range of positions in its entity's sorted rows, found for all events by one sort per
distinct window bound. Counts, and sums and means of integers, are differences of running totals
(vectorized); every other function merges tile states with the engine, in one forward sweep per
aggregate, O(rows + events), never once per (event, row).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import polars as pl

from engine import aggregator_for, read_span
from events.specs import (
    AggregateSpec,
    AggregationFunction,
    LifetimeWindowSpec,
    TimeWindowSeriesSpec,
    TimeWindowSpec,
    WindowSpec,
)
from sdk.offline_tiles import EID, KEY, ORDER, TS, US, Bound, Span, TileTable
from stores.offline import EVENT_TIME

ROW = "__fp_row"
_AT = "__fp_at"
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

    rows = scan.with_row_index(ORDER)
    if plan.feature_start_time is not None:
        rows = rows.filter(pl.col(EVENT_TIME) >= plan.feature_start_time)
    keys = [(pl.col(k) if k in schema else pl.lit(None)).cast(events[k], strict=False).alias(k)
            for k in plan.join_keys]
    values = [column(c).alias(_value(i)) for i, c in enumerate(plan.columns())]
    return rows.select(ORDER, *keys, pl.col(EVENT_TIME).dt.cast_time_unit("us").dt.epoch("us").alias(TS), *values)


def aggregate_events(events: pl.DataFrame, rows: pl.LazyFrame, plan: AggregatePlan) -> pl.DataFrame:
    """`ROW` and one column per aggregate for each event of `events` (columns ROW, TS as a datetime and
    the join keys); an event without a timestamp or with a null key gets nulls."""
    asked = events.select(ROW, pl.col(TS).dt.epoch("us").alias(TS), *plan.join_keys).drop_nulls()
    entities = asked.select(plan.join_keys).unique(maintain_order=True).with_row_index(EID)
    asked = asked.join(entities, on=list(plan.join_keys)).sort(EID, TS, maintain_order=True)
    visible = _visible_rows(rows, plan, asked)
    stored = visible.join(entities.lazy(), on=list(plan.join_keys)).with_columns(_tile_key(plan.interval_s))
    tiles = TileTable(stored.sort(EID, KEY, ORDER).collect(), asked.select(EID, TS), plan.interval_s)
    out: dict[str, pl.Series] = {ROW: asked[ROW]}
    for spec in plan.aggregates:
        column = _value(plan.columns().index(spec.column))
        windows = tiles.windows(spec, aggregator_for(spec), column, _spans(spec.window))
        name = plan.output(spec.name)
        dtype = output_type(spec, tiles.rows.schema[column])
        out[name] = _column(name, windows, dtype, asked.height, series=isinstance(spec.window, TimeWindowSeriesSpec))
    return pl.DataFrame(out)


def _column(name: str, windows: list[pl.Series | list[Any]], dtype: pl.DataType, height: int, *,
            series: bool) -> pl.Series:
    """One value per event, or (a time-window series) a list of one value per window."""
    if not series:
        only = windows[0]
        return only.cast(dtype).alias(name) if isinstance(only, pl.Series) else \
            pl.Series(name, only, dtype=dtype, strict=False)
    lists = [w.to_list() if isinstance(w, pl.Series) else w for w in windows]
    values = list(zip(*lists, strict=True)) if lists else [()] * height
    return pl.Series(name, values, dtype=dtype, strict=False)


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
        return pl.col(TS).alias(KEY)  # continuous: every event time is its own tile
    width = interval_s * US
    return ((pl.col(TS) // width) * width).alias(KEY)  # floor division, also before 1970


def _visible_rows(rows: pl.LazyFrame, plan: AggregatePlan, asked: pl.DataFrame) -> pl.LazyFrame:
    """The rows some event's windows can cover: none after the last event, none before every read span of
    the first (a superset: the exact bounds are the spans)."""
    if asked.is_empty():
        return rows.clear()
    earliest, latest = cast(int, asked[TS].min()), cast(int, asked[TS].max())  # not empty: ints
    visible = pl.col(TS) <= latest
    lowers = [read_span(a.window, earliest / US, plan.interval_s).lower for a in plan.aggregates]
    if None not in lowers:
        lowest = min(x for x in lowers if x is not None)
        visible &= pl.col(TS) >= int(lowest * US) - US  # a second of slack for float rounding
    return rows.filter(visible, *(pl.col(k).is_not_null() for k in plan.join_keys))


def _spans(window: WindowSpec) -> list[Span]:
    """`engine.window_spans` as bounds relative to each event's time: one span per window of a series
    (oldest first), else one."""
    if isinstance(window, TimeWindowSpec):
        return [(Bound(window.offset_s, -window.size_s), Bound(window.offset_s))]
    if isinstance(window, LifetimeWindowSpec):
        return [(Bound(lowest=True), Bound())]
    if window.step_s <= 0 or window.window_s <= 0:
        raise ValueError(f"a series needs a positive step and window size: {window!r}")
    return [(Bound(0, start), Bound(0, start + window.window_s))
            for start in range(window.series_start_s, window.series_end_s - window.window_s + 1, window.step_s)]


def ranged_request_times(rows: pl.LazyFrame, plan: AggregatePlan, start: datetime, end: datetime) -> pl.LazyFrame:
    """For `get_features_in_range`: one request per entity and tile holding an event in [start, end), at
    the moment that tile is first served (its end; continuous: the event time), and until the next one can
    change the values (interval: one interval later; continuous: null, as windows slide continuously)."""
    key = _tile_key(plan.interval_s)
    first, stop = _micros(start), _micros(end)
    width = 0 if plan.interval_s is None else plan.interval_s * US
    requests = (rows.filter(pl.col(TS) >= first, pl.col(TS) < stop, *(pl.col(k).is_not_null() for k in plan.join_keys))
                .select(*plan.join_keys, (key + width).alias(_AT)).unique(maintain_order=True))
    valid_to = pl.lit(None, dtype=pl.Int64()) if not width else pl.col(_AT) + width
    return requests.select(*plan.join_keys, _as_time(pl.col(_AT)).alias("_valid_from"),
                           _as_time(valid_to).alias("_valid_to"))


def _micros(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _as_time(micros: pl.Expr) -> pl.Expr:
    return micros.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
