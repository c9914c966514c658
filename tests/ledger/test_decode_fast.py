"""The fast paths of the decoders accept and refuse exactly what the general paths do.

`decode_signed` reads a canonical `[body, signature]` wire by its headers instead of
decoding msgpack, and `unpack_untrusted` skips counting items and walking the value
when the bytes alone show no bound can be broken. Both are checked here against the
general code they shortcut, on documents, on bodies around each bin header size, and on
arbitrary and mutated bytes.
"""

from __future__ import annotations

import os
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import DecodeError, DecodeLimits, unpack_untrusted
from ledger._documents import _decode_signed_general, _split_canonical_wire, decode_signed
from ledger._encoding import _cannot_break, _check_value

FAST = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")), deadline=None, suppress_health_check=list(HealthCheck))

scalars = (
    st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1) | st.floats()
    | st.text(max_size=12) | st.binary(max_size=24)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=40,
)


def _outcome(decode: Any, data: Any) -> Any:
    try:
        signed = decode(data)
    except DecodeError:
        return "refused"
    return signed.body, signed.signature, signed.document


def _wire(body: bytes, signature: bytes) -> bytes:
    out: bytes = msgpack.packb([body, signature], use_bin_type=True)
    return out


@pytest.mark.parametrize("size", [0, 1, 200, 255, 256, 257, 65_535, 65_536, 70_000])
def test_a_canonical_wire_splits_into_its_body_and_signature(size: int) -> None:
    body, signature = bytes(range(256)) * (size // 256) + bytes(size % 256), b"\x07" * 64
    assert _split_canonical_wire(_wire(body, signature)) == (body, signature)


@pytest.mark.parametrize("wire", [
    # A body of 3 bytes under a bin 16 header: valid msgpack, not canonical.
    b"\x92\xc5\x00\x03abc\xc4\x40" + b"s" * 64,
    b"\x92\xc6\x00\x00\x00\x03abc\xc4\x40" + b"s" * 64,
    b"\x92\xc4\x03abc\xc4\x3f" + b"s" * 63,  # a short signature
    b"\x92\xc4\x03abc\xc4\x40" + b"s" * 64 + b"\x00",  # trailing bytes
    b"\x92\xc4\x03abc\xc5\x00\x40" + b"s" * 64,  # the signature's header not the shortest
    b"\x93\xc4\x03abc\xc4\x40" + b"s" * 64 + b"\xc0",  # three elements
    b"\x92\xa3abc\xc4\x40" + b"s" * 64,  # the body as a string
])
def test_anything_but_the_canonical_form_goes_to_the_general_path_and_is_refused(wire: bytes) -> None:
    assert _split_canonical_wire(wire) is None
    with pytest.raises(DecodeError):
        decode_signed(wire)


@FAST
@given(st.binary(max_size=300), st.binary(min_size=60, max_size=68), st.integers(0, 400), st.binary(max_size=3))
def test_decode_signed_agrees_with_the_general_decoder(body: bytes, signature: bytes, at: int,
                                                       patch: bytes) -> None:
    wire = _wire(body, signature)
    mutated = wire[:at] + patch + wire[at + len(patch):]
    for data in (wire, mutated, mutated[:at]):
        assert _outcome(decode_signed, data) == _outcome(_decode_signed_general, data)


def test_a_real_document_decodes_the_same_on_both_paths(tmp_path: Any) -> None:
    from tests.ledger.world import World

    world = World(tmp_path)
    signer = world.register("RU", ["producer"], "P")
    doc = world.doc(signer, "ship", receiver=signer.participant_id, codes=["0104600000000017215ABCDEF"])
    wire = doc.wire()
    assert _split_canonical_wire(wire) is not None
    assert _outcome(decode_signed, wire) == _outcome(_decode_signed_general, wire) != "refused"


LIMITS = [DecodeLimits(), DecodeLimits(depth_max=1), DecodeLimits(depth_max=3), DecodeLimits(floats=True),
          DecodeLimits(maps=True, depth_max=2), DecodeLimits(int_min=0), DecodeLimits(items_max=5)]


@FAST
@given(values, st.sampled_from(LIMITS))
def test_skipping_the_walk_never_lets_a_broken_bound_through(value: Any, limits: DecodeLimits) -> None:
    data = msgpack.packb(value, use_bin_type=True)
    try:
        decoded = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, TypeError):
        return
    if _cannot_break(data, limits):
        _check_value(decoded, limits)  # raises DecodeError if a bound were broken


def _items(value: Any) -> int:
    if isinstance(value, list):
        return len(value) + 1 + sum(_items(x) for x in value)
    if isinstance(value, dict):
        return sum(_items(k) + _items(v) for k, v in value.items())
    return 0


@FAST
@given(values)
def test_a_value_holds_no_more_counted_items_than_its_bytes(value: Any) -> None:
    """Why `unpack_untrusted` counts items only for values longer than half the bound:
    an element is counted in its array and once more if it is an array ([[]] is 3 items
    in 2 bytes)."""
    data = msgpack.packb(value, use_bin_type=True)
    assert _items(msgpack.unpackb(data, raw=False, strict_map_key=False)) <= 2 * len(data)


@FAST
@given(values, st.sampled_from(LIMITS))
def test_unpack_untrusted_decides_as_the_full_checks_do(value: Any, limits: DecodeLimits) -> None:
    data = msgpack.packb(value, use_bin_type=True)
    try:
        got = unpack_untrusted(data, limits)
    except DecodeError:
        got = "refused"
    try:
        full = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True,
                               object_pairs_hook=None if limits.maps else _no_maps)
        if _items(full) > limits.items_max:
            raise DecodeError("items")
        _check_value(full, limits)
    except (DecodeError, ValueError, TypeError):
        full = "refused"
    # Compared as bytes: a NaN decoded twice is not equal to itself.
    assert (got == "refused") == (full == "refused")
    if got != "refused":
        assert msgpack.packb(got, use_bin_type=True) == data


def _no_maps(pairs: Any) -> Any:
    raise DecodeError("maps")


def test_a_long_value_is_walked_not_scanned() -> None:
    """Past a few KiB the byte scan would only add work (byte strings that long hold
    container-like bytes anyway): the walk decides, and still refuses what it must."""
    long_plain = msgpack.packb([b"x" * 5_000], use_bin_type=True)
    assert not _cannot_break(long_plain, DecodeLimits())
    assert unpack_untrusted(long_plain) == [b"x" * 5_000]
    with pytest.raises(DecodeError):
        unpack_untrusted(msgpack.packb([b"x" * 5_000, 1.5], use_bin_type=True))
