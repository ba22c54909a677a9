"""What every aggregation function provides: a mergeable partial state and how to store it.

A state summarises some events of one column. States are values: `update` and `merge` return a new
state and never change their arguments, so a tile read from a store can be merged into many windows.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, Generic, Protocol, TypeAlias, TypeVar

from events.data import Scalar

S = TypeVar("S")

# UTC epoch seconds; floats carry sub-second event times, tile boundaries are whole seconds.
Seconds: TypeAlias = float
# One finalized value: a scalar, or a tuple of scalars for the *_n functions.
Value: TypeAlias = Scalar | tuple[Scalar, ...]
# What a feature serves: one value, or one value per window of a time-window series (oldest first).
FeatureValue: TypeAlias = Value | tuple[Value, ...]
# What `encode` returns: only types msgpack packs natively (tuples come back as lists).
Packed: TypeAlias = bool | int | float | str | bytes | list["Packed"] | tuple["Packed", ...] | None


class Aggregator(Protocol[S]):
    """A partial aggregate of one function, its parameters already bound.

    `merge` is associative; it is commutative too except where arrival order breaks ties between equal
    event times (`last`, the *_n functions), where `b` counts as having arrived after `a`.
    """

    def empty(self) -> S:
        """The state of no events; `merge(empty(), s) == merge(s, empty()) == s`."""
        ...

    def update(self, state: S, value: Scalar, event_time: Seconds) -> S:
        """`state` with one more event; a null (or NaN) value leaves it as it is."""
        ...

    def merge(self, a: S, b: S) -> S:
        """The state of the events of `a` and then those of `b`."""
        ...

    def finalize(self, state: S) -> Value:
        """The feature value; an empty state gives 0 for counts and None for everything else."""
        ...

    def encode(self, state: S) -> Packed:
        """A msgpack-friendly form, for LMDB tiles and Kafka messages."""
        ...

    def decode(self, packed: Any) -> S:
        """The inverse of `encode`, also after a msgpack round trip (tuples arrive as lists)."""
        ...


def is_missing(value: Scalar) -> bool:
    """Nulls and NaNs are not values: NaN is unordered, so min/max/distinct could not merge it consistently."""
    return value is None or (isinstance(value, float) and math.isnan(value))


class Base(ABC, Generic[S]):
    """Skips missing values once, so each function only handles real ones."""

    def update(self, state: S, value: Scalar, event_time: Seconds) -> S:
        if is_missing(value):
            return state
        return self.add(state, value, event_time)

    @abstractmethod
    def add(self, state: S, value: Scalar, event_time: Seconds) -> S:
        """`update` for a value that is present."""


def number(value: Scalar) -> int | float:
    """The value of a numeric column; validation keeps other types out, so anything else is a bug upstream."""
    if isinstance(value, int | float):
        return value
    raise TypeError(f"expected a number, got {type(value).__name__} {value!r}")
