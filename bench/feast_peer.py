"""Feast, the peer measured in the same run: its own virtual environment (.state/feast-venv, made here when
missing, pinned version), a feature repo over the same seeded data, and its pieces run as subprocesses
(`feast apply`, materialize, `feast serve`, get_historical_features). Nothing here imports feast."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import polars as pl

FEAST_VERSION = "0.67.0"
TASKS = Path(__file__).parent / "feast" / "tasks.py"
TYPES = {"float64": "Float64", "string": "String", "bool": "Bool", "int64": "Int64"}

STORE_YAML = """project: bench
registry: {root}/data/registry.db
provider: local
online_store:
  type: sqlite
  path: {root}/data/online.db
offline_store:
  type: file
entity_key_serialization_version: 3
"""

FEATURES_PY = '''from datetime import timedelta
from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Bool, Float64, Int64, String

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)
source = FileSource(path="{root}/data/history.parquet", timestamp_field="ts")
profile = FeatureView(
    name="profile", entities=[user], ttl=timedelta(days=3650), online=True, source=source,
    schema=[{fields}],
)
svc = FeatureService(name="svc", features=[profile])
'''


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def ensure_venv(venv: Path) -> Path:
    """Feast's interpreter, installing the pinned Feast from PyPI first when the venv is missing."""
    python = venv / "bin" / "python"
    stamp = venv / f".feast-{FEAST_VERSION}"
    if not stamp.exists():
        _say(f"installing feast=={FEAST_VERSION} into {venv} (first time only, a few minutes) ...")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"feast=={FEAST_VERSION}"], check=True)
        stamp.touch()
    return python


def feature_repo_text(root: Path, features: Sequence[tuple[str, str]]) -> tuple[str, str]:
    """(feature_store.yaml, features.py) of a repo with the entity `user` and the view `profile`."""
    fields = ", ".join(f'Field(name="{name}", dtype={TYPES[dtype]})' for name, dtype in features)
    return STORE_YAML.format(root=root), FEATURES_PY.format(root=root, fields=fields)


class FeastPeer:
    def __init__(self, venv: Path, root: Path) -> None:
        self.python = ensure_venv(venv.resolve())
        self.bin = venv.resolve() / "bin"
        self.root = root.resolve()

    def write_repo(self, history: pl.DataFrame, features: Sequence[tuple[str, str]]) -> Path:
        """The repo over `history` (its Parquet file, returned, is the file source)."""
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        for name in ("registry.db", "online.db"):
            (self.root / "data" / name).unlink(missing_ok=True)
        store_yaml, features_py = feature_repo_text(self.root, features)
        (self.root / "feature_store.yaml").write_text(store_yaml)
        (self.root / "features.py").write_text(features_py)
        path = self.root / "data" / "history.parquet"
        history.write_parquet(path)
        return path

    def apply(self) -> float:
        began = time.perf_counter()
        self._run([str(self.bin / "feast"), "apply"])
        return time.perf_counter() - began

    def materialize(self) -> dict[str, Any]:
        return self._task("materialize")

    def historical(self, events_parquet: Path, repeats: int) -> dict[str, Any]:
        return self._task("historical", str(events_parquet.resolve()), str(repeats))

    @contextlib.contextmanager
    def serve(self, port: int, timeout_s: float = 120) -> Iterator[tuple[str, int]]:
        """`feast serve` (HTTP, one worker, no access log) until the block ends; yields (URL, pid).

        Its worker is not recycled after 1,000 requests (Feast's default): a restart re-imports Feast for
        seconds, which would count against Feast here rather than measure its serving path."""
        log = (self.root / "serve.log").open("wb")
        process = subprocess.Popen([str(self.bin / "feast"), "serve", "-h", "127.0.0.1", "-p", str(port),
                                    "--no-access-log", "--max-requests", "0", "--max-requests-jitter", "0"],
                                   cwd=self.root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout_s
            while not _healthy(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"feast serve did not start; see {self.root / 'serve.log'}")
                time.sleep(0.5)
            yield url, process.pid
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            log.close()

    def _task(self, *args: str) -> dict[str, Any]:
        out = self._run([str(self.python), str(TASKS), str(self.root), *args])
        answer: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return answer

    def _run(self, argv: list[str]) -> str:
        done = subprocess.run(argv, cwd=self.root, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[-3:])} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return done.stdout


def online_body(user_ids: Sequence[str]) -> bytes:
    """Feast's /get-online-features request for these users (the feature service `svc`)."""
    return json.dumps({"feature_service": "svc", "entities": {"user_id": list(user_ids)}}).encode()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False
