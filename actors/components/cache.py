"""The serving cache: read-through, bounded, in volatile memory only (DESIGN: at most 24 h per entry).

An entry holds what the online store answered for one lookup. It is dropped when the store's changelog
says that key was written (the next read fetches it again), when it is older than the max age, or when
the cache is full (least recently used first). The max age is the feature view's own
(`serving_cache_max_age_s`, at most 24 h) where it has one, else the cache's default. An answer that a
write overtook while the read was in flight is not cached: it might already be stale.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from events.data import EntityKey, Lookup, StoredRow, TileState

MAX_AGE_LIMIT_S = 24 * 3600.0
CacheKey = tuple[str, str, EntityKey]


@dataclass(frozen=True, slots=True)
class Cached:
    row: StoredRow | None
    tiles: tuple[TileState, ...] | None
    tile_range: tuple[float | None, float] | None
    stored_at: float
    max_age_s: float = MAX_AGE_LIMIT_S


def _covers(have: tuple[float | None, float] | None, need: tuple[float | None, float] | None) -> bool:
    if need is None:
        return True
    if have is None:
        return False
    have_low, need_low = have[0], need[0]
    low_ok = have_low is None or (need_low is not None and have_low <= need_low)
    return low_ok and have[1] >= need[1]


class ServingCache:
    def __init__(self, max_age_s: float, max_entries: int) -> None:
        if not 0 < max_age_s <= MAX_AGE_LIMIT_S:
            raise ValueError(f"the serving cache's max age must be in (0, {MAX_AGE_LIMIT_S:.0f}] seconds")
        self._max_age = max_age_s
        self._max_entries = max_entries
        self._entries: OrderedDict[CacheKey, Cached] = OrderedDict()
        self._written_at: dict[CacheKey, float] = {}  # last changelog time per key, for in-flight reads
        self.hits = 0
        self.misses = 0

    @staticmethod
    def now() -> float:
        return time.monotonic()

    def get(self, workspace: str, lookup: Lookup) -> Cached | None:
        key = (workspace, lookup.feature_view, lookup.entity_key)
        entry = self._entries.get(key)
        if entry is None or self.now() - entry.stored_at > entry.max_age_s or \
                not _covers(entry.tile_range, lookup.tile_range):
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry

    def put(self, workspace: str, lookup: Lookup, row: StoredRow | None, tiles: tuple[TileState, ...] | None,
            asked_at: float, max_age_s: float | None = None) -> None:
        """Keep an answer of the store, unless its key was written after the read was sent; `max_age_s` is
        the feature view's own max age (None: the default), never more than 24 h."""
        key = (workspace, lookup.feature_view, lookup.entity_key)
        if self._written_at.get(key, -1.0) >= asked_at:
            return
        age = self._max_age if max_age_s is None else min(max_age_s, MAX_AGE_LIMIT_S)
        self._entries[key] = Cached(row, tiles, lookup.tile_range, asked_at, age)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def written(self, workspace: str, feature_view: str, entity_keys: Iterable[EntityKey]) -> None:
        """The changelog says these keys changed: forget them."""
        now = self.now()
        for entity_key in entity_keys:
            key = (workspace, feature_view, entity_key)
            self._entries.pop(key, None)
            self._written_at[key] = now
        if len(self._written_at) > self._max_entries:
            # Only reads still in flight need these times; a read never lasts as long as the default max age.
            horizon = now - self._max_age
            self._written_at = {k: t for k, t in self._written_at.items() if t > horizon}
