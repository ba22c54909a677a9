"""AuditLog: appends every audit record to the hash-chained store and answers audit queries."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from actors.outbox import Outbound
from actors.runtime import Decision, Inbound
from events.audit import AuditLogAnswered, AuditRecord, ChainLink, QueryAuditLog
from events.codec import CODEC, Codec
from events.errors import FeatureplaneError
from events.planes import Component
from events.topics import AUDIT, AUDIT_QUERIES, AUDIT_REPLIES, TopicNames
from stores.audit_log import UNIQUE, AuditStore

MAX_QUERY_LIMIT = 10_000
# Records sharing one correlation id: one request, ingest or batch and what it caused; far fewer than this.
MAX_INDEXED_CANDIDATES = 100_000


def index_terms(codec: Codec = CODEC) -> Callable[[bytes], list[str]]:
    """The audit store's index terms of an encoded record: its correlation and causation ids, which
    lineage and audit queries look records up by; and for a record of an HTTP flow (no Kafka topic), its
    record id as a `UNIQUE` term. Those come from the feature server's spool, which sends a record again
    when its process died before it could drop the record after Kafka took it: the store chains it once.
    Records of Kafka messages are made idempotent by their offsets and need no such term."""
    def terms(encoded: bytes) -> list[str]:
        try:
            record = codec.decode(encoded).body
        except FeatureplaneError:
            return []  # an undecodable record is found by scans (and reported by verify), not by id
        if not isinstance(record, AuditRecord):
            return []
        unique = _term(f"{UNIQUE}r", record.record_id) if record.topic == "" else ""
        return [term for term in (_term("c", record.correlation_id), _term("k", record.causation_id), unique) if term]
    return terms


def _term(kind: str, value: str) -> str:
    return f"{kind}:{value}" if value and "\0" not in value else ""


class AuditLog:
    component = Component.AUDIT_LOG

    def __init__(self, names: TopicNames, store: AuditStore, codec: Codec = CODEC) -> None:
        self._names = names
        self._store = store
        self._codec = codec

    def subscriptions(self) -> Sequence[str]:
        return [self._names.name(AUDIT), self._names.name(AUDIT_QUERIES)]

    def _candidates(self, query: QueryAuditLog) -> Iterable[ChainLink]:
        """The links that may match, newest first: by the index when the query names a correlation or
        causation id, else every link (read lazily, so a small limit reads little)."""
        term = _term("c", query.correlation_id) or _term("k", query.causation_id)
        if term:
            return self._store.find(term, MAX_INDEXED_CANDIDATES)
        return self._store.newest_first()

    def _matching(self, query: QueryAuditLog) -> tuple[AuditRecord, ...]:
        """The newest records that match, up to the limit."""
        limit = max(0, min(query.limit, MAX_QUERY_LIMIT))
        found: list[AuditRecord] = []
        for link in self._candidates(query):
            if len(found) >= limit:
                break
            record = self._codec.decode(link.record).body
            if isinstance(record, AuditRecord) and query.matches(record):
                found.append(record)
        return tuple(found)

    async def handle(self, batch: Sequence[Inbound]) -> Decision:
        records = [(i.record.coordinates, i.record.value) for i in batch
                   if i.message is not None and isinstance(i.message.body, AuditRecord)]
        if records:
            self._store.append(records)
        outputs: list[Outbound] = []
        for inbound in batch:
            message = inbound.message
            if message is None or not isinstance(message.body, QueryAuditLog):
                continue
            query = message.body
            found = self._matching(query)
            answer = AuditLogAnswered(query.request_id, query.reply_to, found, self._store.count())
            outputs.append(Outbound(AUDIT_REPLIES, self._codec.message(
                answer, producer=self.component, workspace=message.envelope.workspace,
                caused_by=message.envelope)))
        return Decision(outputs)
