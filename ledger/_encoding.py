"""Canonical msgpack: the one byte form of every hashed or signed value.

Canonical means: arrays with a fixed field order (no maps, so no key order to agree
on), integers in their shortest form, bytes as bin, text as str, no floats. Decoding
refuses anything that would not re-encode to the very same bytes, so a value has
exactly one accepted encoding and its hash is well defined.
"""

from __future__ import annotations

from typing import Any

import msgpack

from ._errors import DecodeError

# A single value's byte size limit guards unpacking of untrusted input; the largest
# legitimate value is a 30,000-code document (about 1.2 MB).
MAX_VALUE_BYTES = 8 << 20

_packer = msgpack.Packer(use_bin_type=True, strict_types=False, autoreset=True)


def _refuse_floats(value: Any) -> None:
    if isinstance(value, float):
        raise DecodeError("floats have no canonical form and are not allowed")
    if isinstance(value, (list, tuple)):
        for item in value:
            _refuse_floats(item)
    elif isinstance(value, dict):
        raise DecodeError("maps are not allowed in canonical values")


def pack(value: Any) -> bytes:
    """Encode a value canonically (lists and tuples both become arrays)."""
    _refuse_floats(value)
    data: bytes = _packer.pack(value)
    return data


def pack_trusted(value: Any) -> bytes:
    """Encode a value built by our own code, skipping the float scan (hot paths)."""
    data: bytes = _packer.pack(value)
    return data


def _refuse_map(_pairs: Any) -> Any:
    raise DecodeError("maps are not allowed in canonical values")


def unpack_unchecked(data: bytes) -> Any:
    """Decode untrusted bytes (bounded, no maps) without the canonical re-encoding check;
    for callers that check canonical form more cheaply themselves."""
    if len(data) > MAX_VALUE_BYTES:
        raise DecodeError(f"value of {len(data)} bytes exceeds the {MAX_VALUE_BYTES} byte limit")
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            object_pairs_hook=_refuse_map,
        )
    except DecodeError:
        raise
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise DecodeError(f"not valid msgpack: {exc}") from exc


def unpack(data: bytes) -> Any:
    """Decode untrusted bytes, refusing anything that is not canonical."""
    value = unpack_unchecked(data)
    # Floats re-encode to the same bytes, so the comparison lets a float64 through;
    # every decoder above this one checks each field's type, which refuses it.
    try:
        again = pack_trusted(value)
    except (TypeError, ValueError) as exc:
        raise DecodeError(f"value has no canonical form: {exc}") from exc
    if again != data:
        raise DecodeError("encoding is not canonical")
    return value


def unpack_trusted(data: bytes) -> Any:
    """Decode bytes that our own store wrote (no canonical check)."""
    return msgpack.unpackb(data, raw=False, use_list=True)
