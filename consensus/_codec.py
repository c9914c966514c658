"""Wire form of Raft messages and of configuration-change entries (msgpack).

Everything that arrives from the network passes `decode_message`, which either returns
a well-formed `Message` or raises `MalformedMessage`, and nothing else, whatever the
bytes. Well-formed means: the exact shape below, integers in range, known enum values,
bytes where bytes belong. Whether the message makes sense for Raft (terms, indexes) is
the core's business; it ignores what does not.

A message is one msgpack array:

    [FORMAT, type, to, frm, term, log_term, index, entries, commit, reject,
     reject_hint, snapshot, snap_offset, snap_done, context]

with entries as arrays [term, index, type, data] and the snapshot as nil or
[index, term, [voters], [learners], data].
"""

from __future__ import annotations

from typing import Any

import msgpack

from ._types import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    LogIndex,
    Message,
    MessageType,
    NodeId,
    Snapshot,
    SnapshotMeta,
    Term,
)

FORMAT = 1

# Why these bounds: a message carries at most max_size_per_msg (1 MiB by default) of
# entry data or one snapshot chunk; 64 MiB leaves room for larger settings while
# keeping a hostile peer from making us allocate without limit.
MESSAGE_BYTES_MAX = 64 << 20
# Terms, indexes and node ids are non-negative and below 2^63 on the wire: that is room
# for any honest history, and a hostile peer's term of 2^64-1 would otherwise become
# every honest node's term, pinning it at a value no later term can exceed.
NUMBER_MAX = (1 << 63) - 1
# A membership has a handful of nodes (one per member state plus observers).
MEMBERS_MAX = 1024
# Bounds the per-entry overhead work of decoding one append.
ENTRIES_MAX = 1 << 20
# Array elements in one whole message: every entry is an array of four, plus the
# members of a snapshot and the fifteen fields. msgpack bounds each array by itself;
# this bounds their sum, so a frame of nested empty arrays cannot become millions of
# Python lists (issue 10, finding 7).
ITEMS_MAX = 5 * ENTRIES_MAX + 2 * MEMBERS_MAX + 64
# A conf change is [format, type, node], optionally with a context (its governance
# certificate, bounded by CONF_CONTEXT_BYTES_MAX below): 64 bytes hold the rest.
CONF_CHANGE_BYTES_MAX = 64


class MalformedMessage(ValueError):
    """Bytes from the network that are not a well-formed message."""


def encode_message(m: Message) -> bytes:
    snap = None
    if m.snapshot is not None:
        meta = m.snapshot.meta
        snap = [
            meta.index,
            meta.term,
            list(meta.conf.voters),
            list(meta.conf.learners),
            m.snapshot.data,
            # Only when set, so that a snapshot without one encodes as it always did.
            *([meta.conf_context] if meta.conf_context else []),
        ]
    out: bytes = msgpack.packb(
        [
            FORMAT,
            int(m.type),
            m.to,
            m.frm,
            m.term,
            m.log_term,
            m.index,
            [[e.term, e.index, int(e.type), e.data] for e in m.entries],
            m.commit,
            m.reject,
            m.reject_hint,
            snap,
            m.snap_offset,
            m.snap_done,
            m.context,
        ],
        use_bin_type=True,
    )
    return out


def decode_message(raw: bytes) -> Message:
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise MalformedMessage("a message must be bytes")
    if len(raw) > MESSAGE_BYTES_MAX:
        raise MalformedMessage(f"message of {len(raw)} bytes exceeds {MESSAGE_BYTES_MAX}")
    obj = unpack_bounded(raw, bytes_max=MESSAGE_BYTES_MAX, items_max=ITEMS_MAX)
    fields = _array(obj, 15, "message")
    if _uint(fields[0], "format") != FORMAT:
        raise MalformedMessage(f"unknown message format {fields[0]}")
    return Message(
        type=_enum(MessageType, fields[1], "type"),
        to=NodeId(_uint(fields[2], "to")),
        frm=NodeId(_uint(fields[3], "frm")),
        term=Term(_uint(fields[4], "term")),
        log_term=Term(_uint(fields[5], "log_term")),
        index=LogIndex(_uint(fields[6], "index")),
        entries=_entries(fields[7]),
        commit=LogIndex(_uint(fields[8], "commit")),
        reject=_bool(fields[9], "reject"),
        reject_hint=LogIndex(_uint(fields[10], "reject_hint")),
        snapshot=None if fields[11] is None else _snapshot(fields[11]),
        snap_offset=_uint(fields[12], "snap_offset"),
        snap_done=_bool(fields[13], "snap_done"),
        context=_bytes(fields[14], "context"),
    )


# A change's context carries one governance document with its co-signatures: a few
# KiB. 1 MiB bounds what a hostile leader can make every node keep in its log index.
CONF_CONTEXT_BYTES_MAX = 1 << 20


def encode_conf_change(cc: ConfChange) -> bytes:
    # Without a context the bytes are those of the three-field form written before
    # contexts existed, so old logs and new ones read alike.
    fields: list[Any] = [FORMAT, int(cc.type), cc.node]
    if cc.context:
        fields.append(cc.context)
    out: bytes = msgpack.packb(fields, use_bin_type=True)
    return out


def decode_conf_change(raw: bytes) -> ConfChange:
    """Decode a CONF_CHANGE entry's data; raises MalformedMessage on anything else."""
    obj = unpack_bounded(raw, bytes_max=CONF_CHANGE_BYTES_MAX + CONF_CONTEXT_BYTES_MAX, items_max=8)
    fields = _array(obj, 4 if isinstance(obj, list) and len(obj) == 4 else 3, "conf change")
    if _uint(fields[0], "format") != FORMAT:
        raise MalformedMessage(f"unknown conf change format {fields[0]}")
    node = NodeId(_uint(fields[2], "node"))
    if node == 0:
        raise MalformedMessage("a conf change must name a node")
    context = _bytes(fields[3], "conf change context") if len(fields) == 4 else b""
    if len(fields) == 4 and not 0 < len(context) <= CONF_CONTEXT_BYTES_MAX:
        # An empty context is written as the three-field form: one change, one encoding.
        raise MalformedMessage(f"a conf change context has 1 to {CONF_CONTEXT_BYTES_MAX} bytes")
    return ConfChange(type=_enum(ConfChangeType, fields[1], "conf change type"), node=node, context=context)


# -- bounded decoding -------------------------------------------------------------------
# (consensus imports no ledger: this is its own small counterpart of
# ledger.unpack_untrusted, enough for the fixed shapes above.)


def _refuse_map(_pairs: Any) -> Any:
    raise MalformedMessage("maps are not part of the wire form")


def _refuse_ext(code: int, _data: bytes) -> Any:
    raise MalformedMessage(f"msgpack extension type {code} is not part of the wire form")


def unpack_bounded(raw: Any, *, bytes_max: int, items_max: int) -> Any:
    """One msgpack value from a peer, within bounds; MalformedMessage on anything else.

    No maps, no extension types, no strings (nothing here is text), each byte string
    and array within the whole's size, and at most `items_max` array elements in all,
    counted while they are built. Nesting stops at msgpack's own stack (StackError);
    the shape checks above refuse anything nested where it does not belong.
    """
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise MalformedMessage("a message must be bytes")
    if len(raw) > bytes_max:
        raise MalformedMessage(f"{len(raw)} bytes exceed the {bytes_max} byte limit")
    items = 0

    def count(array: list[Any]) -> list[Any]:
        nonlocal items
        items += len(array) + 1
        if items > items_max:
            raise MalformedMessage(f"more than {items_max} array elements")
        return array

    try:
        return msgpack.unpackb(
            raw, raw=False, use_list=True, strict_map_key=True, list_hook=count,
            object_pairs_hook=_refuse_map, ext_hook=_refuse_ext, max_str_len=0, max_bin_len=bytes_max,
            max_array_len=min(items_max, bytes_max), max_map_len=0, max_ext_len=0,
        )
    except MalformedMessage:
        raise
    # Every msgpack error is a ValueError (StackError, ExtraData, FormatError, and
    # UnicodeDecodeError); the bounds above leave nothing else to raise.
    except ValueError as exc:
        raise MalformedMessage(f"not msgpack within bounds: {str(exc)[:120]}") from None


# -- checked accessors -----------------------------------------------------------------


def _array(obj: Any, length: int, what: str) -> list[Any]:
    if not isinstance(obj, list) or len(obj) != length:
        raise MalformedMessage(f"{what} must be an array of {length}")
    return obj


def _uint(obj: Any, what: str) -> int:
    # bool is an int subclass in Python; msgpack's true/false must not pass as numbers.
    if type(obj) is not int or not 0 <= obj <= NUMBER_MAX:
        raise MalformedMessage(f"{what} must be an integer from 0 to 2^63-1")
    return obj


def _bool(obj: Any, what: str) -> bool:
    if type(obj) is not bool:
        raise MalformedMessage(f"{what} must be a boolean")
    return obj


def _bytes(obj: Any, what: str) -> bytes:
    if type(obj) is not bytes:
        raise MalformedMessage(f"{what} must be bytes")
    return obj


def _enum(kind: type[Any], obj: Any, what: str) -> Any:
    value = _uint(obj, what)
    try:
        return kind(value)
    except ValueError:
        raise MalformedMessage(f"unknown {what} {value}") from None


def _entries(obj: Any) -> tuple[Entry, ...]:
    if not isinstance(obj, list) or len(obj) > ENTRIES_MAX:
        raise MalformedMessage("entries must be an array")
    out = []
    for item in obj:
        f = _array(item, 4, "entry")
        out.append(
            Entry(
                term=Term(_uint(f[0], "entry term")),
                index=LogIndex(_uint(f[1], "entry index")),
                type=_enum(EntryType, f[2], "entry type"),
                data=_bytes(f[3], "entry data"),
            )
        )
    return tuple(out)


def _members(obj: Any, what: str) -> tuple[NodeId, ...]:
    if not isinstance(obj, list) or len(obj) > MEMBERS_MAX:
        raise MalformedMessage(f"{what} must be an array of at most {MEMBERS_MAX}")
    return tuple(NodeId(_uint(x, what)) for x in obj)


def _snapshot(obj: Any) -> Snapshot:
    f = _array(obj, 6 if isinstance(obj, list) and len(obj) == 6 else 5, "snapshot")
    meta = SnapshotMeta(
        index=LogIndex(_uint(f[0], "snapshot index")),
        term=Term(_uint(f[1], "snapshot term")),
        conf=ConfState(voters=_members(f[2], "voters"), learners=_members(f[3], "learners")),
        conf_context=_bytes(f[5], "snapshot conf context") if len(f) == 6 else b"",
    )
    return Snapshot(meta=meta, data=_bytes(f[4], "snapshot data"))
