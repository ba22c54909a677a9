"""How an observed value is held against an expected one: shared by online queries and training data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scenarios.spec import PRESENT


def matches(expected: Any, actual: Any) -> bool:
    if expected == PRESENT:
        return actual is not None
    if isinstance(expected, float) and isinstance(actual, int | float) and not isinstance(actual, bool):
        return abs(expected - float(actual)) <= 1e-9 * max(1.0, abs(expected))
    return bool(expected == actual)


def feature_value(features: Mapping[str, Any], name: str) -> tuple[bool, Any]:
    """A feature by its full name (view.feature) or, when that is unambiguous, by its short name."""
    if name in features:
        return True, features[name]
    short = [k for k in features if k.rsplit(".", 1)[-1] == name]
    return (True, features[short[0]]) if len(short) == 1 else (False, None)
