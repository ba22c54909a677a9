"""The offline row in effect at a time, and the write that stored it: the start of offline lineage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from events.data import Coordinates, FeatureRow, SourceRange, WriteOfflineRows
from events.errors import InvalidRequest
from sdk.offline_lineage import offline_row_writer
from stores.offline import InMemoryOfflineStore, OfflineWrite

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def _write(offset: int, written_by: str, *rows: tuple[str, int]) -> OfflineWrite:
    body = WriteOfflineRows("user_last", ("user_id",), tuple(
        FeatureRow((user,), T0 + timedelta(minutes=minute), {"amount": float(minute)}) for user, minute in rows),
        SourceRange("src", 0, offset, offset))
    return OfflineWrite(Coordinates("offline.writes", 0, offset), "prod", body, written_by)


def test_the_writer_of_the_row_in_effect_at_the_time_is_found() -> None:
    with InMemoryOfflineStore() as store:
        store.append([_write(0, "w-early", ("u1", 0), ("u2", 5)), _write(1, "w-late", ("u1", 10))])
        at_7 = offline_row_writer(store, "prod", "user_last", {"user_id": "u1"}, T0 + timedelta(minutes=7))
        assert at_7 is not None
        assert (at_7.written_by, at_7.event_time) == ("w-early", T0)
        at_10 = offline_row_writer(store, "prod", "user_last", {"user_id": "u1"}, T0 + timedelta(minutes=10))
        assert at_10 is not None
        assert at_10.written_by == "w-late"
        assert offline_row_writer(store, "prod", "user_last", {"user_id": "u1"}, T0 - timedelta(seconds=1)) is None
        assert offline_row_writer(store, "prod", "user_last", {"user_id": "nobody"}, T0) is None
        assert offline_row_writer(store, "prod", "never_written", {"user_id": "u1"}, T0) is None


def test_unknown_join_keys_and_naive_times_are_refused_with_a_reason() -> None:
    with InMemoryOfflineStore() as store:
        store.append([_write(0, "w", ("u1", 0))])
        with pytest.raises(InvalidRequest, match="not join keys"):
            offline_row_writer(store, "prod", "user_last", {"account": "u1"}, T0)
        with pytest.raises(InvalidRequest, match="time zone"):
            offline_row_writer(store, "prod", "user_last", {"user_id": "u1"}, datetime(2026, 5, 1))  # noqa: DTZ001
