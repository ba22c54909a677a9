"""The audit spool, in both backends: append order, pending oldest first, removal after shipping, sequence
numbers that never repeat; and the LMDB spool keeps what is pending across a close and reopen."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from events.errors import StoreError
from stores.audit_spool import AuditSpool, InMemoryAuditSpool, LmdbAuditSpool


@pytest.fixture(params=["lmdb", "memory"])
def spool(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AuditSpool]:
    backend: AuditSpool = LmdbAuditSpool(tmp_path / "spool") if request.param == "lmdb" else InMemoryAuditSpool()
    yield backend
    backend.close()


def records(first: int, count: int) -> list[bytes]:
    return [f"record-{n}".encode() for n in range(first, first + count)]


def test_pending_is_oldest_first_and_bounded_by_the_limit(spool: AuditSpool) -> None:
    assert spool.append(records(0, 3)) == 2
    assert spool.append(records(3, 2)) == 4
    assert spool.pending(10) == list(enumerate(records(0, 5)))
    assert [seq for seq, _ in spool.pending(2)] == [0, 1]
    assert spool.pending(0) == []
    assert spool.count() == 5


def test_remove_through_drops_what_was_shipped_and_keeps_later_appends(spool: AuditSpool) -> None:
    spool.append(records(0, 4))
    shipped = spool.pending(3)
    spool.append(records(4, 1))  # appended while the batch was on its way
    assert spool.remove_through(shipped[-1][0]) == 3
    assert spool.pending(10) == [(3, b"record-3"), (4, b"record-4")]
    assert spool.count() == 2
    assert spool.remove_through(1) == 0  # already gone: nothing to do


def test_sequence_numbers_keep_growing_after_the_spool_is_emptied(spool: AuditSpool) -> None:
    spool.append(records(0, 2))
    spool.remove_through(1)
    assert spool.count() == 0
    assert spool.append(records(2, 1)) == 2
    assert spool.append([]) == -1


def test_only_encoded_records_go_in(spool: AuditSpool) -> None:
    with pytest.raises(StoreError, match="encoded bytes"):
        spool.append(["not bytes"])  # type: ignore[list-item]


def test_a_reopened_spool_still_holds_what_was_pending(tmp_path: Path) -> None:
    with LmdbAuditSpool(tmp_path / "spool") as spool:
        spool.append(records(0, 5))
        spool.remove_through(1)
        spool.sync()
    with LmdbAuditSpool(tmp_path / "spool") as spool:
        assert spool.count() == 3
        assert spool.pending(10) == [(2, b"record-2"), (3, b"record-3"), (4, b"record-4")]
        assert spool.append(records(5, 1)) == 5  # numbering goes on where the last incarnation stopped
    with LmdbAuditSpool(tmp_path / "spool") as spool:
        spool.remove_through(5)
    with LmdbAuditSpool(tmp_path / "spool") as spool:  # emptied, yet the numbers do not start over
        assert spool.count() == 0
        assert spool.append(records(6, 1)) == 6


def test_a_closed_spool_refuses_use(tmp_path: Path) -> None:
    spool = LmdbAuditSpool(tmp_path / "spool")
    spool.close()
    spool.close()  # safe twice
    with pytest.raises(StoreError, match="closed"):
        spool.append(records(0, 1))
