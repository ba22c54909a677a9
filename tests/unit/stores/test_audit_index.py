"""The audit store's index (lookups by term, newest first) and its lazy newest-first walk, in both
backends; then the AuditLog component answering id queries through the index."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.auditing import make_record
from actors.bus import Record
from actors.components.audit_log import AuditLog, index_terms
from actors.runtime import Inbound
from events.audit import AuditLogAnswered, QueryAuditLog
from events.codec import CODEC
from events.data import Coordinates
from events.envelope import new_message
from events.flows import Flow
from events.planes import Component
from events.topics import AUDIT, TopicNames
from stores.audit_log import AuditStore, InMemoryAuditStore, LmdbAuditStore

CHUNK_AND_MORE = 2_500  # more links than the store reads per transaction


def group_terms(record: bytes) -> list[str]:
    """`record-<n>` is found under `g:<n mod 3>`, and `record-<n>` with n even also under `even`."""
    n = int(record.decode().split("-")[1])
    return [f"g:{n % 3}", *(["even"] if n % 2 == 0 else [])]


def items(first: int, count: int) -> list[tuple[Coordinates, bytes]]:
    return [(Coordinates("audit", 0, n), f"record-{n}".encode()) for n in range(first, first + count)]


@pytest.fixture(params=["lmdb", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AuditStore]:
    backend: AuditStore = (LmdbAuditStore(tmp_path / "a", index_terms=group_terms) if request.param == "lmdb"
                           else InMemoryAuditStore(index_terms=group_terms))
    with backend:
        yield backend


def test_find_returns_the_newest_links_under_a_term(store: AuditStore) -> None:
    store.append(items(0, 10))
    assert [link.record for link in store.find("g:1", 10)] == [b"record-7", b"record-4", b"record-1"]
    assert [link.record for link in store.find("g:1", 2)] == [b"record-7", b"record-4"]
    assert [link.seq for link in store.find("even", 100)] == [8, 6, 4, 2, 0]
    assert store.find("g:9", 10) == []
    assert store.find("g:1", 0) == []


def test_newest_first_walks_the_whole_chain_backwards(store: AuditStore) -> None:
    store.append(items(0, CHUNK_AND_MORE))
    assert [link.seq for link in store.newest_first()] == list(range(CHUNK_AND_MORE - 1, -1, -1))


def test_a_term_that_is_a_prefix_of_another_does_not_match_it(tmp_path: Path) -> None:
    with LmdbAuditStore(tmp_path, index_terms=lambda record: [record.decode()]) as store:
        store.append([(Coordinates("audit", 0, 0), b"c:ab"), (Coordinates("audit", 0, 1), b"c:a")])
        assert [link.record for link in store.find("c:a", 10)] == [b"c:a"]


def test_links_appended_without_an_index_are_indexed_when_a_writer_with_one_opens(tmp_path: Path) -> None:
    with LmdbAuditStore(tmp_path) as plain:
        plain.append(items(0, CHUNK_AND_MORE))
    with LmdbAuditStore(tmp_path, index_terms=group_terms) as indexed:
        assert len(indexed.find("g:0", CHUNK_AND_MORE)) == len(range(0, CHUNK_AND_MORE, 3))
        indexed.append(items(CHUNK_AND_MORE, 3))
        assert indexed.find("g:0", 1)[0].seq == max(n for n in range(CHUNK_AND_MORE + 3) if n % 3 == 0)
        assert indexed.verify() is None
    with LmdbAuditStore(tmp_path, readonly=True) as reader:  # readers never need the index
        assert reader.count() == CHUNK_AND_MORE + 3


async def test_the_audit_log_answers_a_correlation_query_from_the_index() -> None:
    names = TopicNames("t")
    store = InMemoryAuditStore(index_terms=index_terms())
    log = AuditLog(names, store)
    envelopes = [new_message(None, type_tag="x", schema_version=1, producer=Component.RIFT,
                             workspace="prod").envelope for _ in range(3)]
    audits = [CODEC.message(make_record(Flow.F7, Component.RIFT, Component.ONLINE_STORE, env, subject="v",
                                        message_count=1, row_count=1, byte_count=1, digest="d"),
                            producer=Component.RIFT, workspace="prod", caused_by=env) for env in envelopes]
    batch = [Inbound(Record(names.name(AUDIT), 0, n, None, CODEC.encode(m), 0), m)
             for n, m in enumerate(audits)]
    await log.handle(batch)
    wanted = envelopes[1].correlation_id
    query = CODEC.message(QueryAuditLog("q1", "me", 10, correlation_id=wanted), producer=Component.FEATURE_SERVER,
                          workspace="prod")
    decision = await log.handle([Inbound(Record("q", 0, 0, None, CODEC.encode(query), 0), query)])
    answer = decision.outputs[0].message.body
    assert isinstance(answer, AuditLogAnswered)
    assert [r.correlation_id for r in answer.records] == [wanted]
    assert store.find(f"c:{wanted}", 10)  # found through the index, not a scan
