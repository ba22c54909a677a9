"""Where a running featureplane is: written by `featureplane up`, read by every other command."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

DEFAULT_STATE_DIR = Path(os.environ.get("FEATUREPLANE_STATE_DIR", ".state"))


@dataclass(frozen=True, slots=True)
class RunInfo:
    pid: int
    bootstrap_servers: str
    gateway_url: str
    topic_prefix: str
    state_dir: str
    log_path: str
    # The broker requires SASL logins (the default; False after `up --insecure`): clients take the operator's
    # from the state folder.
    secure: bool = False

    @staticmethod
    def path(state_dir: Path) -> Path:
        return state_dir / "run" / "featureplane.json"

    def write(self) -> None:
        path = self.path(Path(self.state_dir))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)

    @classmethod
    def read(cls, state_dir: Path) -> RunInfo | None:
        try:
            return cls(**json.loads(cls.path(state_dir).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    @classmethod
    def remove(cls, state_dir: Path) -> None:
        cls.path(state_dir).unlink(missing_ok=True)
