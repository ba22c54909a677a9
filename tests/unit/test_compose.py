"""docker-compose.yml and the Dockerfile cannot be started here (no Docker engine): check what can be."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import yaml

from deploy.cli import build_parser
from deploy.kafka import KAFKA_VERSION

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
    assert set(services) == {"kafka", "featureplane"}
    assert services["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}"
    build = services["featureplane"]["build"]
    assert (REPO / build["context"] / build["dockerfile"]).is_file()
    assert services["featureplane"]["depends_on"]["kafka"]["condition"] == "service_healthy"


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
    assert f"{args.port}:{args.port}" in service["ports"]
    cmd = next(rest for instr, rest in _dockerfile() if instr == "CMD")
    assert shlex.split(cmd.replace('"', "").replace(",", " ").strip("[]")) == command


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
