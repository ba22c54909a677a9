"""The broker's ACLs, derived from the declared topics, routes and planes (never a hand-written list).

Each plane is one Kafka principal. A plane may read the platform topics its components consume
(`Topic.consumer`, plus the registry followers below) and write the topics its components have a route to
(`events.routes.ROUTES`) plus `audit`, the audit flow every component writes its records to. Consumer groups
and transactional ids are granted by prefix, one per component. The customer's own (stream source) topics
are every topic outside the deployment's prefix: the data plane (Rift) may read them, so it is granted
Read on all topics and denied Read, explicitly, on each platform topic it does not consume (a DENY wins
over any ALLOW in Kafka's authorizer). The customer's applications produce those topics (flow F5 starts
there) and live in the customer plane, so its principal may write (and, on first use, create) every topic
outside the prefix, and is denied Write and Create on each platform topic it has no route to.

The operator and the broker itself are super users, granted in the broker's config, not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from events.planes import PLANE_OF, Component, Plane
from events.routes import ROUTES
from events.topics import AUDIT, CONTROL_EVENTS, PLATFORM_TOPICS, TopicNames

# Kafka principals: one per plane, plus the two super users.
PLANE_USERS: dict[Plane, str] = {Plane.CONTROL: "control", Plane.DATA: "data", Plane.CUSTOMER: "customer"}
OPERATOR_USER = "operator"
BROKER_USER = "broker"

# Readers of a topic besides its consumer: components that follow the registry (actors/follower.py,
# actors/components/job_table.py) read the control events without a consumer group.
FOLLOWERS: dict[str, tuple[Component, ...]] = {
    CONTROL_EVENTS.base: (Component.CONTROL_PLANE, Component.RIFT),
}

# The components running as actors (the operator and customer apps are not), with the name each uses
# under the topic prefix for its consumer group and transactional ids (actors/host.py: `<prefix>.<kind>`,
# the feature server: `<prefix>.feature-server.<replica>`, the control plane's clock).
CLIENT_NAMES: dict[Component, tuple[str, ...]] = {
    Component.CONTROL_PLANE: ("control_plane", "control-plane-clock"),
    Component.AUDIT_LOG: ("audit_log",),
    Component.FEATURE_SERVER: ("feature-server",),
    Component.RIFT: ("rift",),
    Component.ONLINE_STORE: ("online_store",),
    Component.OFFLINE_STORE: ("offline_store",),
    Component.EXTERNAL_COMPUTE: ("external_compute",),
}

# The plane whose principal may read every topic outside the platform's own: Rift reads stream sources.
READS_SOURCE_TOPICS: frozenset[Plane] = frozenset({Plane.DATA})
# The plane whose principal may write (and create) them: the customer's applications produce raw events (F5).
WRITES_SOURCE_TOPICS: frozenset[Plane] = frozenset({Plane.CUSTOMER})


class Permission(StrEnum):
    ALLOW = "ALLOW"
    DENY = "DENY"


@dataclass(frozen=True, slots=True, order=True)
class AclBinding:
    """One Kafka ACL binding, in the names Kafka's admin API uses (AclPermissionType, AclOperation,
    ResourceType, PatternType)."""

    permission: Permission
    user: str
    operation: str  # READ, WRITE, CREATE, IDEMPOTENT_WRITE
    resource_type: str  # TOPIC, GROUP, TRANSACTIONAL_ID, CLUSTER
    pattern_type: str  # LITERAL, PREFIXED
    resource: str

    @property
    def principal(self) -> str:
        return f"User:{self.user}"

    def line(self) -> str:
        """The form deploy/kafka/AclSetup.java reads: space-separated, one binding per line."""
        return " ".join((self.permission, self.principal, self.operation, self.resource_type,
                         self.pattern_type, self.resource))


def topics_read(plane: Plane) -> frozenset[str]:
    """Base names of the platform topics a plane's components consume or follow."""
    return frozenset(t.base for t in PLATFORM_TOPICS
                     if PLANE_OF[t.consumer] is plane
                     or any(PLANE_OF[c] is plane for c in FOLLOWERS.get(t.base, ())))


def topics_written(plane: Plane) -> frozenset[str]:
    """Base names of the platform topics a plane's components have a route to, and the audit topic."""
    routed = {base for (sender, base) in ROUTES if PLANE_OF[sender] is plane and sender is not Component.OPERATOR}
    return frozenset(routed | {AUDIT.base})


def plane_acls(plane: Plane, names: TopicNames) -> list[AclBinding]:
    user = PLANE_USERS[plane]
    allow = [
        *(AclBinding(Permission.ALLOW, user, "READ", "TOPIC", "LITERAL", names.name(t))
          for t in PLATFORM_TOPICS if t.base in topics_read(plane)),
        *(AclBinding(Permission.ALLOW, user, "WRITE", "TOPIC", "LITERAL", names.name(t))
          for t in PLATFORM_TOPICS if t.base in topics_written(plane)),
        AclBinding(Permission.ALLOW, user, "IDEMPOTENT_WRITE", "CLUSTER", "LITERAL", "kafka-cluster"),
    ]
    for component, client_names in CLIENT_NAMES.items():
        if PLANE_OF[component] is plane:
            for name in client_names:
                prefix = f"{names.prefix}.{name}"
                allow.append(AclBinding(Permission.ALLOW, user, "READ", "GROUP", "PREFIXED", prefix))
                allow.append(AclBinding(Permission.ALLOW, user, "WRITE", "TRANSACTIONAL_ID", "PREFIXED", prefix))
    if plane in READS_SOURCE_TOPICS:
        allow.append(AclBinding(Permission.ALLOW, user, "READ", "TOPIC", "LITERAL", "*"))
        allow.extend(AclBinding(Permission.DENY, user, "READ", "TOPIC", "LITERAL", names.name(t))
                     for t in PLATFORM_TOPICS if t.base not in topics_read(plane))
    if plane in WRITES_SOURCE_TOPICS:
        for operation in ("WRITE", "CREATE"):
            allow.append(AclBinding(Permission.ALLOW, user, operation, "TOPIC", "LITERAL", "*"))
            allow.extend(AclBinding(Permission.DENY, user, operation, "TOPIC", "LITERAL", names.name(t))
                         for t in PLATFORM_TOPICS
                         if operation == "CREATE" or t.base not in topics_written(plane))
    return sorted(allow)


def deployment_acls(names: TopicNames) -> list[AclBinding]:
    """Every plane's bindings for the deployment whose topics `names` resolves."""
    return [binding for plane in Plane for binding in plane_acls(plane, names)]


def kafka_acls_arguments(bindings: list[AclBinding]) -> list[str]:
    """`kafka-acls.sh --add` arguments, one line per (permission, user, operation, resource type, pattern),
    each naming all its resources: what docker compose's set-up runs (deploy/compose/kafka-acls.sh)."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for b in bindings:
        groups.setdefault((b.permission, b.principal, b.operation, b.resource_type, b.pattern_type), []).append(
            b.resource)
    flags = {"TOPIC": "--topic", "GROUP": "--group", "TRANSACTIONAL_ID": "--transactional-id"}
    lines = []
    for (permission, principal, operation, resource_type, pattern), resources in groups.items():
        who = f"--{permission.lower()}-principal {principal}"
        what = f"--operation {operation.title().replace('_', '')} --resource-pattern-type {pattern.lower()}"
        where = "--cluster" if resource_type == "CLUSTER" else " ".join(
            f"{flags[resource_type]} {r}" for r in resources)
        lines.append(f"{who} {what} {where}")
    return lines


if __name__ == "__main__":  # regenerates deploy/compose/acls.args: python -m deploy.acls > deploy/compose/acls.args
    print("# Generated by `python -m deploy.acls` from deploy/acls.py for topic prefix fp; do not edit.")
    print("\n".join(kafka_acls_arguments(deployment_acls(TopicNames("fp")))))
