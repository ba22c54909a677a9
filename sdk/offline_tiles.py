"""The tiles of many entities at once, and each event's windows over them (see `sdk.offline_aggregates`).

Rows come sorted by (entity, tile key, write order). A window is a range of positions in that order: the
rows (or tiles) of the event's entity whose key lies between the window's bounds, found for all events by
one sort of the keys and the bounds together. Counts, and sums and means of integers, are differences
of running totals at the two ends (exact, vectorized). Everything else folds each tile with the engine's
`update` and merges ranges of tile states with a sliding two-stack queue: ranges only move forward as an
entity's events move forward in time, so each tile is merged a constant number of times (amortized).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from engine import Aggregator
from events.specs import AggregateSpec, AggregationFunction

EID, KEY, ORDER, TS = "__fp_entity", "__fp_tile", "__fp_order", "__fp_ts"
US = 1_000_000
_NO_LOWER = -(1 << 62)  # below every tile key
_AT, _IS_ROW = "__fp_at", "__fp_is_row"
F = AggregationFunction


@dataclass(frozen=True, slots=True)
class Bound:
    """One end of a window for every event: the window end, `end(T + offset)`, plus `delta` (microseconds);
    `end` floors to the interval (tiled) or is the identity (continuous). `lowest`: no bound (lifetime)."""

    offset: int = 0
    delta: int = 0
    lowest: bool = False


Span = tuple[Bound, Bound]  # [lower, upper) of tile starts (tiled), (lower, upper] of event times (continuous)


class TileTable:
    """The sorted rows of the asked entities, and the windows of the events `asked` (EID, TS; sorted)."""

    def __init__(self, rows: pl.DataFrame, asked: pl.DataFrame, interval_s: int | None) -> None:
        self.rows, self._asked, self._interval_s = rows, asked, interval_s
        first = (pl.struct(EID, KEY) != pl.struct(EID, KEY).shift(1)).fill_null(True)
        self._starts = rows.select(first.alias("first"))["first"]
        self._levels = {True: rows.select(EID, KEY), False: rows.select(EID, KEY).filter(self._starts)}
        self._positions: dict[tuple[Bound, bool], pl.Series] = {}
        self._seconds: list[float] | None = None

    def windows(self, spec: AggregateSpec, aggregator: Aggregator[Any], column: str,
                spans: Sequence[Span]) -> list[pl.Series | list[Any]]:
        """Each span's value for every event (in `asked` order): a Series when vectorized, else a list."""
        if _summable(spec, self.rows.schema[column]):
            return [self._by_running_totals(spec, column, span) for span in spans]
        states = self._states(spec, aggregator, column)
        return [_window_values(aggregator, states, self.positions(lower, False), self.positions(upper, False))
                for lower, upper in spans]

    def positions(self, bound: Bound, rows: bool) -> pl.Series:
        """For each event, how many rows (or tiles) sort before its entity's bound: those of earlier
        entities, and its own with a key below the bound (continuous: at most the bound)."""
        cached = self._positions.get((bound, rows))
        if cached is None:
            cached = self._positions[(bound, rows)] = self._count_before(bound, self._levels[rows])
        return cached

    def _count_before(self, bound: Bound, keys: pl.DataFrame) -> pl.Series:
        asked = self._asked
        bounds = pl.Series([_NO_LOWER] * asked.height, dtype=pl.Int64()) if bound.lowest else \
            self._end(asked[TS] + bound.offset * US) + bound.delta * US
        both = pl.concat([
            keys.select(EID, KEY, pl.lit(1, dtype=pl.Int64()).alias(_IS_ROW),
                        pl.lit(None, dtype=pl.UInt32()).alias(_AT)),
            pl.DataFrame({EID: asked[EID], KEY: bounds, _IS_ROW: pl.Series([0] * asked.height, dtype=pl.Int64())})
            .with_row_index(_AT).select(EID, KEY, _IS_ROW, _AT),
        ], how="vertical_relaxed")
        # On an equal key a bound sorts before the rows (tiled: keys below it count) or after (continuous).
        tie = pl.col(_IS_ROW) if self._interval_s is not None else 1 - pl.col(_IS_ROW)
        counted = both.sort(EID, KEY, tie).with_columns((pl.col(_IS_ROW).cum_sum() - pl.col(_IS_ROW)).alias("n"))
        return counted.filter(pl.col(_AT).is_not_null()).sort(_AT)["n"]

    def _end(self, moment: pl.Series) -> pl.Series:
        if self._interval_s is None:
            return moment
        width = self._interval_s * US
        return (moment // width) * width  # floor division, also before 1970

    def _by_running_totals(self, spec: AggregateSpec, column: str, span: Span) -> pl.Series:
        """count, sum or mean over each event's rows: running totals at the upper end minus the lower."""
        function, value = F(spec.function), pl.col(column)
        present = value.is_not_null()
        if self.rows.schema[column].is_float():
            present &= ~value.is_nan().fill_null(True)  # NaN is not a value, as in the engine
        summed = value.fill_null(0).cast(pl.Int64()) if function is not F.COUNT else pl.lit(0, dtype=pl.Int64())
        totals = self.rows.select(present.cast(pl.Int64()).cum_sum().alias("n"), summed.cum_sum().alias("s"))
        zero = pl.DataFrame({"n": [0], "s": [0]}, schema={"n": pl.Int64(), "s": pl.Int64()})
        running = pl.concat([zero, totals])  # running[i]: the totals of the first i rows
        first, last = self.positions(span[0], True), self.positions(span[1], True)
        window = pl.DataFrame({c: running[c].gather(last) - running[c].gather(first) for c in ("n", "s")})
        n, total = pl.col("n"), pl.col("s")
        result = {F.COUNT: n, F.SUM: pl.when(n > 0).then(total), F.MEAN: pl.when(n > 0).then(total / n)}
        return window.select(result[function].alias("value"))["value"]

    def _states(self, spec: AggregateSpec, aggregator: Aggregator[Any], column: str) -> list[Any]:
        """One state per tile: what the engine's `update` folds from the tile's rows in write order. min,
        max, and float sums and means, are polars aggregations (float sums then add in polars' order: equal
        up to rounding, as serving's are, whose sums depend on how Rift's batches split the events)."""
        fast = _FAST.get(F(spec.function))
        if fast is not None:
            value = pl.col(column)
            if self.rows.schema[column].is_float():
                value = value.fill_nan(None)  # NaN is not a value, as in the engine
            return self.rows.group_by(EID, KEY, maintain_order=True).agg(fast(value).alias("state"))["state"].to_list()
        if self._seconds is None:  # the engine's event time, as serving has it
            self._seconds = [t / US for t in self.rows[TS].to_list()]
        update, empty = aggregator.update, aggregator.empty
        states: list[Any] = []
        for first, value, second in zip(self._starts.to_list(), self.rows[column].to_list(), self._seconds,
                                        strict=True):
            if first:
                states.append(empty())
            states[-1] = update(states[-1], value, second)
        return states


def _summable(spec: AggregateSpec, dtype: pl.DataType) -> bool:
    """Exact from running totals: counts, and sums and means of integers (below 2^53, where a float
    quotient rounds as Python's int division does)."""
    function = F(spec.function)
    return function is F.COUNT or (function in (F.SUM, F.MEAN) and (dtype.is_integer() or dtype == pl.Null()))


# The engine's tile states of the simplest functions, as polars aggregations of a tile's values.
_FAST: dict[F, Callable[[pl.Expr], pl.Expr]] = {
    F.SUM: lambda value: pl.when(value.count() > 0).then(value.sum()),
    F.MEAN: lambda value: pl.concat_list(value.count(), value.sum()),
    F.MIN: lambda value: value.min(),
    F.MAX: lambda value: value.max(),
}


def _window_values(aggregator: Aggregator[Any], states: Sequence[Any], first: pl.Series, last: pl.Series) -> list[Any]:
    """The finalized merge of states[first:last] for each range; both ends never move back between
    consecutive ranges of one entity, and ranges of later entities lie after earlier ones."""
    queue = _SlidingMerge(aggregator, states)
    values: list[Any] = []
    previous: tuple[int, int] | None = None
    value: Any = None
    for bounds in zip(first.to_list(), last.to_list(), strict=True):
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
        if lo >= self._hi or lo < self._lo or hi < self._hi:  # a new entity (or not forward): start over
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
