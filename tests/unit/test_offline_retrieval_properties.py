"""Offline retrieval against a plain-Python reference, on random rows, writes and events.

Times sit on a minute grid, give or take a microsecond, so that equal times (ties, rows at exactly an
event's time, rows exactly one TTL old) come up often.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from events.data import FeatureRow, Scalar
from events.specs import DType, EntitySpec, FeatureServiceSpec, RepoSpec
from sdk.offline import OfflineFeatures
from stores.offline import ParquetOfflineStore
from tests.unit.test_offline_retrieval import KEYS, T0, US, WS, Writer, at, events, view

Row = tuple[str, Scalar, datetime, int | None]  # view, key, event time, value
Message = tuple[str, list[Row]]

times = st.builds(lambda minutes, jitter: T0 + timedelta(minutes=minutes) + jitter * US,
                  st.integers(0, 40), st.sampled_from([-1, 0, 0, 0, 1]))
values = st.none() | st.integers(-5, 5)
user_rows = st.lists(st.tuples(st.just("users"), st.sampled_from(["u0", "u1", "u2"]), times, values), max_size=5)
merchant_rows = st.lists(st.tuples(st.just("merchants"), st.integers(1, 3), times, values), max_size=5)
# Commits of messages of rows, each message for one view, as the OfflineStore actor appends them.
messages = st.one_of(user_rows.map(lambda rows: ("users", rows)), merchant_rows.map(lambda rows: ("merchants", rows)))
commits = st.lists(st.lists(messages, min_size=1, max_size=3), max_size=4)
ttls = st.sampled_from([None, timedelta(minutes=5), timedelta(minutes=20)])
event_times = st.none() | st.builds(lambda t, shift: t + timedelta(minutes=shift), times, st.integers(-5, 10))
event_rows = st.lists(st.tuples(st.sampled_from(["u0", "u1", "u2", "u9", None]), st.sampled_from([1, 2, 3, 4, None]),
                                event_times), max_size=20)


def stored(directory: str, commits: Sequence[Sequence[Message]], user_ttl: timedelta | None,
           merchant_ttl: timedelta | None) -> tuple[ParquetOfflineStore, OfflineFeatures]:
    repo = RepoSpec(
        entities=(EntitySpec("user", ("user_id",)), EntitySpec("merchant", ("merchant_id",))),
        feature_views=(view("users", ("user",), ("amount", DType.INT64), ttl=user_ttl),
                       view("merchants", ("merchant",), ("amount", DType.INT64), ttl=merchant_ttl)),
        feature_services=(FeatureServiceSpec("both", ("users", "merchants")),),
    )
    store = ParquetOfflineStore(Path(directory) / "offline")
    writer = Writer(store)
    for commit in commits:
        store.append([writer.write(fv, KEYS[fv], [row_of(r) for r in rows]) for fv, rows in commit])
    return store, OfflineFeatures.open(Path(directory) / "offline", repo, WS)


def row_of(row: Row) -> FeatureRow:
    _, key, when, value = row
    return at(key, when, amount=value)


def written(commits: Sequence[Sequence[Message]], fv: str) -> list[Row]:
    """The rows of one view in the order they were written."""
    return [row for commit in commits for name, rows in commit if name == fv for row in rows]


def as_of(rows: Sequence[Row], key: Scalar, ts: datetime | None, ttl: timedelta | None) -> int | None:
    """The reference: the value of the latest row of `key` at or before `ts` (the last written of equal
    times), unless it is older than `ts - ttl`."""
    if key is None or ts is None:
        return None
    best: Row | None = None
    for row in rows:
        if row[1] == key and row[2] <= ts and (best is None or row[2] >= best[2]):
            best = row
    if best is None or (ttl is not None and best[2] < ts - ttl):
        return None
    return best[3]


@settings(max_examples=150, deadline=None)
@given(commits=commits, user_ttl=ttls, merchant_ttl=ttls, event_list=event_rows)
def test_features_for_events_match_the_reference(commits: list[list[Message]], user_ttl: timedelta | None,
                                                 merchant_ttl: timedelta | None,
                                                 event_list: list[tuple[Any, Any, Any]]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        store, offline = stored(directory, commits, user_ttl, merchant_ttl)
        with store, offline:
            users, merchants, stamps = (list(c) for c in zip(*event_list, strict=True)) if event_list else ([], [], [])
            frame = events(n=list(range(len(event_list))), user_id=users, merchant_id=merchants, ts=stamps)
            result = offline.get_features_for_events(frame, "both", "ts")
    expected = [(n, user, merchant, ts, as_of(written(commits, "users"), user, ts, user_ttl),
                 as_of(written(commits, "merchants"), merchant, ts, merchant_ttl))
                for n, (user, merchant, ts) in enumerate(event_list)]
    assert result.rows() == expected


@settings(max_examples=100, deadline=None)
@given(commits=commits, start=times, length=st.integers(0, 30),
       wanted=st.none() | st.lists(st.sampled_from(["u0", "u1", "u9"]), max_size=3))
# Two writes at one time, filtered by entity: the entity join once lost their write order.
@example(commits=[[("users", [("users", "u0", T0, None)])], [("users", [("users", "u0", T0 - US, None)])],
                  [("users", [("users", "u0", T0 - US, None)])]], start=T0 - US, length=1, wanted=["u0"])
def test_features_in_range_match_the_reference(commits: list[list[Message]], start: datetime, length: int,
                                               wanted: list[str] | None) -> None:
    end = start + timedelta(minutes=length)
    with tempfile.TemporaryDirectory() as directory:
        store, offline = stored(directory, commits, None, None)
        with store, offline:
            entities = None if wanted is None else events(user_id=wanted)
            result = offline.get_features_in_range("users", start, end, entities)
    rows = written(commits, "users")
    kept = [(i, r) for i, r in enumerate(rows) if start <= r[2] < end and (wanted is None or r[1] in wanted)]
    # Time order; rows of equal times in write order (sorted() is stable).
    expected = [(key, when, value, when, valid_until(rows, i)) for i, (_, key, when, value)
                in sorted(kept, key=lambda item: item[1][2])]
    assert result.rows() == expected


def valid_until(rows: Sequence[Row], index: int) -> datetime | None:
    """The reference: the next row of the same key by (event time, write order) ends a row's validity."""
    _, key, when, _ = rows[index]
    later = [r[2] for i, r in enumerate(rows) if r[1] == key and (r[2], i) > (when, index)]
    return min(later) if later else None
