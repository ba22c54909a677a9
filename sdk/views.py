"""Feature views (batch, stream, realtime) and feature services, and how each compiles to its spec."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field, replace
from datetime import datetime, timedelta
from typing import ClassVar

import polars as pl

from events.errors import InvalidSpec
from events.specs import (
    AggregateSpec,
    AggregationFunction,
    FeatureServiceSpec,
    FeatureViewKind,
    FeatureViewSpec,
    TimeWindowSeriesSpec,
)
from events.validation import SERVICE, VIEW
from sdk import _checks as check
from sdk.features import Aggregate, Attribute
from sdk.objects import BatchSource, Entity, PushSource, RequestSource, Source, StreamSource
from sdk.transforms import Compiled, Transformation, check_type, compile_transformation, polars_type

CompiledView = tuple[FeatureViewSpec, list[str]]  # the spec and what kept it from compiling cleanly

_COUNTS = frozenset({AggregationFunction.COUNT, AggregationFunction.APPROX_COUNT_DISTINCT})
_FLOATS = frozenset({AggregationFunction.MEAN, AggregationFunction.APPROX_PERCENTILE, AggregationFunction.STDDEV_POP,
                     AggregationFunction.STDDEV_SAMP, AggregationFunction.VAR_POP, AggregationFunction.VAR_SAMP})


@dataclass(frozen=True, eq=False)  # eq=False: comparing polars expressions does not give a bool
class _MaterializedView:
    """What batch and stream views share: they read one source and materialize keyed, timed rows."""

    namespace: ClassVar[str] = VIEW
    kind: ClassVar[FeatureViewKind]

    name: str
    source: Source
    entities: Sequence[Entity]
    features: Sequence[Attribute | Aggregate]
    online: bool = True
    offline: bool = True
    description: str = ""
    _: KW_ONLY
    transformation: Transformation | None = None
    aggregation_interval: timedelta | None = None
    batch_schedule: timedelta | None = None
    ttl: timedelta | None = None
    feature_start_time: datetime | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    owner: str = ""
    prevent_destroy: bool = False
    cache_max_age: timedelta | None = None  # the serving cache's max age for this view (at most 24 h)

    def __post_init__(self) -> None:
        owner = check.name_of("feature view", self.name)
        check.expect(owner, "source", self.source, (BatchSource, StreamSource, PushSource),
                     "a BatchSource, StreamSource or PushSource")
        check.items(owner, "entities", self.entities, Entity, "Entity")
        check.items(owner, "features", self.features, (Attribute, Aggregate), "Attribute or Aggregate")
        _check_view_flags(owner, self)
        check_type(owner, self.transformation)
        for label in ("aggregation_interval", "batch_schedule", "ttl", "cache_max_age"):
            check.duration(owner, label, getattr(self, label), optional=True)
        check.instant(owner, "feature_start_time", self.feature_start_time)

    def interval_s(self) -> int | None:
        """The aggregation interval; a batch view with aggregates defaults to its batch schedule."""
        if self.aggregation_interval is None and self.kind is FeatureViewKind.BATCH and any(
                isinstance(f, Aggregate) for f in self.features):
            return check.seconds(self.batch_schedule)
        return check.seconds(self.aggregation_interval)

    def compile(self) -> CompiledView:
        owner = f"feature view '{self.name}'"
        source = self.source.spec()
        compiled: Compiled | None = None
        if self.transformation is not None:
            compiled = compile_transformation(self.transformation,
                                              {f.name: polars_type(f.dtype) for f in source.schema})
        interval = self.interval_s()
        spec = FeatureViewSpec(
            self.name, tuple(e.name for e in self.entities), source.name,
            tuple(f.spec() for f in self.features if isinstance(f, Attribute)), self.online, self.offline,
            self.description, kind=self.kind,
            aggregates=tuple(f.spec(interval) for f in self.features if isinstance(f, Aggregate)),
            transformation=compiled.spec if compiled else None, aggregation_interval_s=interval,
            ttl_s=check.seconds(self.ttl), batch_schedule_s=check.seconds(self.batch_schedule),
            feature_start_time=check.utc(self.feature_start_time), tags=dict(self.tags), owner=self.owner,
            prevent_destroy=self.prevent_destroy, serving_cache_max_age_s=check.seconds(self.cache_max_age),
        )
        if compiled is None:
            return spec, []
        used = {source.timestamp_field, *(k for e in self.entities for k in e.join_keys),
                *(f.column for f in spec.features), *(a.column for a in spec.aggregates)}
        return spec, [f"{owner}: {e}" for e in [*compiled.errors, *_unservable(compiled, used)]]

    def spec(self) -> FeatureViewSpec:
        return _spec_or_raise(self.compile())


@dataclass(frozen=True, eq=False)
class BatchFeatureView(_MaterializedView):
    """Features computed from a BatchSource every `batch_schedule` (required); aggregates are tiled by
    `aggregation_interval`, which defaults to the batch schedule. With a `feature_start_time` the
    intervals since then are backfilled at apply and each later one materialized once it has ended.

    `compute` says where the jobs run: "rift" (the data plane's workers; the batch rows cross to it) or
    "external" (ExternalCompute in the customer plane, next to the files; no feature data leaves it).
    """

    kind: ClassVar[FeatureViewKind] = FeatureViewKind.BATCH
    compute: str = field(default="rift", kw_only=True)

    def compile(self) -> CompiledView:
        spec, errors = super().compile()
        return replace(spec, compute=self.compute), errors


@dataclass(frozen=True, eq=False)
class StreamFeatureView(_MaterializedView):
    """Features computed from a StreamSource or PushSource as events arrive.

    Aggregates without an `aggregation_interval` are continuous (every event updates them); a
    `batch_schedule` backfills from the source's batch source, from `feature_start_time` up to the view's
    creation, after which the stream takes over (actors/components/stream_backfill.py).
    """

    kind: ClassVar[FeatureViewKind] = FeatureViewKind.STREAM


FeatureView = BatchFeatureView | StreamFeatureView


@dataclass(frozen=True, eq=False)
class RealtimeFeatureView:
    """Features computed at request time from request fields and other feature views' features.

    `sources` holds at most one RequestSource and any number of batch or stream views. The transformation
    reads the table `source`: one row per request whose columns are the request fields and each input
    view's features as `<view>__<feature>` (e.g. `user_stats__amount_mean_1h_10m`). `features` name
    columns of its output.
    """

    namespace: ClassVar[str] = VIEW

    name: str
    sources: Sequence[RequestSource | BatchFeatureView | StreamFeatureView]
    features: Sequence[Attribute]
    transformation: Transformation
    online: bool = True
    offline: bool = True
    description: str = ""
    _: KW_ONLY
    tags: Mapping[str, str] = field(default_factory=dict)
    owner: str = ""
    prevent_destroy: bool = False

    def __post_init__(self) -> None:
        owner = check.name_of("feature view", self.name)
        check.items(owner, "sources", self.sources, (RequestSource, BatchFeatureView, StreamFeatureView),
                    "RequestSource, BatchFeatureView or StreamFeatureView")
        if sum(isinstance(s, RequestSource) for s in self.sources) > 1:
            raise check.SpecTypeError(f"{owner}: sources may hold one RequestSource, got several")
        check.items(owner, "features", self.features, Attribute, "Attribute")
        if self.transformation is None:
            raise check.SpecTypeError(f"{owner}: a realtime feature view needs a transformation")
        check_type(owner, self.transformation)
        _check_view_flags(owner, self)

    def compile(self) -> CompiledView:
        request = next((s.spec() for s in self.sources if isinstance(s, RequestSource)), ())
        views = [s for s in self.sources if not isinstance(s, RequestSource)]
        inputs = {f.name: polars_type(f.dtype) for f in request}
        for view in views:
            inputs |= {f"{view.name}__{name}": dtype for name, dtype in _served_types(view).items()}
        compiled = compile_transformation(self.transformation, inputs)
        spec = FeatureViewSpec(
            self.name, (), "", tuple(f.spec() for f in self.features), self.online, self.offline,
            self.description, FeatureViewKind.REALTIME, transformation=compiled.spec, request_schema=request,
            inputs=tuple(v.name for v in views), tags=dict(self.tags), owner=self.owner,
            prevent_destroy=self.prevent_destroy,
        )
        used = {f.column for f in spec.features}
        return spec, [f"feature view '{self.name}': {e}" for e in [*compiled.errors, *_unservable(compiled, used)]]

    def spec(self) -> FeatureViewSpec:
        return _spec_or_raise(self.compile())


def _check_view_flags(owner: str, view: _MaterializedView | RealtimeFeatureView) -> None:
    check.flag(owner, "online", view.online)
    check.flag(owner, "offline", view.offline)
    check.metadata(owner, view)


def _unservable(compiled: Compiled, used: set[str]) -> list[str]:
    return [f"column '{name}' of the transformation's output is {dtype}, which featureplane cannot serve: "
            f"cast it to string, int64, float64, bool or timestamp"
            for name, dtype in compiled.unsupported.items() if name in used]


def _spec_or_raise(compiled: CompiledView) -> FeatureViewSpec:
    spec, errors = compiled
    if errors:
        raise InvalidSpec("; ".join(errors))
    return spec


def _served_types(view: FeatureView) -> dict[str, pl.DataType]:
    """The polars type of each feature `view` serves, as a realtime view's transformation sees it."""
    spec, _ = view.compile()  # its own errors are reported with it
    schema = spec.transformation.output_schema if spec.transformation else view.source.spec().schema
    columns = {f.name: polars_type(f.dtype) for f in schema}
    served = {f.name: polars_type(f.dtype) for f in spec.features}
    for aggregate in spec.aggregates:
        served[aggregate.name] = aggregate_type(aggregate, columns.get(aggregate.column, pl.Null()))
    return served


def aggregate_type(aggregate: AggregateSpec, column: pl.DataType) -> pl.DataType:
    """The polars type of an aggregate's value, given the type of the column it reads."""
    function = aggregate.function
    value: pl.DataType = column
    if function in _COUNTS:
        value = pl.Int64()
    elif function in _FLOATS:
        value = pl.Float64()
    elif function.endswith("_n"):
        value = pl.List(column)
    # a series yields one value per window
    return pl.List(value) if isinstance(aggregate.window, TimeWindowSeriesSpec) else value


@dataclass(frozen=True, eq=False)
class FeatureService:
    """The feature views (of any kind) that one model reads together."""

    namespace: ClassVar[str] = SERVICE

    name: str
    features: Sequence[BatchFeatureView | StreamFeatureView | RealtimeFeatureView]
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    _: KW_ONLY
    owner: str = ""
    prevent_destroy: bool = False

    def __post_init__(self) -> None:
        owner = check.name_of("feature service", self.name)
        check.items(owner, "features", self.features, (BatchFeatureView, StreamFeatureView, RealtimeFeatureView),
                    "feature views")
        check.metadata(owner, self)

    def spec(self) -> FeatureServiceSpec:
        return FeatureServiceSpec(self.name, tuple(v.name for v in self.features), self.description,
                                  dict(self.tags), self.owner, self.prevent_destroy)
