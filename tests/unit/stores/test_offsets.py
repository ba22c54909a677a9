"""Applied-offset bookkeeping shared by every store."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from events.data import Coordinates
from events.errors import StoreError
from stores.offsets import (
    check_format_version,
    decode_applied,
    encode_applied,
    split_applied,
)


def coords(offset: int, partition: int = 0, topic: str = "t") -> Coordinates:
    return Coordinates(topic, partition, offset)


def identity(c: Coordinates) -> Coordinates:
    return c


def test_items_below_the_next_offset_are_skipped() -> None:
    to_apply, applied = split_applied([coords(3), coords(4), coords(5)], {("t", 0): 5}, identity)
    assert to_apply == [coords(5)]
    assert applied == {("t", 0): 6}


def test_a_message_twice_in_one_batch_is_applied_once() -> None:
    to_apply, applied = split_applied([coords(7), coords(7), coords(6), coords(8)], {}, identity)
    assert to_apply == [coords(7), coords(8)]
    assert applied == {("t", 0): 9}


def test_partitions_and_topics_are_independent() -> None:
    batch = [coords(0, 1), coords(0, 0), coords(4, 0, "u")]
    to_apply, applied = split_applied(batch, {("t", 1): 1}, identity)
    assert to_apply == [coords(0, 0), coords(4, 0, "u")]
    assert applied == {("t", 1): 1, ("t", 0): 1, ("u", 0): 5}


def test_gaps_are_fine_and_input_offsets_are_not_mutated() -> None:
    before = {("t", 0): 2}
    _, applied = split_applied([coords(10)], before, identity)
    assert applied == {("t", 0): 11}
    assert before == {("t", 0): 2}


@pytest.mark.parametrize("bad", [Coordinates("t", 0, -1), Coordinates("t", -1, 0)])
def test_positions_that_are_not_kafka_offsets_are_refused(bad: Coordinates) -> None:
    with pytest.raises(StoreError):
        split_applied([bad], {}, identity)


@given(st.dictionaries(st.tuples(st.text(), st.integers(0, 2**31)), st.integers(0, 2**62)))
def test_applied_offsets_round_trip(applied: dict[tuple[str, int], int]) -> None:
    assert decode_applied(encode_applied(applied)) == applied


@pytest.mark.parametrize("raw", [b"\xc1", b"\x91\x93\xa1t\x00\xff", b"\x91\x92\xa1t\x00", b"\x05"])
def test_unreadable_applied_offsets_are_store_errors(raw: bytes) -> None:
    with pytest.raises(StoreError):
        decode_applied(raw)


def test_format_versions() -> None:
    check_format_version(1, 1, "store")
    with pytest.raises(StoreError, match="newer"):
        check_format_version(2, 1, "store")
    for bad in (0, None, "1", True):
        with pytest.raises(StoreError, match="unknown"):
            check_format_version(bad, 1, "store")
