"""Tile deltas in both online store backends: kept apart, range-read in tile order, idempotent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from events.data import Coordinates, SourceRange, TileDelta, TileState, WriteTiles
from stores.online import InMemoryOnlineStore, LmdbOnlineStore, OnlineStore, OnlineWrite


@pytest.fixture(params=["lmdb", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    backend: OnlineStore = LmdbOnlineStore(tmp_path / "db") if request.param == "lmdb" else InMemoryOnlineStore()
    with backend:
        yield backend


def _write(offset: int, *deltas: tuple[tuple[object, ...], float, tuple[object, ...]]) -> OnlineWrite:
    tiles = tuple(TileDelta(key, TileState(tile, states)) for key, tile, states in deltas)  # type: ignore[arg-type]
    return OnlineWrite(Coordinates("w", 0, offset), "ws", WriteTiles("agg", tiles, SourceRange("s", 0, 0, 0)), "e")


def test_deltas_are_read_back_in_tile_order_within_the_range(store: OnlineStore) -> None:
    store.apply_writes([_write(0, (("u1",), 600.0, (1, 2.5)), (("u1",), 0.0, (3, 1.0)), (("u2",), 0.0, (9, 9.0))),
                        _write(1, (("u1",), 600.0, (4, 0.5)))])
    tiles = store.read_tiles("ws", "agg", ("u1",), 0.0, 600.0)
    assert [(t.tile, t.states) for t in tiles] == [(0.0, (3, 1.0)), (600.0, (1, 2.5)), (600.0, (4, 0.5))]
    assert [t.tile for t in store.read_tiles("ws", "agg", ("u1",), 300.0, 600.0)] == [600.0, 600.0]
    assert [t.tile for t in store.read_tiles("ws", "agg", ("u1",), None, 599.0)] == [0.0]
    assert store.read_tiles("ws", "agg", ("u1",), 700.0, 9000.0) == ()
    assert store.read_tiles("ws", "agg", ("u",), None, 9000.0) == ()  # "u" is not a prefix of "u1"
    assert [t.states for t in store.read_tiles("ws", "agg", ("u2",), None, 0.0)] == [(9, 9.0)]


def test_replaying_a_message_adds_nothing(store: OnlineStore) -> None:
    write = _write(5, (("u1",), 0.0, (1,)))
    assert store.apply_writes([write]) == 1
    assert store.apply_writes([write]) == 0
    assert len(store.read_tiles("ws", "agg", ("u1",), None, 0.0)) == 1


def test_tiles_do_not_show_up_as_rows(store: OnlineStore) -> None:
    from events.data import Lookup

    store.apply_writes([_write(0, (("u1",), 0.0, (1,)))])
    assert store.read("ws", [Lookup("agg", ("u1",))]) == [None]


def test_each_delta_remembers_the_write_that_stored_it(store: OnlineStore) -> None:
    first, second = _write(0, (("u1",), 0.0, (1,))), _write(1, (("u1",), 0.0, (2,)))
    store.apply_writes([first, OnlineWrite(second.coordinates, second.workspace, second.write, "e2")])
    assert [(t.states, t.written_by) for t in store.read_tiles("ws", "agg", ("u1",), None, 0.0)] == \
        [((1,), "e"), ((2,), "e2")]


def test_a_format_1_delta_without_its_writer_still_reads() -> None:
    import msgpack

    from stores.online_tiles import collect, delta_entries, range_bounds

    [(key, _)] = delta_entries("ws", "agg", 0, [TileDelta(("u1",), TileState(0.0, (7,)))])
    old_value = msgpack.packb([7])  # format 1: the bare list of states
    _, prefix = range_bounds("ws", "agg", ("u1",), None)
    [tile] = collect(iter([(key, old_value)]), prefix, 1, 0.0)
    assert (tile.states, tile.written_by) == ((7,), "")
