"""The serving cache's rules: max age, bounded size, tile ranges, invalidation, in-flight reads."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from actors.components import cache as cache_module
from actors.components.cache import ServingCache
from events.data import FeatureRow, Lookup, StoredRow

ROW = StoredRow(FeatureRow(("u1",), datetime(2026, 1, 1, tzinfo=UTC), {"x": 1.0}), "w1")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(cache_module.ServingCache, "now", staticmethod(lambda: now[0]))
    return now


def test_hits_until_the_max_age(clock: list[float]) -> None:
    cache = ServingCache(60, 10)
    lookup = Lookup("v", ("u1",))
    assert cache.get("ws", lookup) is None
    cache.put("ws", lookup, ROW, None, asked_at=clock[0])
    hit = cache.get("ws", lookup)
    assert hit is not None
    assert hit.row == ROW
    clock[0] += 61
    assert cache.get("ws", lookup) is None
    assert (cache.hits, cache.misses) == (1, 2)


def test_a_write_drops_the_key_and_an_overtaken_read_is_not_cached(clock: list[float]) -> None:
    cache = ServingCache(60, 10)
    lookup, other = Lookup("v", ("u1",)), Lookup("v", ("u2",))
    cache.put("ws", lookup, ROW, None, asked_at=clock[0])
    cache.put("ws", other, None, None, asked_at=clock[0])
    cache.written("ws", "v", [("u1",)])
    assert cache.get("ws", lookup) is None
    assert cache.get("ws", other) is not None  # only the written key goes
    asked = clock[0] - 1  # a read sent before the write, answered after it
    cache.put("ws", lookup, ROW, None, asked_at=asked)
    assert cache.get("ws", lookup) is None


def test_least_recently_used_entries_go_first(clock: list[float]) -> None:
    cache = ServingCache(60, 2)
    a, b, c = (Lookup("v", (k,)) for k in ("a", "b", "c"))
    for lookup in (a, b):
        cache.put("ws", lookup, None, None, asked_at=clock[0])
    assert cache.get("ws", a) is not None  # a is now the most recent
    cache.put("ws", c, None, None, asked_at=clock[0])
    assert cache.get("ws", b) is None
    assert cache.get("ws", a) is not None
    assert cache.get("ws", c) is not None


def test_cached_tiles_serve_only_ranges_they_cover(clock: list[float]) -> None:
    cache = ServingCache(60, 10)
    cache.put("ws", Lookup("v", ("u1",), (100.0, 200.0)), None, (), asked_at=clock[0])
    assert cache.get("ws", Lookup("v", ("u1",), (150.0, 200.0))) is not None
    assert cache.get("ws", Lookup("v", ("u1",), (150.0, 300.0))) is None  # the window moved on
    assert cache.get("ws", Lookup("v", ("u1",), (None, 200.0))) is None  # lifetime needs everything


@pytest.mark.parametrize("age", [0, -1, 24 * 3600 + 1])
def test_max_age_is_positive_and_at_most_a_day(age: float) -> None:
    with pytest.raises(ValueError, match="max age"):
        ServingCache(age, 10)
