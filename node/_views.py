"""What the node shows about itself and about one document, as JSON-ready values."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from consensus import Driver
from ledger import Genesis, LedgerStore, decode_signed

from ._gossip import PeerStatus
from ._mempool import Mempool
from ._metrics import Alarms
from ._pipeline import outcome_json
from ._transport import PeerLinks

VERSION = "tamga/0.1.0"


class Views:
    def __init__(
        self,
        genesis: Genesis,
        state: str,
        store: LedgerStore,
        mempool: Mempool,
        driver: Driver,
        links: PeerLinks,
        peers: dict[str, PeerStatus],
        processed_index: Callable[[], int],
        fatal_error: Callable[[], str | None],
        alarms: Alarms,
    ) -> None:
        self._genesis = genesis
        self._state = state
        self._member = genesis.state(state)
        self._store = store
        self._mempool = mempool
        self._driver = driver
        self._links = links
        self._peers = peers
        self._processed_index = processed_index
        self._fatal_error = fatal_error
        self._alarms = alarms

    def raft_view(self) -> tuple[str, int, int]:
        """Role, term and leader id as this node sees them."""
        if not self._driver.running:
            return "stopped", 0, 0
        status = self._driver.status()
        return status.role.name.lower(), status.term, status.leader

    def status(self) -> dict[str, Any]:
        head = self._store.head
        now = time.monotonic()
        out: dict[str, Any] = {
            "state": self._state,
            "node_id": self._member.node_id,
            "chain_id": self._genesis.chain_id,
            "role": "stopped",
            "term": 0,
            "leader": None,
            "leader_state": None,
            "height": head.height,
            "head_hash": head.hash.hex(),
            "state_hash": head.state_hash.hex(),
            "time_ms": head.time_ms,
            "commit_index": 0,
            "applied_index": self._processed_index(),
            "mempool": {"documents": len(self._mempool), "bytes": self._mempool.size_bytes},
            "version": VERSION,
            "error": self._fatal_error(),
            # What this node saw that an honest network never does (block times beyond
            # the genesis bounds): by kind, how often and the last one.
            "alarms": self._alarms.to_json(),
            "peers": {p: s.to_json(now) for p, s in sorted(self._peers.items())},
        }
        for peer in self._links.raft:
            out["peers"].setdefault(peer, {})["connected"] = self._links.connected(peer)
        if self._driver.running:
            status = self._driver.status()
            out["role"] = status.role.name.lower()
            out["term"] = status.term
            out["commit_index"] = status.commit
            if status.leader:
                out["leader"] = status.leader
                with contextlib.suppress(KeyError):
                    out["leader_state"] = self._genesis.state_by_node(status.leader).code
        return out

    def document_status(self, doc_id: bytes) -> dict[str, Any]:
        record = self._store.document(doc_id)
        if record is not None:
            out = outcome_json(doc_id, record["height"], record["position"], record["result"])
            out["document"] = decode_signed(record["wire"]).to_json()
            return out
        status = "pending" if doc_id in self._mempool else "unknown"
        return {"id": doc_id.hex(), "status": status, "reason": None, "message": "",
                "height": None, "position": None, "document": None}
