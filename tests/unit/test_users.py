"""Users: only an account admin creates them (and may make them admins); keys keep their metadata, even revoked."""

from __future__ import annotations

from dataclasses import replace

import msgpack

from actors.components.control_plane import decide
from events import control
from events.access import ApiKeySpec, PrincipalKind, PrincipalSpec, new_api_key, rehash_key
from events.codec import CODEC
from events.planes import Component
from events.registry import Registry
from tests.unit.fixtures import admin_registry, envelope_of

BOB = PrincipalSpec("user-bob", PrincipalKind.USER, "bob", "", "admin", email="bob@example.com")


def _run(registry: Registry, command: object, principal: str = "admin") -> tuple[Registry, list[object]]:
    events = decide(registry, envelope_of(principal, ""), command)
    folded = registry.apply_all(CODEC.message(e, producer=Component.CONTROL_PLANE, workspace="", principal=principal)
                                for e in events)
    return folded, events


def test_an_admin_creates_a_user_with_a_first_key() -> None:
    key = new_api_key(BOB.principal_id, "first key", "admin")
    registry, events = _run(admin_registry(), control.CreateUser("c1", BOB, key.spec))
    assert events[-1] == control.CommandSucceeded("c1")
    bob = registry.principals["user-bob"]
    assert (bob.kind, bob.email, bob.is_admin) == (PrincipalKind.USER, "bob@example.com", False)
    assert registry.keys[key.spec.key_id].principal_id == "user-bob"
    assert not registry.is_admin("user-bob")


def test_an_admin_may_make_a_user_an_account_admin_who_may_then_create_users() -> None:
    key = new_api_key(BOB.principal_id, "", "admin")
    registry, _ = _run(admin_registry(), control.CreateUser("c1", replace(BOB, is_admin=True), key.spec))
    assert registry.is_admin("user-bob")
    carol = PrincipalSpec("user-carol", PrincipalKind.USER, "carol", "", "user-bob")
    registry, events = _run(registry, control.CreateUser("c2", carol, new_api_key("user-carol", "", "x").spec),
                            "user-bob")
    assert events[-1] == control.CommandSucceeded("c2")
    assert registry.principals["user-carol"].created_by == "user-bob"


def test_only_an_admin_creates_users() -> None:
    key = new_api_key(BOB.principal_id, "", "admin")
    registry, _ = _run(admin_registry(), control.CreateUser("c1", BOB, key.spec))
    mallory = PrincipalSpec("user-mallory", PrincipalKind.USER, "mallory", "", "user-bob", is_admin=True)
    after, events = _run(registry, control.CreateUser("c2", mallory, new_api_key("user-mallory", "", "").spec),
                         "user-bob")
    assert isinstance(events[0], control.CommandRejected)
    assert "not an account admin" in events[0].reason
    assert "user-mallory" not in after.principals


def test_a_user_command_cannot_forge_its_kind_creator_or_key_owner() -> None:
    forged = replace(BOB, kind=PrincipalKind.SERVICE_ACCOUNT, created_by="someone-else")
    key = new_api_key(BOB.principal_id, "", "someone-else")
    registry, _ = _run(admin_registry(), control.CreateUser("c1", forged, key.spec))
    assert registry.principals["user-bob"].kind is PrincipalKind.USER
    assert registry.principals["user-bob"].created_by == "admin"
    assert registry.keys[key.spec.key_id].created_by == "admin"
    _, events = _run(registry, control.CreateUser("c2", BOB, new_api_key(BOB.principal_id, "", "").spec))
    assert isinstance(events[0], control.CommandRejected)
    assert "exists already" in events[0].reason
    other = replace(BOB, principal_id="user-other")
    _, events = _run(registry, control.CreateUser("c3", other, new_api_key("user-bob", "", "").spec))
    assert isinstance(events[0], control.CommandRejected)
    assert "does not belong" in events[0].reason


def test_a_revoked_key_keeps_its_metadata_but_not_its_hash() -> None:
    key = new_api_key(BOB.principal_id, "laptop", "admin")
    registry, _ = _run(admin_registry(), control.CreateUser("c1", BOB, key.spec))
    registry, _ = _run(registry, control.RevokeApiKey("c2", key.spec.key_id))
    assert key.spec.key_id not in registry.keys
    kept = registry.revoked_keys[key.spec.key_id]
    assert (kept.description, kept.created_by, kept.created_at) == ("laptop", "admin", key.spec.created_at)
    assert (kept.salt, kept.key_hash) == (b"", b"")


def test_a_re_registered_key_is_described_not_blank() -> None:
    key = new_api_key("admin", "", "")
    spec = rehash_key(key.spec.key_id, key.secret_text.split("_", 2)[2], "admin", "bootstrap admin key",
                      "featureplane up")
    assert (spec.description, spec.created_by) == ("bootstrap admin key", "featureplane up")
    assert spec.created_at is not None
    assert spec.salt != key.spec.salt


def test_keys_and_principals_encoded_before_their_new_fields_still_decode() -> None:
    old_key = msgpack.ExtType(1, msgpack.packb(["ApiKeySpec", "0123456789abcdef", "admin", b"s", b"h", "d", "op"]))
    decoded = CODEC._ext_hook(old_key.code, old_key.data)
    assert decoded == ApiKeySpec("0123456789abcdef", "admin", b"s", b"h", "d", "op")
    assert decoded.created_at is None
    old_principal = msgpack.ExtType(1, msgpack.packb(["PrincipalSpec", "admin", "user", "admin", "", "op", True]))
    assert CODEC._ext_hook(old_principal.code, old_principal.data).email == ""
