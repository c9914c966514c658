"""The peer API: mutual TLS with certificates pinned by genesis; bad frames do no harm."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import msgpack
import pytest

from consensus import Message, MessageType, NodeId, encode_message
from ledger import Attestation, KeyPair
from node import EXIT_DIVERGED, make_certificate
from node._gossip import GOSSIP_ATTESTATION, GOSSIP_DOCUMENT
from node._keys import EXIT_CODE, METRICS, STOP
from node._tls import client_context
from node._transport import pack_frame
from testnet import poll_until_async

from .helpers import InProcessNode, in_process_node


@pytest.fixture
async def ru(tmp_path: Path) -> AsyncIterator[InProcessNode]:
    """The RU node of a two-state chain; KZ's node is absent, but its certificate is ours to use."""
    async with in_process_node(tmp_path, ("KZ", "RU"), "RU") as n:
        yield n


def peer_url(n: InProcessNode, path: str) -> str:
    return f"https://{n.net.node('RU').peer_address}{path}"


def ru_cert(n: InProcessNode) -> str:
    return (n.net.node("RU").dir / "tls.crt").read_text()


def kz_context(n: InProcessNode) -> ssl.SSLContext:
    kz = n.net.node("KZ").dir
    return client_context(kz / "tls.crt", kz / "tls.key", ru_cert(n))


async def test_a_pinned_peer_is_served(ru: InProcessNode) -> None:
    """KZ's pinned certificate opens the peer API, and RU knows the caller is KZ."""
    async with aiohttp.ClientSession() as s, s.get(peer_url(ru, "/peer/status"), ssl=kz_context(ru)) as r:
        assert r.status == 200
        assert (await r.json())["state"] == "RU"


async def test_a_client_without_a_pinned_certificate_is_refused(ru: InProcessNode, tmp_path: Path) -> None:
    """No client certificate, or a certificate genesis does not pin: the TLS handshake fails."""
    cert, key = make_certificate("intruder")
    (tmp_path / "i.crt").write_bytes(cert)
    (tmp_path / "i.key").write_bytes(key)
    intruder = client_context(tmp_path / "i.crt", tmp_path / "i.key", ru_cert(ru))
    anonymous = ssl.create_default_context(cadata=ru_cert(ru))
    for ctx in (intruder, anonymous):
        with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
            async with aiohttp.ClientSession() as s, s.get(peer_url(ru, "/peer/status"), ssl=ctx) as r:
                await r.read()
    # Plain HTTP on the peer port is no way in either.
    with pytest.raises(aiohttp.ClientError):
        async with aiohttp.ClientSession() as s, s.get(peer_url(ru, "/peer/status").replace("https", "http")) as r:
            await r.read()


async def test_a_client_refuses_a_server_it_does_not_pin(ru: InProcessNode, tmp_path: Path) -> None:
    """Dialing RU while trusting another certificate fails: clients pin the server too."""
    kz = ru.net.node("KZ").dir
    ctx = client_context(kz / "tls.crt", kz / "tls.key", make_certificate("other")[0].decode())
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        async with aiohttp.ClientSession() as s, s.get(peer_url(ru, "/peer/status"), ssl=ctx) as r:
            await r.read()


async def test_malformed_and_misaddressed_frames_are_dropped(ru: InProcessNode) -> None:
    """Garbage, text, a message claiming another sender and a bad gossip item: dropped, counted."""
    dropped = ru.app[METRICS].frames_dropped
    spoofed = Message(type=MessageType.HEARTBEAT, to=NodeId(2), frm=NodeId(7))
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(peer_url(ru, "/peer/raft").replace("https", "wss"), ssl=kz_context(ru)) as ws:
            await ws.send_bytes(b"\xc1garbage")
            await ws.send_str("hello")
            await ws.send_bytes(pack_frame([b"\x93\x01", encode_message(spoofed)]))
        async with s.ws_connect(peer_url(ru, "/peer/gossip").replace("https", "wss"), ssl=kz_context(ru)) as ws:
            await ws.send_bytes(pack_frame([msgpack.packb([GOSSIP_DOCUMENT, b"not a document"]),
                                            msgpack.packb([99, 1])]))
    await poll_until_async(lambda: dropped._value.get() >= 6, 10, "six drops")  # type: ignore[attr-defined]
    assert ru.node.driver is not None and ru.node.driver.running
    assert len(ru.node.mempool) == 0


async def test_raft_messages_no_peer_sends_are_dropped(ru: InProcessNode) -> None:
    """A peer asking to be handed leadership, forwarding a proposal, or sending a local
    HUP is dropped and counted: leadership moves only at the leader's own decision."""
    kz, me = NodeId(ru.net.genesis.state("KZ").node_id), NodeId(ru.net.genesis.state("RU").node_id)
    before = ru.app[METRICS].drops("raft_type")
    messages = [Message(type=t, to=me, frm=kz) for t in (MessageType.TRANSFER_LEADER, MessageType.PROPOSE,
                                                        MessageType.HUP)]
    raft_url = peer_url(ru, "/peer/raft").replace("https", "wss")
    async with aiohttp.ClientSession() as s, s.ws_connect(raft_url, ssl=kz_context(ru)) as ws:
        await ws.send_bytes(pack_frame([encode_message(m) for m in messages]))
    await poll_until_async(lambda: ru.app[METRICS].drops("raft_type") >= before + 3, 10, "three drops")
    assert ru.node.driver.running and ru.node.driver.stats.messages_received == 0


async def test_a_majority_attesting_another_hash_stops_the_node(tmp_path: Path) -> None:
    """When a majority of member states sign a different hash at a height this node holds
    as final, the node stops (a final block is never rolled back; above the final height
    it heals instead: test_a_quorum_attesting_another_block_above_final_heals)."""
    async with in_process_node(tmp_path, ("BY", "KZ", "RU"), "RU") as ru:
        node = ru.node
        header = node.store.apply_block([], 1, "RU").header  # a block only RU holds
        node.store.set_final_height(1)
        keys = {s: KeyPair.load(ru.net.node(s).node_key) for s in ("BY", "KZ")}
        other = Attestation(
            "BY", header.height, 0, b"\x01" * 32,
            keys["BY"].sign(b"tamga/attestation/v1", ru.net.chain_id, msgpack.packb([1, 0, b"\x01" * 32])),
        )
        node.on_gossip("BY", [msgpack.packb([GOSSIP_ATTESTATION, other.to_list()])])
        assert node.fatal_error is None  # one state is no majority of three
        second = Attestation(
            "KZ", header.height, 0, b"\x01" * 32,
            keys["KZ"].sign(b"tamga/attestation/v1", ru.net.chain_id, msgpack.packb([1, 0, b"\x01" * 32])),
        )
        node.on_gossip("KZ", [msgpack.packb([GOSSIP_ATTESTATION, second.to_list()])])
        assert node.fatal_error is not None and "DIVERGED" in node.fatal_error
        assert ru.app[STOP].is_set() and ru.app[EXIT_CODE][0] == EXIT_DIVERGED  # the process exits 3
        response = await ru.client.get("/v1/status")
        assert response.status == 200  # status still tells what happened
        refused = await ru.client.post("/v1/documents", json={})
        assert refused.status == 503 and (await refused.json())["error"] == "diverged"


async def test_a_quorum_attesting_another_block_above_final_heals(tmp_path: Path) -> None:
    """A Byzantine quorum attesting another hash at a height above our final height: the
    node does not stop; it rolls its ledger back to the final block, rewinds Raft there,
    and signs another block at the height it attested only in a later round, once its
    own is proven dead (the round rule)."""
    async with in_process_node(tmp_path, ("BY", "KZ", "RU"), "RU") as ru:
        node = ru.node
        header = node.store.apply_block([], 1, "RU").header  # a block only RU holds
        node.attestations.attest(header)
        keys = {s: KeyPair.load(ru.net.node(s).node_key) for s in ("BY", "KZ")}
        for state in ("BY", "KZ"):
            other = Attestation(
                state, header.height, 0, b"\x01" * 32,
                keys[state].sign(b"tamga/attestation/v1", ru.net.chain_id, msgpack.packb([1, 0, b"\x01" * 32])),
            )
            node.on_gossip(state, [msgpack.packb([GOSSIP_ATTESTATION, other.to_list()])])
        await poll_until_async(lambda: node.healing.heals == 1, 10, "a heal")
        assert node.fatal_error is None and not ru.app[STOP].is_set()
        assert node.store.head.height == 0 and node.store.header(1) is None
        [undone] = node.healing.undone()
        assert undone.attestation.block == (1, 0, header.hash) and undone.parent is None
        # Another block at height 1 in the same round (0) is never signed (evidence against
        # us); one of a later round is, since BY and KZ proved ours dead (2 of 3 elsewhere).
        same_round = node.store.apply_block([], 2, "BY").header
        node.attestations.attest(same_round)
        assert not node.store.has_attestation(1, "RU")
        node.store.rollback_to(0)
        node.attestations.rolled_back(0)
        later = node.store.apply_block([], 3, "BY", raft_term=1).header
        node.attestations.attest(later)
        assert node.store.has_attestation(1, "RU")
        status = await (await ru.client.get("/v1/status")).json()
        assert status["alarms"]["healed"]["count"] == 1


async def test_evidence_against_a_state_that_only_attests_heals_nothing(tmp_path: Path) -> None:
    """BY signs two hashes at a height it neither leads nor proposed: evidence, shown and
    refused as leader, but no rollback (else any one state could roll every honest node
    back at will); the same evidence against the proposer of a non-final block heals."""
    async with in_process_node(tmp_path, ("BY", "KZ", "RU"), "RU") as ru:
        node = ru.node
        header = node.store.apply_block([], 1, "RU").header  # proposed by RU itself
        node.attestations.attest(header)
        key = KeyPair.load(ru.net.node("BY").node_key)

        def by_attests(block_hash: bytes, height: int) -> bytes:
            att = Attestation("BY", height, 0, block_hash, key.sign(
                b"tamga/attestation/v1", ru.net.chain_id, msgpack.packb([height, 0, block_hash])))
            return msgpack.packb([GOSSIP_ATTESTATION, att.to_list()])

        # Two hashes we do not hold: block 1 stays non-final, so a heal would undo it.
        node.on_gossip("BY", [by_attests(b"\x04" * 32, 1), by_attests(b"\x05" * 32, 1)])
        await poll_until_async(lambda: node.evidence_against("BY"), 10, "evidence against BY")
        await poll_until_async(lambda: node.store.head.height == 1 and node.healing.heals == 0, 1, "no heal")
        assert node.store.head.height == 1 and node.healing.heals == 0
        # KZ proposed block 2, which is not final: its equivocation there heals.
        block2 = node.store.apply_block([], 2, "KZ").header
        node.attestations.attest(block2)
        kz = KeyPair.load(ru.net.node("KZ").node_key)
        items = [msgpack.packb([GOSSIP_ATTESTATION, Attestation("KZ", 2, 0, h, kz.sign(
            b"tamga/attestation/v1", ru.net.chain_id, msgpack.packb([2, 0, h]))).to_list()])
            for h in (b"\x02" * 32, b"\x03" * 32)]  # not ours: block 2 stays non-final (2 of 3)
        node.on_gossip("KZ", items)
        await poll_until_async(lambda: node.healing.heals == 1, 10, "a heal")
        assert node.store.head.height == 0 and node.fatal_error is None


async def test_a_document_whose_block_a_heal_undid_is_not_final_at_that_height(tmp_path: Path) -> None:
    """wait=final waits for the document's height to be final; a heal may have replaced
    the block at that height, which must not make the document look final there."""
    async with in_process_node(tmp_path, ("BY", "KZ", "RU"), "RU") as ru:
        node = ru.node
        doc = ru.docs.register(ru.regulator(), KeyPair.generate(), "RU", ["retailer"], "S")
        header = node.store.apply_block([doc.wire()], 1, "KZ").header  # KZ proposed it
        node.attestations.attest(header)
        kz = KeyPair.load(ru.net.node("KZ").node_key)
        node.on_gossip("KZ", [msgpack.packb([GOSSIP_ATTESTATION, Attestation("KZ", 1, 0, h, kz.sign(
            b"tamga/attestation/v1", ru.net.chain_id, msgpack.packb([1, 0, h]))).to_list()])
            for h in (b"\x02" * 32, b"\x03" * 32)])
        await poll_until_async(lambda: node.healing.heals == 1, 10, "a heal")
        # Another block at height 1, final (BY's and KZ's attestations: 2 of 3).
        other = node.store.apply_block([], 2, "BY").header
        node.attestations.attest(other)  # round 0 again: the round rule refuses it
        assert not node.store.has_attestation(1, "RU")  # RU attested the undone block there
        by = KeyPair.load(ru.net.node("BY").node_key)
        for state, key in (("BY", by), ("KZ", kz)):
            node.attestations.receive(state, Attestation(state, 1, 0, other.hash, key.sign(
                b"tamga/attestation/v1", ru.net.chain_id, msgpack.packb([1, 0, other.hash]))))
        await poll_until_async(lambda: node.is_final(1), 10, "block 1 final")
        assert not node.final_at(doc.id, 1)
