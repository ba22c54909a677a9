from __future__ import annotations

import contextlib
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events import control
from events.codec import CODEC, Codec, Registration
from events.errors import DecodeError, SchemaVersionError, UnknownEventType
from events.planes import Component, Plane
from events.specs import EntitySpec
from tests.unit.strategies import access_bodies, bodies, components, job_bodies, names


@settings(max_examples=300)
@given(body=bodies, producer=components, workspace=names, principal=names)
def test_every_registered_message_round_trips(body: Any, producer: Component, workspace: str,
                                              principal: str) -> None:
    message = CODEC.message(body, producer=producer, workspace=workspace, principal=principal)
    decoded = CODEC.decode(CODEC.encode(message))
    assert decoded == message
    assert type(decoded.body) is type(body)


@settings(max_examples=200)
@given(body=job_bodies, producer=components, workspace=names)
def test_job_messages_round_trip(body: Any, producer: Component, workspace: str) -> None:
    message = CODEC.message(body, producer=producer, workspace=workspace)
    assert CODEC.decode(CODEC.encode(message)) == message


@settings(max_examples=200)
@given(body=access_bodies, producer=components, workspace=names, principal=names)
def test_access_messages_round_trip(body: Any, producer: Component, workspace: str, principal: str) -> None:
    """Principals (users with their email, admins), keys with their creation time, roles and outcomes."""
    message = CODEC.message(body, producer=producer, workspace=workspace, principal=principal)
    decoded = CODEC.decode(CODEC.encode(message))
    assert decoded == message
    assert type(decoded.body) is type(body)


def test_envelope_records_plane_of_producer_and_causation() -> None:
    first = CODEC.message(control.RepoApplied("a", 1), producer=Component.CONTROL_PLANE, workspace="w")
    second = CODEC.message(control.RepoApplied("b", 2), producer=Component.RIFT, workspace="w",
                           caused_by=first.envelope)
    decoded = CODEC.decode(CODEC.encode(second)).envelope
    assert decoded.plane is Plane.DATA
    assert decoded.causation_id == first.envelope.event_id
    assert decoded.correlation_id == first.envelope.correlation_id
    assert decoded.type == "RepoApplied"
    assert decoded.occurred_at.tzinfo is not None


@given(st.binary(max_size=200))
def test_random_bytes_raise_decode_error_only(payload: bytes) -> None:
    with contextlib.suppress(DecodeError):
        CODEC.decode(payload)


def _frame(tag: str, version: int, body: dict[str, Any]) -> bytes:
    message = CODEC.message(control.RepoApplied("a", 1), producer=Component.CONTROL_PLANE, workspace="w")
    frame = msgpack.unpackb(CODEC.encode(message), timestamp=3)
    frame[1], frame[2], frame[11] = tag, version, body
    return msgpack.packb(frame, datetime=True)  # type: ignore[no-any-return]


def test_unknown_tag_is_refused_never_resolved() -> None:
    with pytest.raises(UnknownEventType):
        CODEC.decode(_frame("os.system", 1, {}))


def test_newer_schema_version_is_refused() -> None:
    with pytest.raises(SchemaVersionError):
        CODEC.decode(_frame("RepoApplied", 2, {"apply_id": "a", "object_count": 1}))


def test_truncated_message_is_a_decode_error() -> None:
    message = CODEC.message(control.RepoApplied("a", 1), producer=Component.CONTROL_PLANE, workspace="w")
    with pytest.raises(DecodeError):
        CODEC.decode(CODEC.encode(message)[:-3])


def test_unknown_field_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="unknown fields"):
        CODEC.decode(_frame("RepoApplied", 1, {"apply_id": "a", "object_count": 1, "evil": 1}))


def test_older_versions_are_upcast() -> None:
    def v1_to_v2(body: dict[str, Any]) -> dict[str, Any]:
        body["object_count"] = body.pop("count")
        return body

    codec = Codec([Registration("RepoApplied", control.RepoApplied, 2, {1: v1_to_v2})])
    decoded = codec.decode(_frame("RepoApplied", 1, {"apply_id": "a", "count": 7}))
    assert decoded.body == control.RepoApplied("a", 7)
    assert decoded.envelope.schema_version == 2


def test_registering_a_tag_twice_fails() -> None:
    with pytest.raises(ValueError, match="twice"):
        Codec([Registration("X", control.RepoApplied), Registration("X", control.RepoRejected)])


def test_nested_values_may_gain_trailing_fields_with_defaults() -> None:
    old = msgpack.ExtType(1, msgpack.packb(["EntitySpec", "user", ("user_id",)]))  # before `description`
    assert CODEC._ext_hook(old.code, old.data) == EntitySpec("user", ("user_id",), "")
    too_short = msgpack.packb(["EntitySpec", "user"])
    with pytest.raises(DecodeError, match="missing fields"):
        CODEC._ext_hook(1, too_short)
