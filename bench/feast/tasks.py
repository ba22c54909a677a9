"""Feast's side of the benchmark. Runs ONLY inside Feast's own virtual environment (a subprocess of
bench/feast_peer.py), never in featureplane's: featureplane does not import feast.

    python tasks.py REPO_DIR materialize
    python tasks.py REPO_DIR historical EVENTS_PARQUET REPEATS

Each task prints one JSON object on its last stdout line.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from pathlib import Path

IMPORT_BEGAN = time.perf_counter()
import pandas as pd  # noqa: E402
from feast import FeatureStore  # noqa: E402

IMPORT_S = time.perf_counter() - IMPORT_BEGAN

def materialize(root: Path) -> dict[str, object]:
    rows = len(pd.read_parquet(root / "data" / "history.parquet", columns=["user_id"]))
    store = FeatureStore(repo_path=str(root))
    ts = pd.read_parquet(root / "data" / "history.parquet", columns=["ts"])["ts"]
    began = time.perf_counter()
    store.materialize(ts.min().to_pydatetime(), ts.max().to_pydatetime() + pd.Timedelta(seconds=1))
    seconds = time.perf_counter() - began
    return {"source_rows": rows, "seconds": seconds, "rows_per_s": rows / seconds}


def historical(root: Path, events_path: Path, repeats: int) -> dict[str, object]:
    store = FeatureStore(repo_path=str(root))
    service = store.get_feature_service("svc")
    entity_df = pd.read_parquet(events_path).rename(columns={"ts": "event_timestamp"})
    times = []
    matched = 0
    for _ in range(repeats):
        began = time.perf_counter()
        result = store.get_historical_features(entity_df=entity_df, features=service).to_df()
        times.append(time.perf_counter() - began)
        matched = int(result["amount"].notna().sum())
    return {"events": len(entity_df), "seconds_median": statistics.median(times), "seconds_all": times,
            "import_s": IMPORT_S, "matched": matched,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> int:
    result: dict[str, object]
    root, task = Path(sys.argv[1]).resolve(), sys.argv[2]
    if task == "materialize":
        result = materialize(root)
    elif task == "historical":
        result = historical(root, Path(sys.argv[3]), int(sys.argv[4]))
    else:
        raise SystemExit(f"unknown task {task}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
