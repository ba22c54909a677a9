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


def _mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    return [(v.split(":")[0], v.split(":")[1]) for v in service.get("volumes", [])]


def _container_paths(service: dict[str, Any]) -> list[str]:
    """Absolute paths a service's entrypoint, command and healthcheck name inside its container."""
    words = [*service.get("entrypoint", []), *service.get("command", []),
             *service.get("healthcheck", {}).get("test", [])]
    from_the_image = ("/bin/", "/opt/kafka/")  # the official image's shell and Kafka scripts
    return [w for w in words if isinstance(w, str) and w.startswith("/") and not w.startswith(from_the_image)]


def test_every_volume_is_a_repo_folder_or_a_declared_volume() -> None:
    compose = _compose()
    declared = set(compose["volumes"])
    for name, service in compose["services"].items():
        for source, _target in _mounts(service):
            if source.startswith("./"):
                assert (REPO / source).is_dir(), f"{name} mounts {source}, which is not in the repo"
            else:
                assert source in declared, f"{name} uses volume {source}, which is not declared"


def test_every_path_a_service_runs_or_reads_exists_through_its_mounts() -> None:
    """A path inside a container is either a repo file behind a bind mount, or a file the init script
    writes into the named volume behind it."""
    services = _compose()["services"]
    init_script = (REPO / "deploy" / "compose" / "kafka-init.sh").read_text()
    init_mounts = dict(_mounts(services["kafka-init"]))
    checked = 0
    for name, service in services.items():
        for path in _container_paths(service):
            source, target = next((s, t) for s, t in _mounts(service) if path.startswith(t + "/"))
            relative = path.removeprefix(target + "/")
            if source.startswith("./"):
                assert (REPO / source / relative).is_file(), f"{name}: {path} is not {source}/{relative}"
            else:
                # written by kafka-init.sh into the same volume, under the path kafka-init mounts it at
                written = f"{init_mounts[source]}/{relative}".replace("/secrets/", "$SECRETS/")
                assert f"> \"{written}\"" in init_script, f"{name}: nothing writes {path} ({source})"
            checked += 1
    assert checked >= 3  # both scripts and the healthcheck's login


def test_broker_ports_agree_between_compose_the_init_script_and_featureplane() -> None:
    services = _compose()["services"]
    env = services["kafka"]["environment"]
    listeners = dict(reversed(item.split("://")) for item in env["KAFKA_LISTENERS"].split(","))
    assert listeners == {":9092": "SASL_PLAINTEXT", ":9093": "CONTROLLER"}
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert voters.endswith(":9093")
    assert voters.split("@")[1].split(":")[0] in services
    init = (REPO / "deploy" / "compose" / "kafka-init.sh").read_text()
    assert f"listeners={env['KAFKA_LISTENERS']}" in init  # the storage is formatted for the same listeners
    advertised = env["KAFKA_ADVERTISED_LISTENERS"].removeprefix("SASL_PLAINTEXT://")
    command = services["featureplane"]["command"]
    assert command[command.index("--bootstrap") + 1] == advertised
    assert "--bootstrap-server kafka:9092" in (REPO / "deploy" / "compose" / "kafka-acls.sh").read_text()
    assert "localhost:9092" in services["kafka"]["healthcheck"]["test"]
