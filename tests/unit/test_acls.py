"""The broker's ACLs follow from the declared topics, routes and planes; logins stay out of reprs and files
other than their own (0600)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from actors.settings import KafkaCredentials, Settings
from deploy.acls import PLANE_USERS, AclBinding, Permission, deployment_acls, plane_acls, topics_read, topics_written
from deploy.cluster import plane_settings
from deploy.kafka_sasl import ALL_USERS, client_properties, ensure_users, format_arguments, server_properties
from events.planes import PLANE_OF, Component, Plane
from events.routes import ROUTES
from events.topics import PLATFORM_TOPICS, TopicNames

NAMES = TopicNames("fp")
FEATURE_TOPICS = {"online.writes", "online.reads", "online.replies", "online.changelog", "offline.writes", "ingest"}


def _allowed(plane: Plane, operation: str) -> set[str]:
    return {b.resource for b in plane_acls(plane, NAMES)
            if b.permission is Permission.ALLOW and b.operation == operation and b.resource_type == "TOPIC"}


def _denied(plane: Plane, operation: str) -> set[str]:
    return {b.resource for b in plane_acls(plane, NAMES)
            if b.permission is Permission.DENY and b.operation == operation}


def test_control_plane_reads_no_feature_topic() -> None:
    assert not {NAMES.name(t) for t in PLATFORM_TOPICS if t.base in FEATURE_TOPICS} & _allowed(Plane.CONTROL, "READ")
    assert "*" not in _allowed(Plane.CONTROL, "READ")


def test_data_plane_writes_audit_but_may_not_read_it_nor_write_control_events() -> None:
    assert "fp.audit" in _allowed(Plane.DATA, "WRITE")
    assert "fp.audit" in _denied(Plane.DATA, "READ")  # its wildcard read (source topics) stops here
    assert "fp.control.events" not in _allowed(Plane.DATA, "WRITE")
    assert "fp.control.events" in _allowed(Plane.DATA, "READ")  # Rift and the feature server follow the registry


def test_every_route_and_every_consumer_is_granted_to_its_plane_and_nothing_else() -> None:
    for (sender, base), _flow in ROUTES.items():
        if sender is not Component.OPERATOR:
            assert f"fp.{base}" in _allowed(PLANE_OF[sender], "WRITE")
    for topic in PLATFORM_TOPICS:
        assert NAMES.name(topic) in _allowed(PLANE_OF[topic.consumer], "READ")
    for plane in Plane:
        literal = _allowed(plane, "WRITE") - {"*"}
        expected = {f"fp.{base}" for (sender, base) in ROUTES if PLANE_OF[sender] is plane
                    and sender is not Component.OPERATOR} | {"fp.audit"}
        assert literal == expected
        assert topics_written(plane) == {name.removeprefix("fp.") for name in expected}


def test_only_the_data_plane_reads_the_customers_source_topics_and_denies_cover_every_other_platform_topic() -> None:
    for plane in Plane:
        wildcard = "*" in _allowed(plane, "READ")
        assert wildcard is (plane is Plane.DATA)
    platform = {NAMES.name(t) for t in PLATFORM_TOPICS}
    data_reads = {f"fp.{base}" for base in topics_read(Plane.DATA)}
    assert _denied(Plane.DATA, "READ") == platform - data_reads
    assert not _denied(Plane.CONTROL, "READ")


def test_only_the_customer_plane_writes_and_creates_source_topics_and_never_a_platform_topic_off_its_routes() -> None:
    for plane in Plane:
        assert ("*" in _allowed(plane, "WRITE")) is (plane is Plane.CUSTOMER)
        assert ("*" in _allowed(plane, "CREATE")) is (plane is Plane.CUSTOMER)
    platform = {NAMES.name(t) for t in PLATFORM_TOPICS}
    routed = {f"fp.{base}" for base in topics_written(Plane.CUSTOMER)}
    assert _denied(Plane.CUSTOMER, "WRITE") == platform - routed
    assert _denied(Plane.CUSTOMER, "CREATE") == platform  # the operator creates the platform's topics
    assert "fp.control.commands" in _denied(Plane.CUSTOMER, "WRITE")


def test_groups_and_transactional_ids_are_prefixed_per_component_of_the_plane() -> None:
    data = plane_acls(Plane.DATA, NAMES)
    prefixed = {(b.resource_type, b.resource) for b in data if b.pattern_type == "PREFIXED"}
    assert ("GROUP", "fp.rift") in prefixed
    assert ("TRANSACTIONAL_ID", "fp.feature-server") in prefixed
    assert ("TRANSACTIONAL_ID", "fp.control_plane") not in prefixed
    control = {(b.resource_type, b.resource) for b in plane_acls(Plane.CONTROL, NAMES)}
    assert ("TRANSACTIONAL_ID", "fp.control-plane-clock") in control
    assert all(b.user == PLANE_USERS[Plane.DATA] for b in data)


def test_binding_lines_have_the_six_fields_acl_setup_reads() -> None:
    bindings = deployment_acls(TopicNames("test-1"))
    assert len(set(bindings)) == len(bindings)
    for binding in bindings:
        fields = binding.line().split(" ")
        assert len(fields) == 6
        assert fields[1].startswith("User:")
    assert AclBinding(Permission.ALLOW, "data", "READ", "TOPIC", "LITERAL", "x").line() \
        == "ALLOW User:data READ TOPIC LITERAL x"


def test_logins_are_made_once_per_state_folder_and_kept_private(tmp_path: Path) -> None:
    users = ensure_users(tmp_path)
    path = tmp_path / "kafka-credentials.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert set(json.loads(path.read_text())) == set(ALL_USERS)
    assert ensure_users(tmp_path) == users  # the same passwords on the next start
    assert len(set(users.secrets())) == len(ALL_USERS)
    for secret in users.secrets():
        assert secret not in repr(users)
        assert secret not in repr(users.plane(Plane.DATA))
    assert ensure_users(tmp_path / "other") != users


def test_broker_config_enforces_acls_and_names_the_super_users(tmp_path: Path) -> None:
    users = ensure_users(tmp_path)
    props = server_properties(users, "127.0.0.1", 9092, 9093)
    assert props["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:broker;User:operator"
    assert "PLAINTEXT:PLAINTEXT" not in props["listener.security.protocol.map"]
    args = format_arguments(users)
    assert args.count("--add-scram") == len(ALL_USERS)
    assert "sasl.mechanism=SCRAM-SHA-256" in client_properties(users.operator)


def test_each_actor_gets_only_its_own_planes_login(tmp_path: Path) -> None:
    users = ensure_users(tmp_path)
    planes = {plane: users.plane(plane) for plane in Plane}
    driver = Settings("127.0.0.1:9092", tmp_path, kafka_credentials=users.operator)
    data = plane_settings(driver, Plane.DATA, planes)
    assert data.kafka_credentials == users.plane(Plane.DATA)
    assert users.plane(Plane.CONTROL).password not in repr(data)
    assert users.operator.password not in repr(data) + repr(driver)
    assert plane_settings(driver, Plane.DATA, None).kafka_credentials is None


def test_credentials_need_a_user_and_a_password() -> None:
    with pytest.raises(ValueError, match="user name and a password"):
        KafkaCredentials("data", "")
