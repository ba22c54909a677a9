"""Splitting a batch's items (rows, tile deltas) into messages that stay well under Kafka's message limit.

A transaction may hold up to 10,000 records (actors/runtime.py), and a view's rows of one batch used to go
as one message: wide rows made it larger than the broker takes, and the runtime's fallback (one record per
transaction) is correct but slow. The items' size is estimated from a sample, with a margin, so a batch is
not encoded twice; a chunk the estimate got wrong is still caught by that fallback.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

from events.codec import CODEC, Codec

T = TypeVar("T")

# Encoded bytes one write message aims at: a quarter of the broker's default 1 MiB limit, so a sample whose
# rows are smaller than the rest by a factor of four still fits.
MESSAGE_BUDGET_BYTES = 256 * 1024
MAX_ITEMS_PER_MESSAGE = 5_000
_SAMPLE = 32


def chunks(items: Sequence[T], codec: Codec = CODEC, budget_bytes: int = MESSAGE_BUDGET_BYTES,
           max_items: int = MAX_ITEMS_PER_MESSAGE) -> Iterator[tuple[T, ...]]:
    """`items` in order, in consecutive chunks of about `budget_bytes` encoded (at most `max_items` each)."""
    if not items:
        return
    sample = items[::max(1, len(items) // _SAMPLE)][:_SAMPLE]  # spread over the batch, not only its start
    per_item = max(1, max(len(codec.encode_value(item)) for item in sample))
    size = max(1, min(max_items, budget_bytes // per_item))
    for start in range(0, len(items), size):
        yield tuple(items[start:start + size])
