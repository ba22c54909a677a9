"""Plans and atomic applies: create / update / delete, destructive changes, prevent_destroy, stale plans."""

from __future__ import annotations

from dataclasses import replace

from actors.components.control_plane import decide_apply
from events import control
from events.codec import CODEC
from events.plan import ChangeAction, plan_changes, plan_id, workspace_digest
from events.planes import Component
from events.registry import Registry
from events.snapshot import decode_snapshot, encode_snapshot
from events.specs import EntitySpec, FeatureServiceSpec, RepoSpec
from tests.unit.fixtures import REPO, VIEW, admin_registry, envelope_of


def _apply(registry: Registry, repo: RepoSpec, apply_id: str, expected: str = "") -> tuple[Registry, list[object]]:
    events = decide_apply(registry, envelope_of(), control.ApplyRepo(apply_id, repo, expected))
    folded = registry.apply_all(CODEC.message(e, producer=Component.CONTROL_PLANE, workspace="prod") for e in events)
    return folded, events


def _summary(repo: RepoSpec, registry: Registry) -> list[tuple[str, str, str, bool, bool]]:
    return [(c.action.value, c.kind, c.name, c.destructive, c.blocked)
            for c in plan_changes(registry.workspaces.get("prod"), repo)]


def test_a_new_workspace_is_all_creates_in_dependency_order() -> None:
    assert _summary(REPO, admin_registry()) == [
        ("create", "entity", "user", False, False), ("create", "stream_source", "transactions", False, False),
        ("create", "feature_view", "user_last", False, False), ("create", "feature_service", "fraud", False, False)]


def test_applying_the_same_repo_again_changes_nothing() -> None:
    registry, _ = _apply(admin_registry(), REPO, "a1")
    assert _summary(REPO, registry) == []
    again, events = _apply(registry, REPO, "a2")
    assert events == [control.RepoApplied("a2", 0)]
    assert again.workspaces["prod"] == registry.workspaces["prod"]


def test_updates_are_destructive_unless_only_descriptive_fields_change() -> None:
    registry, _ = _apply(admin_registry(), REPO, "a1")
    described = replace(REPO, feature_views=(replace(VIEW, description="now documented", owner="ml-team"),))
    (change,) = plan_changes(registry.workspaces["prod"], described)
    assert (change.action, change.destructive, change.fields) == (ChangeAction.UPDATE, False,
                                                                  ("description", "owner"))
    reshaped = replace(REPO, feature_views=(replace(VIEW, features=VIEW.features[:1]),))
    (change,) = plan_changes(registry.workspaces["prod"], reshaped)
    assert (change.action, change.destructive, change.fields) == (ChangeAction.UPDATE, True, ("features",))
    assert "destructive" in change.describe()


def test_objects_left_out_are_deleted_services_first() -> None:
    registry, _ = _apply(admin_registry(), REPO, "a1")
    only_entity = RepoSpec(entities=REPO.entities)
    assert _summary(only_entity, registry) == [
        ("delete", "feature_service", "fraud", True, False), ("delete", "feature_view", "user_last", True, False),
        ("delete", "stream_source", "transactions", True, False)]
    after, events = _apply(registry, only_entity, "a2")
    ws = after.workspaces["prod"]
    assert (ws.feature_services, ws.feature_views, ws.stream_sources) == ({}, {}, {})
    assert list(ws.entities) == ["user"]
    assert events[-1] == control.RepoApplied("a2", 3)


def test_prevent_destroy_blocks_deletes_and_destructive_updates_but_not_descriptions() -> None:
    guarded = replace(REPO, feature_services=(FeatureServiceSpec("fraud", ("user_last",), prevent_destroy=True),),
                      entities=(EntitySpec("user", ("user_id",), prevent_destroy=True),))
    registry, _ = _apply(admin_registry(), guarded, "a1")
    deleted, events = _apply(registry, replace(guarded, feature_services=()), "a2")
    assert isinstance(events[0], control.RepoRejected)
    assert "delete feature service 'fraud': BLOCKED by prevent_destroy" in events[0].errors
    assert deleted.workspaces["prod"] == registry.workspaces["prod"]  # a failed apply changes nothing
    _, events = _apply(registry, replace(guarded, entities=(EntitySpec("user", ("user_id", "region"),
                                                                       prevent_destroy=True),)), "a3")
    assert isinstance(events[0], control.RepoRejected)
    _, events = _apply(registry, replace(guarded, entities=(EntitySpec("user", ("user_id",), "documented",
                                                                       prevent_destroy=True),)), "a4")
    assert isinstance(events[-1], control.RepoApplied)


def test_an_apply_from_a_stale_plan_is_refused() -> None:
    registry, _ = _apply(admin_registry(), REPO, "a1")
    planned = workspace_digest(registry.workspaces["prod"])
    changed, _ = _apply(registry, replace(REPO, feature_services=()), "a2")
    assert workspace_digest(changed.workspaces["prod"]) != planned
    after, events = _apply(changed, REPO, "a3", expected=planned)
    assert isinstance(events[0], control.RepoRejected)
    assert "changed since the plan" in events[0].errors[0]
    assert after.workspaces == changed.workspaces
    _, events = _apply(registry, REPO, "a4", expected=planned)  # unchanged: the plan still holds
    assert isinstance(events[-1], control.RepoApplied)


def test_the_digest_depends_on_definitions_only_and_survives_a_snapshot() -> None:
    registry, _ = _apply(admin_registry(), REPO, "a1")
    digest = workspace_digest(registry.workspaces["prod"])
    assert workspace_digest(decode_snapshot(encode_snapshot(registry)).workspaces["prod"]) == digest
    assert workspace_digest(None) == "absent"
    assert plan_id("prod", digest, REPO) != plan_id("prod", digest, replace(REPO, feature_services=()))
