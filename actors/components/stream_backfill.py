"""Backfilling a stream feature view from its stream source's batch source, without counting twice.

A stream view created with a `batch_schedule` gets `backfill_until`, the time the control plane created it.
That instant splits the view's events by event time: those before it are materialized only by backfill jobs
reading the batch source (the same jobs as batch views, on Rift), those from it on only by the stream. The
online store keeps every tile delta and merges them on read, so two writers of one tile add up exactly
when no event reaches both: Rift and ingest drop stream events stamped before the cutoff, and no backfill
range may end after it. The cutoff never moves: an update keeps it, and a view created without a backfill
cannot get one later (its stream has materialized every event since; delete and re-create it instead).

`batch_schedule` on a stream view is the length of its backfill jobs: the backfill runs once, from
`feature_start_time` up to the cutoff; there are no recurring batch jobs after it, the stream covers that.
Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from events.registry import Workspace
from events.specs import BatchSourceSpec, FeatureViewKind, FeatureViewSpec, PushSourceSpec, StreamSourceSpec


def stamped(old: FeatureViewSpec | None, new: FeatureViewSpec, now: datetime) -> FeatureViewSpec | str:
    """The view as the control plane stores it (with its cutoff), or why it may not be applied."""
    if new.kind is not FeatureViewKind.STREAM:
        return new
    cutoff = old.backfill_until if old is not None and old.kind is FeatureViewKind.STREAM else None
    if cutoff is not None:
        return replace(new, backfill_until=cutoff)
    if new.batch_schedule_s is None:
        return new
    if old is not None and old.kind is FeatureViewKind.STREAM:
        return (f"feature view '{new.name}': a stream view is backfilled (batch_schedule) only from its creation: "
                f"its stream has materialized every event since, so a backfill now would count them twice; "
                f"delete the view and apply it again to backfill it")
    return replace(new, backfill_until=now)


def after_cutoff(view: FeatureViewSpec, event_time: datetime) -> bool:
    """Whether the stream materializes an event of `view` (False: its backfill owns the event)."""
    return view.backfill_until is None or event_time >= view.backfill_until


def backfill_source(ws: Workspace, view: FeatureViewSpec) -> BatchSourceSpec | str:
    """The batch source a stream view's backfill reads, as the view reads it (the stream's timestamp
    field), or why the view cannot be backfilled."""
    source: StreamSourceSpec | PushSourceSpec | None = ws.stream_sources.get(view.source) or \
        ws.push_sources.get(view.source)
    if source is None:
        return f"feature view '{view.name}': unknown source '{view.source}'"
    batch = ws.batch_sources.get(source.batch_source) if source.batch_source else None
    if batch is None:
        return (f"'{view.name}' is a stream feature view whose source '{source.name}' has no batch source "
                f"to backfill from")
    if view.backfill_until is None:
        return (f"'{view.name}' was created without a batch_schedule: its stream materializes every event, "
                f"so a backfill would count events twice")
    # Validation made sure the batch source has each stream field with the same type.
    return replace(batch, timestamp_field=source.timestamp_field)
