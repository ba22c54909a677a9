"""The ingest API's policy: check pushed records before they enter the platform (pure).

Each record is checked against its push source's schema and, per feature view, against the view's TTL;
the ones that fail are reported back as record errors and never sent. Counts are per feature view, as
Tecton's ingest metrics are.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from actors.components.rift import parse_record, parse_timestamp, project, projects_attributes
from actors.components.stream_backfill import after_cutoff
from actors.components.tiling import aggregates_stream
from actors.components.transform import transform_batch
from events.errors import InvalidRequest, NotFound
from events.registry import Workspace
from events.specs import FeatureViewSpec, PushSourceSpec

# The default largest record (its JSON encoding) the ingest API accepts; Settings.max_record_bytes sets it.
MAX_RECORD_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class RecordError:
    source: str
    index: int
    feature_view: str
    message: str


@dataclass
class IngestPlan:
    payloads: dict[str, list[bytes]] = field(default_factory=dict)  # source -> records to send
    online: dict[str, int] = field(default_factory=dict)  # feature view -> rows going online
    offline: dict[str, int] = field(default_factory=dict)
    errors: list[RecordError] = field(default_factory=list)

    # online writes the ingest causes (Rift writes once per view per source): the changelog to wait for
    online_writes: int = 0


def push_source(ws: Workspace, name: str) -> PushSourceSpec:
    source = ws.push_sources.get(name)
    if source is None:
        raise NotFound(f"push source '{name}' does not exist in workspace '{ws.name}'")
    return source


def plan_ingest(ws: Workspace, records: Mapping[str, Sequence[Mapping[str, Any]]], now: datetime,
                max_record_bytes: int = MAX_RECORD_BYTES) -> IngestPlan:
    plan = IngestPlan()
    for source_name, items in records.items():
        source = push_source(ws, source_name)
        views = [v for v in ws.views_of_source(source.name) if projects_attributes(v) or aggregates_stream(v)]
        for index, item in enumerate(items):
            payload = json.dumps(item, separators=(",", ":")).encode()
            problem = ("", f"the record is {len(payload)} bytes; at most {max_record_bytes} are accepted") \
                if len(payload) > max_record_bytes else _problem(ws, source, views, payload, now)
            if problem is not None:
                plan.errors.append(RecordError(source.name, index, *problem))
                continue
            plan.payloads.setdefault(source.name, []).append(payload)
            for view in views:
                if view.online:
                    plan.online[view.name] = plan.online.get(view.name, 0) + 1
                if view.offline:  # aggregated views too: Rift writes their input rows offline
                    plan.offline[view.name] = plan.offline.get(view.name, 0) + 1
        if source.name in plan.payloads:
            plan.online_writes += sum(1 for view in views if view.online)
    return plan


def _problem(ws: Workspace, source: PushSourceSpec, views: Sequence[FeatureViewSpec], payload: bytes,
             now: datetime) -> tuple[str, str] | None:
    """(feature view or "", why) for a record that must not be ingested, else None."""
    try:
        fields = parse_record(source, payload)
        event_time = parse_timestamp(source.timestamp_field, fields[source.timestamp_field])  # type: ignore[arg-type]
    except InvalidRequest as exc:
        return "", f"does not match the schema of push source '{source.name}': {exc.message}"
    for view in views:
        try:
            if view.transformation is None:
                project(ws, view, source, fields)
            else:  # the record through the view's transformation, as Rift will run it
                transform_batch(ws, source, [view], [fields])
        except InvalidRequest as exc:
            return view.name, exc.message
        if not after_cutoff(view, event_time):
            return view.name, (f"event time {event_time.isoformat()} is before {view.backfill_until}, from which on "
                               f"feature view '{view.name}' is materialized by its stream; earlier events come "
                               f"from its backfill")
        if view.ttl_s is not None and event_time < now - timedelta(seconds=view.ttl_s):
            return view.name, f"event time {event_time.isoformat()} is outside the TTL of feature view '{view.name}'"
    return None
