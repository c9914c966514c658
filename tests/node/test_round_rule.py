"""The round rule in the node: a replacement block waits for the proof and is signed as soon as it completes, across a restart too."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ledger import Attestation, BlockHeader, KeyPair
from ledger._chain import attestation_message
from ledger._identity import DOMAIN_ATTESTATION
from node import _attestations as node_attestations
from node import create_app, load_config
from node._gossip import GOSSIP_ATTESTATION
from node._keys import NODE
from node._node import Node
from testnet import poll_until_async

from .helpers import InProcessNode, in_process_node

STATES = ("BY", "KZ", "RU")  # n = 3: f = 0, a quorum is 2


def signed(n: InProcessNode, state: str, height: int, round_: int, block_hash: bytes) -> Attestation:
    key = KeyPair.load(n.net.node(state).node_key)
    message = attestation_message(height, round_, block_hash)
    return Attestation(state, height, round_, block_hash, key.sign(DOMAIN_ATTESTATION, n.net.chain_id, message))


def item(att: Attestation) -> bytes:
    out: bytes = msgpack.packb([GOSSIP_ATTESTATION, att.to_list()], use_bin_type=True)
    return out


async def split_and_heal(ru: InProcessNode) -> BlockHeader:
    """RU applies and attests KZ's block 1 (round 0); KZ attests two other blocks at
    height 1 in round 0 (evidence: RU heals back to nothing final). Then the honest
    leader's block 1 of round 1 arrives: the one RU should sign, once its own is dead."""
    node = ru.node
    header = node.store.apply_block([], 1, "KZ").header
    node.attestations.attest(header)
    node.on_gossip("KZ", [item(signed(ru, "KZ", 1, 0, h)) for h in (b"\x02" * 32, b"\x03" * 32)])
    await poll_until_async(lambda: node.healing.heals == 1, 10, "a heal")
    replacement = node.store.apply_block([], 2, "BY", raft_term=1).header
    node.attestations.attest(replacement)
    return replacement


async def test_a_replacement_block_waits_for_the_proof_and_is_signed_when_it_completes(tmp_path: Path) -> None:
    """Before the round rule RU never signed the block replacing one it attested (no new final block ever); now it waits while its old block might still be final, and signs the moment BY's attestation proves it dead."""
    async with in_process_node(tmp_path, STATES, "RU") as ru:
        node = ru.node
        replacement = await split_and_heal(ru)
        # Only KZ (known hostile, but f = 0 here) attested elsewhere: 2 of 3 could still
        # attest RU's old block, a quorum. Not yet.
        assert not node.store.has_attestation(1, "RU") and node.attestations.unsigned() == [1]
        status = await (await ru.client.get("/v1/status")).json()
        assert status["finality"]["unsigned_heights"] == [1]
        # BY attests the replacement (round 1): KZ and BY elsewhere, 1 of 3 left: dead.
        node.on_gossip("BY", [item(signed(ru, "BY", 1, 1, replacement.hash))])
        assert node.store.has_attestation(1, "RU") and node.attestations.unsigned() == []
        assert node.is_final(1)  # BY's and RU's: 2 of 3
        ours = [a for a in node.store.attestations(1) if a.state == "RU"]
        assert [a.block for a in ours] == [(1, 1, replacement.hash)]


async def test_a_waiting_block_waits_again_after_a_restart(tmp_path: Path) -> None:
    """A block waiting for the proof when the node stops is asked about again after it starts: the healing file keeps what RU attested (with its round), and the next attestation completes the proof."""
    async with in_process_node(tmp_path, STATES, "RU") as ru:
        replacement = await split_and_heal(ru)
        assert ru.node.attestations.unsigned() == [1]
        await ru.client.close()
        app = create_app(load_config(ru.net.node("RU").config))
        client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
        await client.start_server()
        try:
            node: Node = app[NODE]
            [undone] = node.healing.undone()
            assert undone.attestation.round == 0 and undone.attestation.block_hash != replacement.hash
            assert node.attestations.unsigned() == [1] and not node.store.has_attestation(1, "RU")
            node.on_gossip("BY", [item(signed(ru, "BY", 1, 1, replacement.hash))])
            assert node.store.has_attestation(1, "RU") and node.attestations.unsigned() == []
        finally:
            await client.close()


async def test_blocks_past_the_held_bound_are_signed_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks above a waiting one wait for it (their parent unsigned); more than the held bound are picked up from the store once the held ones are signed, so none is left unsigned."""
    monkeypatch.setattr(node_attestations, "UNSIGNED_BLOCKS_MAX", 3)
    async with in_process_node(tmp_path, STATES, "RU") as ru:
        node = ru.node
        replacement = await split_and_heal(ru)
        for i in range(5):
            node.attestations.attest(node.store.apply_block([], 3 + i, "BY", raft_term=1).header)
        assert node.attestations.unsigned() == [1, 2, 3]
        node.on_gossip("BY", [item(signed(ru, "BY", 1, 1, replacement.hash))])
        assert node.attestations.unsigned() == []
        assert all(node.store.has_attestation(h, "RU") for h in range(1, 7))
