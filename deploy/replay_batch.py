"""The batch steps of `featureplane replay`: the batch files, applying the repository with them, manual
materialize triggers, waiting for the jobs, and training data read from the offline store.

Jobs are triggered and watched over HTTP (`POST /api/v1/materialize`, `GET /api/v1/jobs`), as an operator
does. Training data is a customer-plane read: the SDK opens the deployment's offline store read-only,
next to its files, and never goes through the data plane.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from actors.settings import store_dir
from deploy import client
from events.codec import CODEC
from events.errors import FeatureplaneError
from scenarios.batch import TrainingResult, bind_batch_files, events_frame, materialize_result, training_rows
from scenarios.expect import feature_value, matches
from scenarios.spec import Scenario, TrainingQuery
from sdk.offline import OfflineFeatures
from sdk.repo import load_repo

Call = Callable[..., tuple[int, Any]]  # deploy.replay.call, bound to the target
Say = Callable[[str], None]
_TERMINAL = ("succeeded", "abandoned")
_POLL_S = 0.5


def place_batch_files(scenario: Scenario, state_dir: Path | None) -> dict[str, Path]:
    """Each batch file copied next to the deployment's stores (the customer's storage), or, when its state
    folder is not known here, read where it is."""
    placed = {}
    for item in scenario.batch_files:
        if not item.path.is_file():
            raise FeatureplaneError(f"{scenario.origin}: batch file {item.path} does not exist")
        if state_dir is None:
            placed[item.source] = item.path
            continue
        folder = state_dir / "batch-sources" / item.source
        folder.mkdir(parents=True, exist_ok=True)
        placed[item.source] = Path(shutil.copy2(item.path, folder / item.path.name))
    return placed


def apply_with_files(scenario: Scenario, gateway_url: str, workspace: str, admin_key: str,
                     files: dict[str, Path]) -> dict[str, Any]:
    """Compile the repository, point its batch sources at the scenario's files, and apply it."""
    repo = bind_batch_files(load_repo(scenario.repo), files)
    status, body = client.http_call("POST", f"{gateway_url}/api/v1/workspaces/{quote(workspace)}/apply",
                                    api_key=admin_key, data=CODEC.encode_value(repo),
                                    content_type="application/x-msgpack", timeout_s=90)
    return client.expect_ok(status, body)


def list_jobs(call: Call, workspace: str) -> list[dict[str, Any]]:
    return list(client.expect_ok(*call("GET", f"/api/v1/jobs?{urlencode({'workspace': workspace})}"))["jobs"])


def settled_jobs(call: Call, workspace: str, deadline: float) -> list[dict[str, Any]]:
    """The workspace's jobs once there are some and each one succeeded or was abandoned (or time is up)."""
    while True:
        jobs = list_jobs(call, workspace)
        if (jobs and all(j["state"] in _TERMINAL for j in jobs)) or time.monotonic() > deadline:
            return jobs
        time.sleep(_POLL_S)


def materialize(scenario: Scenario, call: Call, workspace: str, keys: dict[str, str], deadline: float,
                steps: list[dict[str, Any]], say: Say) -> list[dict[str, Any]]:
    """Each manual trigger, waited for until its jobs succeed (or are abandoned, or time is up)."""
    results = []
    for step in scenario.materialize:
        body = {"workspace": workspace, "feature_view": step.feature_view, "start": step.start, "end": step.end}
        status, answer = call("POST", "/api/v1/materialize", body, keys.get(step.principal) if step.principal else None)
        error = "" if status == 202 else str((answer or {}).get("requestError", {}).get("errorMessage", answer))
        while True:
            result = materialize_result(step, status, error, list_jobs(call, workspace))
            pending = [j for j in result["jobs"] if j["state"] not in _TERMINAL]
            if status != 202 or (result["jobs"] and not pending) or time.monotonic() > deadline:
                break
            time.sleep(_POLL_S)
        results.append(result)
        states = ", ".join(f"{j['state']} ({j['source_rows']} rows read)" for j in result["jobs"]) or error
        steps.append({"step": "materialize", "detail": f"{step.feature_view} [{step.start}, {step.end}) as "
                                                       f"{step.principal or 'admin'}: HTTP {status}, {states}"})
        say(steps[-1]["detail"])
    return results


def read_training(query: TrainingQuery, offline_root: Path, scenario: Scenario, workspace: str) -> TrainingResult:
    events = events_frame(query)
    try:
        with OfflineFeatures.open(offline_root, load_repo(scenario.repo), workspace) as offline:
            frame = offline.get_features_for_events(events, query.service, query.timestamp_key)
    except (FeatureplaneError, OSError) as exc:
        return TrainingResult(query, [], f"{type(exc).__name__}: {exc}")
    return TrainingResult(query, training_rows(frame, events))


def _met(result: TrainingResult) -> bool:
    q = result.query
    if result.error or (q.expect_rows is not None and len(result.rows) != q.expect_rows):
        return False
    return all(i < len(result.rows) and all(matches(v, feature_value(result.rows[i], k)[1]) for k, v in e.items())
               for i, e in enumerate(q.expect))


def training(scenario: Scenario, state_dir: Path | None, prefix: str, workspace: str, deadline: float,
             steps: list[dict[str, Any]], say: Say) -> list[TrainingResult]:
    """Each training query against the offline store, read again until its expectations hold (the offline
    store writes what the jobs produced asynchronously) or time is up."""
    results = []
    for query in scenario.training:
        if state_dir is None:
            result = TrainingResult(query, [], "the deployment's state folder is not known here (pass --state-dir): "
                                               "training data is read from its offline store's files")
        else:
            while True:
                result = read_training(query, store_dir(state_dir, prefix, "offline_store-0"), scenario, workspace)
                if _met(result) or time.monotonic() > deadline:
                    break
                time.sleep(_POLL_S)
        results.append(result)
        verdict = result.error or ("expectations met" if _met(result) else "expectations NOT met")
        steps.append({"step": "training_data", "detail": f"{query.service}: {len(result.rows)} event(s), {verdict}"})
        say(steps[-1]["detail"])
    return results
