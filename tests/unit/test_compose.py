"""docker-compose.yml and the Dockerfile cannot be started here (no Docker engine): check what can be."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import yaml

from deploy.acls import deployment_acls, kafka_acls_arguments
from deploy.cli import build_parser
from deploy.kafka import KAFKA_VERSION
from deploy.kafka_sasl import ALL_USERS, CREDENTIALS_ENV_VAR, CREDENTIALS_FILE, KafkaUsers, server_properties
from deploy.supervisor import UpOptions
from events.topics import TopicNames

REPO = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    document = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert isinstance(document, dict)
    return document


def _dockerfile() -> list[tuple[str, str]]:
    lines = []
    for raw in (REPO / "Dockerfile").read_text().splitlines():
        if raw.strip() and not raw.lstrip().startswith("#") and not raw.startswith(" "):
            instruction, _, rest = raw.partition(" ")
            lines.append((instruction.upper(), rest.strip()))
    return lines


def test_compose_runs_official_kafka_at_our_version_and_featureplane_from_this_repo() -> None:
    services = _compose()["services"]
    assert set(services) == {"kafka-init", "kafka", "kafka-acls", "featureplane"}
    for name in ("kafka-init", "kafka", "kafka-acls"):
        assert services[name]["image"] == f"apache/kafka:{KAFKA_VERSION}"
    build = services["featureplane"]["build"]
    assert (REPO / build["context"] / build["dockerfile"]).is_file()
    # featureplane starts once the ACLs exist, which need the broker healthy, which needs its SCRAM users.
    assert services["featureplane"]["depends_on"]["kafka-acls"]["condition"] == "service_completed_successfully"
    assert services["kafka-acls"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert services["kafka"]["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"


def test_kafka_service_has_single_broker_settings() -> None:
    env = _compose()["services"]["kafka"]["environment"]
    for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
                "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"):
        assert env[key] == "1"
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    assert "kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]


def test_featureplane_command_parses_and_publishes_its_port() -> None:
    service = _compose()["services"]["featureplane"]
    command = service["command"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert command[0] in scripts
    args = build_parser().parse_args(command[1:])
    assert args.command == "up"
    assert args.foreground
    assert args.host == "0.0.0.0"
    assert args.bootstrap == "kafka:9092"  # the compose service name and its advertised listener
    assert not args.insecure  # SASL logins and ACLs: the default of `up`
    assert f"{args.port}:{args.port}" in service["ports"]
    cmd = next(rest for instr, rest in _dockerfile() if instr == "CMD")
    assert shlex.split(cmd.replace('"', "").replace(",", " ").strip("[]")) == command


def test_up_runs_the_broker_with_logins_and_acls_unless_insecure() -> None:
    assert UpOptions(Path(".state")).secure
    parser = build_parser()
    assert not parser.parse_args(["up"]).insecure
    assert not parser.parse_args(["up", "--secure"]).insecure  # the old opt-in flag: accepted, changes nothing
    assert parser.parse_args(["up", "--insecure"]).insecure


def test_every_file_the_dockerfile_copies_exists() -> None:
    copies = [rest.split() for instr, rest in _dockerfile() if instr == "COPY"]
    assert copies
    for *sources, _target in copies:
        for source in sources:
            assert (REPO / source).exists(), f"Dockerfile copies {source}, which is not in the repo"
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]
    copied = {s for *sources, _ in copies for s in sources}
    assert set(packages["packages"]) <= copied, "a package the wheel needs is not copied into the image"


def test_exposed_port_matches_the_published_one() -> None:
    exposed = [rest for instr, rest in _dockerfile() if instr == "EXPOSE"]
    published = _compose()["services"]["featureplane"]["ports"]
    assert exposed
    assert all(re.fullmatch(r"\d+", e) for e in exposed)
    assert {p.split(":")[1] for p in published} <= set(exposed)


def _broker_properties() -> dict[str, str]:
    """The kafka service's settings as the official image turns its KAFKA_* env vars into properties."""
    env = _compose()["services"]["kafka"]["environment"]
    return {k.removeprefix("KAFKA_").lower().replace("_", "."): str(v) for k, v in env.items()
            if k.startswith("KAFKA_")}


def test_kafka_service_has_the_sasl_and_acl_settings_of_the_local_secure_broker() -> None:
    users = KafkaUsers(tuple((user, "pw") for user in ALL_USERS))
    local = server_properties(users, "kafka", 9092, 9093)
    compose = _broker_properties()
    same = ["inter.broker.listener.name", "sasl.enabled.mechanisms", "sasl.mechanism.inter.broker.protocol",
            "sasl.mechanism.controller.protocol", "listener.name.controller.sasl.enabled.mechanisms",
            "authorizer.class.name", "allow.everyone.if.no.acl.found", "super.users"]
    assert {k: compose[k] for k in same} == {k: local[k] for k in same}
    assert "PLAINTEXT://" not in compose["listeners"].replace("SASL_PLAINTEXT://", "")
    assert set(compose["listener.security.protocol.map"].split(",")) == set(
        local["listener.security.protocol.map"].split(","))
    # The broker's own logins: the init script writes the JAAS settings the local broker uses.
    init = (REPO / "deploy" / "compose" / "kafka-init.sh").read_text()
    for key in local:
        if key.endswith("jaas.config"):
            assert f"{key}=" in init
    assert f'USERS="{" ".join(ALL_USERS)}"' in init


def test_compose_acls_are_the_ones_derived_from_the_flows() -> None:
    args = (REPO / "deploy" / "compose" / "acls.args").read_text().splitlines()
    assert [line for line in args if not line.startswith("#")] == kafka_acls_arguments(
        deployment_acls(TopicNames("fp")))
    script = (REPO / "deploy" / "compose" / "kafka-acls.sh").read_text()
    assert "set -euf" in script  # no globbing: `--topic *` is Kafka's wildcard, not the shell's
    mounts = _compose()["services"]["kafka-acls"]["volumes"]
    assert "./deploy/compose:/featureplane:ro" in mounts


def test_featureplane_reads_the_operator_login_from_the_secrets_volume() -> None:
    service = _compose()["services"]["featureplane"]
    path = service["environment"][CREDENTIALS_ENV_VAR]
    assert path.endswith("/" + CREDENTIALS_FILE)
    mount = next(v for v in service["volumes"] if v.startswith("kafka-secrets:"))
    assert mount.split(":")[1] == path.rsplit("/", 1)[0]
    assert mount.endswith(":ro")
    health = _compose()["services"]["kafka"]["healthcheck"]["test"]
    assert "--command-config" in health  # an unauthenticated probe would be refused
