"""Which offline write holds a feature view's row for one entity as of a time: the first link of the
lineage of a training-data value.

A customer-plane read like the rest of offline retrieval: it opens the offline store read-only and
returns the row's `_written_by`, the event id of the write message; the audit log (flow F7, then F5 by
correlation id) takes the chain from there to the source records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from events.data import Scalar
from events.errors import InvalidRequest
from stores.offline import EVENT_TIME, WRITTEN_BY, OfflineStore


@dataclass(frozen=True, slots=True)
class OfflineRowWriter:
    """The row in effect at the asked time: its event time and the write that stored it."""

    feature_view: str
    event_time: datetime
    written_by: str


def offline_row_writer(store: OfflineStore, workspace: str, feature_view: str, join_keys: Mapping[str, Scalar],
                       at: datetime) -> OfflineRowWriter | None:
    """The newest row of `join_keys` with an event time at or before `at` (the AS OF row), None if none.

    InvalidRequest when a join key is not a column of the view or `at` has no time zone.
    """
    if at.tzinfo is None:
        raise InvalidRequest(f"the lineage time {at.isoformat()} needs a time zone")
    rows = store.scan(workspace, feature_view)
    columns = rows.collect_schema().names()
    if set(columns) <= {EVENT_TIME, WRITTEN_BY}:
        return None  # nothing was ever written offline for this view
    unknown = sorted(set(join_keys) - set(columns))
    if unknown:
        raise InvalidRequest(f"{unknown} are not join keys of feature view '{feature_view}' (it has {columns})")
    matching = rows.filter(*(pl.col(name) == value for name, value in join_keys.items()),
                           pl.col(EVENT_TIME) <= at)
    newest = matching.sort(EVENT_TIME).select(EVENT_TIME, WRITTEN_BY).tail(1).collect()
    if newest.is_empty():
        return None
    event_time, written_by = newest.row(0)
    return OfflineRowWriter(feature_view, event_time, str(written_by))
