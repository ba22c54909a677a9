"""Columnar offline writes (an Arrow IPC table per message, sent by batch jobs): stored exactly as the same
rows sent one by one, in write order among row writes, and refused with a StoreError when they do not fit."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest

from events.data import OFFLINE_EVENT_TIME, Coordinates, SourceRange, WriteOfflineColumns
from events.errors import StoreError
from stores.offline import InMemoryOfflineStore, OfflineStore, OfflineWrite, ParquetOfflineStore
from tests.unit.stores.test_offline import T0, TOPIC, row, rows_of, write


def columns(offset: int, frame: pl.DataFrame, *, fv: str = "fv", keys: tuple[str, ...] = ("user",),
            row_count: int | None = None) -> OfflineWrite:
    out = io.BytesIO()
    table = frame.to_arrow()
    with pa.ipc.new_stream(out, table.schema) as stream:
        stream.write_table(table)
    body = WriteOfflineColumns(fv, keys, out.getvalue(), frame.height if row_count is None else row_count,
                               SourceRange("src", 0, offset, offset))
    return OfflineWrite(Coordinates(TOPIC, 0, offset), "ws", body, f"event-{offset}")


def frame(**cols: Any) -> pl.DataFrame:
    """The columns, event times (if any) in UTC."""
    data = pl.DataFrame(cols)
    if OFFLINE_EVENT_TIME in data.columns:
        data = data.with_columns(pl.col(OFFLINE_EVENT_TIME).dt.replace_time_zone("UTC"))
    return data


TIMES = [T0.replace(tzinfo=None), T0.replace(tzinfo=None, hour=13)]


@pytest.fixture(params=["parquet", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OfflineStore]:
    backend: OfflineStore = (ParquetOfflineStore(tmp_path / "offline") if request.param == "parquet"
                             else InMemoryOfflineStore())
    with backend:
        yield backend


def test_a_columnar_write_scans_as_the_same_rows_written_one_by_one(tmp_path: Path) -> None:
    with InMemoryOfflineStore() as by_rows, InMemoryOfflineStore() as by_columns:
        by_rows.append([write(0, row(("u1",), 0, amount=1, country="DE"), row(("u2",), 1, amount=2, country=None))])
        by_columns.append([columns(0, frame(user=["u1", "u2"], event_time=TIMES, amount=[1, 2],
                                            country=["DE", None]))])
        assert rows_of(by_columns) == rows_of(by_rows)
        assert by_columns.scan("ws", "fv").collect_schema() == by_rows.scan("ws", "fv").collect_schema()


def test_row_and_columnar_writes_keep_their_order_and_types_merge(store: OfflineStore) -> None:
    store.append([
        write(0, row(("u1",), 0, amount=1)),
        columns(1, frame(user=["u1"], event_time=[TIMES[0]], amount=[2.5], note=["x"])),
        write(2, row(("u1",), 0, amount=3)),
    ])
    got = store.scan("ws", "fv").collect()
    assert got["amount"].to_list() == [1.0, 2.5, 3.0]  # one time: write order; ints widened to floats
    assert got["note"].to_list() == [None, "x", None]
    assert got["_written_by"].to_list() == ["event-0", "event-1", "event-2"]


@pytest.mark.parametrize("bad", [
    pytest.param(lambda: columns(1, frame(user=["u1"], event_time=[TIMES[0]]), row_count=2), id="row-count"),
    pytest.param(lambda: columns(1, pl.DataFrame({"user": ["u1"], "event_time": [TIMES[0]]})), id="naive-time"),
    pytest.param(lambda: columns(1, frame(user=["u1"], event_time=[TIMES[0]], tags=[[1, 2]])), id="list-column"),
    pytest.param(lambda: columns(1, frame(user=["u1"], event_time=[TIMES[0]], _written_by=["x"])), id="lineage"),
    pytest.param(lambda: columns(1, frame(user=["u1"], amount=[1])), id="no-event-time"),
    pytest.param(lambda: columns(1, frame(user=["u1"], event_time=[TIMES[0]]), keys=("account",)), id="keys"),
])
def test_columns_that_do_not_fit_fail_the_whole_batch(store: OfflineStore, bad: Any) -> None:
    with pytest.raises(StoreError):
        store.append([write(0, row(("u1",), 0, amount=1)), bad()])
    assert rows_of(store) == []
    assert store.applied_offsets() == {}


def test_bytes_that_are_not_arrow_are_refused(store: OfflineStore) -> None:
    body = WriteOfflineColumns("fv", ("user",), b"not arrow", 1, SourceRange("src", 0, 0, 0))
    with pytest.raises(StoreError, match="Arrow"):
        store.append([OfflineWrite(Coordinates(TOPIC, 0, 0), "ws", body, "event-0")])


def test_a_type_change_against_earlier_rows_is_refused(store: OfflineStore) -> None:
    store.append([write(0, row(("u1",), 0, amount=1))])
    with pytest.raises(StoreError, match="amount"):
        store.append([columns(1, frame(user=["u1"], event_time=[TIMES[0]], amount=["one"]))])
