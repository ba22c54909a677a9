"""The approximate functions stay within their documented error, and merging loses nothing."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.sketches import Buckets, HyperLogLog, Quantiles
from events.data import Scalar
from tests.unit.engine.reference import exact_quantile


def _hll(precision: int, values: Sequence[Scalar]) -> tuple[HyperLogLog, bytes]:
    sketch = HyperLogLog(precision)
    state = sketch.empty()
    for value in values:
        state = sketch.update(state, value, 0.0)
    return sketch, state


@pytest.mark.parametrize("precision", [4, 8, 12, 16])
@pytest.mark.parametrize("distinct", [10, 300, 4000])
def test_hll_estimate_is_within_three_standard_errors(precision: int, distinct: int) -> None:
    values = [f"user-{i}" for i in range(distinct)]
    _, state = _hll(precision, values + values[: distinct // 2])  # repeats count once
    sketch = HyperLogLog(precision)
    error = 3 * 1.04 / math.sqrt(2**precision)
    assert abs(sketch.estimate(state) - distinct) <= error * distinct


def test_hll_counts_ints_floats_and_bools_as_values_of_their_own() -> None:
    sketch, state = _hll(12, [*range(2000), *(i + 0.5 for i in range(2000)), True, False])
    assert abs(sketch.estimate(state) - 4002) <= 3 * 1.04 / 64 * 4002


def test_hll_merge_is_the_sketch_of_the_union() -> None:
    left = [f"a{i}" for i in range(3000)]
    right = [f"a{i}" for i in range(2000, 6000)]
    sketch, a = _hll(12, left)
    _, b = _hll(12, right)
    _, union = _hll(12, left + right)
    assert sketch.merge(a, b) == union
    assert abs(sketch.estimate(union) - 6000) <= 3 * 1.04 / 64 * 6000


def test_hll_registers_are_pinned() -> None:
    # tiles written by one Rift worker are merged with another's and with those of last year: the hash
    # must not depend on the process (Python's str hash is salted per process) nor ever change
    _, state = _hll(4, ["a", 1, 2.5, True])
    assert state.hex() == "00000000000000000001020000020000"
    assert state == _hll(4, [True, 2.5, 1, "a"])[1]


@pytest.mark.parametrize("distinct", [3, 10_000])
def test_hll_encoding_is_sparse_for_small_tiles_and_survives_msgpack(distinct: int) -> None:
    sketch, state = _hll(14, [f"v{i}" for i in range(distinct)])
    packed = sketch.encode(state)
    assert isinstance(packed, bytes)
    assert len(packed) < 20 if distinct == 3 else len(packed) == 2 + 2**14
    assert sketch.decode(msgpack.unpackb(msgpack.packb(packed))) == state


def test_hll_of_another_precision_is_refused() -> None:
    packed = HyperLogLog(8).encode(HyperLogLog(8).empty())
    with pytest.raises(ValueError, match="precision 8"):
        HyperLogLog(10).decode(packed)


magnitudes = st.floats(1e-300, 1e300, allow_nan=False)  # the range the bound is documented for
sketch_values = st.one_of(magnitudes, magnitudes.map(lambda x: -x), st.just(0.0), st.integers(-1000, 1000))


def _quantiles(sketch: Quantiles, values: Sequence[float]) -> Buckets:
    state = sketch.empty()
    for value in values:
        state = sketch.update(state, value, 0.0)
    return state


@settings(max_examples=300)
@given(st.lists(sketch_values, min_size=1, max_size=200), st.floats(0.001, 0.999), st.integers(20, 500))
def test_percentile_is_within_the_relative_accuracy(values: list[float], q: float, precision: int) -> None:
    sketch = Quantiles(q, precision)
    estimate = sketch.finalize(_quantiles(sketch, values))
    exact = exact_quantile(values, q)
    assert isinstance(estimate, float)
    assert abs(estimate - exact) <= abs(exact) / precision * (1 + 1e-9)


@given(st.lists(sketch_values, max_size=50), st.lists(sketch_values, max_size=50))
def test_percentile_merge_is_the_sketch_of_the_union(left: list[float], right: list[float]) -> None:
    sketch = Quantiles(0.9, 100)
    merged = sketch.merge(_quantiles(sketch, left), _quantiles(sketch, right))
    assert merged == _quantiles(sketch, left + right)


@pytest.mark.parametrize("q", [0.01, 0.25, 0.5, 0.9, 0.99])
def test_percentile_of_a_few_thousand_skewed_values(q: float) -> None:
    generator = random.Random(7)
    values = [generator.lognormvariate(3, 2) for _ in range(5000)] + [-generator.expovariate(0.1)
                                                                     for _ in range(500)]
    sketch = Quantiles(q, 100)
    halves = [_quantiles(sketch, values[::2]), _quantiles(sketch, values[1::2])]
    estimate = sketch.finalize(sketch.merge(*halves))
    exact = exact_quantile(values, q)
    assert isinstance(estimate, float)
    assert abs(estimate - exact) <= abs(exact) * 0.01 * (1 + 1e-9)


def test_percentile_ignores_infinities_and_keeps_zeros() -> None:
    sketch = Quantiles(0.5, 100)
    state = _quantiles(sketch, [0.0, 0.0, math.inf, -math.inf, 5.0])
    assert sketch.finalize(state) == 0.0
    assert state.count() == 3
