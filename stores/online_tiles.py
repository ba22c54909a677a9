"""Tiles of aggregated feature views in the online store: every delta under its own key, merged on read.

A delta's key is (workspace, "<view>#tiles", entity key…, tile, offset of its message, index in it): a
replayed message writes the same keys (and the applied offsets skip it anyway), and the store never has
to understand aggregate states (merging them is the engine's job, at read time). Its value is msgpack
{"s": states, "w": id of the write message} so that a merged value can be traced to the writes that fed
it; format 1 stored the bare list of states, which still reads (without a writer).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import msgpack

from events.data import EntityKey, TileDelta, TileState
from events.errors import StoreError
from stores.online_keys import MAX_KEY_BYTES, decode_key, encode_key

TILES_SUFFIX = "#tiles"  # "#" is never part of a view's name (names are identifiers)


def tiles_view(feature_view: str) -> str:
    return feature_view + TILES_SUFFIX


def delta_entries(workspace: str, feature_view: str, offset: int, deltas: Iterable[TileDelta],
                  written_by: str = "") -> list[tuple[bytes, bytes]]:
    entries = []
    for index, delta in enumerate(deltas):
        if not isinstance(delta.entity_key, tuple):
            raise StoreError(f"an entity key is a tuple, not {type(delta.entity_key).__name__}")
        key = encode_key(workspace, tiles_view(feature_view),
                         (*delta.entity_key, float(delta.tile.tile), offset, index))
        if len(key) > MAX_KEY_BYTES:
            raise StoreError(f"tile key of {delta.entity_key!r} is {len(key)} bytes, over {MAX_KEY_BYTES}")
        entries.append((key, msgpack.packb({"s": list(delta.tile.states), "w": written_by})))
    return entries


def range_bounds(workspace: str, feature_view: str, entity_key: EntityKey,
                 lower: float | None) -> tuple[bytes, bytes]:
    """(first key to read, the entity's prefix): read from the first, while keys start with the prefix."""
    prefix = encode_key(workspace, tiles_view(feature_view), entity_key)
    start = prefix if lower is None else encode_key(workspace, tiles_view(feature_view), (*entity_key, float(lower)))
    return start, prefix


def collect(items: Iterator[tuple[bytes, bytes]], prefix: bytes, width: int, upper: float) -> tuple[TileState, ...]:
    """The deltas among `items` (ascending keys from the range start) up to tile `upper`, inclusive."""
    found: list[TileState] = []
    for key, raw in items:
        if not key.startswith(prefix):
            break
        entity_and_tile = decode_key(key)[2]
        tile = entity_and_tile[width]
        if not isinstance(tile, float) or tile > upper:
            break
        found.append(_tile_state(key, raw, tile))
    return tuple(found)


def _tile_state(key: bytes, raw: bytes, tile: float) -> TileState:
    try:
        value: Any = msgpack.unpackb(raw, use_list=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise StoreError(f"unreadable tile under {key!r}: {exc}") from exc
    if isinstance(value, dict):
        states, written_by = value.get("s"), value.get("w", "")
    else:  # format 1: the states alone
        states, written_by = value, ""
    if not isinstance(states, tuple) or not isinstance(written_by, str):
        raise StoreError(f"unreadable tile under {key!r}: not a tile value")
    return TileState(tile, states, written_by)
