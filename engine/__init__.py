"""The aggregation engine: pure functions from events to tiles and from tiles to feature values.

No I/O: Rift folds events into tiles with `build_tiles` (or `tile_key` + `Aggregator.update`), the online
store keeps each tile's `encode`d state, and at request time `aggregate` merges the tiles of each window
and finalizes them. Conventions (as Tecton serves them):

- nulls (and float NaN) are not values: they change no state, and `count` counts the other values;
- an empty window gives 0 for `count` and `approx_count_distinct`, None for every other function;
- `last` is the value with the greatest event time, the later arrival winning a tie;
- the *_n functions give tuples ordered oldest to newest;
- `approx_count_distinct` is a HyperLogLog (standard error 1.04 / sqrt(2^precision)), `approx_percentile`
  a DDSketch with relative accuracy 1 / precision (see `sketches`).
"""

from engine.aggregates import aggregator_for
from engine.base import Aggregator, FeatureValue, Packed, Seconds, Value
from engine.windows import (
    Span,
    aggregate,
    aggregate_events,
    build_tiles,
    epoch_seconds,
    evaluate,
    merge_tiles,
    read_span,
    tile_key,
    tile_start,
    window_spans,
)

__all__ = [
    "Aggregator",
    "FeatureValue",
    "Packed",
    "Seconds",
    "Span",
    "Value",
    "aggregate",
    "aggregate_events",
    "aggregator_for",
    "build_tiles",
    "epoch_seconds",
    "evaluate",
    "merge_tiles",
    "read_span",
    "tile_key",
    "tile_start",
    "window_spans",
]
