"""Start-up: `featureplane up` until its gateway answers (Kafka jars already cached), then the resident
memory of every process of the deployment, then `featureplane down`."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.processes import tree_rss
from deploy.kafka import KAFKA_VERSION, REPO_ROOT
from deploy.runinfo import RunInfo


def _featureplane(state: Path, *args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "featureplane"), "--state-dir", str(state), *args]


def once(workdir: Path, gateway_port: int, kafka_port: int) -> dict[str, Any]:
    state = workdir / "up"
    shutil.rmtree(state, ignore_errors=True)
    jars = state / "kafka" / f"libs-{KAFKA_VERSION}"
    jars.parent.mkdir(parents=True)
    jars.symlink_to(REPO_ROOT / ".state" / "kafka" / f"libs-{KAFKA_VERSION}")  # cached, as after `make test`
    up = _featureplane(state, "up", "--port", str(gateway_port), "--kafka-port", str(kafka_port),
                       "--kafka-controller-port", str(kafka_port + 1))
    began = time.perf_counter()
    done = subprocess.run(up, capture_output=True, text=True, check=False)
    ready_s = time.perf_counter() - began
    try:
        if done.returncode != 0:
            raise RuntimeError(f"featureplane up failed:\n{done.stderr[-3000:]}")
        info = RunInfo.read(state.resolve())
        if info is None:
            raise RuntimeError("featureplane up returned but wrote no run info")
        time.sleep(2)  # let the actors settle after their first requests
        rss = tree_rss(info.pid)
    finally:
        subprocess.run(_featureplane(state, "down"), capture_output=True, check=False)
    shutil.rmtree(state, ignore_errors=True)
    return {"ready_s": ready_s, "rss_mib": rss}
