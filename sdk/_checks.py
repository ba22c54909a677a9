"""Construction-time checks of the values passed to DSL objects.

Only types are checked here, so that a typo fails on the line that declares the object; whether the
values make sense together is `events.validation`'s job, which reports every problem at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from events.errors import InvalidSpec

E = TypeVar("E", bound=StrEnum)


class SpecTypeError(InvalidSpec, TypeError):
    """A DSL object was given a value of the wrong type; the message names the object."""


def _shown(value: object) -> str:
    name = getattr(value, "name", None)
    if isinstance(name, str):  # a DSL object: its kind and name say enough
        return f"{type(value).__name__} '{name}'"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def expect(owner: str, label: str, value: object, types: type | tuple[type, ...], wanted: str) -> None:
    # bool is an int: a flag is never accepted where a number is wanted, nor the other way round
    wrong_bool = isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,))
    if wrong_bool or not isinstance(value, types):
        raise SpecTypeError(f"{owner}: {label} must be {wanted}, got {_shown(value)}")


def text(owner: str, label: str, value: object) -> None:
    expect(owner, label, value, str, "a string")


def flag(owner: str, label: str, value: object) -> None:
    expect(owner, label, value, bool, "True or False")


def items(owner: str, label: str, value: object, types: type | tuple[type, ...], wanted: str) -> None:
    """A list or tuple (never a bare string) whose items are all `types`."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise SpecTypeError(f"{owner}: {label} must be a list of {wanted}, got {_shown(value)}")
    for item in value:
        expect(owner, f"each of {label}", item, types, wanted)


def name_of(kind: str, value: object) -> str:
    """The `kind 'name'` that messages use, after checking that the name is a string."""
    text(kind, "name", value)
    return f"{kind} '{value}'"


def tags(owner: str, value: object) -> None:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in value.items()):
        raise SpecTypeError(f"{owner}: tags must map strings to strings, got {_shown(value)}")


def metadata(owner: str, obj: Any) -> None:
    """The fields every top-level object has: description, tags, owner, prevent_destroy."""
    text(owner, "description", obj.description)
    tags(owner, obj.tags)
    text(owner, "owner", obj.owner)
    flag(owner, "prevent_destroy", obj.prevent_destroy)


def duration(owner: str, label: str, value: object, optional: bool = False) -> None:
    if optional and value is None:
        return
    expect(owner, label, value, timedelta, "a datetime.timedelta")
    if isinstance(value, timedelta) and value % timedelta(seconds=1):
        raise SpecTypeError(f"{owner}: {label} must be a whole number of seconds, got {value}")


def seconds(value: timedelta | None) -> int | None:
    return None if value is None else int(value.total_seconds())


def instant(owner: str, label: str, value: object) -> None:
    if value is None:
        return
    expect(owner, label, value, datetime, "a datetime")
    if isinstance(value, datetime) and value.tzinfo is None:
        raise SpecTypeError(f"{owner}: {label} must be timezone-aware, e.g. datetime(2024, 1, 1, tzinfo=UTC)")


def utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def member(owner: str, label: str, value: object, enum: type[E]) -> E:
    """`value` as a member of `enum`; a string that is not one of its values is a type error here."""
    choices = ", ".join(e.value for e in enum)
    expect(owner, label, value, str, f"one of {choices}")
    try:
        return enum(str(value))
    except ValueError:
        raise SpecTypeError(f"{owner}: {label} must be one of {choices}, got {value!r}") from None
