"""The wire codec: round trips, and garbage is refused with MalformedMessage only."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    LogIndex,
    MalformedMessage,
    Message,
    MessageType,
    NodeId,
    Snapshot,
    SnapshotMeta,
    Term,
    decode_conf_change,
    decode_message,
    encode_conf_change,
    encode_message,
)

u63 = st.integers(min_value=0, max_value=(1 << 63) - 1)
small = st.integers(min_value=0, max_value=1000)

entries = st.builds(
    Entry,
    term=u63.map(Term),
    index=u63.map(LogIndex),
    type=st.sampled_from(EntryType),
    data=st.binary(max_size=64),
)
snapshots = st.builds(
    Snapshot,
    meta=st.builds(
        SnapshotMeta,
        index=u63.map(LogIndex),
        term=u63.map(Term),
        conf=st.builds(
            ConfState,
            voters=st.lists(u63.map(NodeId), max_size=5).map(tuple),
            learners=st.lists(u63.map(NodeId), max_size=5).map(tuple),
        ),
    ),
    data=st.binary(max_size=64),
)
messages = st.builds(
    Message,
    type=st.sampled_from(MessageType),
    to=u63.map(NodeId),
    frm=u63.map(NodeId),
    term=u63.map(Term),
    log_term=u63.map(Term),
    index=u63.map(LogIndex),
    entries=st.lists(entries, max_size=4).map(tuple),
    commit=u63.map(LogIndex),
    reject=st.booleans(),
    reject_hint=u63.map(LogIndex),
    snapshot=st.none() | snapshots,
    snap_offset=u63,
    snap_done=st.booleans(),
    context=st.binary(max_size=16),
)


@given(messages)
@settings(max_examples=300)
def test_messages_round_trip(m: Message) -> None:
    """Every message decodes to exactly what was encoded."""
    assert decode_message(encode_message(m)) == m


@given(st.binary(max_size=200))
@settings(max_examples=500)
def test_random_bytes_are_refused_cleanly(raw: bytes) -> None:
    """Arbitrary bytes either decode or raise MalformedMessage, nothing else."""
    with contextlib.suppress(MalformedMessage):
        decode_message(raw)


@given(messages, st.data())
@settings(max_examples=300)
def test_mutated_messages_are_refused_cleanly(m: Message, data: st.DataObject) -> None:
    """Valid encodings with bytes flipped, cut or appended never raise anything but
    MalformedMessage."""
    raw = bytearray(encode_message(m))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.integers(0, 2))
        pos = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if op == 0 and raw:
            raw[pos] = data.draw(st.integers(0, 255))
        elif op == 1:
            del raw[pos:]
        else:
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
    with contextlib.suppress(MalformedMessage):
        decode_message(bytes(raw))


any_msgpack = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.binary(max_size=8)
    | st.text(max_size=8)
    | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=16) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=40,
)


@given(any_msgpack)
@settings(max_examples=200)
def test_well_formed_msgpack_of_the_wrong_shape_is_refused(obj: object) -> None:
    """msgpack that is not shaped like a message is refused with MalformedMessage."""
    with contextlib.suppress(MalformedMessage):
        decode_message(msgpack.packb(obj, use_bin_type=True))


@pytest.mark.parametrize(
    "fields",
    [
        [1, 99, 1, 2, 0, 0, 0, [], 0, False, 0, None, 0, True, b""],  # unknown type
        [1, 1, -1, 2, 0, 0, 0, [], 0, False, 0, None, 0, True, b""],  # negative id
        [1, 1, 1, 2, True, 0, 0, [], 0, False, 0, None, 0, True, b""],  # bool as term
        [1, 1, 1, 2, 0, 0, 0, [], 0, 0, 0, None, 0, True, b""],  # int as bool
        [1, 1, 1, 2, 0, 0, 0, [], 0, False, 0, None, 0, True, "text"],  # str as bytes
        [2, 1, 1, 2, 0, 0, 0, [], 0, False, 0, None, 0, True, b""],  # unknown format
        [1, 1, 1, 2, 0, 0, 0, [[1, 1, 0]], 0, False, 0, None, 0, True, b""],  # short entry
        [1, 1, 1, 2, 0, 0, 0, [], 0, False, 0, [1, 1, [], []], 0, True, b""],  # short snap
        [1, 1, 1, 2, 0, 0, 0, [], 0, False, 0, None, 0, True],  # missing field
    ],
)
def test_specific_malformations_are_refused(fields: list[object]) -> None:
    """Each field is checked for type and range."""
    with pytest.raises(MalformedMessage):
        decode_message(msgpack.packb(fields, use_bin_type=True))


def test_non_bytes_and_oversize_input_are_refused() -> None:
    """Input that is not bytes, or larger than any message may be, is refused."""
    with pytest.raises(MalformedMessage):
        decode_message("text")  # type: ignore[arg-type]
    with pytest.raises(MalformedMessage):
        decode_message(b"\x00" * ((64 << 20) + 1))


def test_conf_change_round_trip_and_refusal() -> None:
    """Configuration changes round-trip; garbage and node 0 are refused."""
    cc = ConfChange(ConfChangeType.ADD_LEARNER, NodeId(7))
    assert decode_conf_change(encode_conf_change(cc)) == cc
    for bad in (b"", b"\xc1", msgpack.packb([1, 9, 7]), msgpack.packb([1, 0, 0])):
        with pytest.raises(MalformedMessage):
            decode_conf_change(bad)


def test_numbers_at_or_above_two_to_the_63_are_malformed() -> None:
    """A peer's term, index or commit of 2^63 or more is refused before the core sees it:
    a term of 2^64-1 would pin every honest node at a term no later term can exceed."""
    good = Message(MessageType.HEARTBEAT, to=NodeId(1), frm=NodeId(2), term=Term((1 << 63) - 1))
    assert decode_message(encode_message(good)).term == (1 << 63) - 1
    for field in ("term", "index", "commit", "log_term"):
        fields: dict[str, int] = {"term": 3, field: 1 << 63}
        bad = Message(MessageType.APP, to=NodeId(1), frm=NodeId(2), **fields)  # type: ignore[arg-type]
        with pytest.raises(MalformedMessage):
            decode_message(encode_message(bad))
