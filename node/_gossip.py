"""Gossip between member-state nodes: the items, and what we learn from each peer.

A gossip item is a msgpack array whose first element says its kind: a document, an
attestation, a node's status, equivocation evidence (of either kind), or a signed append
header a follower accepted from its leader (node/_appends.py). Items arrive in frames from each peer's gossip
websocket; `GossipInbox` decodes each with bounds and hands it to the part that
handles it. A malformed item is dropped and counted, never raised.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from ledger import (
    EVIDENCE_BYTES_MAX,
    AnyEvidence,
    Attestation,
    DecodeError,
    DecodeLimits,
    SignedAppend,
    decode_evidence,
    unpack_untrusted,
)

from ._metrics import Metrics

log = logging.getLogger(__name__)

# The first element of each gossip item's msgpack array.
GOSSIP_DOCUMENT = 0
GOSSIP_ATTESTATION = 1
GOSSIP_STATUS = 2
GOSSIP_EVIDENCE = 3
GOSSIP_APPEND = 4
# A status's version string is for people; a longer one is cut.
VERSION_CHARS_MAX = 64
# Heights are signed 64-bit in the store's keys; terms and node ids are Raft's uint64.
HEIGHT_MAX = (1 << 63) - 1
U64_MAX = (1 << 64) - 1
# Text in a status: a head hash is 64 hex digits, a role a word, a version short.
STATUS_TEXT_CHARS_MAX = 128
# One gossip item: [kind, payload] with a payload of at most six fields, one level
# deeper; a document's bytes are bounded by the frame (and by decode_signed after).
ITEM_LIMITS = DecodeLimits(bytes_max=(8 << 20) + 64, bin_bytes_max=8 << 20, depth_max=2, items_max=16,
                           array_items_max=8, str_bytes_max=1024)
ATTESTATION_HASH_BYTES = 32
ATTESTATION_SIGNATURE_BYTES = 64


class MalformedItem(ValueError):
    """A gossip item that is not one of the forms above (dropped and counted)."""


def document_item(wire: bytes) -> bytes:
    out: bytes = msgpack.packb([GOSSIP_DOCUMENT, wire], use_bin_type=True)
    return out


def attestation_item(att: Attestation) -> bytes:
    out: bytes = msgpack.packb([GOSSIP_ATTESTATION, att.to_list()], use_bin_type=True)
    return out


def evidence_item(evidence: AnyEvidence) -> bytes:
    out: bytes = msgpack.packb([GOSSIP_EVIDENCE, evidence.encode()], use_bin_type=True)
    return out


def append_item(signed: SignedAppend) -> bytes:
    out: bytes = msgpack.packb([GOSSIP_APPEND, signed.to_list()], use_bin_type=True)
    return out


def status_item(height: int, head_hash: str, role: str, term: int, leader: int, version: str) -> bytes:
    out: bytes = msgpack.packb([GOSSIP_STATUS, [height, head_hash, role, term, leader, version]],
                               use_bin_type=True)
    return out


@dataclass(slots=True)
class PeerStatus:
    """What a peer last said about itself (a claim, not a fact: shown, never believed)."""

    state: str
    height: int
    head_hash: str
    role: str
    term: int
    leader: int
    version: str
    seen_s: float

    def to_json(self, now_s: float) -> dict[str, Any]:
        return {
            "height": self.height,
            "head_hash": self.head_hash,
            "role": self.role,
            "term": self.term,
            "leader": self.leader,
            "version": self.version,
            "seen_ms_ago": int((now_s - self.seen_s) * 1000),
        }


class GossipInbox:
    """Decodes gossip items from peers and hands each to its handler."""

    def __init__(
        self,
        metrics: Metrics,
        head_height: Callable[[], int],
        on_document: Callable[[bytes], None],
        on_attestation: Callable[[str, Attestation], None],
        on_evidence: Callable[[AnyEvidence], None] = lambda evidence: None,
        on_append: Callable[[str, SignedAppend], None] = lambda peer, signed: None,
    ) -> None:
        self._metrics = metrics
        self._head_height = head_height
        self._on_document = on_document
        self._on_attestation = on_attestation
        self._on_evidence = on_evidence
        self._on_append = on_append
        self.peers: dict[str, PeerStatus] = {}

    def receive(self, peer: str, items: list[bytes]) -> None:
        """Hand each well-formed item on; a malformed one, or one its handler chokes on,
        is dropped and counted, and the next item is handled all the same."""
        for item in items:
            try:
                kind, payload = decode_item(item)
            except (MalformedItem, DecodeError) as exc:
                self._metrics.dropped("gossip_item")
                log.warning("dropped a malformed gossip item from %s: %s", peer, exc)
                continue
            try:
                if kind == GOSSIP_DOCUMENT:
                    self._on_document(payload)
                elif kind == GOSSIP_ATTESTATION:
                    self._on_attestation(peer, payload)
                elif kind == GOSSIP_EVIDENCE:
                    self._on_evidence(payload)  # checked against genesis before it is kept
                elif kind == GOSSIP_APPEND:
                    self._on_append(peer, payload)  # checked against the member table there
                else:
                    self._on_status(peer, payload)
            # A peer's bytes must never end the socket handler, even where a handler
            # has a bug: the item is dropped, loudly.
            except Exception:
                self._metrics.dropped("gossip_handler")
                log.exception("a gossip item from %s failed in its handler; dropped", peer)

    def _on_status(self, peer: str, value: list[Any]) -> None:
        height, head_hash, role, term, leader, version = value
        self.peers[peer] = PeerStatus(
            peer, height, head_hash, role, term, leader, version[:VERSION_CHARS_MAX], time.monotonic(),
        )
        self._metrics.peer_lag(peer).set(self._head_height() - height)


def decode_item(item: bytes) -> tuple[int, Any]:
    """A gossip item's kind and its checked payload: a document's wire bytes, an
    `Attestation` with every field in range, or a status's six fields. Raises
    MalformedItem or DecodeError (both ValueErrors), nothing else."""
    value = unpack_untrusted(item, ITEM_LIMITS)
    if not isinstance(value, list) or len(value) != 2 or type(value[0]) is not int:
        raise MalformedItem("a gossip item is [kind, payload]")
    kind, payload = value
    if kind == GOSSIP_DOCUMENT:
        if type(payload) is not bytes:
            raise MalformedItem("a gossiped document is bytes")
        return kind, payload
    if kind == GOSSIP_ATTESTATION:
        return kind, _attestation(payload)
    if kind == GOSSIP_STATUS:
        return kind, _status(payload)
    if kind == GOSSIP_EVIDENCE:
        # Evidence about any state, relayed by any peer: what makes it believable is the
        # two signatures, checked by the handler; its shape is checked here, bounded.
        if type(payload) is not bytes or len(payload) > EVIDENCE_BYTES_MAX:
            raise MalformedItem(f"gossiped evidence is at most {EVIDENCE_BYTES_MAX} bytes")
        return kind, decode_evidence(payload)
    if kind == GOSSIP_APPEND:
        # Any state's signed append, relayed by the follower that accepted it: its shape
        # here (SignedAppend.from_list checks every field), its signature by the handler.
        return kind, SignedAppend.from_list(payload)
    raise MalformedItem(f"unknown gossip kind {kind}")


def _attestation(payload: Any) -> Attestation:
    if not isinstance(payload, list) or len(payload) != 5:
        raise MalformedItem("an attestation is [state, height, round, block hash, signature]")
    state, height, round_, block_hash, signature = payload
    if type(state) is not str or len(state) != 2 or not state.isascii() or not state.isupper():
        raise MalformedItem("an attestation's state is a two-letter code")
    if type(height) is not int or not 1 <= height <= HEIGHT_MAX:
        raise MalformedItem(f"an attestation's height is an integer in [1, {HEIGHT_MAX}]")
    if type(round_) is not int or not 0 <= round_ <= U64_MAX:
        raise MalformedItem("an attestation's round is a Raft term, an unsigned 64-bit integer")
    if type(block_hash) is not bytes or len(block_hash) != ATTESTATION_HASH_BYTES:
        raise MalformedItem("an attestation's block hash is 32 bytes")
    if type(signature) is not bytes or len(signature) != ATTESTATION_SIGNATURE_BYTES:
        raise MalformedItem("an attestation's signature is 64 bytes")
    return Attestation.from_list(payload)


def _status(payload: Any) -> list[Any]:
    if not isinstance(payload, list) or len(payload) != 6:
        raise MalformedItem("a status is [height, head hash, role, term, leader, version]")
    height, head_hash, role, term, leader, version = payload
    if type(height) is not int or not 0 <= height <= HEIGHT_MAX:
        raise MalformedItem(f"a status's height is an integer in [0, {HEIGHT_MAX}]")
    for number in (term, leader):
        if type(number) is not int or not 0 <= number <= U64_MAX:
            raise MalformedItem("a status's term and leader are unsigned 64-bit integers")
    for text in (head_hash, role, version):
        if type(text) is not str or len(text) > STATUS_TEXT_CHARS_MAX:
            raise MalformedItem(f"a status's texts are strings of at most {STATUS_TEXT_CHARS_MAX} characters")
    return payload
