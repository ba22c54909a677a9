"""Offline retrieval: training data read straight from the offline store's Parquet.

    with OfflineFeatures.open(Path("/data/offline"), load_repo(Path("repo")), "prod") as offline:
        training = offline.get_features_for_events(events, "fraud", timestamp_key="ts")
        history = offline.get_features_in_range("user_last", start, end)

This is a customer-plane read: the SDK opens the store read-only next to the customer's data and never
goes through the data plane. Results are polars DataFrames (`.to_arrow()`; `.to_pandas()` when pandas is
installed). Point-in-time semantics are those of `sdk.offline_join`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import polars as pl

from events.errors import InvalidRequest, UnknownFeatureView
from events.registry import OBJECT_KINDS, Workspace
from events.specs import FeatureViewKind, RepoSpec
from sdk.offline_aggregates import AggregatePlan, aggregate_events, input_rows, ranged_request_times
from sdk.offline_join import (
    RESERVED,
    ROW,
    TS,
    VALID_FROM,
    VALID_TO,
    ViewPlan,
    join_view,
    keys_comparable,
    utc_micros,
    view_rows,
    with_validity,
)
from stores.offline import EVENT_TIME, WRITTEN_BY, OfflineStore, ParquetOfflineStore

__all__ = ["OfflineFeatures", "UnknownFeatureView", "workspace_of"]

Frame = pl.DataFrame | pl.LazyFrame
Plan = ViewPlan | AggregatePlan


def workspace_of(repo: RepoSpec, name: str) -> Workspace:
    """The workspace `name` holding exactly the definitions of `repo`, as if it had just been applied."""
    objects: dict[str, Any] = {attr: {obj.name: obj for obj in getattr(repo, attr)} for _, attr in OBJECT_KINDS}
    return Workspace(name, **objects)


class OfflineFeatures:
    """Point-in-time-correct training data and row history from an offline store, for one workspace."""

    def __init__(self, store: OfflineStore, workspace: Workspace) -> None:
        self._store = store
        self._workspace = workspace
        self._owns_store = False

    @classmethod
    def open(cls, store_root: Path, repo: RepoSpec, workspace: str) -> OfflineFeatures:
        """Read the Parquet store at `store_root` (read-only: the writer keeps running) with the
        definitions of `repo`; closing the result closes the store."""
        offline = cls(ParquetOfflineStore(store_root, readonly=True), workspace_of(repo, workspace))
        offline._owns_store = True
        return offline

    def close(self) -> None:
        """Close the store if `open` opened it; a store passed in stays its owner's to close."""
        if self._owns_store:
            self._store.close()  # safe twice

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def get_features_for_events(self, events: Frame, feature_service: str, timestamp_key: str) -> pl.DataFrame:
        """`events` in their order, with every column they had plus `<view>__<feature>` for each feature
        of the service: its value as of the event's `timestamp_key` (a datetime column; naive is UTC).

        Each event needs the join keys of every view of the service; a null key or timestamp, or no row
        within the view's TTL, gives null features. Aggregates (`<view>__<aggregate>`) are what get-features
        serves at a request time equal to the event's timestamp, computed from the view's stored input
        rows (see `sdk.offline_aggregates`): an entity without events in a window gets 0 for counts and
        null otherwise, a time-window series gives a list.
        """
        service = self._workspace.service(feature_service)
        plans = [self._plan(name, f"feature service '{feature_service}'") for name in service.feature_views]
        frame = _collected(events, "events")
        _check_events(frame.schema, timestamp_key, plans)
        left = frame.with_row_index(ROW).with_columns(utc_micros(timestamp_key, frame.schema[timestamp_key]).alias(TS))
        span = _span(left[TS])
        joined = left.lazy().sort(TS, nulls_last=True)
        for plan in plans:
            if isinstance(plan, AggregatePlan):
                values = aggregate_events(left, self._input_rows(plan, frame.schema), plan)
                joined = joined.join(values.lazy(), on=ROW, how="left")
                continue
            rows = view_rows(self._store.scan(self._workspace.name, plan.name), plan)
            joined = join_view(joined, frame.schema, rows, plan, span)
        return joined.sort(ROW).drop(ROW, TS).collect()

    def get_features_in_range(
        self, feature_view: str, start: datetime, end: datetime, entities: Frame | None = None, *,
        include_lineage: bool = False,
    ) -> pl.DataFrame:
        """Every stored row of the view with `start <= event_time < end` (naive datetimes are UTC), in
        event-time order: its join keys, `event_time`, its features, `_valid_from` / `_valid_to` (the
        row holds from its event time until the entity's next row or the view's ttl, whichever comes
        first; null: still valid) and, with `include_lineage`, the `_written_by` event id. `entities` (a
        frame with the view's join keys) keeps only their rows.
        """
        plan = self._plan(feature_view, "the request")
        first, stop = _instant(start, "start"), _instant(end, "end")
        if stop < first:
            raise InvalidRequest(f"end {stop.isoformat()} is before start {first.isoformat()}")
        if isinstance(plan, AggregatePlan):
            if include_lineage:
                raise InvalidRequest(f"feature view '{feature_view}' has aggregates: a value comes from many "
                                     f"rows, so there is no single `_written_by`")
            return self._aggregates_in_range(plan, first, stop, entities)
        rows = with_validity(view_rows(self._store.scan(self._workspace.name, plan.name), plan), plan)
        rows = rows.filter(pl.col(EVENT_TIME) >= first, pl.col(EVENT_TIME) < stop)
        if entities is not None:
            rows = _of_entities(rows, _collected(entities, "entities"), plan)
        columns = [*plan.join_keys, EVENT_TIME, *(f.name for f in plan.features), VALID_FROM, VALID_TO]
        if include_lineage:
            columns.append(WRITTEN_BY)
        return rows.select(columns).sort(EVENT_TIME, maintain_order=True).collect()

    def _input_rows(self, plan: AggregatePlan, keys: pl.Schema) -> pl.LazyFrame:
        scan = self._store.scan(self._workspace.name, plan.name)
        stored = scan.collect_schema()
        if all(k in stored for k in plan.join_keys):
            keys_comparable(keys, stored, plan, "events")  # raises on keys of another type
        return input_rows(scan, plan, keys)

    def _aggregates_in_range(self, plan: AggregatePlan, first: datetime, stop: datetime,
                             entities: Frame | None) -> pl.DataFrame:
        scan = self._store.scan(self._workspace.name, plan.name)
        stored = scan.collect_schema()
        keys = pl.Schema({k: stored.get(k, pl.Null()) for k in plan.join_keys})
        rows = input_rows(scan, plan, keys)
        if entities is not None:
            rows = _of_entities(rows, _collected(entities, "entities"), plan)
        requests = ranged_request_times(rows, plan, first, stop).collect().with_row_index(ROW)
        values = aggregate_events(requests.with_columns(pl.col(VALID_FROM).alias(TS)), rows, plan)
        names = {plan.output(a.name): a.name for a in plan.aggregates}
        return (requests.join(values, on=ROW, how="left").rename(names)
                .sort(VALID_FROM, *plan.join_keys, maintain_order=True).drop(ROW))

    def _plan(self, name: str, asked_by: str) -> Plan:
        view = self._workspace.feature_views.get(name)
        if view is None:
            raise UnknownFeatureView(f"feature view '{name}' (asked for by {asked_by}) does not exist in "
                                     f"workspace '{self._workspace.name}'")
        if view.kind is FeatureViewKind.REALTIME:
            raise InvalidRequest(f"feature view '{name}' is a realtime view: offline retrieval does not run "
                                 f"realtime transformations yet")
        if view.aggregates and view.kind is not FeatureViewKind.STREAM:
            raise InvalidRequest(f"feature view '{name}' is a {view.kind.value} view with aggregates: those are "
                                 f"not materialized offline yet")
        if not view.offline:
            raise InvalidRequest(f"feature view '{name}' has offline=False: its rows are not kept offline")
        if view.aggregates:
            return AggregatePlan(name, self._workspace.join_keys(view), view.aggregates,
                                 view.aggregation_interval_s, view.feature_start_time)
        ttl = None if view.ttl_s is None else timedelta(seconds=view.ttl_s)
        return ViewPlan(name, self._workspace.join_keys(view), view.features, ttl)


def _collected(frame: object, what: str) -> pl.DataFrame:
    # Collected once: the events are read by one join per view, and their time span bounds every scan.
    if isinstance(frame, pl.LazyFrame):
        return frame.collect()
    if isinstance(frame, pl.DataFrame):
        return frame
    raise InvalidRequest(f"the {what} must be a polars DataFrame or LazyFrame, not {type(frame).__name__} "
                         f"(pandas: polars.from_pandas; Arrow: polars.from_arrow)")


def _outputs(plan: Plan) -> list[str]:
    if isinstance(plan, AggregatePlan):
        return [plan.output(a.name) for a in plan.aggregates]
    return [plan.output(f.name) for f in plan.features]


def _check_events(schema: pl.Schema, timestamp_key: str, plans: Sequence[Plan]) -> None:
    if timestamp_key not in schema:
        raise InvalidRequest(f"the events have no timestamp column '{timestamp_key}'")
    for plan in plans:
        missing = [k for k in plan.join_keys if k not in schema]
        if missing:
            raise InvalidRequest(f"the events have no join key column {_names(missing)}, which feature view "
                                 f"'{plan.name}' needs")
    taken = [name for name in RESERVED if name in schema]
    taken += [out for plan in plans for out in _outputs(plan) if out in schema]
    if taken:
        raise InvalidRequest(f"the events already have column {_names(taken)}, which the result would "
                             f"overwrite: rename it")


def _of_entities(rows: pl.LazyFrame, entities: pl.DataFrame, plan: Plan) -> pl.LazyFrame:
    missing = [k for k in plan.join_keys if k not in entities.schema]
    if missing:
        raise InvalidRequest(f"the entities have no join key column {_names(missing)} of feature view "
                             f"'{plan.name}'")
    stored = rows.collect_schema()
    if not keys_comparable(entities.schema, stored, plan, "entities"):
        return rows.clear()
    # A key that does not fit the stored type matches no stored row: the non-strict cast makes it null,
    # and null keys never join.
    keys = entities.lazy().select(pl.col(k).cast(stored[k], strict=False) for k in plan.join_keys).unique()
    # maintain_order: rows of equal event times must stay in write order (the later write is newer)
    return rows.join(keys, on=list(plan.join_keys), how="semi", maintain_order="left")


def _instant(value: object, label: str) -> datetime:
    if not isinstance(value, datetime):
        raise InvalidRequest(f"{label} must be a datetime, not {type(value).__name__}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _span(timestamps: pl.Series) -> tuple[datetime, datetime] | None:
    earliest, latest = timestamps.min(), timestamps.max()
    if isinstance(earliest, datetime) and isinstance(latest, datetime):
        return earliest, latest
    return None  # no event has a timestamp


def _names(columns: Sequence[str]) -> str:
    return ", ".join(f"'{c}'" for c in columns)
