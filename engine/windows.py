"""Tiles, the windows of a request, and the aggregate of a window computed from tiles.

With an aggregation interval I (seconds), an event at time t lands in the tile starting at
floor(t / I) * I (UTC epoch seconds). A window of size S and offset O (<= 0) requested at time T ends
at the last interval boundary, end = floor((T + O) / I) * I, and covers the tiles starting in
[end - S, end): events in [end - S, end), so a tile still filling up is never served. A lifetime window
covers every tile starting before the end.

Continuous views (no interval) keep one "tile" per event time instead, keyed by the exact time, and a
window covers exactly the event times in (T + O - S, T + O].

A time-window series with start A, end B (A < B <= 0), step P and window size W is the windows
[A + k P, A + k P + W) (continuous: left-open, right-closed) for k = 0, 1, ... while A + k P + W <= B,
relative to the same end as above (floor(T / I) * I, or T); its value is a tuple of one value per
window, oldest first. With A = -7d, B = 0, P = W = 1d that is the seven days before the request.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias, TypeVar, cast

from engine.aggregates import aggregator_for
from engine.base import Aggregator, FeatureValue, Seconds
from events.data import Scalar
from events.specs import AggregateSpec, LifetimeWindowSpec, TimeWindowSeriesSpec, TimeWindowSpec, WindowSpec

S = TypeVar("S")
# Tile keys: int tile starts, or float event times when continuous (Mapping's key type is invariant).
Tiles: TypeAlias = Mapping[int, S] | Mapping[float, S]


def epoch_seconds(moment: datetime) -> Seconds:
    """The engine's time: UTC epoch seconds of a tz-aware datetime."""
    if moment.tzinfo is None:
        raise ValueError(f"a naive datetime has no instant: {moment!r}")
    return moment.timestamp()


def tile_start(event_time: Seconds, interval_s: int) -> int:
    """The start of the tile holding `event_time`: floor(t / I) * I, also before 1970."""
    return int(event_time // interval_s) * interval_s


def tile_key(event_time: Seconds, interval_s: int | None) -> Seconds:
    """The key of the tile an event updates: its tile's start, or the event time itself when continuous."""
    return event_time if interval_s is None else tile_start(event_time, interval_s)


@dataclass(frozen=True, slots=True)
class Span:
    """One window as a range of tile keys.

    Tiled: keys (tile starts) in [lower, upper). Continuous: keys (event times) in (lower, upper].
    `lower` None: no lower bound (a lifetime window).
    """

    lower: Seconds | None
    upper: Seconds
    continuous: bool

    def covers(self, key: Seconds) -> bool:
        if self.continuous:
            return (self.lower is None or self.lower < key) and key <= self.upper
        return (self.lower is None or self.lower <= key) and key < self.upper

    def tile_starts(self, interval_s: int) -> range:
        """Every tile start of a bounded tiled span, oldest first (for point lookups in a store)."""
        if self.lower is None or self.continuous:
            raise ValueError("only a bounded, tiled span has a finite list of tiles")
        return range(int(self.lower), int(self.upper), interval_s)

    def select(self, keys: Sequence[Seconds]) -> slice:
        """The covered part of ascending `keys`."""
        side = bisect_right if self.continuous else bisect_left
        low = 0 if self.lower is None else side(keys, self.lower)
        return slice(low, side(keys, self.upper))


def _end(time: Seconds, interval_s: int | None) -> Seconds:
    return time if interval_s is None else tile_start(time, interval_s)


def window_spans(window: WindowSpec, request_time: Seconds, interval_s: int | None) -> tuple[Span, ...]:
    """The spans a request at `request_time` aggregates: one, or one per window of a series (oldest first)."""
    continuous = interval_s is None
    if isinstance(window, TimeWindowSpec):
        end = _end(request_time + window.offset_s, interval_s)
        return (Span(end - window.size_s, end, continuous),)
    if isinstance(window, LifetimeWindowSpec):
        return (Span(None, _end(request_time, interval_s), continuous),)
    if window.step_s <= 0 or window.window_s <= 0:
        raise ValueError(f"a series needs a positive step and window size: {window!r}")
    anchor = _end(request_time, interval_s)
    last_start = window.series_end_s - window.window_s
    return tuple(Span(anchor + start, anchor + start + window.window_s, continuous)
                 for start in range(window.series_start_s, last_start + 1, window.step_s))


def read_span(window: WindowSpec, request_time: Seconds, interval_s: int | None) -> Span:
    """The smallest span holding every tile a request needs: what a store reads."""
    spans = window_spans(window, request_time, interval_s)
    if not spans:
        end = _end(request_time, interval_s)
        return Span(end, end, interval_s is None)  # covers nothing
    lowers = [s.lower for s in spans]
    lower = None if None in lowers else min(x for x in lowers if x is not None)
    return Span(lower, max(s.upper for s in spans), interval_s is None)


def build_tiles(aggregator: Aggregator[S], interval_s: int | None,
                events: Iterable[tuple[Seconds, Scalar]]) -> dict[Seconds, S]:
    """Tiles from (event time, value) pairs in arrival order; the order of tiles in time does not matter."""
    tiles: dict[Seconds, S] = {}
    for time, value in events:
        key = tile_key(time, interval_s)
        tiles[key] = aggregator.update(tiles.get(key, aggregator.empty()), value, time)
    return tiles


def merge_tiles(aggregator: Aggregator[S], states: Iterable[S]) -> S:
    """The merge of `states` in the given order (oldest tile first, so `last` ties cannot arise)."""
    merged = aggregator.empty()
    for state in states:
        merged = aggregator.merge(merged, state)
    return merged


def evaluate(aggregator: Aggregator[S], window: WindowSpec, interval_s: int | None, tiles: Tiles[S],
             request_time: Seconds) -> FeatureValue:
    """The feature value at `request_time` from the tiles of one entity (tiles outside the windows are ignored)."""
    table = cast(Mapping[Seconds, S], tiles)
    keys = sorted(table)
    values = tuple(aggregator.finalize(merge_tiles(aggregator, (table[k] for k in keys[span.select(keys)])))
                   for span in window_spans(window, request_time, interval_s))
    return values if isinstance(window, TimeWindowSeriesSpec) else values[0]


def aggregate(spec: AggregateSpec, interval_s: int | None, tiles: Tiles[Any],
              request_time: Seconds) -> FeatureValue:
    """`evaluate` with the aggregator of `spec`; `tiles` hold that aggregator's states."""
    return evaluate(aggregator_for(spec), spec.window, interval_s, tiles, request_time)


def aggregate_events(spec: AggregateSpec, interval_s: int | None, events: Iterable[tuple[Seconds, Scalar]],
                     request_time: Seconds) -> FeatureValue:
    """The feature value straight from raw (event time, value) pairs in arrival order."""
    aggregator = aggregator_for(spec)
    return evaluate(aggregator, spec.window, interval_s, build_tiles(aggregator, interval_s, events), request_time)
