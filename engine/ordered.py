"""last_n, first_n, last_distinct_n and first_distinct_n.

Their feature value is a tuple ordered oldest to newest by event time, as Tecton returns them:
`last_n(3)` over a, b, c, d (in time order) is (b, c, d), `first_n(3)` is (a, b, c). Events with equal
times keep their arrival order, and in `merge(a, b)` the events of `b` count as having arrived later.
An empty window gives None, not an empty tuple.

A state is the kept entries, (event time, value) sorted oldest first, at most `n` of them: whatever an
entry outside the n newest (or oldest) could contribute, a merge with more events can only push it further
out, which is what makes truncating every tile to n entries exact.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from typing import Any

from engine.base import Base, Packed, Seconds, Value
from events.data import Scalar

Entry = tuple[Seconds, Scalar]
Entries = tuple[Entry, ...]


def _time(entry: Entry) -> Seconds:
    return entry[0]


def _keep(entries: Entries | list[Entry], n: int, latest: bool) -> Entries:
    return tuple(entries[-n:] if latest else entries[:n])


class _Entries(Base[Entries]):
    def __init__(self, n: int, latest: bool) -> None:
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        self.n, self.latest = n, latest

    def empty(self) -> Entries:
        return ()

    def finalize(self, state: Entries) -> Value:
        return tuple(value for _, value in state) if state else None

    def encode(self, state: Entries) -> Packed:
        return [[time, value] for time, value in state]

    def decode(self, packed: Any) -> Entries:
        return tuple((time, value) for time, value in packed)


class Ordered(_Entries):
    """last_n (`latest`) or first_n: the n newest or oldest non-null values, duplicates included."""

    def add(self, state: Entries, value: Scalar, event_time: Seconds) -> Entries:
        entries = list(state)
        # after the entries of the same time: this one arrived last
        entries.insert(bisect_right(entries, event_time, key=_time), (event_time, value))
        return _keep(entries, self.n, self.latest)

    def merge(self, a: Entries, b: Entries) -> Entries:
        # heapq.merge is stable: on equal times the entries of `a` come first
        return _keep(list(heapq.merge(a, b, key=_time)), self.n, self.latest)


class Distinct(_Entries):
    """last_distinct_n (`latest`) or first_distinct_n.

    Each distinct value is placed at its newest (or oldest) occurrence, and the n values whose occurrences
    are newest (oldest) are kept. Values are distinct by Python equality.
    """

    def add(self, state: Entries, value: Scalar, event_time: Seconds) -> Entries:
        entries = list(state)
        at = next((i for i, (_, kept) in enumerate(entries) if kept == value), None)
        if at is not None:
            kept_time = entries[at][0]
            # on an equal time the new occurrence is the later arrival: newer for last_*, not older for first_*
            if (event_time < kept_time) if self.latest else (event_time >= kept_time):
                return state
            del entries[at]
        entries.insert(bisect_right(entries, event_time, key=_time), (event_time, value))
        return _keep(entries, self.n, self.latest)

    def merge(self, a: Entries, b: Entries) -> Entries:
        # (time, side, position) orders occurrences by time, then arrival: `b` after `a`, each in its own order
        ranked = [(time, side, i, value) for side, entries in enumerate((a, b))
                  for i, (time, value) in enumerate(entries)]
        chosen: dict[Scalar, tuple[Seconds, int, int, Scalar]] = {}
        for occurrence in ranked:
            held = chosen.get(occurrence[3])
            if held is None or (occurrence[:3] > held[:3]) == self.latest:
                chosen[occurrence[3]] = occurrence
        kept = sorted(chosen.values(), key=lambda o: o[:3])
        return _keep([(time, value) for time, _, _, value in kept], self.n, self.latest)
