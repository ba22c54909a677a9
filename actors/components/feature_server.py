"""FeatureServer: online retrieval (F1 → F2 → F3 → F4), with no HTTP in it; the gateway hosts it.

A request becomes one read request to the online store, sent in a transaction with the audit records
of the request (F1) and the read (F2); the online store's reply (F3) is audited by the store; the
response (F4) is audited once the gateway has its bytes.

The records of flows that are no Kafka message (F4, F1 of a request the cache answered whole, F1 denied)
are written to the audit spool before the answer leaves and shipped to Kafka in the background
(actors/audit_shipper.py): an answer never waits for Kafka.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from actors.audit_shipper import AuditShipper
from actors.auditing import make_record
from actors.bus import Bus, TransactionalProducer
from actors.components.auth import Authenticator
from actors.components.cache import Cached, ServingCache
from actors.components.ingest import MAX_RECORD_BYTES, IngestPlan, plan_ingest
from actors.components.serving import (
    FeatureRequest,
    ServedBatch,
    ServedFeature,
    ServedFeatures,
    assemble,
    check_request_context,
    newest_writers,
    plan_batch,
    plan_lookups,
    read_views,
)
from actors.detached import DetachedPublisher
from actors.follower import RegistryFollower
from actors.group_commit import GroupCommit
from actors.outbox import Outbound
from actors.replies import ReplyRouter
from events.access import DENIED_PREFIX, is_denial
from events.audit import AuditLogAnswered, AuditRecord, Outcome, QueryAuditLog
from events.codec import CODEC, Codec
from events.control import ApplyRepo, RepoApplied
from events.data import (
    IngestRecords,
    Lookup,
    OnlineRowsRead,
    OnlineRowsWritten,
    ReadOnlineRows,
    Scalar,
    StoredRow,
    TileState,
)
from events.envelope import Envelope, Message, new_id, new_message
from events.errors import DeadlineExceeded, InvalidRequest, NotFound, PermissionDenied
from events.flows import Flow
from events.planes import Component
from events.registry import Registry, Workspace
from events.specs import FeatureServiceSpec, RepoSpec
from events.topics import (
    AUDIT_QUERIES,
    AUDIT_REPLIES,
    CONTROL_COMMANDS,
    INGEST,
    ONLINE_CHANGELOG,
    ONLINE_READS,
    ONLINE_REPLIES,
    TopicNames,
)
from stores.audit_spool import AuditSpool, InMemoryAuditSpool

T = TypeVar("T")
# One lookup's answer: the stored row, the tiles, and why the store could not answer it (None: it did)
Answer = tuple[StoredRow | None, tuple[TileState, ...] | None, str | None]
REGISTRY_SYNC_TIMEOUT_S = 5.0
INGEST_TIMEOUT_S = 10.0
MAX_LINEAGE_SOURCES = 100
# Writes traced for one aggregated value (the newest); the total is reported beside them.
MAX_LINEAGE_WRITES = 10


COMMAND_TIMEOUT_S = 30.0


class CommandRefused(InvalidRequest):
    """The control plane refused a command; the reason is its own."""


def refused(reasons: Sequence[str]) -> InvalidRequest | PermissionDenied:
    """The error for a command the control plane refused: PermissionDenied when any reason is the caller's
    lack of a right (e.g. a role revoked after the gateway's own check), else CommandRefused."""
    text = "; ".join(r.removeprefix(DENIED_PREFIX) for r in reasons)
    return PermissionDenied(text) if any(is_denial(r) for r in reasons) else CommandRefused(text)


def _live(ws: Workspace, verb: str) -> Workspace:
    if not ws.live:
        raise InvalidRequest(f"workspace '{ws.name}' is a development workspace: it does not {verb}")
    return ws


class FeatureServer:
    component = Component.FEATURE_SERVER

    def __init__(self, bus: Bus, names: TopicNames, replica_id: str, *, read_timeout_s: float,
                 codec: Codec = CODEC, cache: ServingCache | None = None,
                 max_record_bytes: int = MAX_RECORD_BYTES, audit_spool: AuditSpool | None = None) -> None:
        self._bus = bus
        self._max_record_bytes = max_record_bytes
        self._names = names
        self.replica_id = replica_id
        self._timeout_s = read_timeout_s
        self._codec = codec
        self.follower = RegistryFollower(bus, names, codec)
        self.auth = Authenticator(self.follower)
        self._cache = cache
        self._replies = ReplyRouter(bus, [names.name(ONLINE_REPLIES), names.name(AUDIT_REPLIES),
                                          names.name(ONLINE_CHANGELOG)], replica_id, codec,
                                    on_message=self._follow_changelog)
        self._producer: TransactionalProducer | None = None
        self._commits: GroupCommit | None = None
        # Request paths hand their messages to Kafka through this (in shared transactions, see GroupCommit),
        # so none waits on an absent broker.
        self._sends = DetachedPublisher(self._commits_or_fail, self.component, read_timeout_s)
        # Without a spool of its own (unit tests) the records wait in memory, and die with the process.
        self.audits = AuditShipper(audit_spool if audit_spool is not None else InMemoryAuditSpool(),
                                   self._commits_or_fail, codec, self.component)

    async def start(self) -> None:
        await self.follower.start()
        await self._replies.start()
        # The same id on every start of this replica: a restarted one fences its predecessor's transaction.
        self._producer = await self._bus.transactional_producer(
            f"{self._names.prefix}.feature-server.{self.replica_id}")
        self._commits = GroupCommit(self._producer, self._codec, self._names, self.component, self._bus.send)
        self.audits.start()  # first ships what a previous incarnation left in the spool

    async def close(self) -> None:
        await self.audits.close()
        await self._sends.close()
        await self._replies.close()
        await self.follower.close()
        if self._commits is not None:
            await self._commits.close()
        if self._producer is not None:
            await self._producer.close()

    async def get_features(self, request: FeatureRequest) -> ServedFeatures:
        rows, received, service, unaudited = await self._serve(request, [request.join_keys],
                                                               [request.request_context])
        return ServedFeatures(rows[0], received, service, unaudited)

    async def get_features_batch(self, request: FeatureRequest, key_maps: Sequence[Mapping[str, Scalar]],
                                 contexts: Sequence[Mapping[str, Scalar]] | None = None) -> ServedBatch:
        """Many entities in one read request to the store (Tecton's get-features-batch); `contexts` are
        the request contexts of the entities (default: the request's own for every one)."""
        rows, received, service, unaudited = await self._serve(
            request, key_maps, contexts or [request.request_context] * len(key_maps))
        return ServedBatch(tuple(rows), received, service, unaudited)

    async def _serve(self, request: FeatureRequest, key_maps: Sequence[Mapping[str, Scalar]],
                     contexts: Sequence[Mapping[str, Scalar]],
                     ) -> tuple[list[tuple[ServedFeature, ...]], Envelope, str, tuple[AuditRecord, ...]]:
        ws, service = await self._resolve(request.workspace, request.feature_service)
        for context in contexts:
            check_request_context(ws, service, context)
        now = datetime.now(UTC)
        lookups = plan_batch(ws, service, key_maps, now)
        hits = [self._cache.get(ws.name, lookup) if self._cache else None for lookup in lookups]
        received = new_message(None, type_tag="GetFeaturesRequest", schema_version=1,
                               producer=Component.CUSTOMER_APP, workspace=ws.name,
                               principal=request.principal).envelope
        f1 = make_record(Flow.F1, Component.CUSTOMER_APP, self.component, received, subject=service.name,
                         message_count=1, row_count=len(lookups), byte_count=len(request.payload),
                         digest=hashlib.sha256(request.payload).hexdigest())
        budget_s = request.latency_budget_ms / 1000 if request.latency_budget_ms else None
        answers, late, unaudited = await self._read_missing(ws, lookups, hits, received, f1, budget_s)
        width = len(read_views(ws, service))
        # each entity's answers are `width` consecutive lookups (none for a service of request-only views)
        rows = [assemble(ws, service, OnlineRowsRead("", self.replica_id,
                                                     tuple(a[0] for a in answers[k * width:(k + 1) * width]),
                                                     tuple(a[1] for a in answers[k * width:(k + 1) * width]),
                                                     errors=tuple(a[2] for a in answers[k * width:(k + 1) * width])),
                         now, [hit is not None for hit in hits[k * width:(k + 1) * width]], context,
                         [i in late for i in range(k * width, (k + 1) * width)])
                for k, context in enumerate(contexts)]
        return rows, received, service.name, unaudited

    async def _read_missing(self, ws: Workspace, lookups: tuple[Lookup, ...], hits: Sequence[Cached | None],
                            received: Envelope, f1: AuditRecord, budget_s: float | None = None,
                            ) -> tuple[list[Answer], frozenset[int], tuple[AuditRecord, ...]]:
        """Each lookup's row and tiles: from the cache where it has them, else in one read from the store
        (flows F2/F3) that carries the F1 audit record. With a latency budget, a store that has not answered
        within it leaves its lookups unanswered: their indexes come back as the second item. When the cache
        has everything, the F1 record comes back as the third, to go out with the response's F4."""
        answers: list[Answer] = [(hit.row, hit.tiles, None) if hit is not None else (None, None, None)
                                 for hit in hits]
        missing = [i for i, hit in enumerate(hits) if hit is None]
        if not missing:
            return answers, frozenset(), (f1,)  # answered from the cache: F1 goes out with the F4
        asked_at = ServingCache.now()
        read = ReadOnlineRows(new_id(), tuple(lookups[i] for i in missing), self.replica_id)
        try:
            reply = await self._ask(Outbound(ONLINE_READS, self._codec.message(
                read, producer=self.component, workspace=ws.name, caused_by=received)), read.request_id, [f1],
                timeout_s=min(budget_s, self._timeout_s) if budget_s is not None else None)
        except DeadlineExceeded:
            if budget_s is None or budget_s >= self._timeout_s:
                raise
            return answers, frozenset(missing), ()  # what the cache had, the rest TIME_OUT
        if not isinstance(reply.body, OnlineRowsRead):
            raise InvalidRequest(f"unexpected reply {type(reply.body).__name__}")
        tiles = reply.body.tiles or (None,) * len(missing)
        errors = reply.body.errors or (None,) * len(missing)
        for i, row, view_tiles, error in zip(missing, reply.body.rows, tiles, errors, strict=True):
            answers[i] = (row, view_tiles, error)
            if self._cache is not None and error is None:
                max_age = ws.feature_views[lookups[i].feature_view].serving_cache_max_age_s
                self._cache.put(ws.name, lookups[i], row, view_tiles, asked_at, max_age)
        return answers, frozenset(), ()

    def _follow_changelog(self, message: Message[Any]) -> None:
        if self._cache is not None and isinstance(message.body, OnlineRowsWritten):
            self._cache.written(message.envelope.workspace, message.body.feature_view, message.body.entity_keys)

    async def _resolve(self, workspace: str, service: str) -> tuple[Workspace, FeatureServiceSpec]:
        def find(registry: Registry) -> tuple[Workspace, FeatureServiceSpec]:
            ws = registry.workspace(workspace)  # both from one registry: the service's views are in ws
            return ws, ws.service(service)

        ws, spec = await self._catch_up(find)
        return _live(ws, "serve"), spec

    async def _catch_up(self, find: Callable[[Registry], T]) -> T:
        """`find` in the registry; before calling something unknown, catch up with the control events,
        so a client that just applied a repository never sees a 404 for it."""
        try:
            return find(self.follower.registry)
        except NotFound:
            return find(await self.follower.sync(REGISTRY_SYNC_TIMEOUT_S))

    async def ingest(self, workspace: str, records: Mapping[str, Sequence[Mapping[str, Any]]], *,
                     principal: str, payload: bytes, dry_run: bool) -> IngestPlan:
        """Check pushed records and (unless dry_run) send the valid ones to Rift, audited as F5; return
        once the online store has applied them (read-after-write)."""
        ws = _live(await self._catch_up(lambda r: r.workspace(workspace)), "ingest")
        plan = plan_ingest(ws, records, datetime.now(UTC), self._max_record_bytes)
        if dry_run or plan.errors or not plan.payloads:
            return plan  # with any record error nothing is ingested: the caller fixes and resends all
        received = new_message(None, type_tag="IngestRequest", schema_version=1, producer=Component.CUSTOMER_APP,
                               workspace=ws.name, principal=principal).envelope
        f5 = make_record(Flow.F5, Component.CUSTOMER_APP, self.component, received, subject=",".join(plan.payloads),
                         message_count=1, row_count=sum(len(p) for p in plan.payloads.values()),
                         byte_count=len(payload), digest=hashlib.sha256(payload).hexdigest())
        outputs = [Outbound(INGEST, self._codec.message(IngestRecords(new_id(), source, tuple(items)),
                                                        producer=self.component, workspace=ws.name,
                                                        caused_by=received))
                   for source, items in plan.payloads.items()]
        applied = self._replies.expect_correlated(received.correlation_id, plan.online_writes)
        try:
            await self._sends.publish(outputs, [f5])
            await asyncio.wait_for(applied, INGEST_TIMEOUT_S)
        except TimeoutError:
            raise DeadlineExceeded(f"the online store did not confirm the ingest within {INGEST_TIMEOUT_S}s; "
                                   "the records were accepted and will still be applied") from None
        finally:
            self._replies.forget_correlated(received.correlation_id)
        return plan

    async def run_command(self, command: Any, *, workspace: str, principal: str) -> Registry:
        """Send an access or workspace command to the control plane (F9) and wait for its outcome."""
        registry = await self._submit(command, workspace, principal,
                                      lambda r: command.command_id in r.commands)
        reason = registry.commands[command.command_id]
        if reason is not None:
            raise refused([reason])
        return registry

    async def apply_repo(self, repo: RepoSpec, *, workspace: str, principal: str,
                         expected_digest: str = "") -> RepoApplied:
        command = ApplyRepo(new_id(), repo, expected_digest)
        registry = await self._submit(command, workspace, principal,
                                      lambda r: command.apply_id in r.applied or command.apply_id in r.rejected)
        if command.apply_id in registry.rejected:
            raise refused(registry.rejected[command.apply_id])
        return RepoApplied(command.apply_id, registry.apply_counts.get(command.apply_id, 0))

    async def _submit(self, command: Any, workspace: str, principal: str,
                      done: Callable[[Registry], bool]) -> Registry:
        message = self._codec.message(command, producer=self.component, workspace=workspace, principal=principal)
        refused = await self._sends.publish([Outbound(CONTROL_COMMANDS, message)])
        if refused:
            raise refused[0]
        return await self.follower.wait_for(done, COMMAND_TIMEOUT_S)

    async def audit_refused(self, request: FeatureRequest) -> None:
        """Record an F1 read the caller was not allowed to make, as denied: it reached the data plane, and
        nothing was read for it. Security audits look for exactly these."""
        received = new_message(None, type_tag="GetFeaturesRequest", schema_version=1,
                               producer=Component.CUSTOMER_APP, workspace=request.workspace,
                               principal=request.principal).envelope
        f1 = make_record(Flow.F1, Component.CUSTOMER_APP, self.component, received,
                         subject=request.feature_service, message_count=1, row_count=0,
                         byte_count=len(request.payload), digest=hashlib.sha256(request.payload).hexdigest())
        self.audits.audit([replace(f1, outcome=Outcome.DENIED)])

    async def audit_response(self, served: ServedFeatures | ServedBatch, payload: bytes) -> None:
        """Record the F4 flow: the response bytes as they leave for the customer's application (with the
        request's F1 record when the cache answered it), in the audit spool; BrokerUnavailable when the
        spool is full (the broker has been away too long)."""
        f4 = make_record(Flow.F4, self.component, Component.CUSTOMER_APP, served.request,
                         subject=served.service, message_count=1, row_count=served.value_count(),
                         byte_count=len(payload), digest=hashlib.sha256(payload).hexdigest())
        self.audits.audit([*served.unaudited, f4])

    async def recent_audit(self, limit: int, asked_by: str, /, **filters: Any) -> AuditLogAnswered:
        """The newest audit records matching `filters` (see QueryAuditLog; `principal` among them filters
        by whose flows they are), up to `limit`; `asked_by` is who asks."""
        query = QueryAuditLog(new_id(), self.replica_id, limit, **filters)
        message = self._codec.message(query, producer=self.component, workspace="", principal=asked_by)
        reply = await self._ask(Outbound(AUDIT_QUERIES, message), query.request_id, [])
        if not isinstance(reply.body, AuditLogAnswered):
            raise InvalidRequest(f"unexpected reply {type(reply.body).__name__}")
        return reply.body

    async def lineage(self, workspace: str, service: str, join_keys: Mapping[str, Scalar],
                      principal: str) -> list[dict[str, Any]]:
        """Where each feature view's served value came from: the online write that produced it and the
        source records (topic, partition, offsets) that fed that write, read from the audit log."""
        ws, spec = await self._resolve(workspace, service)
        now = datetime.now(UTC)
        read = ReadOnlineRows(new_id(), plan_lookups(ws, spec, join_keys, now), self.replica_id)
        reply = await self._ask(Outbound(ONLINE_READS, self._codec.message(
            read, producer=self.component, workspace=ws.name, principal=principal)), read.request_id, [])
        tiles = reply.body.tiles or (None,) * len(read.lookups)
        chains = []
        for lookup, stored, view_tiles in zip(read.lookups, reply.body.rows, tiles, strict=True):
            chain: dict[str, Any] = {"feature_view": lookup.feature_view, "entity_key": list(lookup.entity_key)}
            if stored is not None:
                chain["event_time"] = stored.row.event_time.isoformat()
                chain.update(await self.trace_write(stored.written_by, principal))
            if view_tiles:
                chain.update(await self._trace_tiles(view_tiles, principal))
            chains.append(chain)
        return chains

    async def _trace_tiles(self, tiles: Sequence[TileState], principal: str) -> dict[str, Any]:
        """An aggregated value merges many tile deltas: the writes of the newest ones, each traced to its
        source records, and how many writes fed the value in all."""
        writers = newest_writers(tiles)
        traced = [await self.trace_write(write_id, principal) for write_id in writers[:MAX_LINEAGE_WRITES]]
        return {"tiles": len({t.tile for t in tiles}), "deltas": len(tiles), "online_writes_total": len(writers),
                "online_writes": traced}

    async def trace_write(self, write_id: str, principal: str) -> dict[str, Any]:
        """A store write (online or offline) traced through the audit log: where the written message sits
        (F7) and what fed the batch it came from (same correlation id): source records (F5; offsets of the
        source topic) or the rows of a batch source file a job read (F6; the file and its row range).

        Writes of jobs on ExternalCompute cross no plane and leave no audit record, so they trace no
        further than their id."""
        writes = (await self.recent_audit(1, principal, flow="F7", causation_id=write_id)).records
        if not writes:
            return {"write": {"event_id": write_id}, "sources": []}
        write = writes[0]
        # A batch correlates every job of a backfill: the jobs whose range held no rows fed nothing.
        sources = [s for flow in (Flow.F5, Flow.F6) for s in (await self.recent_audit(
            MAX_LINEAGE_SOURCES, principal, flow=flow.value, correlation_id=write.correlation_id)).records
            if s.flow is Flow.F5 or s.row_count > 0]
        return {
            "write": {"event_id": write_id, "topic": write.topic, "partition": write.partition,
                             "offset": write.first_offset, "at": write.occurred_at.isoformat()},
            "correlation_id": write.correlation_id,
            "sources": [{"topic": s.topic, "partition": s.partition, "first_offset": s.first_offset,
                         "last_offset": s.last_offset, "records": s.message_count, "rows": s.row_count,
                         "from": s.from_component.value, "principal": s.principal, "flow": s.flow.value}
                        for s in sources],
        }

    async def _ask(self, outbound: Outbound, request_id: str,
                   extra_audits: list[AuditRecord], timeout_s: float | None = None) -> Message[Any]:
        """Send a request and wait for its reply, within the read timeout (or `timeout_s`, a latency
        budget) in all (503 when Kafka does not take the request in that time, 504 when the reply does
        not come)."""
        future = self._replies.expect(request_id)
        loop = asyncio.get_running_loop()
        # Kafka gets the read timeout to take the request (else 503); a latency budget bounds only the wait
        # for the reply, so a request over budget is answered TIME_OUT, not refused.
        deadline = loop.time() + min(timeout_s or self._timeout_s, self._timeout_s)
        try:
            refused = await self._sends.publish([outbound], extra_audits)
            if refused:
                raise refused[0]
            remaining = max(deadline - loop.time(), 0.0)
            return await self._replies.wait(request_id, future, remaining)
        finally:
            self._replies.forget(request_id)

    def _commits_or_fail(self) -> GroupCommit:
        if self._commits is None:
            raise RuntimeError("FeatureServer.start() was not called")
        return self._commits
