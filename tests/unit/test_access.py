from __future__ import annotations

from dataclasses import replace

import pytest

from actors.components.control_plane import decide
from actors.components.feature_server import refused
from events import control
from events.access import (
    DENIED_PREFIX,
    Action,
    PrincipalKind,
    PrincipalSpec,
    Role,
    RoleGrant,
    actions_of,
    key_matches,
    new_api_key,
    parse_api_key,
)
from events.codec import CODEC
from events.errors import InvalidRequest
from events.planes import Component
from events.registry import Registry
from gateway.errors import response_for
from tests.unit.fixtures import ADMIN, admin_registry, envelope_of

ALICE = PrincipalSpec("sa-alice", PrincipalKind.SERVICE_ACCOUNT, "alice", "", "admin")


def _fold(registry: Registry, bodies: list[object], principal: str = "admin", workspace: str = "prod") -> Registry:
    for body in bodies:
        registry = registry.apply(CODEC.message(body, producer=Component.CONTROL_PLANE, workspace=workspace,
                                                principal=principal))
    return registry


def _run(registry: Registry, command: object, principal: str = "admin",
         producer: Component = Component.FEATURE_SERVER, workspace: str = "prod") -> tuple[Registry, list[object]]:
    events = decide(registry, envelope_of(principal, workspace, producer), command)
    return _fold(registry, events, principal, workspace), events


def test_roles_include_the_ones_below() -> None:
    assert actions_of(Role.VIEWER) == {Action.READ_METADATA}
    assert Action.READ_FEATURES in actions_of(Role.CONSUMER)
    assert Action.READ_FEATURES not in actions_of(Role.VIEWER)
    assert actions_of(Role.EDITOR) >= {Action.APPLY, Action.INGEST, Action.TRIGGER_JOBS, Action.READ_FEATURES}
    assert Action.MANAGE_ROLES not in actions_of(Role.EDITOR)
    assert actions_of(Role.OWNER) == set(Action)


def test_keys_hash_verify_and_parse() -> None:
    key = new_api_key("sa-alice", "d", "admin")
    key_id, secret = parse_api_key(key.secret_text)
    assert key_id == key.spec.key_id
    assert key_matches(key.spec, secret)
    assert not key_matches(key.spec, secret[:-1] + ("A" if secret[-1] != "A" else "B"))
    assert secret not in repr(key.spec)
    assert secret.encode() not in key.spec.key_hash
    with pytest.raises(InvalidRequest):
        parse_api_key("Bearer " + key.secret_text)


def test_bootstrap_admin_only_once_and_only_by_the_operator() -> None:
    key = new_api_key("admin", "", "operator")
    command = control.BootstrapAdmin("c1", ADMIN, key.spec)
    registry, events = _run(Registry(), command, "nobody", Component.FEATURE_SERVER)
    assert isinstance(events[0], control.CommandRejected)
    registry, events = _run(Registry(), command, "operator", Component.OPERATOR)
    assert registry.is_admin("admin")
    assert key.spec.key_id in registry.keys
    _, events = _run(registry, replace(command, command_id="c2"), "operator", Component.OPERATOR)
    assert events == [control.CommandSucceeded("c2")]  # the same key: nothing to do
    other = new_api_key("admin", "", "operator")
    _, events = _run(registry, control.BootstrapAdmin("c3", ADMIN, other.spec), "operator", Component.OPERATOR)
    assert isinstance(events[0], control.CommandRejected)
    assert "exists already" in events[0].reason


def test_service_accounts_roles_and_revocation() -> None:
    registry = admin_registry()
    registry, _ = _run(registry, control.CreateWorkspace("w", "prod", True))
    key = new_api_key(ALICE.principal_id, "", "admin")
    registry, events = _run(registry, control.CreateServiceAccount("c1", ALICE, key.spec))
    assert events[-1] == control.CommandSucceeded("c1")
    assert not registry.may(ALICE.principal_id, Action.READ_FEATURES, "prod")
    registry, _ = _run(registry, control.AssignRole("c2", RoleGrant(ALICE.principal_id, "prod", Role.CONSUMER)))
    assert registry.may(ALICE.principal_id, Action.READ_FEATURES, "prod")
    assert not registry.may(ALICE.principal_id, Action.APPLY, "prod")
    assert not registry.may(ALICE.principal_id, Action.READ_FEATURES, "staging")
    registry, _ = _run(registry, control.RevokeApiKey("c3", key.spec.key_id))
    assert key.spec.key_id not in registry.keys
    registry, _ = _run(registry, control.UnassignRole("c4", RoleGrant(ALICE.principal_id, "prod", Role.CONSUMER)))
    assert not registry.may(ALICE.principal_id, Action.READ_FEATURES, "prod")


@pytest.mark.parametrize(("command", "principal", "reason", "status"), [
    (control.CreateWorkspace("c", "staging", True), "sa-alice", "not an account admin", 403),
    (control.CreateWorkspace("c", "prod", True), "admin", "exists already", 400),
    (control.CreateWorkspace("c", "bad name", True), "admin", "must start with a letter", 400),
    (control.RevokeApiKey("c", "nope"), "admin", "does not exist", 400),
    (control.AssignRole("c", RoleGrant("sa-ghost", "prod", Role.VIEWER)), "admin", "'sa-ghost' does not exist", 400),
    (control.AssignRole("c", RoleGrant("sa-alice", "nowhere", Role.VIEWER)), "admin", "'nowhere' does not exist",
     400),
    (control.AssignRole("c", RoleGrant("sa-alice", "prod", Role.OWNER)), "sa-alice", "may not manage roles", 403),
])
def test_refused_commands_say_why(command: object, principal: str, reason: str, status: int) -> None:
    """The reason names the problem; a caller lacking the right is told 403 (the control plane decided on its
    own registry, which may be newer than the gateway's), anything else wrong with the command 400."""
    registry = _fold(admin_registry(), [control.WorkspaceCreated("prod", True), control.PrincipalCreated(ALICE)])
    after, events = _run(registry, command, principal)
    assert len(events) == 1
    assert isinstance(events[0], control.CommandRejected)
    assert reason in events[0].reason
    answer = response_for(refused([events[0].reason]))
    assert answer.status == status
    assert answer.text is not None
    assert reason in answer.text
    assert DENIED_PREFIX not in answer.text
    assert after.commands[events[0].command_id] == events[0].reason
    assert after.principals == registry.principals
    assert after.workspaces == registry.workspaces


def test_an_owner_may_manage_roles_in_its_workspace_only() -> None:
    registry = _fold(admin_registry(), [
        control.WorkspaceCreated("prod", True), control.WorkspaceCreated("staging", True),
        control.PrincipalCreated(ALICE), control.RoleAssigned(RoleGrant("sa-alice", "prod", Role.OWNER))])
    _, events = _run(registry, control.AssignRole("c", RoleGrant("sa-alice", "prod", Role.VIEWER)), "sa-alice")
    assert events[-1] == control.CommandSucceeded("c")
    _, events = _run(registry, control.AssignRole("c", RoleGrant("sa-alice", "staging", Role.OWNER)), "sa-alice")
    assert isinstance(events[0], control.CommandRejected)


def test_created_by_is_the_caller_not_what_the_command_claims() -> None:
    registry = _fold(admin_registry(), [control.WorkspaceCreated("prod", True)])
    forged = replace(ALICE, created_by="someone-else", is_admin=True)
    key = new_api_key(ALICE.principal_id, "", "someone-else")
    registry, _ = _run(registry, control.CreateServiceAccount("c", forged, key.spec))
    assert registry.principals["sa-alice"].created_by == "admin"
    assert not registry.principals["sa-alice"].is_admin  # a service account is never made admin this way
    assert registry.keys[key.spec.key_id].created_by == "admin"
