"""`featureplane down` stops the broker `up` started, on whatever port `up --kafka-port` gave it."""

from __future__ import annotations

from pathlib import Path

from deploy.runinfo import RunInfo
from deploy.supervisor import broker_started_by_up


def _info(tmp_path: Path, bootstrap: str) -> RunInfo:
    return RunInfo(pid=1, bootstrap_servers=bootstrap, gateway_url="http://127.0.0.1:8080", topic_prefix="fp",
                   state_dir=str(tmp_path), log_path=str(tmp_path / "log"))


def test_the_broker_on_the_port_the_run_file_names(tmp_path: Path) -> None:
    broker = broker_started_by_up(tmp_path, _info(tmp_path, "127.0.0.1:19555"))
    assert broker.port == 19555
    assert broker.folder == tmp_path.absolute() / "kafka" / "broker-19555"


def test_the_default_port_without_a_run_file_or_for_a_broker_elsewhere(tmp_path: Path) -> None:
    assert broker_started_by_up(tmp_path, None).port == 9092
    assert broker_started_by_up(tmp_path, _info(tmp_path, "kafka.example:9093")).port == 9092
