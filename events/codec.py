"""msgpack codec for featureplane messages.

Each type is registered under an explicit tag with a schema version; decoding never resolves a class
from a name found in the data. Bodies are encoded as maps of field names (so upcasters can rename and
fill fields), nested values positionally inside an extension type (compact on the hot path).
Messages from older schema versions are upcast; messages from newer ones are refused.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

import msgpack

from events import access, audit, control, data, jobs, specs
from events.envelope import Envelope, Message, new_message
from events.errors import DecodeError, SchemaVersionError, UnknownEventType
from events.planes import Component, Plane

FORMAT = 1
_EXT_VALUE = 1

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Registration:
    tag: str
    cls: type[Any]
    version: int = 1
    # from-version -> function turning a body map of that version into the next version's
    upcasters: Mapping[int, Upcaster] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _TypeInfo:
    registration: Registration
    field_names: tuple[str, ...]
    converters: tuple[Callable[[Any], Any], ...]


def _identity(value: Any) -> Any:
    return value


def _converter(hint: Any) -> Callable[[Any], Any]:
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint
    return _identity


class Codec:
    """Turns `Message`s into bytes and back, for a fixed set of registered types."""

    def __init__(self, registrations: Iterable[Registration]) -> None:
        self._by_tag: dict[str, _TypeInfo] = {}
        self._by_cls: dict[type[Any], _TypeInfo] = {}
        for reg in registrations:
            if reg.tag in self._by_tag or reg.cls in self._by_cls:
                raise ValueError(f"{reg.tag} ({reg.cls.__name__}) is registered twice")
            hints = typing.get_type_hints(reg.cls)
            names = tuple(f.name for f in dataclasses.fields(reg.cls))
            info = _TypeInfo(reg, names, tuple(_converter(hints[n]) for n in names))
            self._by_tag[reg.tag] = info
            self._by_cls[reg.cls] = info

    def tag_of(self, cls: type[Any]) -> str:
        return self._info_of(cls).registration.tag

    def message(self, body: Any, **kwargs: Any) -> Message[Any]:
        """A new message about `body`, with its type tag and version filled in from the registry."""
        reg = self._info_of(type(body)).registration
        return new_message(body, type_tag=reg.tag, schema_version=reg.version, **kwargs)

    def encode(self, message: Message[Any]) -> bytes:
        env = message.envelope
        body = message.body
        info = self._info_of(type(body))
        body_map = {name: getattr(body, name) for name in info.field_names}
        frame = [
            FORMAT, info.registration.tag, info.registration.version, env.event_id, env.occurred_at,
            env.producer.value, env.plane.value, env.correlation_id, env.causation_id, env.workspace,
            env.principal, body_map,
        ]
        return msgpack.packb(frame, default=self._pack_value, datetime=True)

    def decode(self, payload: bytes) -> Message[Any]:
        try:
            frame = self._unpack(payload)
            (fmt, tag, version, event_id, occurred_at, producer, plane, correlation_id, causation_id,
             workspace, principal, body_map) = frame
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise DecodeError(f"not a featureplane message: {exc}") from exc
        if fmt != FORMAT:
            raise DecodeError(f"unknown frame format {fmt!r}")
        info = self._by_tag.get(tag) if isinstance(tag, str) else None
        if info is None:
            raise UnknownEventType(f"unknown event type {tag!r}")
        try:
            body = self._body(info, version, body_map)
            envelope = Envelope(
                event_id=event_id, type=tag, schema_version=info.registration.version,
                occurred_at=_as_datetime(occurred_at), producer=Component(producer), plane=Plane(plane),
                correlation_id=correlation_id, causation_id=causation_id, workspace=workspace,
                principal=principal,
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise DecodeError(f"malformed {tag} message: {exc}") from exc
        return Message(envelope, body)

    def encode_value(self, value: Any) -> bytes:
        """A registered value (e.g. a compiled RepoSpec) on its own, outside any message."""
        self._info_of(type(value))
        return msgpack.packb(value, default=self._pack_value, datetime=True)

    def decode_value(self, payload: bytes) -> Any:
        try:
            return self._unpack(payload)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise DecodeError(f"not an encoded featureplane value: {exc}") from exc

    def _info_of(self, cls: type[Any]) -> _TypeInfo:
        info = self._by_cls.get(cls)
        if info is None:
            raise UnknownEventType(f"{cls.__name__} is not registered with the codec")
        return info

    def _body(self, info: _TypeInfo, version: Any, body_map: Any) -> Any:
        reg = info.registration
        if not isinstance(version, int) or version < 1:
            raise DecodeError(f"bad schema version {version!r} for {reg.tag}")
        if version > reg.version:
            raise SchemaVersionError(f"{reg.tag} v{version} is newer than this code (v{reg.version})")
        if not isinstance(body_map, dict):
            raise DecodeError(f"{reg.tag} body is not a map")
        while version < reg.version:
            body_map = reg.upcasters[version](dict(body_map))
            version += 1
        unknown = set(body_map) - set(info.field_names)
        if unknown:
            raise DecodeError(f"{reg.tag} has unknown fields {sorted(unknown)}")
        kwargs = {name: conv(body_map[name])
                  for name, conv in zip(info.field_names, info.converters, strict=True) if name in body_map}
        return reg.cls(**kwargs)

    def _pack_value(self, value: Any) -> Any:
        info = self._by_cls.get(type(value))
        if info is None:
            raise TypeError(f"cannot encode {type(value).__name__}")
        items = [info.registration.tag, *(getattr(value, n) for n in info.field_names)]
        return msgpack.ExtType(_EXT_VALUE, msgpack.packb(items, default=self._pack_value, datetime=True))

    def _ext_hook(self, code: int, payload: bytes) -> Any:
        if code != _EXT_VALUE:
            raise DecodeError(f"unknown extension type {code}")
        tag, *values = self._unpack(payload)
        info = self._by_tag.get(tag)
        if info is None:
            raise UnknownEventType(f"unknown value type {tag!r}")
        # Nested values evolve by appending fields with defaults: older encodings simply stop early.
        if len(values) > len(info.field_names):
            raise DecodeError(f"{tag} has {len(values)} fields, expected at most {len(info.field_names)}")
        try:
            return info.registration.cls(*(conv(v) for conv, v in zip(info.converters, values, strict=False)))
        except TypeError as exc:  # fewer values than the fields without defaults
            raise DecodeError(f"{tag} is missing fields: {exc}") from exc

    def _unpack(self, payload: bytes) -> Any:
        return msgpack.unpackb(payload, ext_hook=self._ext_hook, use_list=False, timestamp=3, raw=False)


def _as_datetime(value: Any) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"occurred_at is {type(value).__name__}, not a timestamp")
    return value


def _spec_types() -> list[tuple[str, type[Any]]]:
    """The feature-repository specs: nested values inside control commands and events."""
    return [
        ("FieldSpec", specs.FieldSpec), ("EntitySpec", specs.EntitySpec),
        ("StreamSourceSpec", specs.StreamSourceSpec), ("FeatureSpec", specs.FeatureSpec),
        ("FeatureViewSpec", specs.FeatureViewSpec), ("FeatureServiceSpec", specs.FeatureServiceSpec),
        ("RepoSpec", specs.RepoSpec),
        ("BatchSourceSpec", specs.BatchSourceSpec), ("PushSourceSpec", specs.PushSourceSpec),
        ("TimeWindowSpec", specs.TimeWindowSpec), ("LifetimeWindowSpec", specs.LifetimeWindowSpec),
        ("TimeWindowSeriesSpec", specs.TimeWindowSeriesSpec), ("AggregateSpec", specs.AggregateSpec),
        ("TransformationSpec", specs.TransformationSpec),
    ]


def _registrations() -> list[Registration]:
    types: list[tuple[str, type[Any]]] = [
        *_spec_types(),
        # control plane
        ("ApplyRepo", control.ApplyRepo), ("EntityApplied", control.EntityApplied),
        ("StreamSourceApplied", control.StreamSourceApplied),
        ("FeatureViewApplied", control.FeatureViewApplied),
        ("FeatureServiceApplied", control.FeatureServiceApplied),
        ("RepoApplied", control.RepoApplied), ("RepoRejected", control.RepoRejected),
        ("BatchSourceApplied", control.BatchSourceApplied), ("PushSourceApplied", control.PushSourceApplied),
        ("ObjectDeleted", control.ObjectDeleted),
        # access and workspaces
        ("PrincipalSpec", access.PrincipalSpec), ("ApiKeySpec", access.ApiKeySpec),
        ("RoleGrant", access.RoleGrant),
        ("BootstrapAdmin", control.BootstrapAdmin), ("CreateWorkspace", control.CreateWorkspace),
        ("CreateServiceAccount", control.CreateServiceAccount), ("IssueApiKey", control.IssueApiKey),
        ("RevokeApiKey", control.RevokeApiKey), ("AssignRole", control.AssignRole),
        ("UnassignRole", control.UnassignRole), ("WorkspaceCreated", control.WorkspaceCreated),
        ("PrincipalCreated", control.PrincipalCreated), ("ApiKeyIssued", control.ApiKeyIssued),
        ("ApiKeyRevoked", control.ApiKeyRevoked), ("RoleAssigned", control.RoleAssigned),
        ("RoleUnassigned", control.RoleUnassigned), ("CommandSucceeded", control.CommandSucceeded),
        ("CommandRejected", control.CommandRejected),
        # data
        ("Coordinates", data.Coordinates), ("SourceRange", data.SourceRange), ("FeatureRow", data.FeatureRow),
        ("WriteOnlineRows", data.WriteOnlineRows), ("WriteOfflineRows", data.WriteOfflineRows),
        ("Lookup", data.Lookup), ("TileState", data.TileState), ("TileDelta", data.TileDelta),
        ("WriteTiles", data.WriteTiles), ("ReadOnlineRows", data.ReadOnlineRows), ("StoredRow", data.StoredRow),
        ("OnlineRowsRead", data.OnlineRowsRead), ("RecordDeadLettered", data.RecordDeadLettered),
        ("IngestRecords", data.IngestRecords), ("OnlineRowsWritten", data.OnlineRowsWritten),
        # audit
        ("AuditRecord", audit.AuditRecord), ("QueryAuditLog", audit.QueryAuditLog),
        ("AuditLogAnswered", audit.AuditLogAnswered),
        # batch materialization
        ("MaterializationJob", jobs.MaterializationJob), ("JobStatusReported", jobs.JobStatusReported),
        ("JobRecord", jobs.JobRecord), ("JobUpdated", jobs.JobUpdated),
        ("TriggerMaterialization", control.TriggerMaterialization), ("TickSchedules", control.TickSchedules),
        ("WriteOfflineColumns", data.WriteOfflineColumns),
        # users
        ("CreateUser", control.CreateUser),
    ]
    return [Registration(tag, cls) for tag, cls in types]


CODEC = Codec(_registrations())
