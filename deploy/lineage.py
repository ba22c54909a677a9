"""`featureplane lineage --at TIME`: the lineage of training-data values, as of a past time.

The online store holds only the newest values, so a past value is traced from the offline store: the
row in effect at that time (read from the customer plane's Parquet, as the SDK reads training data)
names the write that stored it, and the gateway traces that write through the audit log.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from events.data import Scalar
from events.errors import InvalidRequest, NotFound
from events.registry import Workspace
from sdk.offline_lineage import offline_row_writer
from stores.offline import ParquetOfflineStore

TraceWrite = Callable[[str], Mapping[str, Any]]


def offline_lineage(ws: Workspace, service: str, join_keys: Mapping[str, Scalar], at: datetime,
                    offline_root: Path, trace: TraceWrite) -> list[dict[str, Any]]:
    """One chain per feature view of `service` that is kept offline, as of `at`."""
    spec = ws.feature_services.get(service)
    if spec is None:
        raise NotFound(f"feature service '{service}' is not applied in workspace '{ws.name}'")
    chains = []
    with ParquetOfflineStore(offline_root, readonly=True) as store:
        for view in (ws.feature_views[name] for name in spec.feature_views):
            if not view.entities or not view.offline:
                continue  # realtime views are computed per request; online-only views keep no history
            keys = ws.join_keys(view)
            missing = [k for k in keys if k not in join_keys]
            if missing:
                raise InvalidRequest(f"--key is missing {missing}, needed by feature view '{view.name}'")
            entity = {k: join_keys[k] for k in keys}
            chain: dict[str, Any] = {"feature_view": view.name, "entity_key": list(entity.values()),
                                     "at": at.isoformat()}
            if view.aggregates:
                chain["note"] = "aggregated: the newest input row in effect is traced"
            row = offline_row_writer(store, ws.name, view.name, entity, at)
            if row is not None:
                chain["event_time"] = row.event_time.isoformat()
                chain.update(trace(row.written_by))
            chains.append(chain)
    return chains
