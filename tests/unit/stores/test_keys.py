"""Online-store keys: they round-trip, and their byte order is the natural order of what they encode."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from events.data import EntityKey, Scalar
from events.errors import StoreError
from stores.online import decode_key, encode_key

Key = tuple[str, str, EntityKey]

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
# One strategy per type: keys of one "shape" (the types at each position) compare with Python's `<`.
BY_TYPE: dict[str, st.SearchStrategy[Scalar]] = {
    "none": st.none(),
    "bool": st.booleans(),
    "int": INT64,
    "float": st.floats(allow_nan=False),
    "str": st.text(max_size=8),
}
SHAPES = st.lists(st.sampled_from(sorted(BY_TYPE)), max_size=4).map(tuple)
SCALARS = st.one_of(*BY_TYPE.values())
NAMES = st.text(max_size=8)


@st.composite
def keys_of_shape(draw: st.DrawFn, shape: tuple[str, ...], like: Key | None = None) -> Key:
    """A key of `shape`; with `like`, each part is sometimes copied from it, so that keys share prefixes."""

    def reuse() -> bool:
        return like is not None and draw(st.booleans())

    workspace = like[0] if like is not None and reuse() else draw(NAMES)
    feature_view = like[1] if like is not None and reuse() else draw(NAMES)
    values = tuple(like[2][i] if like is not None and reuse() else draw(BY_TYPE[t])
                   for i, t in enumerate(shape))
    return workspace, feature_view, values


@given(st.data())
def test_byte_order_is_the_natural_order_of_keys_of_one_shape(data: st.DataObject) -> None:
    shape = data.draw(SHAPES)
    first = data.draw(keys_of_shape(shape))
    second = data.draw(keys_of_shape(shape, like=first))
    assert (encode_key(*first) < encode_key(*second)) == (first < second)
    assert (encode_key(*first) == encode_key(*second)) == (first == second)


@given(st.data())
def test_sorting_encoded_keys_sorts_the_keys(data: st.DataObject) -> None:
    shape = data.draw(SHAPES)
    first = data.draw(keys_of_shape(shape))
    keys = [first, *data.draw(st.lists(keys_of_shape(shape, like=first), max_size=8))]
    assert sorted(encode_key(*k) for k in keys) == [encode_key(*k) for k in sorted(keys)]


@given(NAMES, NAMES, st.lists(SCALARS, max_size=5).map(tuple))
def test_decode_inverts_encode(workspace: str, feature_view: str, entity_key: EntityKey) -> None:
    key = (workspace, feature_view, entity_key)
    assert decode_key(encode_key(*key)) == key


@given(st.lists(st.floats(), max_size=3).map(tuple))
def test_every_float_including_nan_round_trips_to_the_same_bytes(entity_key: EntityKey) -> None:
    encoded = encode_key("w", "v", entity_key)
    assert encode_key(*decode_key(encoded)) == encoded


def test_decoded_values_keep_their_types() -> None:
    decoded = decode_key(encode_key("w", "v", (True, 1, 1.0, "1", None)))[2]
    assert [type(v) for v in decoded] == [bool, int, float, str, type(None)]


def test_mixed_types_in_one_position_sort_by_type_tag() -> None:
    ordered = [(None,), (False,), (True,), (-(2**63),), (2**63 - 1,), (-math.inf,), (math.nan,), ("",)]
    encoded = [encode_key("w", "v", k) for k in ordered]
    assert encoded == sorted(encoded)


def test_workspace_then_feature_view_then_entity_key() -> None:
    keys = [("a", "z", (9,)), ("a\x00", "a", (0,)), ("ab", "a", (0,)), ("b", "a", (-1,))]
    encoded = [encode_key(*k) for k in keys]
    assert encoded == sorted(encoded)


def test_ints_sort_numerically_across_zero() -> None:
    values = [-(2**63), -256, -1, 0, 1, 255, 256, 2**63 - 1]
    encoded = [encode_key("w", "v", (v,)) for v in values]
    assert encoded == sorted(encoded)


def test_negative_zero_and_zero_are_one_key() -> None:
    assert encode_key("w", "v", (-0.0,)) == encode_key("w", "v", (0.0,))


def test_nul_inside_strings_round_trips() -> None:
    key = ("\x00", "a\x00\x00", ("\x00", "", "x\x00"))
    assert decode_key(encode_key(*key)) == key


@pytest.mark.parametrize(
    "entity_key",
    [(2**63,), (-(2**63) - 1,), (b"bytes",), ([1],), ("\ud800",)],
    ids=["int too big", "int too small", "bytes", "list", "lone surrogate"],
)
def test_values_a_key_cannot_hold_are_refused(entity_key: EntityKey) -> None:
    with pytest.raises(StoreError):
        encode_key("w", "v", entity_key)


@pytest.mark.parametrize(
    "raw",
    [b"", b"w\x00", b"w\x00v\x00\x09", b"w\x00v\x00\x03\x00\x01", b"w\x00v\x00\x02\x07", b"\xff\x00v\x00"],
    ids=["empty", "no view", "unknown tag", "short int", "bad bool", "bad utf-8"],
)
def test_bytes_that_are_not_a_key_are_refused(raw: bytes) -> None:
    with pytest.raises(StoreError):
        decode_key(raw)
