"""Serving assembly, pure: which lookups a request needs, and the features of an entity from the store's
(or the serving cache's) answers: stored rows, aggregates merged from tiles, realtime views, statuses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from actors.components.realtime import compute, input_types, is_realtime, missing_request_fields
from actors.components.tiling import aggregate_values, served_from_tiles, tile_range
from events.audit import AuditRecord
from events.data import Lookup, OnlineRowsRead, Scalar, StoredRow, TileState
from events.envelope import Envelope
from events.errors import InvalidRequest
from events.registry import Workspace
from events.specs import DType, FeatureServiceSpec, FeatureViewSpec


def newest_writers(tiles: Sequence[TileState]) -> list[str]:
    """The distinct writes that stored `tiles`, newest tile first (deltas without a writer are skipped)."""
    seen: dict[str, None] = {}
    for tile in sorted(tiles, key=lambda t: t.tile, reverse=True):
        if tile.written_by:
            seen.setdefault(tile.written_by, None)
    return list(seen)

class FeatureStatus(StrEnum):
    PRESENT = "PRESENT"
    MISSING_DATA = "MISSING_DATA"
    CACHED_PRESENT = "CACHED_PRESENT"
    CACHED_MISSING_DATA = "CACHED_MISSING_DATA"
    # a realtime view could not compute the feature, or the store could not answer it; ServedFeature.error says why
    ERROR = "ERROR"
    TIME_OUT = "TIME_OUT"  # the store did not answer within the request's latency budget


# (present, missing) statuses of a view's features read from the store (False) or the serving cache (True)
_STATUSES = {False: (FeatureStatus.PRESENT, FeatureStatus.MISSING_DATA),
             True: (FeatureStatus.CACHED_PRESENT, FeatureStatus.CACHED_MISSING_DATA)}


@dataclass(frozen=True, slots=True)
class FeatureRequest:
    workspace: str
    feature_service: str
    join_keys: Mapping[str, Scalar]
    request_context: Mapping[str, Scalar]
    principal: str
    payload: bytes  # the request as received, for the F1 audit record's size and digest
    # request_options.latency_budget_ms: what the store has not answered by then is served TIME_OUT
    latency_budget_ms: int | None = None


@dataclass(frozen=True, slots=True)
class ServedFeature:
    name: str
    value: Scalar | tuple[Any, ...]  # tuples: last_n and the like, and time-window series
    dtype: DType
    status: FeatureStatus
    event_time: datetime | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ServedFeatures:
    features: tuple[ServedFeature, ...]
    request: Envelope  # the get-features request as the platform saw it: lineage starts here
    service: str
    # audit records still to send with the response's own (F1 of a request the cache answered whole)
    unaudited: tuple[AuditRecord, ...] = ()

    def value_count(self) -> int:
        return len(self.features)


@dataclass(frozen=True, slots=True)
class ServedBatch:
    rows: tuple[tuple[ServedFeature, ...], ...]  # one per requested entity, in request order
    request: Envelope
    service: str
    unaudited: tuple[AuditRecord, ...] = ()

    def value_count(self) -> int:
        return sum(len(row) for row in self.rows)


def read_views(ws: Workspace, service: FeatureServiceSpec) -> tuple[str, ...]:
    """The materialized views a request reads: the service's own, then its realtime views' inputs."""
    names = [name for name in service.feature_views if not is_realtime(ws.feature_views[name])]
    for name in service.feature_views:
        names += [i for i in ws.feature_views[name].inputs if i not in names]
    return tuple(names)


def check_request_context(ws: Workspace, service: FeatureServiceSpec, context: Mapping[str, Scalar]) -> None:
    """InvalidRequest naming the request fields the service's realtime views need but did not get."""
    for name in service.feature_views:
        missing = missing_request_fields(ws.feature_views[name], context)
        if missing:
            raise InvalidRequest(f"request_context_map is missing {', '.join(repr(m) for m in missing)}, "
                                 f"needed by realtime feature view '{name}'")


def plan_lookups(ws: Workspace, service: FeatureServiceSpec, join_keys: Mapping[str, Scalar],
                 now: datetime) -> tuple[Lookup, ...]:
    """One lookup per materialized view the service reads (`read_views`; with the tiles its windows need,
    for aggregated views); InvalidRequest names a missing join key."""
    return plan_batch(ws, service, [join_keys], now)


def plan_batch(ws: Workspace, service: FeatureServiceSpec, key_maps: Sequence[Mapping[str, Scalar]],
               now: datetime) -> tuple[Lookup, ...]:
    """`plan_lookups` of each entity, one after the other; what every entity shares (the views, their join
    keys and tile ranges at `now`) is worked out once."""
    views = []
    for view_name in read_views(ws, service):
        view = ws.feature_views[view_name]
        views.append((view.name, ws.join_keys(view), tile_range(view, now) if served_from_tiles(view) else None))
    lookups = []
    for join_keys in key_maps:
        for name, keys, tiles in views:
            try:
                entity = tuple(join_keys[k] for k in keys)
            except KeyError:
                missing = [k for k in keys if k not in join_keys]
                raise InvalidRequest(f"join_key_map is missing {missing}, needed by feature view '{name}'") from None
            lookups.append(Lookup(name, entity, tiles))
    return tuple(lookups)


def assemble(ws: Workspace, service: FeatureServiceSpec, reply: OnlineRowsRead, now: datetime,
             cached: Sequence[bool] = (), context: Mapping[str, Scalar] | None = None,
             timed_out: Sequence[bool] = ()) -> tuple[ServedFeature, ...]:
    """The served features of one entity, in the service's order; `reply` answers `read_views`, `cached`
    marks the views answered from the serving cache, `timed_out` the ones the store did not answer within
    the latency budget, `context` is the request context of realtime views."""
    names = read_views(ws, service)
    tiles = reply.tiles or (None,) * len(reply.rows)
    errors = reply.errors or (None,) * len(reply.rows)
    hits = list(cached) or [False] * len(names)
    late = list(timed_out) or [False] * len(names)
    by_view: dict[str, tuple[ServedFeature, ...]] = {}
    for name, stored, view_tiles, error, hit, too_late in zip(names, reply.rows, tiles, errors, hits, late,
                                                              strict=True):
        features = _view_features(ws.feature_views[name], stored, view_tiles, now, hit)
        if error is not None:  # the store could not answer this lookup: its features say why
            features = [replace(f, value=None, status=FeatureStatus.ERROR, event_time=None, error=error)
                        for f in features]
        elif too_late:
            features = [replace(f, value=None, status=FeatureStatus.TIME_OUT, event_time=None) for f in features]
        by_view[name] = tuple(features)
    served: list[ServedFeature] = []
    for name in service.feature_views:
        view = ws.feature_views[name]
        served.extend(_realtime(ws, view, context or {}, by_view) if is_realtime(view) else by_view[name])
    return tuple(served)


def _realtime(ws: Workspace, view: FeatureViewSpec, context: Mapping[str, Scalar],
              by_view: Mapping[str, Sequence[ServedFeature]]) -> list[ServedFeature]:
    """A realtime view's features, computed now from the request context and its inputs' features."""
    inputs = {f"{name}__{f.name.split('.', 1)[1]}": f.value for name in view.inputs for f in by_view.get(name, ())}
    return [ServedFeature(f"{view.name}.{value.name}", value.value, value.dtype,
                          FeatureStatus.ERROR if value.error else
                          FeatureStatus.MISSING_DATA if value.missing else FeatureStatus.PRESENT,
                          None, value.error)
            for value in compute(view, input_types(ws, view), context, inputs)]


def _view_features(view: FeatureViewSpec, stored: StoredRow | None, view_tiles: Sequence[TileState] | None,
                   now: datetime, cached: bool = False) -> list[ServedFeature]:
    """A materialized view's features from its stored row or tiles (`cached`: from the serving cache)."""
    present, missing = _STATUSES[cached]
    if served_from_tiles(view):
        return _aggregated(view, view_tiles or (), now, present)
    features: list[ServedFeature] = []
    expired = view.ttl_s is not None and stored is not None and \
        stored.row.event_time < now - timedelta(seconds=view.ttl_s)
    if expired:
        stored = None  # Tecton's TTL: a value older than the view's ttl is no longer served
    for feature in view.features:
        name = f"{view.name}.{feature.name}"
        if stored is None:
            features.append(ServedFeature(name, None, feature.dtype, missing, None))
        else:
            value = stored.row.values.get(feature.name)
            features.append(ServedFeature(name, value, feature.dtype, present, stored.row.event_time))
    return features


def _aggregated(view: FeatureViewSpec, tiles: Sequence[TileState], now: datetime,
                present: FeatureStatus) -> list[ServedFeature]:
    """The aggregates of a view, merged from its tiles for the windows ending now (Tecton reports them
    PRESENT even when a window is empty: the value of an empty window is a value)."""
    values = aggregate_values(view, tiles, now)
    return [ServedFeature(f"{view.name}.{spec.name}", value, _aggregate_dtype(spec.function), present, None)
            for spec, value in zip(view.aggregates, values, strict=True)]


def _aggregate_dtype(function: str) -> DType:
    return DType.INT64 if function in ("count", "approx_count_distinct") else DType.FLOAT64
