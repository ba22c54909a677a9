"""Offline retrieval side by side with Feast: featureplane's `get_features_for_events` on exactly the
feature rows Feast's file source holds (bench/data.py `history`), for the same seeded events.

Runs in its own process (`python -m bench.offline_side ROOT HISTORY EVENTS REPEATS`, one JSON line out)
so its peak RSS is its own, as Feast's is in its subprocess.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

IMPORT_BEGAN = time.perf_counter()
import polars as pl  # noqa: E402

from bench import data  # noqa: E402
from events.data import Coordinates, FeatureRow, SourceRange, WriteOfflineRows  # noqa: E402
from events.specs import DType, EntitySpec, FeatureServiceSpec, FeatureSpec, FeatureViewSpec, RepoSpec  # noqa: E402
from sdk.offline import OfflineFeatures  # noqa: E402
from stores.offline import OfflineWrite, ParquetOfflineStore  # noqa: E402

IMPORT_S = time.perf_counter() - IMPORT_BEGAN
REPO = RepoSpec(
    entities=(EntitySpec("user", ("user_id",)),),
    feature_views=(FeatureViewSpec("profile", ("user",), "src",
                                   tuple(FeatureSpec(name, name, DType(dtype)) for name, dtype in data.FEATURES),
                                   ttl_s=3650 * 86400),),
    feature_services=(FeatureServiceSpec("svc", ("profile",)),),
)


def write_store(root: Path, history: pl.DataFrame, chunk: int = 200_000) -> float:
    """The history's rows into a Parquet offline store at `root`; returns the seconds it took."""
    began = time.perf_counter()
    names = [name for name, _ in data.FEATURES]
    with ParquetOfflineStore(root) as store:
        for offset, first in enumerate(range(0, history.height, chunk)):
            part = history.slice(first, chunk)
            rows = tuple(FeatureRow((row["user_id"],), row["ts"], {n: row[n] for n in names})
                         for row in part.iter_rows(named=True))
            write = WriteOfflineRows("profile", ("user_id",), rows, SourceRange("bench", 0, first, first + len(rows)))
            store.append([OfflineWrite(Coordinates("bench", 0, offset), "bench", write, f"w{offset}")])
    return time.perf_counter() - began


def run(root: Path, history_path: Path, events_path: Path, repeats: int) -> dict[str, Any]:
    if not (root / "manifest.json").exists():
        write_s: float | None = write_store(root, pl.read_parquet(history_path))
    else:
        write_s = None
    events = pl.read_parquet(events_path)
    times = []
    with OfflineFeatures.open(root, REPO, "bench") as offline:
        for _ in range(repeats):
            began = time.perf_counter()
            result = offline.get_features_for_events(events, "svc", "ts")
            times.append(time.perf_counter() - began)
    return {"events": events.height, "seconds_median": statistics.median(times), "seconds_all": times,
            "import_s": IMPORT_S, "store_write_s": write_s,
            "matched": int(result["profile__amount"].is_not_null().sum()),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


if __name__ == "__main__":
    print(json.dumps(run(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))))
