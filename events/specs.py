"""Plain, versioned specs that a feature repository compiles to.

They are what crosses from the operator to the control plane and from the control plane to the data
and customer planes (flow F8): data only, never code.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class DType(StrEnum):
    STRING = "string"
    INT64 = "int64"
    FLOAT64 = "float64"
    BOOL = "bool"
    TIMESTAMP = "timestamp"


class RecordFormat(StrEnum):
    JSON = "json"
    MSGPACK = "msgpack"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    dtype: DType


@dataclass(frozen=True, slots=True)
class EntitySpec:
    name: str
    join_keys: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True, slots=True)
class StreamSourceSpec:
    """A Kafka topic owned by the customer that carries raw events."""

    name: str
    topic: str
    timestamp_field: str
    schema: tuple[FieldSpec, ...]
    record_format: RecordFormat = RecordFormat.JSON
    description: str = ""

    def field(self, name: str) -> FieldSpec | None:
        return next((f for f in self.schema if f.name == name), None)


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """One served feature: `column` of the source, published under `name`."""

    name: str
    column: str
    dtype: DType


@dataclass(frozen=True, slots=True)
class FeatureViewSpec:
    name: str
    entities: tuple[str, ...]
    source: str
    features: tuple[FeatureSpec, ...]
    online: bool = True
    offline: bool = True
    description: str = ""


@dataclass(frozen=True, slots=True)
class FeatureServiceSpec:
    name: str
    feature_views: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True, slots=True)
class RepoSpec:
    """Everything one `featureplane apply` declares for a workspace."""

    entities: tuple[EntitySpec, ...] = ()
    stream_sources: tuple[StreamSourceSpec, ...] = ()
    feature_views: tuple[FeatureViewSpec, ...] = ()
    feature_services: tuple[FeatureServiceSpec, ...] = ()
