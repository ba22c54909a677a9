"""Write messages stay well under Kafka's message limit however wide the rows and however big the batch."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.components.chunks import MESSAGE_BUDGET_BYTES, chunks
from events.codec import CODEC
from events.data import FeatureRow, SourceRange, WriteOnlineRows
from events.planes import Component

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def rows(count: int, width: int) -> list[FeatureRow]:
    return [FeatureRow((f"u{i}",), T0, {f"f{k}": "x" * width for k in range(7)}) for i in range(count)]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 3_000), st.integers(0, 2_000))
def test_chunks_keep_every_item_in_order_and_each_message_under_the_budget(count: int, width: int) -> None:
    items = rows(count, width)
    parts = list(chunks(items))
    assert [row for part in parts for row in part] == items
    assert all(parts)
    for part in parts:
        message = CODEC.message(WriteOnlineRows("v", part, SourceRange("t", 0, 0, 0)), producer=Component.RIFT,
                                workspace="ws")
        assert len(part) == 1 or len(CODEC.encode(message)) <= MESSAGE_BUDGET_BYTES + 4096


def test_a_batch_of_ten_thousand_wide_rows_is_several_messages_under_one_mib() -> None:
    parts = list(chunks(rows(10_000, 20)))
    assert len(parts) > 1
    assert all(len(CODEC.encode_value(WriteOnlineRows("v", p, SourceRange("t", 0, 0, 0)))) < 1024 * 1024
               for p in parts)
