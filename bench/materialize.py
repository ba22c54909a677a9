"""Batch materialization: source rows/s from a Parquet batch source into the online (and offline) store.

Feast's side is measured (`feast_peer.FeastPeer.materialize`: `FeatureStore.materialize` over the whole
history file into its SQLite online store). featureplane's side needs batch feature views and
`featureplane materialize`, which are being added on another branch: `featureplane_rows_per_s` is the
one place to wire it once they land; until then it measures nothing and says so (no number is made up).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PENDING = "not measured: batch feature views and `featureplane materialize` are not merged on this branch yet"


def featureplane_rows_per_s(history_parquet: Path, workdir: Path) -> dict[str, Any]:
    """TO WIRE: apply a BatchFeatureView over `history_parquet` (bench/data.py `FEATURES`, entity user_id,
    timestamp ts), time `featureplane materialize` until the online store has every row, return
    {"source_rows", "seconds", "rows_per_s"}. Until then: {"status": PENDING}."""
    del history_parquet, workdir
    return {"status": PENDING}
