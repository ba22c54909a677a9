"""The AuditStore contract, run against LMDB and the in-memory store; then what only LMDB has."""

from __future__ import annotations

import dataclasses
import itertools
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import lmdb
import msgpack
import pytest

from events.audit import GENESIS, ChainLink, link_hash
from events.data import Coordinates
from events.errors import StoreError
from stores.audit_log import FORMAT_VERSION, AuditStore, InMemoryAuditStore, LmdbAuditStore
from stores.offsets import FORMAT_VERSION_KEY

TOPIC = "audit"
REPO_ROOT = Path(__file__).resolve().parents[3]

# Replaces the stored bytes of one link with what the function returns, behind the store's back.
Tamper = Callable[[int, Callable[[ChainLink], ChainLink]], None]


def records(first: int, count: int, partition: int = 0) -> list[tuple[Coordinates, bytes]]:
    return [(Coordinates(TOPIC, partition, n), f"record-{n}".encode()) for n in range(first, first + count)]


def flip_byte(link: ChainLink) -> ChainLink:
    record = bytearray(link.record)
    record[3] ^= 0x01
    return dataclasses.replace(link, record=bytes(record))


@dataclasses.dataclass
class Backend:
    store: AuditStore
    tamper: Tamper


@pytest.fixture(params=["lmdb", "memory"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "memory":
        memory = InMemoryAuditStore()

        def tamper_memory(seq: int, change: Callable[[ChainLink], ChainLink]) -> None:
            memory._links[seq] = change(memory._links[seq])

        with memory:
            yield Backend(memory, tamper_memory)
        return
    path = tmp_path / "audit"
    current = Backend(LmdbAuditStore(path), lambda seq, change: None)

    def tamper_lmdb(seq: int, change: Callable[[ChainLink], ChainLink]) -> None:
        current.store.close()  # LMDB opens an environment once per process
        rewrite_link(path, seq, change)
        current.store = LmdbAuditStore(path)

    current.tamper = tamper_lmdb
    yield current
    current.store.close()


def rewrite_link(path: Path, seq: int, change: Callable[[ChainLink], ChainLink]) -> None:
    with lmdb.open(str(path), max_dbs=4) as env:
        links = env.open_db(b"links")
        with env.begin(write=True, db=links) as txn:
            key = seq.to_bytes(8, "big")
            prev_hash, record, hash_ = msgpack.unpackb(txn.get(key, b""))
            changed = change(ChainLink(seq, prev_hash, record, hash_))
            txn.put(key, msgpack.packb([changed.prev_hash, changed.record, changed.hash]))


# --- contract --------------------------------------------------------------------------------------------


def test_appended_records_form_a_hash_chain_in_order(backend: Backend) -> None:
    store = backend.store
    assert store.append(records(0, 3)) == 3
    assert store.append(records(3, 2)) == 2
    links = list(store.links())
    assert [link.seq for link in links] == [0, 1, 2, 3, 4]
    assert [link.record for link in links] == [f"record-{n}".encode() for n in range(5)]
    assert links[0].prev_hash == GENESIS
    for before, link in itertools.pairwise(links):
        assert link.prev_hash == before.hash
    assert all(link.hash == link_hash(link.prev_hash, link.record) for link in links)
    assert store.count() == 5


def test_replayed_records_are_not_appended_again(backend: Backend) -> None:
    store = backend.store
    store.append(records(0, 3))
    before = list(store.links())
    assert store.append(records(1, 2)) == 0
    assert store.append([*records(2, 1), *records(3, 1), *records(3, 1)]) == 1
    assert list(store.links())[:3] == before
    assert store.count() == 4
    assert store.applied_offsets() == {(TOPIC, 0): 4}


def test_applied_offsets_per_partition(backend: Backend) -> None:
    assert backend.store.applied_offsets() == {}
    backend.store.append([*records(10, 2, partition=0), *records(0, 1, partition=3)])
    assert backend.store.applied_offsets() == {(TOPIC, 0): 12, (TOPIC, 3): 1}


def test_links_from_a_start(backend: Backend) -> None:
    backend.store.append(records(0, 5))
    assert [link.seq for link in backend.store.links(3)] == [3, 4]
    assert list(backend.store.links(5)) == []


def test_latest_is_newest_first(backend: Backend) -> None:
    store = backend.store
    assert store.latest(3) == []
    store.append(records(0, 5))
    assert [link.seq for link in store.latest(3)] == [4, 3, 2]
    assert [link.seq for link in store.latest(100)] == [4, 3, 2, 1, 0]
    assert store.latest(0) == []
    assert store.latest(1) == list(store.links(4))


def test_an_intact_chain_verifies(backend: Backend) -> None:
    assert backend.store.verify() is None
    backend.store.append(records(0, 5))
    assert backend.store.verify() is None


def test_a_changed_record_is_found(backend: Backend) -> None:
    backend.store.append(records(0, 5))
    backend.tamper(2, flip_byte)
    assert backend.store.verify() == 2


def test_a_rehashed_change_breaks_the_next_link(backend: Backend) -> None:
    backend.store.append(records(0, 5))

    def forge(link: ChainLink) -> ChainLink:
        forged = flip_byte(link)
        return dataclasses.replace(forged, hash=link_hash(forged.prev_hash, forged.record))

    backend.tamper(1, forge)
    assert backend.store.verify() == 2


def test_a_tampered_chain_still_takes_appends(backend: Backend) -> None:
    backend.store.append(records(0, 3))
    backend.tamper(0, flip_byte)
    assert backend.store.append(records(3, 1)) == 1
    assert backend.store.verify() == 0
    assert list(backend.store.links())[3].prev_hash == list(backend.store.links())[2].hash


def test_records_must_be_bytes(backend: Backend) -> None:
    with pytest.raises(StoreError):
        backend.store.append([(Coordinates(TOPIC, 0, 0), "text")])  # type: ignore[list-item]
    assert backend.store.count() == 0
    assert backend.store.applied_offsets() == {}


def test_close_is_safe_twice_and_use_after_close_is_refused(backend: Backend) -> None:
    backend.store.close()
    backend.store.close()
    with pytest.raises(StoreError, match="closed"):
        backend.store.count()
    with pytest.raises(StoreError, match="closed"):
        backend.store.links()


# --- LMDB only -------------------------------------------------------------------------------------------


def test_the_chain_and_offsets_survive_reopening(tmp_path: Path) -> None:
    with LmdbAuditStore(tmp_path) as store:
        store.append(records(0, 3))
        last = store.latest(1)[0]
    with LmdbAuditStore(tmp_path) as store:
        assert store.applied_offsets() == {(TOPIC, 0): 3}
        assert store.append(records(2, 2)) == 1
        assert next(store.links(3)).prev_hash == last.hash
        assert store.verify() is None


def test_iteration_crosses_read_chunks(tmp_path: Path) -> None:
    with LmdbAuditStore(tmp_path) as store:
        store.append(records(0, 2500))
        assert [link.seq for link in store.links(1000)] == list(range(1000, 2500))
        assert store.verify() is None


def test_an_unreadable_or_missing_link_is_found(tmp_path: Path) -> None:
    with LmdbAuditStore(tmp_path) as store:
        store.append(records(0, 6))
    with lmdb.open(str(tmp_path), max_dbs=4) as env:
        links = env.open_db(b"links")
        with env.begin(write=True, db=links) as txn:
            txn.put((4).to_bytes(8, "big"), b"\xc1garbage")
    with LmdbAuditStore(tmp_path) as store:
        assert store.verify() == 4
        with pytest.raises(StoreError, match="unreadable"):
            list(store.links())
    with lmdb.open(str(tmp_path), max_dbs=4) as env:
        links = env.open_db(b"links")
        with env.begin(write=True, db=links) as txn:
            txn.delete((2).to_bytes(8, "big"))
    with LmdbAuditStore(tmp_path) as store:
        assert store.verify() == 3  # link 3 stands where link 2 should be


def test_a_store_of_a_newer_format_is_refused(tmp_path: Path) -> None:
    LmdbAuditStore(tmp_path).close()
    with lmdb.open(str(tmp_path), max_dbs=4) as env:
        meta = env.open_db(b"meta")
        with env.begin(write=True, db=meta) as txn:
            assert msgpack.unpackb(txn.get(FORMAT_VERSION_KEY, b"")) == FORMAT_VERSION
            txn.put(FORMAT_VERSION_KEY, msgpack.packb(FORMAT_VERSION + 1))
    with pytest.raises(StoreError, match="newer"):
        LmdbAuditStore(tmp_path)


VERIFY_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from stores.audit_log import LmdbAuditStore

    with LmdbAuditStore(Path(sys.argv[1]), readonly=True) as store:
        print(store.count(), store.verify(), store.latest(1)[0].record.decode())
""")


def verify_elsewhere(path: Path) -> str:
    """What a read-only store in another process (the CLI's situation) sees."""
    done = subprocess.run([sys.executable, "-c", VERIFY_SCRIPT, str(path)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120, check=True)
    return done.stdout.strip()


def test_another_process_reads_and_verifies_while_the_writer_is_open(tmp_path: Path) -> None:
    with LmdbAuditStore(tmp_path) as writer:
        writer.append(records(0, 4))
        assert verify_elsewhere(tmp_path) == "4 None record-3"
        writer.append(records(4, 1))
        assert verify_elsewhere(tmp_path) == "5 None record-4"
    rewrite_link(tmp_path, 1, flip_byte)
    with LmdbAuditStore(tmp_path) as writer:
        writer.append(records(5, 1))
        assert verify_elsewhere(tmp_path) == "6 1 record-5"


def test_read_only_in_the_writers_process(tmp_path: Path) -> None:
    with LmdbAuditStore(tmp_path) as writer:
        writer.append(records(0, 2))
        # LMDB's locks belong to the process: the writer's own process must read through the writer.
        with pytest.raises(StoreError, match="already open"):
            LmdbAuditStore(tmp_path, readonly=True)
    with LmdbAuditStore(tmp_path, readonly=True) as reader:
        assert reader.count() == 2
        assert reader.verify() is None
        with pytest.raises(StoreError, match="read-only"):
            reader.append(records(2, 1))
    with pytest.raises(StoreError):
        LmdbAuditStore(tmp_path / "missing", readonly=True)
