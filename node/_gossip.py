"""Gossip between member-state nodes: the items, and what we learn from each peer.

A gossip item is a msgpack array whose first element says its kind: a document, an
attestation, or a node's status. Items arrive in frames from each peer's gossip
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

from ledger import Attestation, DecodeError

from ._metrics import Metrics

log = logging.getLogger(__name__)

# The first element of each gossip item's msgpack array.
GOSSIP_DOCUMENT = 0
GOSSIP_ATTESTATION = 1
GOSSIP_STATUS = 2
# A status's version string is for people; a longer one is cut.
VERSION_CHARS_MAX = 64


def document_item(wire: bytes) -> bytes:
    out: bytes = msgpack.packb([GOSSIP_DOCUMENT, wire], use_bin_type=True)
    return out


def attestation_item(att: Attestation) -> bytes:
    out: bytes = msgpack.packb([GOSSIP_ATTESTATION, att.to_list()], use_bin_type=True)
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
    ) -> None:
        self._metrics = metrics
        self._head_height = head_height
        self._on_document = on_document
        self._on_attestation = on_attestation
        self.peers: dict[str, PeerStatus] = {}

    def receive(self, peer: str, items: list[bytes]) -> None:
        for item in items:
            try:
                value = msgpack.unpackb(item, raw=False, use_list=True)
                kind = value[0]
                if kind == GOSSIP_DOCUMENT:
                    if type(value[1]) is not bytes:
                        raise ValueError("a gossiped document is bytes")
                    self._on_document(value[1])
                elif kind == GOSSIP_ATTESTATION:
                    self._on_attestation(peer, Attestation.from_list(value[1]))
                elif kind == GOSSIP_STATUS:
                    self._on_status(peer, value[1])
                else:
                    raise ValueError(f"unknown gossip kind {kind!r}")
            except (ValueError, TypeError, IndexError, KeyError, DecodeError,
                    msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
                self._metrics.frames_dropped.inc()
                log.warning("dropped a malformed gossip item from %s: %r", peer, exc)

    def _on_status(self, peer: str, value: list[Any]) -> None:
        height, head_hash, role, term, leader, version = value
        if type(height) is not int or type(term) is not int or type(leader) is not int:
            raise ValueError("a status holds integers where integers belong")
        self.peers[peer] = PeerStatus(
            peer, height, str(head_hash), str(role), term, leader, str(version)[:VERSION_CHARS_MAX],
            time.monotonic(),
        )
        self._metrics.peer_lag(peer).set(self._head_height() - height)
