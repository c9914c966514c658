"""Keeps the node's transport on the member table that the ledger holds.

Genesis names each state's node; a governance document adds, removes or replaces one
(its key, certificate, addresses), and the ledger applies it on every node alike
(`LedgerStore.members()`). After each applied block this part compares the table's
epoch with the one it last acted on, and when governance moved it: pins the table's
certificates (the peer API then refuses a removed node or a replaced certificate, the
server trusts a new one) and relinks the peers whose node changed (the old links are
closed, the new node is dialed). Attestations and catch-up read the table's keys
themselves. It is given callables only; it knows nothing of TLS or sockets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from ledger import Membership

log = logging.getLogger(__name__)


def peer_addresses(table: Membership, own_state: str) -> dict[str, str]:
    """State -> peer address of every active node but ours."""
    return {m.code: m.peer_address for m in table.active() if m.code != own_state}


class MembershipFollower:
    def __init__(
        self,
        own_state: str,
        own_key: bytes,
        members: Callable[[], Membership],
        pin: Callable[[Mapping[str, str]], set[str]],
        set_peers: Callable[[dict[str, str], set[str]], None],
    ) -> None:
        """`members()` reads the table at the head; `pin(pins)` pins the certificates
        (state -> fingerprint) and says which states' pins changed; `set_peers(addresses,
        changed)` links exactly those peers, relinking the changed ones."""
        self._own_state = own_state
        self._own_key = own_key
        self._members = members
        self._pin = pin
        self._set_peers = set_peers
        table = members()
        self.epoch = table.epoch
        self.table = table

    def follow(self) -> None:
        """Act on a new member table, once per membership epoch (cheap otherwise)."""
        table = self._members()
        if table.epoch == self.epoch:
            return
        self.epoch, self.table = table.epoch, table
        changed = self._pin(table.pins())
        self._set_peers(peer_addresses(table, self._own_state), changed)
        log.warning("membership epoch %d: %s", table.epoch,
                    ", ".join(f"{m.code} {'active' if m.active else 'removed'}" for m in table.members))
        own = table.member(self._own_state)
        if own is None or not own.active:
            log.error("governance removed this node (%s): its peers refuse its links from now on",
                      self._own_state)
        elif own.node_public_key != self._own_key:
            log.error("governance replaced this node's key: restart it with the new node key and "
                      "TLS certificate (its attestations no longer verify with the old key)")
