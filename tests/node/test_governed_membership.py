"""Governance changes membership in transport, not only in the ledger: three real node
processes; the states replace KZ's TLS certificate, remove KZ's node, and add it back."""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any

import aiohttp

from ledger import Action, DocType, KeyPair, NodeSpec, make_proposal
from node import NodeClient, make_certificate
from node._tls import cert_fingerprint_pem, client_context
from testnet import DocFactory, Testnet, down, fetch_status, init_testnet, poll_until_async, start, stop, up

STATES = ("BY", "KZ", "RU")  # a Byzantine quorum is 2 of 3
CONFIG = {"raft": {"tick_ms": 50}}
SETTLE_S = 60  # two shared cores: relinking and an election may take a while


def _context(net: Testnet, cert: Path, key: Path, server: str) -> ssl.SSLContext:
    """KZ's side of a peer connection to `server`, presenting `cert`."""
    return client_context(cert, key, (net.node(server).dir / "tls.crt").read_text())


async def _peer_status(net: Testnet, server: str, ctx: ssl.SSLContext) -> int:
    """The HTTP status of GET /peer/status on `server`'s peer API; 0 when TLS refuses."""
    url = f"https://{net.node(server).peer_address}/peer/status"
    try:
        async with aiohttp.ClientSession() as s, s.get(url, ssl=ctx, timeout=aiohttp.ClientTimeout(total=5)) as r:
            return r.status
    except (aiohttp.ClientError, ssl.SSLError, ConnectionError, TimeoutError):
        return 0


async def _govern(net: Testnet, docs: DocFactory, action: Action, epoch: int, node: NodeSpec | None = None) -> None:
    proposal = make_proposal(net.chain_id, action, "KZ", epoch + 1, 2**62, node=node, epoch=epoch)
    signatures = [proposal.sign(net.regulator(s)).to_list() for s in ("BY", "RU")]
    doc = docs.doc(net.regulator("RU"), DocType.GOVERNANCE, proposal=proposal.canonical_bytes(),
                   signatures=signatures)
    async with NodeClient(net.node("RU").api_url, genesis=net.genesis) as ru:
        result = await ru.submit(doc)
    assert result["status"] == "applied", result


def _status(net: Testnet, state: str) -> dict[str, Any]:
    return fetch_status(net.node(state)) or {}


def _epoch(net: Testnet, state: str) -> int:
    return int(_status(net, state).get("membership", {}).get("epoch", -1))


def _linked(net: Testnet, state: str, peer: str) -> bool:
    return bool(_status(net, state).get("peers", {}).get(peer, {}).get("connected"))


async def test_a_replaced_certificate_is_pinned_and_a_removed_node_is_refused(tmp_path: Path) -> None:
    """BY and RU accept KZ's new certificate once governance replaced it and refuse the
    old one; KZ restarted with the new one links up and commits with them. Once
    governance removes KZ's node, its requests are refused and its links closed; once
    it adds it back, it is dialed again and commits with them."""
    net = init_testnet(tmp_path / "net", STATES, config=CONFIG)
    kz = net.node("KZ")
    cert_pem, key_pem = make_certificate("tamga-kz-2")
    (kz.dir / "tls2.crt").write_bytes(cert_pem)
    fd = os.open(kz.dir / "tls2.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    # The operators hand the new certificate to every node before the change (the bundle
    # is where certificates come from; the ledger says which one is pinned).
    with (net.dir / "peers.pem").open("ab") as f:
        f.write(cert_pem)
    old = {s: _context(net, kz.dir / "tls.crt", kz.dir / "tls.key", s) for s in ("BY", "RU")}
    new = {s: _context(net, kz.dir / "tls2.crt", kz.dir / "tls2.key", s) for s in ("BY", "RU")}
    docs = DocFactory(net.chain_id)
    try:
        up(net.dir)
        for s in ("BY", "RU"):
            assert await _peer_status(net, s, old[s]) == 200
            assert await _peer_status(net, s, new[s]) == 0  # not pinned: the handshake fails

        genesis_kz = net.genesis.state("KZ")
        spec = NodeSpec(genesis_kz.node_public_key, cert_fingerprint_pem(cert_pem), genesis_kz.peer_address,
                        genesis_kz.api_url)
        await _govern(net, docs, Action.REPLACE_NODE, 0, spec)
        await poll_until_async(lambda: _epoch(net, "BY") == 1 and _epoch(net, "RU") == 1, SETTLE_S,
                               "BY and RU to apply the replacement")
        for s in ("BY", "RU"):
            assert await _peer_status(net, s, new[s]) == 200, s
            assert await _peer_status(net, s, old[s]) == 403, s

        # KZ restarts with its new certificate: the peers dial it with the new pin, and
        # it catches up and commits with them.
        stop(net.dir, "KZ")
        config = kz.config.read_text().replace('cert = "tls.crt"', 'cert = "tls2.crt"')
        config = config.replace('key = "tls.key"', 'key = "tls2.key"')
        assert "tls2.crt" in config and "tls2.key" in config
        kz.config.write_text(config)
        start(net.dir, "KZ")
        await poll_until_async(
            lambda: all(_linked(net, a, b) for a in STATES for b in STATES if a != b), SETTLE_S,
            "every node linked to every other, KZ with its new certificate")
        async with NodeClient(kz.api_url, genesis=net.genesis) as client:
            result = await client.submit(docs.register(net.regulator("KZ"), KeyPair.generate(), "KZ", ["producer"], "P"))
        assert result["status"] == "applied", result

        # The states remove KZ's node: its certificate opens nothing, the links close.
        await _govern(net, docs, Action.REMOVE_NODE, 1)
        await poll_until_async(lambda: _epoch(net, "BY") == 2 and _epoch(net, "RU") == 2, SETTLE_S,
                               "BY and RU to apply the removal")
        for s in ("BY", "RU"):
            assert await _peer_status(net, s, new[s]) == 403, s
            assert not _linked(net, s, "KZ"), s
        async with NodeClient(net.node("BY").api_url, genesis=net.genesis) as client:
            result = await client.submit(docs.register(net.regulator("BY"), KeyPair.generate(), "BY",
                                                       ["producer"], "After KZ"))
        assert result["status"] == "applied", result

        # The states add KZ's node back: BY and RU dial it again, and it commits with them.
        await _govern(net, docs, Action.ADD_NODE, 2, spec)
        await poll_until_async(lambda: _epoch(net, "BY") == 3 and _epoch(net, "RU") == 3, SETTLE_S,
                               "BY and RU to apply the addition")
        for s in ("BY", "RU"):
            assert await _peer_status(net, s, new[s]) == 200, s
        await poll_until_async(lambda: _linked(net, "BY", "KZ") and _linked(net, "RU", "KZ"), SETTLE_S,
                               "BY and RU linked to KZ again")
        await poll_until_async(lambda: _epoch(net, "KZ") == 3, SETTLE_S, "KZ to catch up")
        async with NodeClient(kz.api_url, genesis=net.genesis) as client:
            result = await client.submit(docs.register(net.regulator("KZ"), KeyPair.generate(), "KZ",
                                                       ["producer"], "Back"))
        assert result["status"] == "applied", result
    finally:
        down(net.dir)
