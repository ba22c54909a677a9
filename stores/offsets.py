"""Bookkeeping every store shares: applied offsets, format versions, and being open or closed.

A store keeps, per Kafka (topic, partition), the next offset it has not applied yet, and writes it in
the same transaction as the data. After a crash the consumer rewinds to its last committed offsets and
delivers some messages again; those sit below the store's next offset and are skipped, so at-least-once
delivery becomes exactly-once application. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

import msgpack

from events.data import Coordinates
from events.errors import StoreError

TopicPartition = tuple[str, int]
AppliedOffsets = dict[TopicPartition, int]

T = TypeVar("T")

# What msgpack may raise on bytes it cannot read (it documents that not all of it is UnpackException).
UNPACK_ERRORS = (ValueError, TypeError, msgpack.UnpackException)

# Keys of the `meta` sub-database of the LMDB stores.
FORMAT_VERSION_KEY = b"format_version"
APPLIED_OFFSETS_KEY = b"applied_offsets"


def split_applied(
    items: Iterable[T],
    applied: Mapping[TopicPartition, int],
    coordinates_of: Callable[[T], Coordinates],
) -> tuple[list[T], AppliedOffsets]:
    """The items still to apply, in order, and the next offsets once they are applied.

    An item is skipped when its offset is below the next offset of its partition, counting the items
    before it in the same batch: a message delivered twice in one batch is applied once.
    """
    next_offsets = dict(applied)
    to_apply: list[T] = []
    for item in items:
        coordinates = coordinates_of(item)
        _check_coordinates(coordinates)
        partition = (coordinates.topic, coordinates.partition)
        if coordinates.offset < next_offsets.get(partition, 0):
            continue
        to_apply.append(item)
        next_offsets[partition] = coordinates.offset + 1
    return to_apply, next_offsets


def _check_coordinates(coordinates: Coordinates) -> None:
    if not isinstance(coordinates, Coordinates):
        raise StoreError(f"a store write needs Kafka coordinates, got {type(coordinates).__name__}")
    if coordinates.partition < 0 or coordinates.offset < 0:
        # Negative values mark messages that did not come from Kafka; a store cannot make them idempotent.
        raise StoreError(f"not a Kafka position: {coordinates}")


def applied_to_rows(applied: Mapping[TopicPartition, int]) -> list[list[Any]]:
    """[[topic, partition, next_offset], ...], sorted: the form both msgpack and JSON can hold."""
    return [[topic, partition, offset] for (topic, partition), offset in sorted(applied.items())]


def applied_from_rows(rows: object) -> AppliedOffsets:
    if not isinstance(rows, list | tuple):
        raise StoreError(f"applied offsets are not a list: {rows!r}")
    applied: AppliedOffsets = {}
    for row in rows:
        if (
            not isinstance(row, list | tuple)
            or len(row) != 3
            or not isinstance(row[0], str)
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in row[1:])
        ):
            raise StoreError(f"malformed applied offset {row!r}")
        applied[(row[0], row[1])] = row[2]
    return applied


def encode_applied(applied: Mapping[TopicPartition, int]) -> bytes:
    return msgpack.packb(applied_to_rows(applied))


def decode_applied(raw: bytes | None) -> AppliedOffsets:
    """Applied offsets stored by `encode_applied`; None (nothing applied yet) is an empty map."""
    if raw is None:
        return {}
    try:
        rows = msgpack.unpackb(raw)
    except UNPACK_ERRORS as exc:
        raise StoreError(f"unreadable applied offsets: {exc}") from exc
    return applied_from_rows(rows)


def encode_version(version: int) -> bytes:
    return msgpack.packb(version)


def decode_version(raw: bytes) -> object:
    try:
        return msgpack.unpackb(raw)
    except UNPACK_ERRORS as exc:
        raise StoreError(f"unreadable format version: {exc}") from exc


def check_format_version(found: object, supported: int, what: str) -> None:
    """Refuse a store written in a format this code does not know (a newer release, or garbage)."""
    if found == supported and isinstance(found, int) and not isinstance(found, bool):
        return
    if isinstance(found, int) and not isinstance(found, bool) and found > supported:
        raise StoreError(f"{what} has format version {found}, newer than this code supports ({supported})")
    raise StoreError(f"{what} has unknown format version {found!r} (this code reads {supported})")


class ClosableStore:
    """`close()` safe twice, context manager, and StoreError for any use after close."""

    _closed: bool = False

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{type(self).__name__} is closed")

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
