"""RiftWorker: turns raw records of stream-source topics into online and offline writes (F5 → F7).

Parsing and projection are pure functions; the worker only groups a batch by source partition, audits
what it consumed (F5) and lets the runtime send the writes and their audit records in one transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import msgpack
import structlog

from actors.auditing import make_record
from actors.bus import Record
from actors.components.batch_job import job_decision
from actors.components.chunks import chunks
from actors.components.stream_backfill import after_cutoff
from actors.components.tiling import TileBuilder, aggregate_input, aggregates_stream
from actors.components.transform import Reader, transform_records
from actors.follower import RegistryFollower
from actors.outbox import Outbound
from actors.runtime import Decision, Inbound
from events.audit import AuditRecord
from events.codec import CODEC, Codec
from events.data import (
    FeatureRow,
    IngestRecords,
    RecordDeadLettered,
    Scalar,
    SourceRange,
    WriteOfflineRows,
    WriteOnlineRows,
    WriteTiles,
)
from events.envelope import Envelope, Message, new_message
from events.errors import InvalidRequest
from events.flows import Flow
from events.jobs import MaterializationJob
from events.planes import Component
from events.registry import Workspace
from events.specs import DType, FeatureViewKind, FeatureViewSpec, PushSourceSpec, RecordFormat, StreamSourceSpec
from events.topics import DEAD_LETTER, INGEST, JOBS_RIFT, OFFLINE_WRITES, ONLINE_WRITES, TopicNames

RecordSource = StreamSourceSpec | PushSourceSpec


def parse_record(source: RecordSource, payload: bytes) -> dict[str, Scalar]:
    """The record's declared fields, typed; InvalidRequest says why a record does not fit."""
    # Pushed records arrive as JSON through the ingest API.
    record_format = source.record_format if isinstance(source, StreamSourceSpec) else RecordFormat.JSON
    try:
        raw = json.loads(payload) if record_format is RecordFormat.JSON else msgpack.unpackb(payload)
    except (ValueError, msgpack.UnpackException) as exc:
        raise InvalidRequest(f"not {record_format.value}: {exc}") from exc
    if isinstance(raw, dict) and isinstance(raw.get("record"), dict):
        raw = raw["record"]  # the ingest API's {"record": {...}} wrapping
    if not isinstance(raw, dict):
        raise InvalidRequest(f"a record must be an object, got {type(raw).__name__}")
    fields = {f.name: _typed(f.name, f.dtype, raw.get(f.name)) for f in source.schema}
    if fields.get(source.timestamp_field) is None:
        raise InvalidRequest(f"timestamp field '{source.timestamp_field}' is missing")
    return fields


def _typed(name: str, dtype: DType, value: Any) -> Scalar:
    if value is None:
        return None
    kind = type(value)
    if kind is _EXPECTED.get(dtype):  # the common case: exactly the declared type
        return value  # type: ignore[no-any-return]
    ok = {
        DType.STRING: isinstance(value, str),
        DType.INT64: isinstance(value, int) and not isinstance(value, bool),
        DType.FLOAT64: isinstance(value, int | float) and not isinstance(value, bool),
        DType.BOOL: isinstance(value, bool),
        DType.TIMESTAMP: isinstance(value, str | int | float) and not isinstance(value, bool),
    }[dtype]
    if not ok:
        raise InvalidRequest(f"field '{name}' is {type(value).__name__}, expected {dtype.value}")
    if dtype is DType.FLOAT64:
        return float(value)
    if dtype is DType.TIMESTAMP:
        return parse_timestamp(name, value).isoformat()
    return value  # type: ignore[no-any-return]


# Values of these exact types are kept as they are (timestamps are always parsed and normalized).
_EXPECTED: dict[DType, type] = {DType.STRING: str, DType.INT64: int, DType.FLOAT64: float, DType.BOOL: bool}


def parse_timestamp(name: str, value: str | int | float) -> datetime:
    """ISO-8601 text (naive means UTC) or epoch seconds; epoch milliseconds are recognised by size."""
    try:
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value)
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        seconds = value / 1000 if abs(value) > 1e11 else value
        return datetime.fromtimestamp(seconds, UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise InvalidRequest(f"field '{name}' is not a timestamp: {value!r}") from exc


def projects_attributes(view: FeatureViewSpec) -> bool:
    """Whether this worker materializes the view as rows: a stream view of plain attributes (transformed
    ones too: actors/components/transform.py projects their output rows)."""
    return view.kind is FeatureViewKind.STREAM and not view.aggregates


def project(workspace: Workspace, view: FeatureViewSpec, source: RecordSource,
            fields: Mapping[str, Scalar]) -> FeatureRow:
    keys = workspace.join_keys(view)
    missing = [k for k in keys if fields.get(k) is None]
    if missing:
        raise InvalidRequest(f"join key(s) {missing} missing for feature view '{view.name}'")
    event_time = parse_timestamp(source.timestamp_field, fields[source.timestamp_field])  # type: ignore[arg-type]
    return FeatureRow(
        entity_key=tuple(fields[k] for k in keys),
        event_time=event_time,
        values={f.name: fields.get(f.column) for f in view.features},
    )


def materializes(view: FeatureViewSpec) -> bool:
    """Whether Rift writes the view: attribute rows or aggregate tiles of a stream view."""
    return projects_attributes(view) or aggregates_stream(view)


def _transformed(readers: Sequence[tuple[Workspace, RecordSource, list[FeatureViewSpec]]]) -> list[Reader]:
    """The readers with only their transformed views that Rift materializes."""
    return [(ws, src, [v for v in views if v.transformation is not None and materializes(v)])
            for ws, src, views in readers]


# One record as one feature view sees it: its workspace, the view, its row, and the record's fields.
Projection = tuple[Workspace, FeatureViewSpec, FeatureRow, dict[str, Scalar]]


class Materialized:
    """What one batch writes: rows of attribute views, tile deltas of aggregated views (online) and their
    input rows (offline, from which training data computes the same aggregates at any time)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], list[FeatureRow]] = defaultdict(list)
        self.tiles: dict[tuple[str, str], TileBuilder] = {}
        self.aggregate_inputs: dict[tuple[str, str], list[FeatureRow]] = defaultdict(list)

    def add(self, found: list[Projection]) -> None:
        for ws, view, row, fields in found:
            if not after_cutoff(view, row.event_time):
                continue  # the view's backfill materializes events before its cutoff, the stream the rest
            key = (ws.name, view.name)
            if projects_attributes(view):
                self.rows[key].append(row)
                continue
            if view.feature_start_time is not None and row.event_time < view.feature_start_time:
                continue  # aggregates (lifetime windows too) count events from feature_start_time on
            if view.online:
                self.tiles.setdefault(key, TileBuilder(view)).add(row.entity_key, row.event_time, fields)
            if view.offline:
                self.aggregate_inputs[key].append(aggregate_input(ws.join_keys(view), view, row, fields))


class RiftWorker:
    component = Component.RIFT

    def __init__(self, names: TopicNames, follower: RegistryFollower, codec: Codec = CODEC) -> None:
        self._names = names
        self._follower = follower
        self._codec = codec

    def subscriptions(self) -> Sequence[str]:
        registry = self._follower.registry
        sources = {s.topic for ws in registry.workspaces.values() if ws.live
                   for s in ws.stream_sources.values() if ws.views_of_source(s.name)}
        return [self._names.name(INGEST), self._names.name(JOBS_RIFT), *sorted(sources)]

    async def handle(self, batch: Sequence[Inbound]) -> Decision:
        by_partition: dict[tuple[str, int], list[Record]] = defaultdict(list)
        decision = Decision()
        for inbound in batch:
            if inbound.message is not None and isinstance(inbound.message.body, IngestRecords):
                self._handle_ingest(inbound.message, inbound.record, decision)
            elif inbound.message is not None and isinstance(inbound.message.body, MaterializationJob):
                ran = await job_decision(self.component, self._codec, inbound.message)  # batch_job.py
                decision.outputs.extend(ran.outputs)
                decision.consumed_audits.extend(ran.consumed_audits)
            elif inbound.message is None:
                by_partition[(inbound.record.topic, inbound.record.partition)].append(inbound.record)
        for records in by_partition.values():
            self._handle_partition(records, decision)
        return decision

    def _handle_partition(self, records: list[Record], decision: Decision) -> None:
        topic, partition = records[0].topic, records[0].partition
        source_range = SourceRange(topic, partition, records[0].offset, records[-1].offset)
        consumed = self._consumed_envelope(topic)
        decision.consumed_audits.append(_audit_consumed(records, consumed))
        batch = Materialized()
        readers = [(ws, src, ws.views_of_source(src.name)) for ws, src in self._sources_on(topic)]
        accepted: list[tuple[Record, list[Projection], list[dict[str, Scalar]]]] = []
        for record in records:
            try:
                # Every projection of a record first, so a bad record adds nothing anywhere.
                parsed = [parse_record(src, record.value) for _, src, _ in readers]
                found = [projection for (ws, src, views), fields in zip(readers, parsed, strict=True)
                         for projection in self._projections(ws, src, views, fields)]
            except InvalidRequest as exc:
                decision.outputs.append(self._dead_letter(record, exc.message, consumed))
                continue
            accepted.append((record, found, parsed))
        transformed, failed = transform_records(_transformed(readers), [fields for _, _, fields in accepted])
        for index, (record, found, _) in enumerate(accepted):
            if index in failed:
                decision.outputs.append(self._dead_letter(record, failed[index], consumed))
            else:
                batch.add(found)
        batch.add(transformed)
        decision.outputs.extend(self._flush(batch, source_range, consumed))

    def _handle_ingest(self, message: Message[IngestRecords], record: Record, decision: Decision) -> None:
        """Records of a push source, already audited by the gateway (F5) and checked there."""
        ws = self._follower.registry.workspaces.get(message.envelope.workspace)
        source = ws.push_sources.get(message.body.source) if ws is not None and ws.live else None
        if ws is None or source is None:
            self._log_unknown_push(message)
            return
        batch = Materialized()
        views = ws.views_of_source(source.name)
        accepted: list[tuple[bytes, dict[str, Scalar]]] = []
        for payload in message.body.records:
            try:
                fields = parse_record(source, payload)
                batch.add(self._projections(ws, source, views, fields))
            except InvalidRequest:
                continue  # the gateway reported it to the caller as a record error
            accepted.append((payload, fields))
        pushed = SourceRange(record.topic, record.partition, record.offset, record.offset)  # lineage
        transformed, failed = transform_records(_transformed([(ws, source, views)]), [[f] for _, f in accepted])
        batch.add(transformed)
        # The gateway ran each record through the transformations already; one that fails here is kept.
        decision.outputs.extend(self._dead_letter(record, reason, message.envelope, accepted[index][0])
                                for index, reason in failed.items())
        decision.outputs.extend(self._flush(batch, pushed, message.envelope))

    @staticmethod
    def _projections(ws: Workspace, source: RecordSource, views: list[FeatureViewSpec],
                     fields: dict[str, Scalar]) -> list[Projection]:
        """Each untransformed view's row of one parsed record, for the views this worker materializes."""
        return [(ws, view, project(ws, view, source, fields), fields) for view in views
                if view.transformation is None and materializes(view)]

    def _flush(self, batch: Materialized, source: SourceRange, consumed: Envelope) -> list[Outbound]:
        outputs: list[Outbound] = []
        for (ws_name, view_name), rows in batch.rows.items():
            ws = self._follower.registry.workspaces[ws_name]
            outputs.extend(self._writes(ws, ws.feature_views[view_name], tuple(rows), source, consumed))
        for (ws_name, view_name), builder in batch.tiles.items():
            outputs += [Outbound(ONLINE_WRITES, self._message(WriteTiles(view_name, deltas, source), ws_name, consumed))
                        for deltas in chunks(builder.deltas(), self._codec)]
        for (ws_name, view_name), inputs in batch.aggregate_inputs.items():
            ws = self._follower.registry.workspaces[ws_name]
            keys = ws.join_keys(ws.feature_views[view_name])
            outputs += [Outbound(OFFLINE_WRITES, self._message(WriteOfflineRows(view_name, keys, chunk, source),
                                                               ws_name, consumed))
                        for chunk in chunks(inputs, self._codec)]
        return outputs

    def _log_unknown_push(self, message: Message[IngestRecords]) -> None:
        structlog.get_logger().warning("ingest_for_unknown_push_source", workspace=message.envelope.workspace,
                                       source=message.body.source)

    def _writes(self, ws: Workspace, view: FeatureViewSpec, rows: tuple[FeatureRow, ...],
                source: SourceRange, consumed: Envelope) -> list[Outbound]:
        outputs: list[Outbound] = []
        for chunk in chunks(rows, self._codec):
            if view.online:
                body_on = WriteOnlineRows(view.name, chunk, source)
                outputs.append(Outbound(ONLINE_WRITES, self._message(body_on, ws.name, consumed)))
            if view.offline:
                body_off = WriteOfflineRows(view.name, ws.join_keys(view), chunk, source)
                outputs.append(Outbound(OFFLINE_WRITES, self._message(body_off, ws.name, consumed)))
        return outputs

    def _dead_letter(self, record: Record, reason: str, consumed: Envelope, payload: bytes | None = None,
                     ) -> Outbound:
        body = RecordDeadLettered(reason, SourceRange(record.topic, record.partition, record.offset,
                                                      record.offset), record.value if payload is None else payload)
        return Outbound(DEAD_LETTER, self._message(body, consumed.workspace, consumed))

    def _message(self, body: Any, workspace: str, consumed: Envelope) -> Message[Any]:
        return self._codec.message(body, producer=self.component, workspace=workspace, caused_by=consumed)

    def _sources_on(self, topic: str) -> list[tuple[Workspace, StreamSourceSpec]]:
        registry = self._follower.registry
        # Development workspaces hold definitions only: they never materialize.
        return [(ws, s) for ws in registry.workspaces.values() if ws.live for s in ws.stream_sources.values()
                if s.topic == topic]

    def _consumed_envelope(self, topic: str) -> Envelope:
        """A stand-in envelope for a batch of raw source records: they carry no envelope of their own."""
        sources = self._sources_on(topic)
        workspace = sources[0][0].name if len(sources) == 1 else ""
        return new_message(None, type_tag="SourceRecords", schema_version=1,
                           producer=Component.CUSTOMER_APP, workspace=workspace).envelope


def _audit_consumed(records: Sequence[Record], consumed: Envelope) -> AuditRecord:
    digest = hashlib.sha256()
    for record in records:
        digest.update(record.value)
    return make_record(
        Flow.F5, Component.CUSTOMER_APP, Component.RIFT, consumed, subject=records[0].topic,
        message_count=len(records), row_count=len(records), byte_count=sum(len(r.value) for r in records),
        digest=digest.hexdigest(), topic=records[0].topic, partition=records[0].partition,
        first_offset=records[0].offset, last_offset=records[-1].offset,
    )
