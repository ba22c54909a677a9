"""Entities and sources of a feature repository, and how each compiles to its spec."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import ClassVar

from events.specs import (
    BatchSourceSpec,
    DType,
    EntitySpec,
    FieldSpec,
    FileFormat,
    PushSourceSpec,
    RecordFormat,
    StreamSourceSpec,
)
from events.validation import ENTITY, SOURCE
from sdk import _checks as check


@dataclass(frozen=True)
class Field:
    """A column of a source or of the request context: `Field("amount", "float64")`."""

    name: str
    dtype: DType | str

    def __post_init__(self) -> None:
        check.member(check.name_of("field", self.name), "dtype", self.dtype, DType)

    def spec(self) -> FieldSpec:
        return FieldSpec(self.name, DType(self.dtype))


def _schema(owner: str, schema: object) -> None:
    check.items(owner, "schema", schema, Field, "Field")


@dataclass(frozen=True)
class Entity:
    """What features describe (a user, a merchant), identified by its join keys."""

    namespace: ClassVar[str] = ENTITY

    name: str
    join_keys: Sequence[str]
    description: str = ""
    _: KW_ONLY
    tags: Mapping[str, str] = field(default_factory=dict)
    owner: str = ""
    prevent_destroy: bool = False

    def __post_init__(self) -> None:
        owner = check.name_of("entity", self.name)
        check.items(owner, "join_keys", self.join_keys, str, "column names")
        check.metadata(owner, self)

    def spec(self) -> EntitySpec:
        return EntitySpec(self.name, tuple(self.join_keys), self.description, dict(self.tags), self.owner,
                          self.prevent_destroy)


@dataclass(frozen=True)
class BatchSource:
    """Parquet or CSV files that the customer owns: `path` is a file, a folder or a glob (`s3://b/tx/*.parquet`).

    Rift or the customer's external compute reads them for batch feature views and backfills.
    """

    namespace: ClassVar[str] = SOURCE

    name: str
    path: str
    timestamp_field: str
    schema: Sequence[Field]
    file_format: FileFormat | str = FileFormat.PARQUET
    description: str = ""
    _: KW_ONLY
    tags: Mapping[str, str] = field(default_factory=dict)
    owner: str = ""
    prevent_destroy: bool = False

    def __post_init__(self) -> None:
        owner = check.name_of("batch source", self.name)
        check.text(owner, "path", self.path)
        check.text(owner, "timestamp_field", self.timestamp_field)
        _schema(owner, self.schema)
        check.member(owner, "file_format", self.file_format, FileFormat)
        check.metadata(owner, self)

    def spec(self) -> BatchSourceSpec:
        return BatchSourceSpec(self.name, self.path, FileFormat(self.file_format), self.timestamp_field,
                               tuple(f.spec() for f in self.schema), self.description, dict(self.tags),
                               self.owner, self.prevent_destroy)


@dataclass(frozen=True)
class StreamSource:
    """A Kafka topic in the customer's account that carries raw events.

    `batch_source` optionally names the files that hold the same events, to backfill from.
    """

    namespace: ClassVar[str] = SOURCE

    name: str
    topic: str
    timestamp_field: str
    schema: Sequence[Field]
    record_format: RecordFormat | str = RecordFormat.JSON
    description: str = ""
    _: KW_ONLY
    batch_source: BatchSource | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    owner: str = ""
    prevent_destroy: bool = False

    def __post_init__(self) -> None:
        owner = check.name_of("stream source", self.name)
        check.text(owner, "topic", self.topic)
        check.text(owner, "timestamp_field", self.timestamp_field)
        _schema(owner, self.schema)
        check.member(owner, "record_format", self.record_format, RecordFormat)
        _backfill(owner, self.batch_source)
        check.metadata(owner, self)

    def spec(self) -> StreamSourceSpec:
        return StreamSourceSpec(self.name, self.topic, self.timestamp_field, tuple(f.spec() for f in self.schema),
                                RecordFormat(self.record_format), self.description,
                                self.batch_source.name if self.batch_source else "", dict(self.tags),
                                self.owner, self.prevent_destroy)


@dataclass(frozen=True)
class PushSource:
    """Records that applications push through the HTTP ingest API."""

    namespace: ClassVar[str] = SOURCE

    name: str
    timestamp_field: str
    schema: Sequence[Field]
    description: str = ""
    _: KW_ONLY
    batch_source: BatchSource | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    owner: str = ""
    prevent_destroy: bool = False

    def __post_init__(self) -> None:
        owner = check.name_of("push source", self.name)
        check.text(owner, "timestamp_field", self.timestamp_field)
        _schema(owner, self.schema)
        _backfill(owner, self.batch_source)
        check.metadata(owner, self)

    def spec(self) -> PushSourceSpec:
        return PushSourceSpec(self.name, self.timestamp_field, tuple(f.spec() for f in self.schema),
                              self.description, self.batch_source.name if self.batch_source else "",
                              dict(self.tags), self.owner, self.prevent_destroy)


def _backfill(owner: str, batch_source: object) -> None:
    if batch_source is not None:
        check.expect(owner, "batch_source", batch_source, BatchSource, "a BatchSource")


Source = BatchSource | StreamSource | PushSource


@dataclass(frozen=True)
class RequestSource:
    """Fields that the caller sends with each get-features request, read by realtime feature views."""

    schema: Sequence[Field]

    def __post_init__(self) -> None:
        _schema("request source", self.schema)

    def spec(self) -> tuple[FieldSpec, ...]:
        return tuple(f.spec() for f in self.schema)
