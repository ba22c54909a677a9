"""Does a decoded body have the types its class declares? (pure)

The codec checks the frame and the field names; the values inside come from the wire as msgpack gave
them. A consumer checks them here before its policy sees them, so a valid envelope around a body of the
wrong types is refused with a reason instead of failing somewhere inside a policy. The check is shallow
by design (the body's fields, and the elements of its tuples, by their outer type): it costs little on
the hot path, and what it does not see a policy refuses when it trips over it.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from events.envelope import Message
from events.errors import DecodeError

M = TypeVar("M", bound=Message[Any])


@functools.cache
def _hints(cls: type[Any]) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def shape_problem(body: Any) -> str | None:
    """Why `body`'s fields do not have their declared types, or None if they do."""
    if not dataclasses.is_dataclass(body) or isinstance(body, type):
        return f"{type(body).__name__} is not a message body"
    hints = _hints(type(body))
    for field in dataclasses.fields(body):
        value = getattr(body, field.name)
        if not fits(value, hints[field.name]):
            return f"{type(body).__name__}.{field.name} must be {_name(hints[field.name])}, " \
                   f"got {type(value).__name__}"
    return None


def checked(message: M) -> M:
    """`message` if its body has its declared shape; DecodeError (with why) if not."""
    problem = shape_problem(message.body)
    if problem is not None:
        raise DecodeError(f"malformed {message.envelope.type}: {problem}")
    return message


def fits(value: Any, hint: Any) -> bool:
    """`value` is of `hint`'s outer type (a tuple's elements too); unknown kinds of hint always fit."""
    if hint is Any:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, arg) for arg in args)
    if origin is typing.Literal:
        return value in args
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(fits(v, args[0]) for v in value)
        return len(args) == len(value) and all(fits(v, a) for v, a in zip(value, args, strict=True)) \
            if args else True
    if origin is not None:
        return isinstance(value, Mapping) if issubclass(origin, Mapping) else isinstance(value, origin)
    if hint is type(None) or hint is None:
        return value is None
    if hint is float:  # msgpack keeps a whole-number float sent as int an int
        return isinstance(value, int | float)
    return isinstance(value, hint) if isinstance(hint, type) else True


def _name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
