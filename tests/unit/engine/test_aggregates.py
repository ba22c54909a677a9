"""Every aggregation function against the reference, and the algebra of its states."""

from __future__ import annotations

import math
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import Aggregator, aggregator_for
from events.specs import AggregateSpec, LifetimeWindowSpec
from tests.unit.engine.reference import FLOAT_FUNCTIONS, Event, assert_same, reference
from tests.unit.engine.strategies import EXACT, F, aggregator, columns, fold, kinds, params_for, spec_for

functions = st.sampled_from(F)
exact_functions = st.sampled_from(EXACT)
# merge(a, b) == merge(b, a) for these; the rest break ties between equal times by arrival order
COMMUTATIVE = frozenset(F) - {F.LAST, F.LAST_N, F.FIRST_N, F.LAST_DISTINCT_N, F.FIRST_DISTINCT_N}


def _assert_states_agree(function: F, agg: Aggregator[Any], one: Any, other: Any, events: list[Event]) -> None:
    """Equal states, or for float arithmetic equal values up to rounding."""
    if function in FLOAT_FUNCTIONS:
        assert_same(function, agg.finalize(one), agg.finalize(other), events)
    else:
        assert one == other


@settings(max_examples=300)
@given(st.data(), exact_functions)
def test_one_state_of_all_events_finalizes_to_the_reference(data: st.DataObject, function: F) -> None:
    events = data.draw(columns(function))
    expected = reference(function, params_for(function), events)
    assert_same(function, aggregator(function).finalize(fold(aggregator(function), events)), expected, events)


def _tree_merge(data: st.DataObject, agg: Aggregator[Any], states: list[Any]) -> Any:
    """`states` merged in order, grouped in a random binary tree."""
    if len(states) == 1:
        return states[0]
    cut = data.draw(st.integers(1, len(states) - 1))
    return agg.merge(_tree_merge(data, agg, states[:cut]), _tree_merge(data, agg, states[cut:]))


@settings(max_examples=300)
@given(st.data(), functions)
def test_merging_chunks_in_any_grouping_equals_updating_one_state(data: st.DataObject, function: F) -> None:
    events = data.draw(columns(function))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(events)), max_size=5)))
    chunks = [events[a:b] for a, b in zip([0, *cuts], [*cuts, len(events)], strict=True)]
    agg = aggregator(function)
    merged = _tree_merge(data, agg, [fold(agg, chunk) for chunk in chunks])
    _assert_states_agree(function, agg, merged, fold(agg, events), events)


@given(st.data(), functions)
def test_merge_is_associative(data: st.DataObject, function: F) -> None:
    kind = data.draw(kinds(function))
    a, b, c = (data.draw(columns(function, max_size=10, kind=kind)) for _ in range(3))
    agg = aggregator(function)
    sa, sb, sc = fold(agg, a), fold(agg, b), fold(agg, c)
    _assert_states_agree(function, agg, agg.merge(agg.merge(sa, sb), sc), agg.merge(sa, agg.merge(sb, sc)),
                         a + b + c)


@given(st.data(), functions)
def test_merge_is_commutative_where_no_tie_needs_the_arrival_order(data: st.DataObject, function: F) -> None:
    kind = data.draw(kinds(function))
    a, b = (data.draw(columns(function, max_size=10, kind=kind)) for _ in range(2))
    if function not in COMMUTATIVE:  # with all times distinct the arrival order decides nothing
        b = [(t + 0.5 + 100 * i, v) for i, (t, v) in enumerate(b)]
        a = [(t + 0.25 + 100 * i + 50, v) for i, (t, v) in enumerate(a)]
    agg = aggregator(function)
    sa, sb = fold(agg, a), fold(agg, b)
    _assert_states_agree(function, agg, agg.merge(sa, sb), agg.merge(sb, sa), a + b)


@given(st.data(), functions)
def test_empty_is_the_identity_of_merge(data: st.DataObject, function: F) -> None:
    agg = aggregator(function)
    state = fold(agg, data.draw(columns(function)))
    assert agg.merge(agg.empty(), state) == state
    assert agg.merge(state, agg.empty()) == state


@settings(max_examples=200)
@given(st.data(), functions)
def test_states_survive_encode_msgpack_decode(data: st.DataObject, function: F) -> None:
    agg = aggregator(function)
    state = fold(agg, data.draw(columns(function)))
    packed = msgpack.unpackb(msgpack.packb(agg.encode(state)))
    assert agg.decode(packed) == state


@pytest.mark.parametrize("function", list(F))
@pytest.mark.parametrize("missing", [None, math.nan])
def test_nulls_and_nans_change_no_state(function: F, missing: float | None) -> None:
    agg = aggregator(function)
    state = agg.update(agg.empty(), 1, 5.0)
    assert agg.update(state, missing, 9.0) == state
    assert agg.update(agg.empty(), missing, 9.0) == agg.empty()


@pytest.mark.parametrize("function", list(F))
def test_an_empty_window_is_zero_for_counts_and_none_otherwise(function: F) -> None:
    agg = aggregator(function)
    expected = 0 if function in (F.COUNT, F.APPROX_COUNT_DISTINCT) else None
    assert agg.finalize(agg.empty()) == expected
    assert agg.finalize(agg.update(agg.empty(), None, 1.0)) == expected


def _run(function: F, events: list[Event], **params: int | float) -> object:
    agg = aggregator_for(spec_for(function, params or None))
    return agg.finalize(fold(agg, events))


def test_last_is_the_greatest_event_time_and_the_later_arrival_on_a_tie() -> None:
    assert _run(F.LAST, [(5.0, "late"), (1.0, "early")]) == "late"
    assert _run(F.LAST, [(5.0, "first"), (5.0, "second"), (1.0, "old")]) == "second"
    agg = aggregator(F.LAST)
    a, b = fold(agg, [(5.0, "a")]), fold(agg, [(5.0, "b")])
    assert agg.finalize(agg.merge(a, b)) == "b"  # in a merge the right side arrived later
    assert agg.finalize(agg.merge(b, a)) == "a"


def test_the_n_functions_list_oldest_to_newest() -> None:
    events: list[Event] = [(3.0, "c"), (1.0, "a"), (4.0, "a"), (2.0, "b"), (5.0, "d"), (6.0, None)]
    assert _run(F.LAST_N, events, n=3) == ("c", "a", "d")
    assert _run(F.FIRST_N, events, n=3) == ("a", "b", "c")
    assert _run(F.LAST_DISTINCT_N, events, n=3) == ("c", "a", "d")  # "a" sits at its newest occurrence
    assert _run(F.LAST_DISTINCT_N, events, n=10) == ("b", "c", "a", "d")
    assert _run(F.FIRST_DISTINCT_N, events, n=3) == ("a", "b", "c")  # "a" sits at its oldest occurrence
    assert _run(F.FIRST_N, events, n=10) == ("a", "b", "c", "a", "d")


def test_the_n_functions_break_time_ties_by_arrival() -> None:
    events: list[Event] = [(1.0, "x"), (1.0, "y"), (1.0, "x")]
    assert _run(F.LAST_N, events, n=2) == ("y", "x")
    assert _run(F.FIRST_N, events, n=2) == ("x", "y")
    assert _run(F.LAST_DISTINCT_N, events, n=2) == ("y", "x")  # the second "x" is the newest occurrence
    assert _run(F.FIRST_DISTINCT_N, events, n=2) == ("x", "y")


def test_numeric_functions_by_hand() -> None:
    events: list[Event] = [(1.0, 2), (2.0, 4), (3.0, None), (4.0, 4), (5.0, 5), (6.0, 5), (7.0, 7), (8.0, 9)]
    assert _run(F.COUNT, events) == 7
    assert _run(F.SUM, events) == 36
    assert isinstance(_run(F.SUM, events), int)
    assert _run(F.MEAN, events) == pytest.approx(36 / 7)
    assert (_run(F.MIN, events), _run(F.MAX, events)) == (2, 9)
    population = sum((x - 36 / 7) ** 2 for x in (2, 4, 4, 5, 5, 7, 9)) / 7
    assert _run(F.VAR_POP, events) == pytest.approx(population)
    assert _run(F.VAR_SAMP, events) == pytest.approx(population * 7 / 6)
    assert _run(F.STDDEV_POP, events) == pytest.approx(math.sqrt(population))
    assert _run(F.STDDEV_SAMP, events) == pytest.approx(math.sqrt(population * 7 / 6))


def test_one_value_has_a_population_variance_but_no_sample_variance() -> None:
    assert _run(F.VAR_POP, [(1.0, 3.5)]) == 0.0
    assert _run(F.STDDEV_POP, [(1.0, 3.5)]) == 0.0
    assert _run(F.VAR_SAMP, [(1.0, 3.5)]) is None
    assert _run(F.STDDEV_SAMP, [(1.0, 3.5)]) is None


def test_min_and_max_order_strings() -> None:
    events: list[Event] = [(1.0, "pear"), (2.0, "apple"), (3.0, "zucchini")]
    assert (_run(F.MIN, events), _run(F.MAX, events)) == ("apple", "zucchini")


def test_variance_stays_accurate_far_from_zero() -> None:
    # the textbook sum-of-squares formula loses every digit here; Chan/Welford does not
    events: list[Event] = [(float(i), 1e9 + x) for i, x in enumerate((4.0, 7.0, 13.0, 16.0))]
    assert _run(F.VAR_POP, events) == pytest.approx(22.5, rel=1e-9)


def test_spec_params_are_bound_and_defaulted() -> None:
    hll = aggregator_for(AggregateSpec("a", "x", "approx_count_distinct", LifetimeWindowSpec()))
    assert len(hll.empty()) == 2**8  # the default precision, 8
    assert len(aggregator_for(spec_for(F.APPROX_COUNT_DISTINCT, {"precision": 12})).empty()) == 2**12


@pytest.mark.parametrize(("function", "params", "error"), [
    ("median", {}, "median"),
    ("approx_percentile", {}, "percentile"),
    ("last_n", {}, "'n'"),
    ("last_n", {"n": 0}, "at least 1"),
    ("approx_count_distinct", {"precision": 3}, "4 to 16"),
])
def test_bad_specs_are_refused(function: str, params: dict[str, int | float], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        aggregator_for(AggregateSpec("a", "x", function, LifetimeWindowSpec(), params))
