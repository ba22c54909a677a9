"""Offline retrieval at scale: `get_features_for_events` for 1M events against 10M feature rows.

Runs in its own process so its peak RSS is its own:
    python -m bench.offline WORKDIR EVENTS ROWS USERS REPEATS   (one JSON line out)
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from events.data import Coordinates, FeatureRow, SourceRange, WriteOfflineRows
from events.specs import DType, EntitySpec, FeatureServiceSpec, FeatureSpec, FeatureViewSpec, RepoSpec
from sdk.offline import OfflineFeatures
from stores.offline import OfflineWrite, ParquetOfflineStore

START = datetime(2026, 1, 1, tzinfo=UTC)
REPO = RepoSpec(
    entities=(EntitySpec("user", ("user_id",)),),
    feature_views=(FeatureViewSpec("spend", ("user",), "src", (FeatureSpec("amount", "amount", DType.FLOAT64),),
                                   ttl_s=30 * 86400),),
    feature_services=(FeatureServiceSpec("svc", ("spend",)),),
)


def _write(root: Path, rows: int, users: int, chunk: int = 1_000_000) -> float:
    """Writes `rows` feature rows for `users` users over 90 days; returns the seconds it took."""
    rng = np.random.default_rng(7)
    began = time.perf_counter()
    with ParquetOfflineStore(root) as store:
        for offset, first in enumerate(range(0, rows, chunk)):
            n = min(chunk, rows - first)
            ids = rng.integers(0, users, n)
            seconds = rng.integers(0, 90 * 86400, n)
            amounts = rng.random(n) * 100
            feature_rows = tuple(FeatureRow((f"u{i}",), START + timedelta(seconds=int(s)), {"amount": float(a)})
                                 for i, s, a in zip(ids, seconds, amounts, strict=True))
            write = WriteOfflineRows("spend", ("user_id",), feature_rows, SourceRange("bench", 0, first, first + n))
            store.append([OfflineWrite(Coordinates("bench", 0, offset), "bench", write, f"w{offset}")])
    return time.perf_counter() - began


def run(workdir: Path, events: int, rows: int, users: int, repeats: int) -> dict[str, Any]:
    root = workdir / "offline"
    write_s = _write(root, rows, users) if not (root / "manifest.json").exists() else None
    rng = np.random.default_rng(11)
    frame = pl.DataFrame({
        "user_id": [f"u{i}" for i in rng.integers(0, users, events)],
        "ts": [START + timedelta(seconds=int(s)) for s in rng.integers(0, 90 * 86400, events)],
    }).with_columns(pl.col("ts").dt.cast_time_unit("us"))
    times = []
    with OfflineFeatures.open(root, REPO, "bench") as offline:
        for _ in range(repeats):
            began = time.perf_counter()
            result = offline.get_features_for_events(frame, "svc", "ts")
            times.append(time.perf_counter() - began)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"events": events, "feature_rows": rows, "users": users, "write_s": write_s,
            "seconds_median": statistics.median(times), "seconds_all": times, "peak_rss_mb": peak_rss_mb,
            "matched": int(result["spend__amount"].is_not_null().sum())}


if __name__ == "__main__":
    workdir, events, rows, users, repeats = sys.argv[1:6]
    print(json.dumps(run(Path(workdir), int(events), int(rows), int(users), int(repeats))))
