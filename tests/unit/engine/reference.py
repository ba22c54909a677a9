"""Aggregates computed directly from raw events, the slow and obvious way, to check the engine against."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from engine import Value
from events.data import Scalar
from events.specs import AggregationFunction as F

Event = tuple[float, Scalar]  # (event time, value), listed in arrival order


def present(events: Sequence[Event]) -> list[Event]:
    return [(t, v) for t, v in events if v is not None and not (isinstance(v, float) and math.isnan(v))]


def _by_time(events: Sequence[Event]) -> list[Event]:
    return sorted(events, key=lambda e: e[0])  # sorted() is stable: equal times keep arrival order


def _distinct(events: Sequence[Event], latest: bool) -> list[Scalar]:
    """Each value at its newest (or oldest) occurrence, the occurrences in time then arrival order."""
    ranked = list(enumerate(_by_time(events)))
    chosen: dict[Scalar, int] = {}
    for rank, (_, value) in ranked:
        if latest or value not in chosen:
            chosen[value] = rank
    return [value for value, _ in sorted(chosen.items(), key=lambda item: item[1])]


def _values(events: Sequence[Event]) -> list[Any]:  # one column: one type, comparable and maybe numeric
    return [v for _, v in events]


def _numbers(events: Sequence[Event]) -> list[float]:
    return [float(v) for v in _values(events)]


def _nonempty(compute: Callable[[Sequence[Event]], Value]) -> Callable[[Sequence[Event]], Value]:
    return lambda events: compute(events) if events else None


def _tuple(items: list[Scalar]) -> Value:
    return tuple(items) if items else None


def _variance(sample: bool, root: bool) -> Callable[[Sequence[Event]], Value]:
    def compute(events: Sequence[Event]) -> Value:
        if len(events) < (2 if sample else 1):
            return None
        values = _numbers(events)
        variance = statistics.variance(values) if sample else statistics.pvariance(values)
        return math.sqrt(variance) if root else variance
    return compute


def reference(function: F, params: Mapping[str, int | float], events: Sequence[Event]) -> Value:
    """The value of `function` over `events` (already limited to one window)."""
    n = int(params.get("n", 0))
    kept = present(events)
    exact: dict[F, Callable[[Sequence[Event]], Value]] = {
        F.COUNT: len,
        F.SUM: _nonempty(lambda es: sum(_values(es))),
        F.MEAN: _nonempty(lambda es: sum(_values(es)) / len(es)),
        F.MIN: _nonempty(lambda es: min(_values(es))),
        F.MAX: _nonempty(lambda es: max(_values(es))),
        F.LAST: _nonempty(lambda es: _by_time(es)[-1][1]),
        F.LAST_N: lambda es: _tuple(_values(_by_time(es))[-n:]),
        F.FIRST_N: lambda es: _tuple(_values(_by_time(es))[:n]),
        F.LAST_DISTINCT_N: lambda es: _tuple(_distinct(es, latest=True)[-n:]),
        F.FIRST_DISTINCT_N: lambda es: _tuple(_distinct(es, latest=False)[:n]),
        F.VAR_POP: _variance(sample=False, root=False), F.VAR_SAMP: _variance(sample=True, root=False),
        F.STDDEV_POP: _variance(sample=False, root=True), F.STDDEV_SAMP: _variance(sample=True, root=True),
    }
    return exact[function](kept)


def exact_quantile(values: Sequence[float], q: float) -> float:
    """The value of rank floor(q * (n - 1)) in sorted order: what approx_percentile estimates."""
    return sorted(values)[math.floor(q * (len(values) - 1))]


FLOAT_FUNCTIONS = frozenset({F.SUM, F.MEAN, F.VAR_POP, F.VAR_SAMP, F.STDDEV_POP, F.STDDEV_SAMP})


def assert_same(function: F, actual: object, expected: object, events: Sequence[Event]) -> None:
    """Equal, except that float arithmetic may round differently from the reference's."""
    if function not in FLOAT_FUNCTIONS or actual is None or expected is None:
        assert actual == expected, (actual, expected)
        return
    assert isinstance(actual, int | float)
    assert isinstance(expected, int | float)
    scale = max((abs(x) for x in _numbers(present(events))), default=0.0)
    if function in (F.STDDEV_POP, F.STDDEV_SAMP):  # compare the variances: sqrt magnifies rounding near 0
        actual, expected, scale = actual * actual, expected * expected, scale * scale
    elif function in (F.VAR_POP, F.VAR_SAMP):
        scale = scale * scale
    else:
        scale *= len(events)
    assert math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-9 * scale), (actual, expected)
