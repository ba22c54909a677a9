"""The declarative objects of a feature repository and how each compiles to its spec."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from events.specs import (
    DType,
    EntitySpec,
    FeatureServiceSpec,
    FeatureSpec,
    FeatureViewSpec,
    FieldSpec,
    RecordFormat,
    StreamSourceSpec,
)


@dataclass(frozen=True)
class Field:
    name: str
    dtype: DType | str

    def spec(self) -> FieldSpec:
        return FieldSpec(self.name, DType(self.dtype))


@dataclass(frozen=True)
class Entity:
    name: str
    join_keys: Sequence[str]
    description: str = ""

    def spec(self) -> EntitySpec:
        return EntitySpec(self.name, tuple(self.join_keys), self.description)


@dataclass(frozen=True)
class StreamSource:
    """A Kafka topic in the customer's account that carries raw events."""

    name: str
    topic: str
    timestamp_field: str
    schema: Sequence[Field]
    record_format: RecordFormat | str = RecordFormat.JSON
    description: str = ""

    def spec(self) -> StreamSourceSpec:
        return StreamSourceSpec(self.name, self.topic, self.timestamp_field,
                                tuple(f.spec() for f in self.schema), RecordFormat(self.record_format),
                                self.description)


@dataclass(frozen=True)
class Attribute:
    """A column of the source served as it is; `name` defaults to the column's."""

    column: str
    dtype: DType | str
    name: str | None = None

    def spec(self) -> FeatureSpec:
        return FeatureSpec(self.name or self.column, self.column, DType(self.dtype))


@dataclass(frozen=True)
class StreamFeatureView:
    name: str
    source: StreamSource
    entities: Sequence[Entity]
    features: Sequence[Attribute]
    online: bool = True
    offline: bool = True
    description: str = ""

    def spec(self) -> FeatureViewSpec:
        return FeatureViewSpec(self.name, tuple(e.name for e in self.entities), self.source.name,
                               tuple(f.spec() for f in self.features), self.online, self.offline,
                               self.description)


@dataclass(frozen=True)
class FeatureService:
    name: str
    features: Sequence[StreamFeatureView]
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)

    def spec(self) -> FeatureServiceSpec:
        return FeatureServiceSpec(self.name, tuple(v.name for v in self.features), self.description)
