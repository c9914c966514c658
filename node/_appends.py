"""Leader-signed appends on the peer wire, and the evidence two of them make (issue 11).

Raft assumes one entry per (term, index); a hostile leader breaks that by sending
different entries at one (term, index) to different followers. So a leader signs, for
every entry it sends, the statement "at (term, index) I appended the entry with this
hash" (`ledger.SignedAppend`, domain-separated, with its node key), and two such
statements from one state for different entries are a proof anyone checks with genesis
alone (`ledger.AppendEquivocation`).

consensus/ stays free of crypto: it builds and reads messages whose entries are opaque
bytes. The signatures travel in the node's frame envelope beside the encoded message:
a Raft frame item is either a bare encoded message (every message without entries) or
the envelope `[message bytes, [signature, ...]]`, one signature per entry in order. The
state is the sender's, the term and index are the entry's, and the hash is the
receiver's own of the entry's type and data, so a signature over another entry simply
does not verify.

- `AppendSigner` (the leader): signs each (term, index) once and keeps the signature
  (bounded); it refuses to sign a second, different entry at a (term, index) it signed,
  since that is exactly the proof against itself (the append goes unsigned and
  followers drop it).
- `SignedAppends` (a follower): an append whose entries lack a valid signature from the
  sending leader's key in the member table is dropped whole (`AppendRefused`, counted by
  the peer API); each (key, term, index, hash, signature) is verified once (bounded).
  It keeps a bounded recent map of the signed appends it accepted per (state, term,
  index) and gossips each one it accepted from the leader, once, to its other peers
  (the header, not the entry), so that followers on different branches find the
  conflict: a second, different signed append from one state at one (term, index)
  becomes `AppendEquivocation` evidence for the node's evidence path.
"""

from __future__ import annotations

import collections
import hashlib
import logging
from collections.abc import Callable, Sequence

import msgpack

from consensus import Entry, MalformedMessage, Message, MessageType, decode_message, encode_message
from ledger import (
    AppendEquivocation,
    DecodeError,
    DecodeLimits,
    KeyPair,
    Membership,
    SignedAppend,
    Verifier,
    unpack_untrusted,
)

log = logging.getLogger(__name__)

# An envelope is a msgpack array of two: it starts with this byte (fixarray 2), where a
# bare encoded Raft message is an array of fifteen (0x9f).
ENVELOPE_FIRST_BYTE = 0x92
SIGNATURE_BYTES = 64
# Signatures in one envelope: as many as consensus allows entries in one message (its
# ENTRIES_MAX); the frame limit (64 MiB) bounds the bytes first, at about a million
# 66-byte signatures.
ENVELOPE_SIGNATURES_MAX = 1 << 20
ENVELOPE_BYTES_MAX = 64 << 20
ENVELOPE_LIMITS = DecodeLimits(
    bytes_max=ENVELOPE_BYTES_MAX, depth_max=2, items_max=ENVELOPE_SIGNATURES_MAX + 4,
    array_items_max=ENVELOPE_SIGNATURES_MAX, str_bytes_max=0, bin_bytes_max=ENVELOPE_BYTES_MAX,
)
# (term, index) signatures the leader keeps: a follower that lags by this many entries
# gets some signed again (the same signature: Ed25519 is deterministic). 65,536 x about
# 150 bytes is 10 MB at most; a block per entry makes that minutes of appends.
SIGNED_KEPT_MAX = 65_536
# Signatures a follower has verified, so that a retransmitted append (and the headers
# its peers gossip of the same entries) costs a hash, not a verification.
VERIFIED_KEPT_MAX = 65_536
# Signed appends kept per state to compare with what peers gossip. Followers on two
# branches exchange their headers within milliseconds; 8,192 per state is tens of
# seconds of blocks at the highest rates measured, about 2 MB per state. Per state, so
# that one hostile state's flood of its own signed headers evicts only its own.
RECENT_PER_STATE_MAX = 8_192
# (state, term, index) we built evidence for: one proof per slot is enough.
EVIDENCED_KEPT_MAX = 4_096


class AppendRefused(Exception):
    """An append a follower drops whole: `reason` is the drop counter's label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def entry_digest(entry: Entry) -> bytes:
    """The hash a leader signs for an entry: of its type and its data, so that a
    configuration change and a block with the same bytes are different entries. Equal
    to `ledger.entry_hash(bytes([type]) + data)`, without copying a large block."""
    digest = hashlib.sha256(bytes((int(entry.type),)))
    digest.update(entry.data)
    return digest.digest()


def carries_entries(message: Message) -> bool:
    return message.type == MessageType.APP and bool(message.entries)


def pack_envelope(raw: bytes, signatures: Sequence[bytes]) -> bytes:
    """msgpack's encoding of [raw, signatures], built with one copy of `raw` (an append
    may carry megabytes of blocks; msgpack's packer would copy them as its buffer grows)."""
    size = len(raw)
    if size < 1 << 8:
        header = b"\xc4" + size.to_bytes(1, "big")
    elif size < 1 << 16:
        header = b"\xc5" + size.to_bytes(2, "big")
    else:
        header = b"\xc6" + size.to_bytes(4, "big")
    tail: bytes = msgpack.packb(list(signatures), use_bin_type=True)
    return b"".join((bytes((ENVELOPE_FIRST_BYTE,)), header, raw, tail))


def unwrap(item: bytes) -> tuple[Message, list[bytes] | None]:
    """A Raft frame item: the message, and its entries' signatures when it came in an
    envelope (None: a bare message). MalformedMessage for anything else."""
    if not item or item[0] != ENVELOPE_FIRST_BYTE:
        return decode_message(item), None
    try:
        value = unpack_untrusted(item, ENVELOPE_LIMITS)
    except DecodeError as exc:
        raise MalformedMessage(f"a signed append envelope: {exc}") from None
    if (not isinstance(value, list) or len(value) != 2 or type(value[0]) is not bytes
            or not isinstance(value[1], list)
            or not all(type(s) is bytes and len(s) == SIGNATURE_BYTES for s in value[1])):
        raise MalformedMessage("a signed append envelope is [message, [64-byte signature, ...]]")
    return decode_message(value[0]), value[1]


class AppendSigner:
    """The leader's side: what goes on the Raft link, each entry signed once."""

    def __init__(self, key: KeyPair, chain_id: str, state: str) -> None:
        self._key = key
        self._chain_id = chain_id
        self._state = state
        # (term, index) -> (entry hash, signature), the oldest first
        self._signed: collections.OrderedDict[tuple[int, int], tuple[bytes, bytes]] = (
            collections.OrderedDict())
        self.signatures = 0  # signatures made (not sends)
        self.refused = 0  # entries not signed: another entry was signed at their (term, index)

    def wrap(self, message: Message) -> bytes:
        """The frame item for a message: bare, or an envelope with every entry signed."""
        raw = encode_message(message)
        if not carries_entries(message):
            return raw
        signatures = []
        for entry in message.entries:
            signature = self._signature(entry)
            if signature is None:
                return raw  # unsigned: followers drop it rather than hold a proof against us
            signatures.append(signature)
        return pack_envelope(raw, signatures)

    def _signature(self, entry: Entry) -> bytes | None:
        hashed = entry_digest(entry)
        key = (int(entry.term), int(entry.index))
        kept = self._signed.get(key)
        if kept is not None:
            if kept[0] == hashed:
                self._signed.move_to_end(key)
                return kept[1]
            self.refused += 1
            log.error("not signing a second entry at term %d index %d (signed %s..., now %s...): "
                      "the two would be evidence against this node", key[0], key[1],
                      kept[0].hex()[:16], hashed.hex()[:16])
            return None
        signed = SignedAppend.of_hash(self._key, self._chain_id, self._state, key[0], key[1], hashed)
        self.signatures += 1
        self._signed[key] = (hashed, signed.signature)
        if len(self._signed) > SIGNED_KEPT_MAX:
            self._signed.popitem(last=False)
        return signed.signature


class SignedAppends:
    """A follower's side: checks the leader's signatures, remembers them, finds conflicts."""

    def __init__(
        self,
        state: str,
        chain_id: str,
        members: Callable[[], Membership],
        verifier: Verifier,
        gossip_others: Callable[[str, SignedAppend], None],
        on_evidence: Callable[[AppendEquivocation], None],
        wants_evidence: Callable[[str], bool] = lambda state: True,
        refused: Callable[[str], bool] = lambda state: False,
        dropped: Callable[[str], None] = lambda reason: None,
    ) -> None:
        """`gossip_others(sender, append)` gossips a header to every peer but the sender;
        `refused(state)`: whether that state's node is refused as leader (its appends
        go on to Raft unchecked, which ignores them); `dropped(reason)` counts a
        gossiped header that does not verify."""
        self._state = state
        self._chain_id = chain_id
        self._members = members
        self._verifier = verifier
        self._gossip_others = gossip_others
        self._on_evidence = on_evidence
        self._wants_evidence = wants_evidence
        self._refused = refused
        self._dropped = dropped
        self._verified: collections.OrderedDict[tuple[bytes, int, int, bytes, bytes], None] = (
            collections.OrderedDict())
        self._recent: dict[str, collections.OrderedDict[tuple[int, int], SignedAppend]] = {}
        self._evidenced: set[tuple[str, int, int]] = set()
        self.verifications = 0

    # -- appends from the leader ---------------------------------------------------------

    def check(self, sender: str, message: Message, signatures: list[bytes] | None) -> None:
        """Let an append through only if every entry carries a valid signature of the
        sender's node key; AppendRefused otherwise. Messages without entries pass."""
        if not carries_entries(message) or self._refused(sender):
            return
        entries = message.entries
        if signatures is None:
            raise AppendRefused("append_unsigned", f"an append of {len(entries)} entries without signatures")
        if len(signatures) != len(entries):
            raise AppendRefused("append_unsigned",
                                f"an append of {len(entries)} entries with {len(signatures)} signatures")
        key = self._members().node_key(sender)
        if key is None:
            raise AppendRefused("append_signature", f"{sender} has no active node key in the member table")
        appends = []
        for entry, signature in zip(entries, signatures, strict=True):
            signed = SignedAppend(sender, int(entry.term), int(entry.index), entry_digest(entry), signature)
            if not self._verify(signed, key):
                raise AppendRefused(
                    "append_signature", f"the signature of entry {entry.index} (term {entry.term}) does not "
                    f"verify against {sender}'s node key over that entry")
            appends.append(signed)
        for signed in appends:
            if self._note(signed):
                self._gossip_others(sender, signed)

    # -- headers peers gossip ------------------------------------------------------------

    def receive(self, peer: str, signed: SignedAppend) -> None:
        """A signed append header a peer accepted from its leader: checked with the same
        rule (the signer's node key in the member table), then compared."""
        if signed.state == self._state or not self._wants_evidence(signed.state):
            return  # our own (we know what we signed), or a state we hold proof against
        recent = self._recent.get(signed.state)
        known = recent.get((signed.term, signed.index)) if recent is not None else None
        if known is not None and known.entry_hash == signed.entry_hash:
            return  # the same statement again: nothing to verify or learn
        key = self._members().node_key(signed.state)
        if key is None or not self._verify(signed, key):
            self._dropped("append_gossip")
            log.warning("dropped from %s: a signed append header of %s that does not verify",
                        peer, signed.state)
            return
        self._note(signed)

    # -- inside ------------------------------------------------------------------------

    def _verify(self, signed: SignedAppend, key: bytes) -> bool:
        cached = (key, signed.term, signed.index, signed.entry_hash, signed.signature)
        if cached in self._verified:
            self._verified.move_to_end(cached)
            return True
        self.verifications += 1
        if not signed.verify_key(key, self._chain_id, self._verifier):
            return False
        self._verified[cached] = None
        if len(self._verified) > VERIFIED_KEPT_MAX:
            self._verified.popitem(last=False)
        return True

    def _note(self, signed: SignedAppend) -> bool:
        """Remember a verified signed append; True when it is new (gossip it then). A
        different one already kept for its (state, term, index) is evidence."""
        if signed.state == self._state:
            return False
        recent = self._recent.setdefault(signed.state, collections.OrderedDict())
        slot = (signed.term, signed.index)
        earlier = recent.get(slot)
        if earlier is None:
            recent[slot] = signed
            if len(recent) > RECENT_PER_STATE_MAX:
                recent.popitem(last=False)
            return True
        if earlier.entry_hash != signed.entry_hash:
            self._evidence(earlier, signed)
        return False

    def _evidence(self, earlier: SignedAppend, signed: SignedAppend) -> None:
        slot = (signed.state, signed.term, signed.index)
        if slot in self._evidenced or not self._wants_evidence(signed.state):
            return
        if len(self._evidenced) >= EVIDENCED_KEPT_MAX:
            self._evidenced.clear()
        self._evidenced.add(slot)
        log.error("%s signed two entries at term %d index %d (%s..., %s...): evidence", signed.state,
                  signed.term, signed.index, earlier.entry_hash.hex()[:16], signed.entry_hash.hex()[:16])
        self._on_evidence(AppendEquivocation(earlier, signed))

    def to_json(self) -> dict[str, int]:
        return {"verifications": self.verifications, "states": len(self._recent),
                "kept": sum(len(r) for r in self._recent.values())}


__all__ = [
    "AppendRefused",
    "AppendSigner",
    "SignedAppends",
    "carries_entries",
    "entry_digest",
    "pack_envelope",
    "unwrap",
]
