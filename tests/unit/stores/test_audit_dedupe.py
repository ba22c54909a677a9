"""The audit log chains a spooled record once: the feature server sends a record again when it died between
Kafka taking it and its spool dropping it, and that second copy (another Kafka offset) must not be chained."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.auditing import make_record
from actors.bus import Record
from actors.components.audit_log import AuditLog, index_terms
from actors.runtime import Inbound
from events.audit import AuditRecord
from events.codec import CODEC
from events.data import Coordinates
from events.envelope import new_message
from events.flows import Flow
from events.planes import Component
from events.topics import AUDIT, TopicNames
from stores.audit_log import UNIQUE, AuditStore, InMemoryAuditStore, LmdbAuditStore

NAMES = TopicNames("t")


def terms(record: bytes) -> list[str]:
    """`once-<n>` is unique under `!<n>`; `many-<n>` has an ordinary term only."""
    kind, n = record.decode().split("-")
    return [f"{UNIQUE}{n}"] if kind == "once" else [f"g:{n}"]


@pytest.fixture(params=["lmdb", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AuditStore]:
    backend: AuditStore = (LmdbAuditStore(tmp_path / "a", index_terms=terms) if request.param == "lmdb"
                           else InMemoryAuditStore(index_terms=terms))
    with backend:
        yield backend


def at(offset: int, record: bytes) -> tuple[Coordinates, bytes]:
    return Coordinates("audit", 0, offset), record


def test_a_record_with_a_unique_term_is_chained_once_across_appends_and_within_one(store: AuditStore) -> None:
    assert store.append([at(0, b"once-1"), at(1, b"many-1"), at(2, b"once-1")]) == 2
    assert store.append([at(3, b"once-1"), at(4, b"many-1"), at(5, b"once-2")]) == 2
    assert [link.record for link in store.links()] == [b"once-1", b"many-1", b"many-1", b"once-2"]
    assert store.verify() is None
    # the skipped copies were taken all the same: delivered again, nothing happens
    assert store.applied_offsets() == {("audit", 0): 6}
    assert store.append([at(5, b"once-2")]) == 0


def test_a_reopened_store_still_knows_what_it_chained(tmp_path: Path) -> None:
    with LmdbAuditStore(tmp_path, index_terms=terms) as store:
        store.append([at(0, b"once-7")])
    with LmdbAuditStore(tmp_path, index_terms=terms) as store:
        assert store.append([at(1, b"once-7"), at(2, b"once-8")]) == 1
        assert store.count() == 2


def _record(flow: Flow, topic: str = "") -> AuditRecord:
    envelope = new_message(None, type_tag="GetFeaturesRequest", schema_version=1, producer=Component.CUSTOMER_APP,
                           workspace="prod", principal="model").envelope
    sender, receiver = ((Component.CUSTOMER_APP, Component.FEATURE_SERVER) if flow is Flow.F1
                        else (Component.FEATURE_SERVER, Component.CUSTOMER_APP))
    return make_record(flow, sender, receiver, envelope, subject="svc", message_count=1, row_count=1,
                       byte_count=10, digest="d", topic=topic)


def _inbound(offset: int, record: AuditRecord) -> Inbound:
    message = CODEC.message(record, producer=Component.FEATURE_SERVER, workspace="prod")
    return Inbound(Record(NAMES.name(AUDIT), 0, offset, None, CODEC.encode(message), 0), message)


async def test_the_audit_log_skips_a_spooled_record_it_has_chained_already() -> None:
    store = InMemoryAuditStore(index_terms=index_terms())
    log = AuditLog(NAMES, store)
    f1, f4 = _record(Flow.F1), _record(Flow.F4)
    await log.handle([_inbound(0, f1), _inbound(1, f4)])
    # the spool sent them again (its process died before it dropped them), and one of them twice more
    await log.handle([_inbound(2, f1), _inbound(3, f4), _inbound(4, f4)])
    chained = [CODEC.decode(link.record).body.record_id for link in store.links()]
    assert chained == [f1.record_id, f4.record_id]


def test_records_of_kafka_messages_get_no_unique_term() -> None:
    """Their offsets make them idempotent already; a unique term would only cost an index lookup."""
    encode = index_terms()
    http = CODEC.encode(CODEC.message(_record(Flow.F4), producer=Component.FEATURE_SERVER, workspace="prod"))
    kafka = CODEC.encode(CODEC.message(_record(Flow.F2, topic="t.online-reads"), producer=Component.FEATURE_SERVER,
                                       workspace="prod"))
    assert [t for t in encode(http) if t.startswith(UNIQUE)]
    assert not [t for t in encode(kafka) if t.startswith(UNIQUE)]
