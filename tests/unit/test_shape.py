from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings

from events.data import FeatureRow, SourceRange, WriteOnlineRows
from events.shape import shape_problem
from tests.unit.strategies import bodies, job_bodies


@settings(max_examples=300)
@given(body=bodies | job_bodies)
def test_every_well_formed_body_has_its_declared_shape(body: Any) -> None:
    assert shape_problem(body) is None


def test_fields_of_the_wrong_type_are_named() -> None:
    assert shape_problem(SourceRange(7, 0, 0, 0)) == "SourceRange.topic must be str, got int"  # type: ignore[arg-type]
    rows = (FeatureRow(("u",), datetime(2026, 1, 1, tzinfo=UTC), {"a": 1.0}),)
    assert shape_problem(WriteOnlineRows("v", rows, SourceRange("t", 0, 0, 0))) is None
    problem = shape_problem(WriteOnlineRows("v", (*rows, "x"), SourceRange("t", 0, 0, 0)))  # type: ignore[arg-type]
    assert problem is not None
    assert problem.startswith("WriteOnlineRows.rows must be")
    assert shape_problem(WriteOnlineRows("v", "not rows", 7)) is not None  # type: ignore[arg-type]
    assert shape_problem(3) == "int is not a message body"
