from __future__ import annotations

import json
from dataclasses import replace

import pytest

from actors.components.control_plane import decide, decide_apply
from events import control
from events.codec import CODEC
from events.control import ApplyRepo
from events.errors import UnknownFeatureService, UnknownWorkspace
from events.planes import Component
from events.registry import Registry
from events.specs import DType, EntitySpec, FeatureServiceSpec, FeatureSpec, TransformationMode, TransformationSpec
from events.validation import repo_errors
from tests.unit.fixtures import REPO, SOURCE, VIEW, admin_registry, applied_events, envelope_of


def _fold(bodies: list[object], workspace: str = "prod") -> Registry:
    return Registry().apply_all(
        CODEC.message(b, producer=Component.CONTROL_PLANE, workspace=workspace) for b in bodies)


def test_valid_repo_has_no_errors() -> None:
    assert repo_errors(REPO) == []


def test_apply_publishes_each_object_then_closes() -> None:
    events = applied_events()
    assert [type(e).__name__ for e in events] == [
        "WorkspaceCreated", "EntityApplied", "StreamSourceApplied", "FeatureViewApplied", "FeatureServiceApplied",
        "RepoApplied"]
    assert events[-1] == control.RepoApplied("a1", 4)


def test_folding_the_published_events_rebuilds_the_repo() -> None:
    registry = _fold(applied_events())
    ws = registry.workspace("prod")
    assert "a1" in registry.applied
    assert ws.service("fraud").feature_views == ("user_last",)
    assert ws.join_keys(ws.feature_views["user_last"]) == ("user_id",)
    assert [v.name for v in ws.views_of_source("transactions")] == ["user_last"]


def test_unknown_workspace_and_service_are_not_found() -> None:
    registry = _fold(applied_events())
    with pytest.raises(UnknownWorkspace, match="staging"):
        registry.workspace("staging")
    with pytest.raises(UnknownFeatureService, match="nope"):
        registry.workspace("prod").service("nope")


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: replace(r, entities=()), "unknown entity 'user'"),
    (lambda r: replace(r, feature_views=(replace(VIEW, entities=()),)), "has no entities"),
    (lambda r: replace(r, feature_views=(replace(VIEW, source="clicks"),)), "unknown source 'clicks'"),
    (lambda r: replace(r, feature_views=(replace(VIEW, features=(FeatureSpec("x", "nope", DType.STRING),)),)),
     "reads column 'nope'"),
    (lambda r: replace(r, entities=(*r.entities, EntitySpec("user", ("id",)))), "declared twice"),
    (lambda r: replace(r, feature_services=(FeatureServiceSpec("svc", ("ghost",)),)), "unknown feature view"),
    (lambda r: replace(r, entities=(EntitySpec("user", ("uid",)),)), "join key 'uid'"),
    (lambda r: replace(r, entities=(EntitySpec("bad name", ("user_id",)),)), "identifier"),
    (lambda r: replace(r, feature_views=(replace(VIEW, transformation=TransformationSpec(
        TransformationMode.EXPRESSIONS, expressions=(json.dumps({"AnonymousFunction": {"function": [*b"PLPYFN"]}}),),
        output_schema=SOURCE.schema)),)),
     "feature view 'user_last': expression 1 of its transformation runs Python or native code"),
])
def test_invalid_repos_are_rejected_with_the_reason(change: object, message: str) -> None:
    repo = change(REPO)  # type: ignore[operator]
    events = applied_events(repo, "a2")
    assert len(events) == 1
    assert isinstance(events[0], control.RepoRejected)
    assert any(message in e for e in events[0].errors), events[0].errors
    assert "a2" in _fold(events).rejected


BAD_NAME = ("workspace name 'bad name/..' must start with a letter and hold only letters, digits, '_' and '-' "
            "(at most 63 characters)")


def test_applying_to_a_new_workspace_checks_its_name_like_create_workspace() -> None:
    events = decide_apply(admin_registry(), envelope_of(workspace="bad name/.."), ApplyRepo("a3", REPO))
    assert events == [control.RepoRejected("a3", (BAD_NAME,))]
    refused = decide(admin_registry(), envelope_of(), control.CreateWorkspace("c1", "bad name/..", live=True))
    assert refused == [control.CommandRejected("c1", BAD_NAME)]


@pytest.mark.parametrize(("name", "ok"), [
    ("prod", True), ("prod-fraud", True), ("team_a-2", True), ("P" + "x" * 62, True),
    ("", False), ("1prod", False), ("-prod", False), ("prod fraud", False), ("a/b", False), ("a.b", False),
    ("P" + "x" * 63, False), ("prød", False),
])
def test_workspace_names_by_apply_and_by_create_follow_one_rule(name: str, ok: bool) -> None:
    applied = decide_apply(admin_registry(), envelope_of(workspace=name), ApplyRepo("a4", REPO))
    assert isinstance(applied[-1], control.RepoApplied) is ok, applied
    created = decide(admin_registry(), envelope_of(), control.CreateWorkspace("c2", name, live=True))
    assert isinstance(created[-1], control.CommandSucceeded) is ok, created
