"""The approximate functions: approx_count_distinct (HyperLogLog) and approx_percentile (DDSketch).

Both sketches merge without losing anything: a merge of sketches is exactly the sketch of all their
values, so tiles can be grouped in any way and the error bounds below hold for every window.

- HyperLogLog with `precision` p (4..16) keeps 2^p registers of one byte; the estimate's standard error
  is 1.04 / sqrt(2^p) (6.5% at the default p = 8), with linear counting for small cardinalities.
- DDSketch with `precision` P (20..500) has relative accuracy a = 1/P (1% at the default 100): the
  estimate of the q-quantile x (the value of rank floor(q * (n - 1)) in sorted order, counting from 0)
  lies within a * |x| of x, exactly 0 for x = 0, for |x| between about 1e-300 and 1e300 (beyond, float
  exponents run out). No interpolation between neighbouring values. Its buckets are powers
  of g = (1 + a) / (1 - a), kept sparse; their number grows with log(max / min) of the magnitudes, never
  with the count of values. Infinite values are ignored (they cannot be bucketed).
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass
from typing import Any

from engine.base import Base, Packed, Seconds, Value, number
from events.data import Scalar

_DENSE, _SPARSE = 0, 1
_PAIR = struct.Struct(">HB")  # a sparse register: index, rank


def _canonical(value: Scalar) -> bytes:
    """Stable bytes per value: Python's own hash of a str changes with every process."""
    if isinstance(value, bool):
        return b"b1" if value else b"b0"
    if isinstance(value, int):
        return b"i" + str(value).encode()
    if isinstance(value, float):
        return b"f" + value.hex().encode()
    return b"s" + str(value).encode()


class HyperLogLog(Base[bytes]):
    """approx_count_distinct: the state is the 2^p registers; merge takes the maximum of each."""

    def __init__(self, precision: int) -> None:
        if not 4 <= precision <= 16:
            raise ValueError(f"HyperLogLog precision must be from 4 to 16, got {precision}")
        self.precision, self.size = precision, 1 << precision

    def empty(self) -> bytes:
        return bytes(self.size)

    def add(self, state: bytes, value: Scalar, event_time: Seconds) -> bytes:
        hashed = int.from_bytes(hashlib.blake2b(_canonical(value), digest_size=8).digest(), "big")
        width = 64 - self.precision
        index, rest = hashed >> width, hashed & ((1 << width) - 1)
        rank = width - rest.bit_length() + 1  # position of the first 1 bit in the remaining bits
        if state[index] >= rank:
            return state  # the common case once a sketch is warm: no copy
        registers = bytearray(state)
        registers[index] = rank
        return bytes(registers)

    def merge(self, a: bytes, b: bytes) -> bytes:
        return bytes(map(max, a, b))

    def finalize(self, state: bytes) -> Value:
        return self.estimate(state)

    def estimate(self, state: bytes) -> int:
        m = self.size
        alpha = {16: 0.673, 32: 0.697, 64: 0.709}.get(m, 0.7213 / (1 + 1.079 / m))
        raw = alpha * m * m / math.fsum(2.0 ** -r for r in state)
        zeros = state.count(0)
        if raw <= 2.5 * m and zeros:
            return round(m * math.log(m / zeros))  # linear counting: better while many registers are empty
        return round(raw)  # 64-bit hashes: no large-range correction needed

    def encode(self, state: bytes) -> Packed:
        # a tile holds few values, so most registers are zero: 3 bytes per non-zero one beats 2^p bytes
        used = [(i, r) for i, r in enumerate(state) if r]
        if len(used) * _PAIR.size < self.size:
            return bytes((_SPARSE, self.precision)) + b"".join(_PAIR.pack(i, r) for i, r in used)
        return bytes((_DENSE, self.precision)) + state

    def decode(self, packed: Any) -> bytes:
        data = bytes(packed)
        if data[1] != self.precision:
            raise ValueError(f"a HyperLogLog of precision {data[1]} cannot be read as precision {self.precision}")
        if data[0] == _DENSE:
            return data[2:]
        registers = bytearray(self.size)
        for i, r in _PAIR.iter_unpack(data[2:]):
            registers[i] = r
        return bytes(registers)


@dataclass(frozen=True, slots=True)
class Buckets:
    """A DDSketch: counts of exact zeros and of positive and negative values per bucket index.

    The dicts are never changed once the state exists; every update builds new ones.
    """

    zeros: int
    positive: dict[int, int]
    negative: dict[int, int]

    def count(self) -> int:
        return self.zeros + sum(self.positive.values()) + sum(self.negative.values())


def _added(counts: dict[int, int], more: dict[int, int]) -> dict[int, int]:
    total = dict(counts)
    for key, count in more.items():
        total[key] = total.get(key, 0) + count
    return total


class Quantiles(Base[Buckets]):
    """approx_percentile of `percentile` in (0, 1) with relative accuracy 1 / `precision`."""

    def __init__(self, percentile: float, precision: int) -> None:
        if not 0 < percentile < 1 or precision < 1:
            raise ValueError(f"need 0 < percentile < 1 and precision >= 1, got {percentile}, {precision}")
        self.percentile = percentile
        self.accuracy = 1 / precision
        gamma = (1 + self.accuracy) / (1 - self.accuracy)
        self.log_gamma = math.log(gamma)
        # a bucket's value, 2 g^k / (g + 1), is as far (relatively) from both of its bounds
        self.log_scale = math.log(2 / (gamma + 1))

    def empty(self) -> Buckets:
        return Buckets(0, {}, {})

    def add(self, state: Buckets, value: Scalar, event_time: Seconds) -> Buckets:
        x = float(number(value))
        if x == 0:
            return Buckets(state.zeros + 1, state.positive, state.negative)
        if math.isinf(x):
            return state
        key = math.ceil(math.log(abs(x)) / self.log_gamma)  # bucket k holds (g^(k-1), g^k]
        if x > 0:
            return Buckets(state.zeros, _added(state.positive, {key: 1}), state.negative)
        return Buckets(state.zeros, state.positive, _added(state.negative, {key: 1}))

    def merge(self, a: Buckets, b: Buckets) -> Buckets:
        return Buckets(a.zeros + b.zeros, _added(a.positive, b.positive), _added(a.negative, b.negative))

    def finalize(self, state: Buckets) -> Value:
        return self.quantile(state, self.percentile)

    def quantile(self, state: Buckets, q: float) -> float | None:
        total = state.count()
        if not total:
            return None
        rank = math.floor(q * (total - 1))
        # ascending values: the most negative first (largest negative key), then zeros, then positives
        ordered = [(-self._value(k), c) for k, c in sorted(state.negative.items(), reverse=True)]
        ordered.append((0.0, state.zeros))
        ordered += [(self._value(k), c) for k, c in sorted(state.positive.items())]
        seen = 0
        for estimate, count in ordered:
            seen += count
            if seen > rank:
                return estimate
        raise AssertionError("rank beyond the total count")  # pragma: no cover - rank < total

    def _value(self, key: int) -> float:
        return math.exp(min(key * self.log_gamma + self.log_scale, _LOG_MAX))

    def encode(self, state: Buckets) -> Packed:
        return [state.zeros, _flat(state.positive), _flat(state.negative)]

    def decode(self, packed: Any) -> Buckets:
        zeros, positive, negative = packed
        return Buckets(zeros, _pairs(positive), _pairs(negative))


_LOG_MAX = math.log(2.0**1023)  # keeps a bucket value of the largest floats finite


def _flat(counts: dict[int, int]) -> list[Packed]:
    return [n for key in sorted(counts) for n in (key, counts[key])]


def _pairs(flat: list[int]) -> dict[int, int]:
    return dict(zip(flat[::2], flat[1::2], strict=True))
