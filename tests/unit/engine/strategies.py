"""Hypothesis strategies for the engine: events of one column, in arrival order, with nulls, NaNs and ties."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from hypothesis import strategies as st

from engine import Aggregator, aggregator_for
from events.data import Scalar
from events.specs import NUMERIC_FUNCTIONS, AggregateSpec, AggregationFunction, LifetimeWindowSpec
from tests.unit.engine.reference import Event

F = AggregationFunction
APPROXIMATE = frozenset({F.APPROX_COUNT_DISTINCT, F.APPROX_PERCENTILE})
EXACT = tuple(f for f in F if f not in APPROXIMATE)

# few distinct times, so that equal times (and their arrival-order tie breaks) are common
times = st.one_of(st.integers(0, 40).map(float), st.floats(0, 40, allow_nan=False))
numbers = st.one_of(st.integers(-(10**6), 10**6), st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False))
_kinds = {
    "numbers": numbers,
    "small ints": st.integers(0, 5),  # repeats, for the distinct functions
    "strings": st.sampled_from(["a", "b", "c", "d", "e"]),
    "bools": st.booleans(),
}


def params_for(function: F) -> dict[str, int | float]:
    params: dict[F, dict[str, int | float]] = {
        F.LAST_N: {"n": 3}, F.FIRST_N: {"n": 3}, F.LAST_DISTINCT_N: {"n": 2}, F.FIRST_DISTINCT_N: {"n": 2},
        F.APPROX_COUNT_DISTINCT: {"precision": 10},
        F.APPROX_PERCENTILE: {"percentile": 0.5, "precision": 100}}
    return params.get(function, {})


def spec_for(function: F, params: Mapping[str, int | float] | None = None) -> AggregateSpec:
    chosen = params_for(function) if params is None else dict(params)
    return AggregateSpec(f"x_{function}", "x", function.value, LifetimeWindowSpec(), chosen)


def aggregator(function: F) -> Aggregator[Any]:
    return aggregator_for(spec_for(function))


def kinds(function: F) -> st.SearchStrategy[str]:
    """The kinds of column `function` accepts (numbers only, for the numeric functions)."""
    return st.just("numbers") if function in NUMERIC_FUNCTIONS else st.sampled_from(sorted(_kinds))


@st.composite
def columns(draw: st.DrawFn, function: F, max_size: int = 30, kind: str | None = None) -> list[Event]:
    """(time, value) events of one column that `function` accepts, nulls and NaN included."""
    kind = draw(kinds(function)) if kind is None else kind
    missing: list[st.SearchStrategy[Scalar]] = [st.none()]
    if kind == "numbers":
        missing.append(st.just(math.nan))
    values = draw(st.lists(st.one_of(_kinds[kind], *missing), max_size=max_size))
    return [(draw(times), value) for value in values]


def fold(agg: Aggregator[Any], events: list[Event], state: Any = None) -> Any:
    state = agg.empty() if state is None else state
    for time, value in events:
        state = agg.update(state, value, time)
    return state
