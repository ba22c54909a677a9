"""Aggregated stream feature views: events folded into tile deltas (Rift) and tiles into values (serving).

Rift adds each event to the partial states of its entity's tile and sends the deltas of a batch
(`WriteTiles`); the online store keeps every delta; at request time the feature server reads the tiles
the windows need and lets the engine merge and finalize them. Pure: no I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from engine import Aggregator, FeatureValue, aggregator_for, epoch_seconds, evaluate, read_span, tile_key
from events.data import EntityKey, FeatureRow, Scalar, TileDelta, TileState
from events.specs import FeatureViewKind, FeatureViewSpec


def aggregates_stream(view: FeatureViewSpec) -> bool:
    """Whether Rift materializes the view's aggregates: a stream view of aggregates (over the
    transformation's output rows when it has one)."""
    return view.kind is FeatureViewKind.STREAM and bool(view.aggregates)


def served_from_tiles(view: FeatureViewSpec) -> bool:
    """Whether the online store holds the view's aggregates as tiles: stream views' from Rift, batch views'
    from their jobs (both write the same tile deltas)."""
    return view.kind in (FeatureViewKind.STREAM, FeatureViewKind.BATCH) and bool(view.aggregates)


class TileBuilder:
    """The deltas one batch adds to one aggregated view's tiles."""

    def __init__(self, view: FeatureViewSpec) -> None:
        self._view = view
        self._aggregators: list[Aggregator[Any]] = [aggregator_for(a) for a in view.aggregates]
        self._tiles: dict[tuple[EntityKey, float], list[Any]] = {}

    def add(self, entity_key: EntityKey, event_time: datetime, fields: Mapping[str, Scalar]) -> None:
        seconds = epoch_seconds(event_time)
        key = (entity_key, float(tile_key(seconds, self._view.aggregation_interval_s)))
        states = self._tiles.get(key) or [agg.empty() for agg in self._aggregators]
        self._tiles[key] = [agg.update(state, fields.get(spec.column), seconds)
                            for agg, spec, state in zip(self._aggregators, self._view.aggregates, states, strict=True)]

    def deltas(self) -> tuple[TileDelta, ...]:
        return tuple(TileDelta(entity, TileState(tile, tuple(agg.encode(s) for agg, s in
                                                             zip(self._aggregators, states, strict=True))))
                     for (entity, tile), states in self._tiles.items())


def tile_range(view: FeatureViewSpec, request_time: datetime) -> tuple[float | None, float]:
    """The tiles (lower <= tile <= upper) every window of the view needs at `request_time`."""
    seconds = epoch_seconds(request_time)
    spans = [read_span(a.window, seconds, view.aggregation_interval_s) for a in view.aggregates]
    lowers = [s.lower for s in spans]
    lower = None if None in lowers else min(x for x in lowers if x is not None)
    return lower, max(s.upper for s in spans)


def aggregate_values(view: FeatureViewSpec, tiles: Sequence[TileState], request_time: datetime) -> list[FeatureValue]:
    """Each aggregate's value at `request_time`, from the stored deltas (several per tile are merged)."""
    seconds = epoch_seconds(request_time)
    values = []
    for index, spec in enumerate(view.aggregates):
        aggregator = aggregator_for(spec)
        merged: dict[float, Any] = {}
        for tile in tiles:
            state = aggregator.decode(tile.states[index])
            merged[tile.tile] = aggregator.merge(merged[tile.tile], state) if tile.tile in merged else state
        values.append(evaluate(aggregator, spec.window, view.aggregation_interval_s, merged, seconds))
    return values


def aggregate_input(join_keys: Sequence[str], view: FeatureViewSpec, row: FeatureRow,
                    fields: Mapping[str, Scalar]) -> FeatureRow:
    """An aggregated view's offline row: entity key, event time and each aggregate input column once (a
    column that is a join key is in the entity key already)."""
    columns = dict.fromkeys(a.column for a in view.aggregates if a.column not in join_keys)
    return FeatureRow(row.entity_key, row.event_time, {c: fields.get(c) for c in columns})
