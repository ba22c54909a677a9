"""The local broker's defaults and its jar cache: fetched once with Maven, reused afterwards."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from deploy.kafka import KAFKA_VERSION, BrokerConfig, KafkaBrokerError, ensure_jars


def test_the_broker_listens_on_9092_and_its_controller_on_the_next_port(tmp_path: Path) -> None:
    cfg = BrokerConfig(tmp_path)
    assert (cfg.host, cfg.port, cfg.controller_port) == ("127.0.0.1", 9092, 9093)
    assert cfg.libs == tmp_path.absolute() / "kafka" / f"libs-{KAFKA_VERSION}"


def test_jars_already_fetched_are_reused_without_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = BrokerConfig(tmp_path)
    cfg.libs.mkdir(parents=True)
    (cfg.libs / f"kafka_2.13-{KAFKA_VERSION}.jar").write_bytes(b"jar")
    (cfg.libs / ".fetched").write_text(KAFKA_VERSION)
    monkeypatch.setattr(shutil, "which", lambda _name: None)  # Maven is not even needed
    assert ensure_jars(cfg) == cfg.libs


def test_a_half_finished_copy_is_fetched_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = BrokerConfig(tmp_path)
    cfg.libs.mkdir(parents=True)
    (cfg.libs / f"kafka_2.13-{KAFKA_VERSION}.jar").write_bytes(b"jar")  # no marker: Maven stopped midway
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    with pytest.raises(KafkaBrokerError, match="Maven"):
        ensure_jars(cfg)
