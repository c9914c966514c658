"""A node's final height, wait=final, and equivocation evidence (issue 11).

A two-state chain (KZ, RU) with only RU running: its Byzantine quorum is 2 of 2, so a
block is final once KZ's attestation arrives, which the test sends by gossip with KZ's
node key, as a hostile or honest KZ could."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgpack
import pytest

from ledger import Attestation, BlockHeader, Evidence, KeyPair, Verifier
from ledger._chain import attestation_message
from ledger._identity import DOMAIN_ATTESTATION
from node._evidence import EVIDENCE_PER_STATE_MAX, EvidenceStore
from node._gossip import GOSSIP_ATTESTATION, GOSSIP_EVIDENCE, decode_item, evidence_item
from node._keys import METRICS
from testnet import poll_until_async

from .helpers import InProcessNode, in_process_node


@pytest.fixture
async def ru(tmp_path: Path) -> AsyncIterator[InProcessNode]:
    async with in_process_node(tmp_path, ("KZ", "RU"), "RU") as n:
        yield n


def kz_key(n: InProcessNode) -> KeyPair:
    return KeyPair.load(n.net.node("KZ").node_key)


def kz_attests(n: InProcessNode, height: int, block_hash: bytes) -> Attestation:
    signature = kz_key(n).sign(DOMAIN_ATTESTATION, n.net.chain_id, attestation_message(height, 0, block_hash))
    return Attestation("KZ", height, 0, block_hash, signature)


def gossip_attestation(n: InProcessNode, att: Attestation) -> None:
    n.node.on_gossip("KZ", [msgpack.packb([GOSSIP_ATTESTATION, att.to_list()], use_bin_type=True)])


def apply_block(n: InProcessNode) -> BlockHeader:
    """A block applied directly (KZ is absent, so Raft cannot commit one), attested by RU."""
    header = n.node.store.apply_block([], n.node.store.head.time_ms + 1, "RU").header
    n.node.attestations.attest(header)
    n.node.finality.advance()
    return header


async def test_a_block_is_final_only_once_a_byzantine_quorum_attests_it(ru: InProcessNode) -> None:
    """RU's own attestation is one of two: not final; KZ's makes it final, in status,
    metrics and the document view; the final height survives a restart through its hint."""
    header = apply_block(ru)
    status = await (await ru.client.get("/v1/status")).json()
    assert status["height"] == 1 and status["final_height"] == 0
    assert status["finality"]["gap_blocks"] == 1
    gossip_attestation(ru, kz_attests(ru, 1, header.hash))
    status = await (await ru.client.get("/v1/status")).json()
    assert status["final_height"] == 1 and status["finality"]["gap_blocks"] == 0
    metrics = await (await ru.client.get("/metrics")).text()
    assert 'tamga_final_height{state="RU"} 1.0' in metrics
    ru.node.finality.close()
    assert (ru.node.config.data_dir / "final_height").read_text() == "1"


async def test_wait_final_answers_once_the_block_is_final(ru: InProcessNode) -> None:
    """wait=final holds the answer while the block is applied but not final, then gives
    200 with final: true; with a short timeout it says 202, applied, final: false."""
    waiting = asyncio.create_task(ru.node.wait_final(1, 10.0))
    await asyncio.sleep(0)
    header = apply_block(ru)
    assert not waiting.done()
    gossip_attestation(ru, kz_attests(ru, 1, header.hash))
    assert await asyncio.wait_for(waiting, 5)
    assert not await ru.node.wait_final(2, 0.05)


async def test_wait_final_over_http_on_a_one_state_chain(tmp_path: Path) -> None:
    """One state is its own Byzantine quorum: wait=final answers 200 with final: true, and
    the document view and code history say final; a block not final within the timeout
    gets 202 with its outcome and final: false."""
    async with in_process_node(tmp_path) as n:
        await poll_until_async(lambda: n.node.proposer.can_propose(), 10, "the node to lead")
        producer = KeyPair.generate()
        status, body = await n.submit(n.docs.register(n.regulator(), producer, "RU", ["producer"], "P"),
                                      wait="final")
        assert status == 200 and body["status"] == "applied" and body["final"] is True, body
        path = f"/v1/documents/{body['id']}"
        view = await (await n.client.get(path, headers=n.signed(n.regulator(), path))).json()
        assert view["final"] is True
        status, body = await n.submit(n.docs.register(n.regulator(), KeyPair.generate(), "RU", ["retailer"], "R"))
        assert status == 200 and "final" in body  # wait=commit says whether it is final already

        async def never(height: int, timeout_s: float) -> bool:
            return False

        n.node.finality.wait_final = never  # type: ignore[method-assign]
        status, body = await n.submit(n.docs.register(n.regulator(), KeyPair.generate(), "RU", ["retailer"], "S"),
                                      wait="final", timeout_ms="200")
        assert status == 202 and body["status"] == "applied" and body["final"] is False
        assert "not final" in body["message"]


async def test_a_provenance_bundle_is_served_only_once_final(ru: InProcessNode) -> None:
    """While the code's blocks lack KZ's attestation the bundle is refused 409 not_final
    (it would not verify); once KZ attests, the bundle is served and verifies."""
    from ledger import ProvenanceBundle, verify_provenance
    from testnet import GTIN, code_key

    producer = KeyPair.generate()
    serials = ru.docs.serials(1)
    store = ru.node.store
    headers = []
    for doc in (ru.docs.register(ru.regulator(), producer, "RU", ["producer"], "P"),
                ru.docs.register_product(ru.regulator(), producer),  # the catalogue entry emit needs
                ru.docs.emit(ru.regulator(), producer, serials)):
        header = store.apply_block([doc.wire()], int(time.time() * 1000), "RU").header
        ru.node.attestations.attest(header)
        headers.append(header)
    path = f"/v1/proofs/codes/{code_key(GTIN, serials[0])}"
    refused = await ru.client.get(path, headers=ru.signed(ru.regulator(), path))
    assert refused.status == 409 and (await refused.json())["error"] == "not_final"
    for header in headers:
        gossip_attestation(ru, kz_attests(ru, header.height, header.hash))
    raw = await ru.client.get(path, headers={**ru.signed(ru.regulator(), path), "Accept": "application/msgpack"})
    assert raw.status == 200
    verify_provenance(ProvenanceBundle.decode(await raw.read()), ru.net.genesis)


async def test_an_attestation_equivocation_becomes_evidence_everywhere_it_shows(ru: InProcessNode) -> None:
    """KZ attests our block and another at the same height: RU builds evidence, keeps it
    on disk, raises the alarm, shows it in status, /metrics and /v1/evidence, and refuses
    KZ's node as Raft leader."""
    header = apply_block(ru)
    gossip_attestation(ru, kz_attests(ru, 1, header.hash))
    assert len(ru.node.evidence) == 0
    gossip_attestation(ru, kz_attests(ru, 1, b"\x07" * 32))
    assert len(ru.node.evidence) == 1 and ru.node.evidence_against("KZ")
    assert ru.node.defence.leader_refused(ru.net.genesis.state("KZ").node_id)
    status = await (await ru.client.get("/v1/status")).json()
    assert status["evidence"]["against"] == ["KZ"] and status["alarms"]["equivocation"]["count"] == 1
    listing = await (await ru.client.get("/v1/evidence")).json()
    (piece,) = listing["evidence"]
    assert piece["state"] == "KZ" and piece["height"] == 1 and piece["against"] is True
    one = await (await ru.client.get(f"/v1/evidence/{piece['id']}")).json()
    evidence = Evidence.decode(bytes.fromhex(one["bytes"]))
    assert evidence.verify(ru.net.genesis, Verifier())
    missing = await ru.client.get("/v1/evidence/" + "00" * 32)
    assert missing.status == 404 and (await missing.json())["error"] == "unknown_evidence"
    assert 'tamga_evidence{state="RU"} 1.0' in await (await ru.client.get("/metrics")).text()
    # Kept on disk: a new store over the same directory holds it.
    again = EvidenceStore(ru.node.config.data_dir / "evidence", ru.net.genesis, Verifier(), lambda s: 0)
    assert [e.id for e in again.all()] == [evidence.id]


async def test_a_conflict_seen_first_is_evidence_when_the_agreeing_one_follows(ru: InProcessNode) -> None:
    """The order does not matter: another hash first, then ours, from KZ, is evidence too."""
    header = apply_block(ru)
    gossip_attestation(ru, kz_attests(ru, 1, b"\x07" * 32))
    assert len(ru.node.evidence) == 0
    gossip_attestation(ru, kz_attests(ru, 1, header.hash))
    assert len(ru.node.evidence) == 1


async def test_gossiped_evidence_is_checked_before_it_is_kept(ru: InProcessNode) -> None:
    """Valid evidence from a peer is kept; a forged signature or junk bytes are not."""
    drops = ru.app[METRICS].frames_dropped._value.get()
    a, b = kz_attests(ru, 5, b"\x01" * 32), kz_attests(ru, 5, b"\x02" * 32)
    forged = Evidence.of(a, Attestation("KZ", 5, 0, b"\x03" * 32, b"\x00" * 64))
    ru.node.on_gossip("KZ", [evidence_item(forged)])
    assert len(ru.node.evidence) == 0 and ru.node.evidence.refused == 1
    ru.node.on_gossip("KZ", [msgpack.packb([GOSSIP_EVIDENCE, b"\x93" * 700]),
                             msgpack.packb([GOSSIP_EVIDENCE, [1, 2]])])
    assert ru.app[METRICS].frames_dropped._value.get() == drops + 2
    ru.node.on_gossip("KZ", [evidence_item(Evidence.of(a, b))])
    assert len(ru.node.evidence) == 1 and ru.node.evidence_against("KZ")


def test_evidence_items_decode_bounded_and_the_store_is_bounded(tmp_path: Path) -> None:
    """An evidence gossip item round-trips; the store keeps at most a bound per state."""
    from tests.ledger.world import make_genesis, seeded_key

    genesis = make_genesis()
    key = seeded_key("node-KZ")

    def att(height: int, h: bytes) -> Attestation:
        message = attestation_message(height, 0, h)
        return Attestation("KZ", height, 0, h, key.sign(DOMAIN_ATTESTATION, genesis.chain_id, message))

    evidence = Evidence.of(att(1, b"\x01" * 32), att(1, b"\x02" * 32))
    assert decode_item(evidence_item(evidence)) == (GOSSIP_EVIDENCE, evidence)
    store = EvidenceStore(tmp_path / "ev", genesis, Verifier(), lambda s: 0)
    for height in range(1, EVIDENCE_PER_STATE_MAX + 5):
        store.add(Evidence.of(att(height, b"\x01" * 32), att(height, b"\x02" * 32)))
    assert len(store) == EVIDENCE_PER_STATE_MAX and store.refused == 4
    assert len(list((tmp_path / "ev").iterdir())) == EVIDENCE_PER_STATE_MAX
    # Cleared by governance at height 100: evidence about lower heights no longer holds.
    cleared = EvidenceStore(tmp_path / "ev", genesis, Verifier(), lambda s: 100 if s == "KZ" else 0)
    assert not cleared.against("KZ") and store.against("KZ")


def test_after_a_clear_new_evidence_against_the_state_is_kept_again(tmp_path: Path) -> None:
    """A state whose evidence filled the bound and was cleared: a new equivocation above
    the cleared height is kept and holds again (the hostile table found this)."""
    from tests.ledger.world import make_genesis, seeded_key

    genesis = make_genesis()
    key = seeded_key("node-KZ")

    def att(height: int, h: bytes) -> Attestation:
        message = attestation_message(height, 0, h)
        return Attestation("KZ", height, 0, h, key.sign(DOMAIN_ATTESTATION, genesis.chain_id, message))

    cleared = [0]
    store = EvidenceStore(tmp_path / "ev", genesis, Verifier(), lambda s: cleared[0])
    for height in range(1, EVIDENCE_PER_STATE_MAX + 1):
        assert store.add(Evidence.of(att(height, b"\x01" * 32), att(height, b"\x02" * 32)))
    cleared[0] = 100
    assert not store.against("KZ")
    assert not store.add(Evidence.of(att(50, b"\x01" * 32), att(50, b"\x03" * 32)))  # below the clear
    assert store.add(Evidence.of(att(150, b"\x01" * 32), att(150, b"\x02" * 32)))
    assert store.against("KZ")
    assert len(store) <= 2 * EVIDENCE_PER_STATE_MAX
