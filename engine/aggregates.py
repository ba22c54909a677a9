"""The exact aggregation functions with small states, and `aggregator_for`, which binds a spec's parameters.

Empty windows finalize as Tecton serves them: `count` (and `approx_count_distinct`) give 0, every other
function gives None; so does `var_samp`/`stddev_samp` of a single value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, cast

from engine.base import Aggregator, Base, Packed, Seconds, Value, number
from engine.ordered import Distinct, Ordered
from engine.sketches import HyperLogLog, Quantiles
from events.data import Scalar
from events.specs import AGGREGATION_PARAMS, AggregateSpec, AggregationFunction


class Count(Base[int]):
    """The number of non-null values."""

    def empty(self) -> int:
        return 0

    def add(self, state: int, value: Scalar, event_time: Seconds) -> int:
        return state + 1

    def merge(self, a: int, b: int) -> int:
        return a + b

    def finalize(self, state: int) -> Value:
        return state

    def encode(self, state: int) -> Packed:
        return state

    def decode(self, packed: Any) -> int:
        return int(packed)


Number = int | float


class Sum(Base[Number | None]):
    """Ints add exactly; floats add in merge order, so regroupings agree only up to rounding."""

    def empty(self) -> Number | None:
        return None  # not 0: an empty window sums to None, as in Tecton

    def add(self, state: Number | None, value: Scalar, event_time: Seconds) -> Number | None:
        return self.merge(state, number(value))

    def merge(self, a: Number | None, b: Number | None) -> Number | None:
        if a is None:
            return b
        return a if b is None else a + b

    def finalize(self, state: Number | None) -> Value:
        return state

    def encode(self, state: Number | None) -> Packed:
        return state

    def decode(self, packed: Any) -> Number | None:
        return cast(Number | None, packed)


class Mean(Base[tuple[int, Number]]):
    """(count, sum): the sum stays an int for int columns, so the mean is the correctly rounded quotient."""

    def empty(self) -> tuple[int, Number]:
        return (0, 0)

    def add(self, state: tuple[int, Number], value: Scalar, event_time: Seconds) -> tuple[int, Number]:
        return (state[0] + 1, state[1] + number(value))

    def merge(self, a: tuple[int, Number], b: tuple[int, Number]) -> tuple[int, Number]:
        return (a[0] + b[0], a[1] + b[1])

    def finalize(self, state: tuple[int, Number]) -> Value:
        return state[1] / state[0] if state[0] else None

    def encode(self, state: tuple[int, Number]) -> Packed:
        return list(state)

    def decode(self, packed: Any) -> tuple[int, Number]:
        return (packed[0], packed[1])


class Extreme(Base[Scalar]):
    """min or max (of numbers, strings or bools); None is the empty state since nulls never enter."""

    def __init__(self, largest: bool) -> None:
        self.largest = largest

    def empty(self) -> Scalar:
        return None

    def add(self, state: Scalar, value: Scalar, event_time: Seconds) -> Scalar:
        return self.merge(state, value)

    def merge(self, a: Scalar, b: Scalar) -> Scalar:
        if a is None or b is None:
            return b if a is None else a
        # Any: a column holds one type, which mypy cannot see in the Scalar union
        bigger = cast(Any, b) > a
        return b if bigger == self.largest else a

    def finalize(self, state: Scalar) -> Value:
        return state

    def encode(self, state: Scalar) -> Packed:
        return state

    def decode(self, packed: Any) -> Scalar:
        return cast(Scalar, packed)


LastState = tuple[Seconds, Scalar] | None


class Last(Base[LastState]):
    """The value with the greatest event time; on equal times the later arrival (in a merge: `b`) wins."""

    def empty(self) -> LastState:
        return None

    def add(self, state: LastState, value: Scalar, event_time: Seconds) -> LastState:
        return self.merge(state, (event_time, value))

    def merge(self, a: LastState, b: LastState) -> LastState:
        if b is None:
            return a
        return b if a is None or b[0] >= a[0] else a

    def finalize(self, state: LastState) -> Value:
        return None if state is None else state[1]

    def encode(self, state: LastState) -> Packed:
        return None if state is None else [state[0], state[1]]

    def decode(self, packed: Any) -> LastState:
        return None if packed is None else (packed[0], packed[1])


Moments = tuple[int, float, float]  # count, mean, sum of squared deviations from the mean (M2)


class Variance(Base[Moments]):
    """var/stddev, population or sample, merged with Chan et al.'s parallel algorithm (stable, one pass)."""

    def __init__(self, sample: bool, root: bool) -> None:
        self.sample, self.root = sample, root

    def empty(self) -> Moments:
        return (0, 0.0, 0.0)

    def add(self, state: Moments, value: Scalar, event_time: Seconds) -> Moments:
        # merging a one-value state is exactly Welford's update
        return self.merge(state, (1, float(number(value)), 0.0))

    def merge(self, a: Moments, b: Moments) -> Moments:
        if not a[0] or not b[0]:
            return b if not a[0] else a
        count = a[0] + b[0]
        delta = b[1] - a[1]
        mean = a[1] + delta * b[0] / count
        return (count, mean, a[2] + b[2] + delta * delta * a[0] * b[0] / count)

    def finalize(self, state: Moments) -> Value:
        count, _, m2 = state
        denominator = count - 1 if self.sample else count
        if denominator <= 0:
            return None
        variance = max(m2, 0.0) / denominator
        return math.sqrt(variance) if self.root else variance

    def encode(self, state: Moments) -> Packed:
        return list(state)

    def decode(self, packed: Any) -> Moments:
        return (int(packed[0]), float(packed[1]), float(packed[2]))


F = AggregationFunction


_SIMPLE: dict[F, Aggregator[Any]] = {
    F.COUNT: Count(), F.SUM: Sum(), F.MEAN: Mean(), F.MIN: Extreme(largest=False),
    F.MAX: Extreme(largest=True), F.LAST: Last(),
    F.VAR_POP: Variance(sample=False, root=False), F.VAR_SAMP: Variance(sample=True, root=False),
    F.STDDEV_POP: Variance(sample=False, root=True), F.STDDEV_SAMP: Variance(sample=True, root=True),
}


def aggregator_for(spec: AggregateSpec) -> Aggregator[Any]:
    """The aggregator of `spec.function` with `spec.params` (defaults from AGGREGATION_PARAMS) bound.

    Raises ValueError for an unknown function or a missing required parameter; validation reports both
    before a spec is ever applied, so here they are bugs.
    """
    function = F(spec.function)
    simple = _SIMPLE.get(function)
    if simple is not None:  # asked per aggregate of every served entity: one shared, stateless instance
        return simple
    params = _params(function, spec.params)
    if function in (F.LAST_N, F.FIRST_N):
        return Ordered(int(params["n"]), latest=function is F.LAST_N)
    if function in (F.LAST_DISTINCT_N, F.FIRST_DISTINCT_N):
        return Distinct(int(params["n"]), latest=function is F.LAST_DISTINCT_N)
    if function is F.APPROX_COUNT_DISTINCT:
        return HyperLogLog(int(params["precision"]))
    return Quantiles(float(params["percentile"]), int(params["precision"]))


def _params(function: AggregationFunction, given: Mapping[str, int | float]) -> dict[str, int | float]:
    params: dict[str, int | float] = {}
    for name, default in AGGREGATION_PARAMS.get(function, {}).items():
        value = given.get(name, default)
        if value is None:
            raise ValueError(f"aggregation function '{function}' needs the parameter '{name}'")
        params[name] = value
    return params
