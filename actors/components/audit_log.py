"""AuditLog: appends every audit record to the hash-chained store and answers audit queries."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from actors.outbox import Outbound
from actors.runtime import Decision, Inbound
from events.audit import AuditLogAnswered, AuditRecord, ChainLink, QueryAuditLog
from events.codec import CODEC, Codec
from events.planes import Component
from events.topics import AUDIT, AUDIT_QUERIES, AUDIT_REPLIES, TopicNames
from stores.audit_log import AuditStore

MAX_QUERY_LIMIT = 10_000


def newest_first(links: Iterable[ChainLink]) -> Iterator[ChainLink]:
    return reversed(list(links))


class AuditLog:
    component = Component.AUDIT_LOG

    def __init__(self, names: TopicNames, store: AuditStore, codec: Codec = CODEC) -> None:
        self._names = names
        self._store = store
        self._codec = codec

    def subscriptions(self) -> Sequence[str]:
        return [self._names.name(AUDIT), self._names.name(AUDIT_QUERIES)]

    def _matching(self, query: QueryAuditLog) -> tuple[AuditRecord, ...]:
        """The newest records that match, up to the limit (a scan: queries are rare, records are small)."""
        limit = max(0, min(query.limit, MAX_QUERY_LIMIT))
        found: list[AuditRecord] = []
        for link in newest_first(self._store.links()):
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
