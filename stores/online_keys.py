"""Sortable binary keys of the online store: (workspace, feature view, entity key) in byte order."""

from __future__ import annotations

import math
import struct

from events.data import EntityKey, Scalar
from events.errors import StoreError

# LMDB's compiled-in key limit. The in-memory store enforces it too, so both refuse the same keys.
MAX_KEY_BYTES = 511

# Type tags of entity-key values: values of different types in one key position sort by tag.
_TAG_NONE, _TAG_BOOL, _TAG_INT, _TAG_FLOAT, _TAG_STR = 1, 2, 3, 4, 5
_SIGN = 1 << 63
_ALL_ONES = (1 << 64) - 1
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 63) - 1


# --- keys ---------------------------------------------------------------------------------------------


def encode_key(workspace: str, feature_view: str, entity_key: EntityKey) -> bytes:
    """A key whose byte order is the order of (workspace, feature view, entity key).

    Strings are UTF-8 (whose byte order is code-point order) with 0x00 escaped as 0x00 0xFF and ended by
    0x00, so a string sorts before its extensions. Entity-key values carry a type tag; ints are 64-bit
    big-endian with the sign bit flipped, floats IEEE 754 bits flipped so that negatives sort first.
    """
    out = bytearray()
    _put_str(out, workspace)
    _put_str(out, feature_view)
    if not isinstance(entity_key, tuple):
        raise StoreError(f"an entity key is a tuple, not {type(entity_key).__name__}")
    for value in entity_key:
        _put_scalar(out, value)
    return bytes(out)


def decode_key(key: bytes) -> tuple[str, str, EntityKey]:
    try:
        workspace, pos = _take_str(key, 0)
        feature_view, pos = _take_str(key, pos)
        values: list[Scalar] = []
        while pos < len(key):
            value, pos = _take_scalar(key, pos)
            values.append(value)
    except (IndexError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise StoreError(f"not an online-store key: {key!r}") from exc
    return workspace, feature_view, tuple(values)


def _put_str(out: bytearray, value: str) -> None:
    if not isinstance(value, str):
        raise StoreError(f"expected a string, got {type(value).__name__}")
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise StoreError(f"{value!r} is not valid Unicode") from exc
    out += raw.replace(b"\x00", b"\x00\xff")
    out.append(0)


def _put_scalar(out: bytearray, value: Scalar) -> None:
    # bool before int: bool is an int subclass, and True must not become the key 1.
    if value is None:
        out.append(_TAG_NONE)
    elif isinstance(value, bool):
        out += bytes((_TAG_BOOL, int(value)))
    elif isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise StoreError(f"entity key value {value} does not fit in 64 bits")
        out.append(_TAG_INT)
        out += (value + _SIGN).to_bytes(8, "big")
    elif isinstance(value, float):
        out.append(_TAG_FLOAT)
        out += _float_bits(value).to_bytes(8, "big")
    elif isinstance(value, str):
        out.append(_TAG_STR)
        _put_str(out, value)
    else:
        raise StoreError(f"entity key values are str, int, float, bool or None, not {type(value).__name__}")


def _float_bits(value: float) -> int:
    # -0.0 == 0.0 in Python, so they are one key; every NaN gets one bit pattern.
    value = math.nan if math.isnan(value) else value + 0.0
    bits = int.from_bytes(struct.pack(">d", value), "big")
    return bits ^ _ALL_ONES if bits & _SIGN else bits | _SIGN


def _float_from_bits(bits: int) -> float:
    bits = bits ^ _SIGN if bits & _SIGN else bits ^ _ALL_ONES
    value: float = struct.unpack(">d", bits.to_bytes(8, "big"))[0]
    return value


def _take_str(key: bytes, pos: int) -> tuple[str, int]:
    out = bytearray()
    while True:
        end = key.index(0, pos)
        out += key[pos:end]
        if end + 1 < len(key) and key[end + 1] == 0xFF:
            out.append(0)
            pos = end + 2
        else:
            return out.decode("utf-8"), end + 1


def _take_scalar(key: bytes, pos: int) -> tuple[Scalar, int]:
    tag = key[pos]
    pos += 1
    if tag == _TAG_NONE:
        return None, pos
    if tag == _TAG_BOOL:
        if key[pos] > 1:
            raise ValueError(f"bad bool byte {key[pos]}")
        return key[pos] == 1, pos + 1
    if tag in (_TAG_INT, _TAG_FLOAT):
        if len(key) < pos + 8:
            raise ValueError("truncated number")
        bits = int.from_bytes(key[pos : pos + 8], "big")
        return (bits - _SIGN if tag == _TAG_INT else _float_from_bits(bits)), pos + 8
    if tag == _TAG_STR:
        return _take_str(key, pos)
    raise ValueError(f"unknown type tag {tag}")
