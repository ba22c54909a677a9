"""Plain, versioned specs that a feature repository compiles to.

They are what crosses from the operator to the control plane and from the control plane to the data
and customer planes (flow F8): data only, never code. Transformations travel as polars SQL text or as
polars expressions serialized to JSON, never as pickled Python.

Evolution: the codec encodes these nested values positionally, so a spec only ever gains fields at its
end, each with a default (an older encoding then decodes with the defaults). Durations are whole
seconds (`*_s`), timestamps tz-aware UTC datetimes. Enum-typed fields are direct field types because
the codec converts enums by the declared type only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType


class DType(StrEnum):
    STRING = "string"
    INT64 = "int64"
    FLOAT64 = "float64"
    BOOL = "bool"
    TIMESTAMP = "timestamp"


NUMERIC = frozenset({DType.INT64, DType.FLOAT64})


class RecordFormat(StrEnum):
    JSON = "json"
    MSGPACK = "msgpack"


class FileFormat(StrEnum):
    PARQUET = "parquet"
    CSV = "csv"


class FeatureViewKind(StrEnum):
    BATCH = "batch"
    STREAM = "stream"
    REALTIME = "realtime"


class TransformationMode(StrEnum):
    SQL = "sql"
    EXPRESSIONS = "expressions"


class AggregationFunction(StrEnum):
    COUNT = "count"
    SUM = "sum"
    MEAN = "mean"
    MIN = "min"
    MAX = "max"
    LAST = "last"
    LAST_N = "last_n"
    FIRST_N = "first_n"
    LAST_DISTINCT_N = "last_distinct_n"
    FIRST_DISTINCT_N = "first_distinct_n"
    APPROX_COUNT_DISTINCT = "approx_count_distinct"
    APPROX_PERCENTILE = "approx_percentile"
    STDDEV_POP = "stddev_pop"
    STDDEV_SAMP = "stddev_samp"
    VAR_POP = "var_pop"
    VAR_SAMP = "var_samp"


_N = MappingProxyType({"n": None})
# The parameters each function takes, with their defaults; None marks a required parameter. The SDK
# writes the defaults into the spec so that every consumer computes the same thing.
AGGREGATION_PARAMS: Mapping[AggregationFunction, Mapping[str, int | float | None]] = MappingProxyType({
    AggregationFunction.LAST_N: _N, AggregationFunction.FIRST_N: _N,
    AggregationFunction.LAST_DISTINCT_N: _N, AggregationFunction.FIRST_DISTINCT_N: _N,
    AggregationFunction.APPROX_COUNT_DISTINCT: MappingProxyType({"precision": 8}),
    AggregationFunction.APPROX_PERCENTILE: MappingProxyType({"percentile": None, "precision": 100}),
})

# Functions that need a numeric input column.
NUMERIC_FUNCTIONS = frozenset({
    AggregationFunction.SUM, AggregationFunction.MEAN, AggregationFunction.APPROX_PERCENTILE,
    AggregationFunction.STDDEV_POP, AggregationFunction.STDDEV_SAMP, AggregationFunction.VAR_POP,
    AggregationFunction.VAR_SAMP,
})


def duration_text(seconds: int) -> str:
    """`3600` -> `1h`: the largest of d/h/m/s that divides the duration evenly (`0s` for zero)."""
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    dtype: DType


def _find(schema: tuple[FieldSpec, ...], name: str) -> FieldSpec | None:
    return next((f for f in schema if f.name == name), None)


@dataclass(frozen=True, slots=True)
class EntitySpec:
    name: str
    join_keys: tuple[str, ...]
    description: str = ""
    tags: Mapping[str, str] = dataclass_field(default_factory=dict)
    owner: str = ""
    prevent_destroy: bool = False


@dataclass(frozen=True, slots=True)
class BatchSourceSpec:
    """Parquet or CSV files in the customer's storage (a path or a glob); read by Rift or external compute."""

    name: str
    path: str
    file_format: FileFormat
    timestamp_field: str
    schema: tuple[FieldSpec, ...]
    description: str = ""
    tags: Mapping[str, str] = dataclass_field(default_factory=dict)
    owner: str = ""
    prevent_destroy: bool = False

    def field(self, name: str) -> FieldSpec | None:
        return _find(self.schema, name)


@dataclass(frozen=True, slots=True)
class StreamSourceSpec:
    """A Kafka topic owned by the customer that carries raw events."""

    name: str
    topic: str
    timestamp_field: str
    schema: tuple[FieldSpec, ...]
    record_format: RecordFormat = RecordFormat.JSON
    description: str = ""
    batch_source: str = ""  # name of the BatchSourceSpec holding the same events, for backfills
    tags: Mapping[str, str] = dataclass_field(default_factory=dict)
    owner: str = ""
    prevent_destroy: bool = False

    def field(self, name: str) -> FieldSpec | None:
        return _find(self.schema, name)


@dataclass(frozen=True, slots=True)
class PushSourceSpec:
    """Records pushed through the HTTP ingest API."""

    name: str
    timestamp_field: str
    schema: tuple[FieldSpec, ...]
    description: str = ""
    batch_source: str = ""
    tags: Mapping[str, str] = dataclass_field(default_factory=dict)
    owner: str = ""
    prevent_destroy: bool = False

    def field(self, name: str) -> FieldSpec | None:
        return _find(self.schema, name)


SourceSpec = BatchSourceSpec | StreamSourceSpec | PushSourceSpec


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """One served feature: `column` of the source, published under `name`."""

    name: str
    column: str
    dtype: DType
    description: str = ""


@dataclass(frozen=True, slots=True)
class TimeWindowSpec:
    """The `size_s` seconds ending `offset_s` (zero or negative) seconds from the feature time."""

    size_s: int
    offset_s: int = 0


@dataclass(frozen=True, slots=True)
class LifetimeWindowSpec:
    """Everything since the view's feature_start_time."""


@dataclass(frozen=True, slots=True)
class TimeWindowSeriesSpec:
    """Windows of `window_s` ending every `step_s` from `series_start_s` to `series_end_s` (both <= 0)."""

    series_start_s: int
    series_end_s: int
    step_s: int
    window_s: int


WindowSpec = TimeWindowSpec | LifetimeWindowSpec | TimeWindowSeriesSpec


@dataclass(frozen=True, slots=True)
class AggregateSpec:
    """`function` (an AggregationFunction value, kept as text so validation can name unknown ones)."""

    name: str
    column: str
    function: str
    window: WindowSpec
    params: Mapping[str, int | float] = dataclass_field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True, slots=True)
class TransformationSpec:
    """Polars SQL over the table `source`, or JSON-serialized polars expressions applied with
    `with_columns` to it; `output_schema` is the result's columns as the SDK computed them at compile time.
    """

    mode: TransformationMode
    sql: str = ""
    expressions: tuple[str, ...] = ()
    output_schema: tuple[FieldSpec, ...] = ()

    def field(self, name: str) -> FieldSpec | None:
        return _find(self.output_schema, name)


@dataclass(frozen=True, slots=True)
class FeatureViewSpec:
    """A batch, stream or realtime feature view.

    Realtime views have no source and no entities: they read `request_schema` fields and the features of
    the views named in `inputs`, and their `features` are columns of the transformation's output.
    """

    name: str
    entities: tuple[str, ...]
    source: str
    features: tuple[FeatureSpec, ...]
    online: bool = True
    offline: bool = True
    description: str = ""
    kind: FeatureViewKind = FeatureViewKind.STREAM  # every view was a stream view before kinds existed
    aggregates: tuple[AggregateSpec, ...] = ()
    transformation: TransformationSpec | None = None
    aggregation_interval_s: int | None = None  # None: continuous (every event updates the aggregates)
    ttl_s: int | None = None
    batch_schedule_s: int | None = None
    feature_start_time: datetime | None = None
    request_schema: tuple[FieldSpec, ...] = ()
    inputs: tuple[str, ...] = ()
    tags: Mapping[str, str] = dataclass_field(default_factory=dict)
    owner: str = ""
    prevent_destroy: bool = False
    serving_cache_max_age_s: int | None = None  # None: the feature server's default max age
    compute: str = "rift"  # batch views: where jobs run, "rift" (data plane) or "external" (customer plane)
    # Stream views created with a batch_schedule: set by the control plane (never by the SDK) to the time the
    # view was created. Events before it are the backfill's (from the stream source's batch source), events
    # from it on the stream's: each event is materialized by exactly one of them, so tiles never count twice.
    backfill_until: datetime | None = None

    def feature_names(self) -> tuple[str, ...]:
        return (*(f.name for f in self.features), *(a.name for a in self.aggregates))


@dataclass(frozen=True, slots=True)
class FeatureServiceSpec:
    name: str
    feature_views: tuple[str, ...]
    description: str = ""
    tags: Mapping[str, str] = dataclass_field(default_factory=dict)
    owner: str = ""
    prevent_destroy: bool = False


@dataclass(frozen=True, slots=True)
class RepoSpec:
    """Everything one `featureplane apply` declares for a workspace."""

    entities: tuple[EntitySpec, ...] = ()
    stream_sources: tuple[StreamSourceSpec, ...] = ()
    feature_views: tuple[FeatureViewSpec, ...] = ()
    feature_services: tuple[FeatureServiceSpec, ...] = ()
    batch_sources: tuple[BatchSourceSpec, ...] = ()
    push_sources: tuple[PushSourceSpec, ...] = ()

    def sources(self) -> tuple[SourceSpec, ...]:
        return (*self.batch_sources, *self.stream_sources, *self.push_sources)
