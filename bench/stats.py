"""Percentiles and summaries of measured samples (pure: no I/O)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], pct: float) -> float:
    """The `pct`-th percentile by linear interpolation between closest ranks (numpy's default method)."""
    if not values:
        raise ValueError("no samples")
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile {pct} is not in [0, 100]")
    ordered = sorted(values)
    rank = pct / 100 * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(latencies_ms: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99, mean and max of latencies in milliseconds."""
    return {"p50_ms": percentile(latencies_ms, 50), "p90_ms": percentile(latencies_ms, 90),
            "p99_ms": percentile(latencies_ms, 99), "mean_ms": statistics.fmean(latencies_ms),
            "max_ms": max(latencies_ms)}


def ratio(ours: float | None, theirs: float | None) -> float | None:
    """ours / theirs, or None when either side is missing or the peer measured zero."""
    if ours is None or theirs is None or theirs == 0:
        return None
    return ours / theirs
