"""Every decoder of untrusted bytes raises only its typed decode error, whatever the bytes.

Arbitrary bytes, and msgpack that is well formed but of the wrong structure (maps,
floats, huge and negative integers, deep nesting, extension types), go through each
decoder; anything but the decoder's own error is a bug. FUZZ_EXAMPLES sets how many
examples each decoder gets (a few hundred by default, so this runs in seconds).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus import MalformedMessage, decode_conf_change, decode_message
from ledger import (
    Attestation,
    Block,
    BlockHeader,
    DecodeError,
    DecodeLimits,
    decode_signed,
    unpack_untrusted,
)
from node._api import _parse_body
from node._errors import Refusal
from node._gossip import decode_item
from node._pipeline import decode_entry
from node._transport import unpack_frame

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

scalars = (
    st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1) | st.floats()
    | st.text(max_size=20) | st.binary(max_size=40)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=30,
)
ext = st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=8))


def _pack(value: Any) -> bytes:
    out: bytes = msgpack.packb(value, use_bin_type=True)
    return out


packed = values.map(_pack) | st.lists(ext, max_size=3).map(_pack)
# Bytes that are almost msgpack: a valid value with a few bytes changed or cut.
mutated = st.tuples(packed, st.integers(0, 64), st.binary(min_size=1, max_size=4)).map(
    lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + len(t[2]):]
)
untrusted = st.binary(max_size=200) | packed | mutated


def _check(decode: Callable[[bytes], Any], allowed: type[BaseException] | tuple[type[BaseException], ...],
           data: bytes) -> None:
    with contextlib.suppress(allowed):
        decode(data)


def _parse_msgpack_body(data: bytes) -> Any:
    deferred, _ = _parse_body("application/msgpack", data)
    return [parse() for parse in deferred]  # each a document or a Refusal, never raised


def _parse_json_body(data: bytes) -> Any:
    deferred, _ = _parse_body("application/json", data)
    return [parse() for parse in deferred]


def _attestation(data: bytes) -> Any:
    return Attestation.from_list(unpack_untrusted(data))


DECODERS: list[tuple[str, Callable[[bytes], Any], type[BaseException] | tuple[type[BaseException], ...]]] = [
    ("unpack_untrusted", unpack_untrusted, DecodeError),
    ("unpack_untrusted_tight", lambda d: unpack_untrusted(d, DecodeLimits(depth_max=2, items_max=8)), DecodeError),
    ("decode_signed", decode_signed, DecodeError),
    ("block", Block.decode, DecodeError),
    ("block_header", BlockHeader.decode, DecodeError),
    ("attestation", _attestation, DecodeError),
    ("raft_message", decode_message, MalformedMessage),
    ("conf_change", decode_conf_change, MalformedMessage),
    ("frame", unpack_frame, DecodeError),
    ("gossip_item", decode_item, ValueError),  # MalformedItem or DecodeError
    ("entry", decode_entry, ValueError),
    ("post_documents_msgpack", _parse_msgpack_body, Refusal),
    ("post_documents_json", _parse_json_body, Refusal),
]


@pytest.mark.parametrize(("name", "decode", "allowed"), DECODERS, ids=[d[0] for d in DECODERS])
def test_a_decoder_raises_only_its_own_error(name: str, decode: Callable[[bytes], Any],
                                              allowed: type[BaseException]) -> None:
    """Arbitrary and structured-but-wrong bytes: the decoder's typed error or a value."""

    @FUZZ
    @given(untrusted)
    def run(data: bytes) -> None:
        _check(decode, allowed, data)

    run()


@FUZZ
@given(values)
def test_unpack_untrusted_returns_what_was_packed_or_refuses(value: Any) -> None:
    """Within the default bounds a value comes back as it was, except what is refused
    (maps, floats); nothing else."""
    try:
        data = _pack(value)
    except (OverflowError, ValueError):
        return
    try:
        again = unpack_untrusted(data)
    except DecodeError:
        return
    assert _pack(again) == data


def test_the_bounds_of_unpack_untrusted() -> None:
    """Depth, items, integer range, text validity, extension types, trailing bytes."""
    refused = {
        "deep": b"\x91" * 17 + b"\xc0",
        "items": b"\xdc\x00\x03" + b"\x93\xc0\xc0\xc0" * 3,
        "ext": b"\xd4\x01\x00",
        "empty ext": b"\xc7\x00\x05",
        "timestamp": b"\xd6\xff" + bytes(4),
        "surrogate": b"\xa3\xed\xa0\x80",
        "float": b"\xcb" + bytes(8),
        "map": b"\x80",
        "trailing": b"\xc0\xc0",
        "truncated": b"\x92\x01",
        "big int": b"\xcf" + b"\xff" * 8,
        "not bytes": "text",
    }
    limits = DecodeLimits(items_max=10, int_max=(1 << 63) - 1)
    for name, data in refused.items():
        with pytest.raises(DecodeError):
            unpack_untrusted(data, limits)  # type: ignore[arg-type]
        assert name
    assert unpack_untrusted(b"\x91" * 16 + b"\xc0") is not None
    assert unpack_untrusted(b"\x93\x01\xa1a\xc4\x01b", limits) == [1, "a", b"b"]


@pytest.mark.parametrize(("value", "limits", "refused"), [
    ([[[1]]], DecodeLimits(depth_max=3), False),
    ([[[1]]], DecodeLimits(depth_max=2), True),
    ([1, [2, [3, [2**63]]]], DecodeLimits(int_max=(1 << 63) - 1), True),
    ([1, [2, [3, [2**63 - 1]]]], DecodeLimits(int_max=(1 << 63) - 1), False),
    ([-5], DecodeLimits(int_min=0), True),
    (-5, DecodeLimits(int_min=0), True),
    ([b"x", "y", True, None, [1.5]], DecodeLimits(), True),
    ([b"x", "y", True, None, [1.5]], DecodeLimits(floats=True), False),
    ({"a": [{"b": 1}]}, DecodeLimits(maps=True, depth_max=2), True),
    ({"a": [{"b": 1}]}, DecodeLimits(maps=True, depth_max=3), False),
    ({"a": [{"b": -1}]}, DecodeLimits(maps=True, int_min=0), True),
], ids=lambda v: repr(v)[:40])
def test_depth_integer_range_and_floats_are_checked_at_every_level(value: Any, limits: DecodeLimits,
                                                                   refused: bool) -> None:
    """Each bound holds at any depth and inside maps, and only where it is set."""
    data = msgpack.packb(value, use_bin_type=True)
    if refused:
        with pytest.raises(DecodeError):
            unpack_untrusted(data, limits)
    else:
        assert unpack_untrusted(data, limits) == value
