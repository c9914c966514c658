"""The mempool: admitted documents waiting for a block, bounded and deduplicated by id.

Every node keeps every admitted document (its own clients' and its peers') until a
block that holds it is applied, so that whichever node leads proposes it, and a change
of leader loses nothing. Only the leader takes documents out for a proposal; it marks
them as proposed so that the next proposal does not repeat them, and puts them back if
the proposal fails.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from ledger import SignedDocument


@dataclass(slots=True)
class Pending:
    wire: bytes
    expires_at_ms: int
    added_s: float  # monotonic time of admission
    sent_s: float  # last time it was (re)sent to peers
    proposed: bool = False
    # The decoded document, so that applying its block does not decode it again.
    signed: SignedDocument | None = None


class MempoolFull(Exception):
    """The mempool is at its bound: the client should retry later."""


class Mempool:
    def __init__(self, documents_max: int, bytes_max: int) -> None:
        self.documents_max = documents_max
        self.bytes_max = bytes_max
        self._items: OrderedDict[bytes, Pending] = OrderedDict()
        # Wire bytes to id, so that a committed block's documents are found without
        # hashing them again.
        self._by_wire: dict[bytes, bytes] = {}
        self._bytes = 0
        # Documents not yet proposed, in admission order: what the leader takes next.
        self._unproposed: OrderedDict[bytes, None] = OrderedDict()
        self._unproposed_bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, doc_id: bytes) -> bool:
        return doc_id in self._items

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @property
    def unproposed(self) -> int:
        return len(self._unproposed)

    @property
    def unproposed_bytes(self) -> int:
        return self._unproposed_bytes

    def has_room(self, size: int) -> bool:
        return len(self._items) < self.documents_max and self._bytes + size <= self.bytes_max

    def add(self, doc_id: bytes, wire: bytes, expires_at_ms: int, now_s: float,
            signed: SignedDocument | None = None) -> bool:
        """Add a document (with what it decoded to, if known); False if it is already
        here; MempoolFull at the bound."""
        if doc_id in self._items:
            return False
        if not self.has_room(len(wire)):
            raise MempoolFull(f"the mempool holds {len(self._items)} documents ({self._bytes} bytes)")
        self._items[doc_id] = Pending(wire, expires_at_ms, now_s, now_s, signed=signed)
        self._by_wire[wire] = doc_id
        self._bytes += len(wire)
        self._unproposed[doc_id] = None
        self._unproposed_bytes += len(wire)
        return True

    def take(self, documents_max: int, bytes_max: int) -> list[tuple[bytes, bytes]]:
        """Up to the bounds of unproposed documents, oldest first, now marked proposed.
        One document larger than `bytes_max` still goes, alone, so nothing is stuck."""
        out: list[tuple[bytes, bytes]] = []
        size = 0
        while self._unproposed and len(out) < documents_max:
            doc_id = next(iter(self._unproposed))
            item = self._items[doc_id]
            if out and size + len(item.wire) > bytes_max:
                break
            del self._unproposed[doc_id]
            self._unproposed_bytes -= len(item.wire)
            item.proposed = True
            out.append((doc_id, item.wire))
            size += len(item.wire)
        return out

    def unmark(self, doc_ids: Iterable[bytes]) -> None:
        """Proposals failed: their documents (those still here) may be proposed again."""
        returned: OrderedDict[bytes, None] = OrderedDict()
        for doc_id in doc_ids:
            item = self._items.get(doc_id)
            if item is not None and item.proposed:
                item.proposed = False
                returned[doc_id] = None
                self._unproposed_bytes += len(item.wire)
        # They were admitted before anything still unproposed: they go first again.
        returned.update(self._unproposed)
        self._unproposed = returned

    def pop_wires(self, wires: Iterable[bytes]) -> tuple[list[bytes], dict[bytes, SignedDocument]]:
        """Take out the documents with these wire bytes (a committed block's): their ids,
        and the decoded documents by wire bytes."""
        ids: list[bytes] = []
        decoded: dict[bytes, SignedDocument] = {}
        for wire in wires:
            doc_id = self._by_wire.get(wire)
            if doc_id is None:
                continue
            ids.append(doc_id)
            signed = self._items[doc_id].signed
            if signed is not None:
                decoded[wire] = signed
        self.remove(ids)
        return ids, decoded

    def remove(self, doc_ids: Iterable[bytes | None]) -> int:
        """Documents now in an applied block leave the mempool; returns how many did."""
        removed = 0
        for doc_id in doc_ids:
            if doc_id is None:
                continue
            item = self._items.pop(doc_id, None)
            if item is None:
                continue
            del self._by_wire[item.wire]
            removed += 1
            self._bytes -= len(item.wire)
            if not item.proposed:
                del self._unproposed[doc_id]
                self._unproposed_bytes -= len(item.wire)
        return removed

    def expire(self, now_ms: int) -> int:
        """Drop documents whose expiry has passed: a block would only reject them."""
        stale = [
            doc_id for doc_id, item in self._items.items()
            if item.expires_at_ms < now_ms and not item.proposed
        ]
        return self.remove(stale)

    def stale(self, older_than_s: float, now_s: float, limit: int) -> list[bytes]:
        """Wires of documents waiting longer than `older_than_s` since last sent (then
        marked sent now): what a node sends again to the leader."""
        out: list[bytes] = []
        for item in self._items.values():
            if now_s - item.added_s < older_than_s:
                break  # admission order: everything after is younger
            if now_s - item.sent_s >= older_than_s:
                item.sent_s = now_s
                out.append(item.wire)
                if len(out) >= limit:
                    break
        return out

    def clear_proposed(self) -> None:
        """Leadership lost: nothing of ours is in flight any more."""
        self.unmark([doc_id for doc_id, item in self._items.items() if item.proposed])
