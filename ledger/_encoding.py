"""Canonical msgpack: the one byte form of every hashed or signed value.

Canonical means: arrays with a fixed field order (no maps, so no key order to agree
on), integers in their shortest form, bytes as bin, text as str, no floats. Decoding
refuses anything that would not re-encode to the very same bytes, so a value has
exactly one accepted encoding and its hash is well defined.
"""

from __future__ import annotations

from dataclasses import dataclass
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


def _refuse_ext(code: int, _data: bytes) -> Any:
    raise DecodeError(f"msgpack extension types are not allowed (type {code})")


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Bounds on one msgpack value decoded from untrusted bytes.

    msgpack's own limits bound each string, byte string and array by itself; they do
    not bound the whole: 6 MiB of empty arrays inside one array is six million Python
    lists (finding 7 of issue 10: 95 MB to 990 MB). So the decoder also counts every
    array element as it is built (`items_max`) and stops at the bound, and checks the
    nesting depth and the integer range of what it returns.
    """

    bytes_max: int = MAX_VALUE_BYTES
    # Arrays inside arrays; a flat array is depth 1. Our values nest a few arrays deep
    # (a block's results, a proof's path); 16 leaves room and stays far below anything
    # where recursion in later code could matter.
    depth_max: int = 16
    # Array elements in the whole value. A 30,000-code document has about 30,000; a
    # million keeps the worst case near a hundred megabytes of Python objects.
    items_max: int = 1_000_000
    # Elements of one array (msgpack allocates the array before filling it).
    array_items_max: int = 1_000_000
    str_bytes_max: int = MAX_VALUE_BYTES
    bin_bytes_max: int = MAX_VALUE_BYTES
    # msgpack's own integer range (int64 and uint64).
    int_min: int = -(1 << 63)
    int_max: int = (1 << 64) - 1
    maps: bool = False
    floats: bool = False


LEDGER_LIMITS = DecodeLimits()


def unpack_untrusted(data: bytes, limits: DecodeLimits = LEDGER_LIMITS) -> Any:
    """Decode one msgpack value from bytes nobody vouches for, within `limits`.

    Raises `DecodeError` and nothing else, whatever the bytes: refused are values larger
    than the bounds, maps (unless allowed), extension types, floats (unless allowed),
    integers out of range, strings that are not valid UTF-8 (which includes encoded
    surrogates), and trailing bytes.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError("a msgpack value must be bytes")
    if len(data) > limits.bytes_max:
        raise DecodeError(f"value of {len(data)} bytes exceeds the {limits.bytes_max} byte limit")
    items = 0

    def count(array: list[Any]) -> list[Any]:
        nonlocal items
        items += len(array) + 1
        if items > limits.items_max:
            raise DecodeError(f"value holds more than {limits.items_max} items")
        return array

    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            # Each element takes at least one byte and is counted at most twice (once in
            # its array, and once more if it is an array itself), so a value of at most
            # half the bound in bytes cannot exceed it: counting would cost a Python call
            # per array for nothing (most documents).
            list_hook=None if 2 * len(data) <= limits.items_max else count,
            object_pairs_hook=None if limits.maps else _refuse_map,
            ext_hook=_refuse_ext,
            max_str_len=limits.str_bytes_max,
            max_bin_len=limits.bin_bytes_max,
            max_array_len=limits.array_items_max,
            max_map_len=limits.array_items_max if limits.maps else 0,
            max_ext_len=0,
        )
    except DecodeError:
        raise
    # StackError (nesting beyond msgpack's own stack), ExtraData, FormatError and
    # UnicodeDecodeError are all ValueErrors; TypeError for unhashable map keys.
    except (ValueError, TypeError) as exc:
        raise DecodeError(f"not valid msgpack: {str(exc)[:200]}") from None
    if not _cannot_break(data, limits):
        _check_value(value, limits)
    return value


# Every msgpack type byte that starts a container (fixmap, fixarray, array 16/32, map
# 16/32) and both float types.
_CONTAINER_TAGS = bytes([*range(0x80, 0xA0), 0xDC, 0xDD, 0xDE, 0xDF])
_FLOAT_TAGS = (b"\xca", b"\xcb")
# The shortcut pays off on short values, where the walk's fixed cost dominates.
_SCAN_BYTES_MAX = 4096


def _cannot_break(data: bytes | bytearray | memoryview, limits: DecodeLimits) -> bool:
    """Whether the bytes alone show that no depth, float or integer bound can be broken,
    so that the walk over the decoded value (`_check_value`) can be skipped.

    A float needs its type byte (0xca or 0xcb) somewhere in the bytes, and each
    container its own type byte, so bytes holding neither float type byte and no more
    container type bytes than `depth_max` hold no float and nest no deeper than allowed.
    These bytes can also occur inside strings and byte strings; then the walk decides.
    Integers need the walk only where the bounds are narrower than msgpack's own."""
    if limits.int_min > _MSGPACK_INT_MIN or limits.int_max < _MSGPACK_INT_MAX:
        return False
    # A long value (a batch, a large document) holds container-like bytes in its byte
    # strings almost surely, so the walk runs anyway: copying and scanning it first
    # would only add work proportional to its size.
    if len(data) > _SCAN_BYTES_MAX:
        return False
    raw = bytes(data)
    if not limits.floats and (_FLOAT_TAGS[0] in raw or _FLOAT_TAGS[1] in raw):
        return False
    return len(raw) - len(raw.translate(None, _CONTAINER_TAGS)) <= limits.depth_max


def _check_value(value: Any, limits: DecodeLimits) -> None:
    """Depth, integer range and floats of a decoded value, without recursion.

    Only arrays (and maps, where allowed) are pushed on the stack; scalars are looked at
    where they stand. msgpack cannot encode an integer outside int64 or uint64, so with
    the default range integers need no look at all. Every document passes through here
    at admission and again at apply, so the loop is kept as tight as it reads well."""
    int_min, int_max, floats, depth_max = limits.int_min, limits.int_max, limits.floats, limits.depth_max
    check_ints = int_min > _MSGPACK_INT_MIN or int_max < _MSGPACK_INT_MAX
    _check_scalar(value, int_min, int_max, check_ints, floats)
    stack: list[tuple[Any, int]] = [(value, 0)] if type(value) in (list, dict) else []
    while stack:
        container, depth = stack.pop()
        if depth >= depth_max:
            raise DecodeError(f"value nests deeper than {depth_max} arrays")
        items = container if type(container) is list else [x for pair in container.items() for x in pair]
        # Most arrays hold only strings or bytes (a document's codes): one pass in C over
        # their types spares a Python-level look at each element.
        if _PLAIN.issuperset(map(type, items)):
            continue
        for x in items:
            kind = type(x)
            if kind is list or kind is dict:
                stack.append((x, depth + 1))
            elif (kind is int and check_ints) or kind is float:
                _check_scalar(x, int_min, int_max, check_ints, floats)


def _check_scalar(x: Any, int_min: int, int_max: int, check_ints: bool, floats: bool) -> None:
    kind = type(x)
    if kind is int and check_ints and not int_min <= x <= int_max:
        raise DecodeError(f"integer out of range [{int_min}, {int_max}]")
    if kind is float and not floats:
        raise DecodeError("floats are not allowed")


# What needs no look at all: neither a container nor a number.
_PLAIN = frozenset((bytes, str, bool, type(None)))
# The integers msgpack can encode at all: int64 and uint64.
_MSGPACK_INT_MIN = -(1 << 63)
_MSGPACK_INT_MAX = (1 << 64) - 1


def unpack_unchecked(data: bytes) -> Any:
    """Decode untrusted bytes (bounded, no maps) without the canonical re-encoding check;
    for callers that check canonical form more cheaply themselves."""
    return unpack_untrusted(data, LEDGER_LIMITS)


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
