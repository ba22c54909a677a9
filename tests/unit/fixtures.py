"""A small, valid feature repository shared by unit tests."""

from __future__ import annotations

from actors.components.control_plane import decide_apply
from events.access import PrincipalKind, PrincipalSpec
from events.control import ApplyRepo
from events.envelope import Envelope, new_message
from events.planes import Component
from events.registry import Registry
from events.specs import (
    DType,
    EntitySpec,
    FeatureServiceSpec,
    FeatureSpec,
    FeatureViewSpec,
    FieldSpec,
    RepoSpec,
    StreamSourceSpec,
)

SOURCE = StreamSourceSpec(
    "transactions", "transactions", "ts",
    (FieldSpec("user_id", DType.STRING), FieldSpec("ts", DType.TIMESTAMP), FieldSpec("amount", DType.FLOAT64),
     FieldSpec("merchant", DType.STRING), FieldSpec("count", DType.INT64), FieldSpec("online", DType.BOOL)),
)
VIEW = FeatureViewSpec(
    "user_last", ("user",), "transactions",
    (FeatureSpec("last_amount", "amount", DType.FLOAT64), FeatureSpec("last_merchant", "merchant", DType.STRING)),
)
REPO = RepoSpec(
    entities=(EntitySpec("user", ("user_id",)),),
    stream_sources=(SOURCE,),
    feature_views=(VIEW,),
    feature_services=(FeatureServiceSpec("fraud", ("user_last",)),),
)


ADMIN = PrincipalSpec("admin", PrincipalKind.USER, "admin", "", "operator", is_admin=True)


def admin_registry() -> Registry:
    return Registry(principals={"admin": ADMIN})


def envelope_of(principal: str = "admin", workspace: str = "prod",
                producer: Component = Component.FEATURE_SERVER) -> Envelope:
    return new_message(None, type_tag="t", schema_version=1, producer=producer, workspace=workspace,
                       principal=principal).envelope


def applied_events(repo: RepoSpec = REPO, apply_id: str = "a1") -> list[object]:
    """The control events of an admin applying `repo` to workspace prod."""
    return decide_apply(admin_registry(), envelope_of(), ApplyRepo(apply_id, repo))
