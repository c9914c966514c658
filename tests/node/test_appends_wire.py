"""Signed appends on the real peer socket of an in-process node (issue 11): an append
without valid signatures from its sender is dropped whole and counted; a signed one
reaches Raft; a conflicting header gossiped beside it is evidence the API shows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from consensus import Entry, EntryType, LogIndex, Message, MessageType, NodeId, Term, encode_message
from ledger import AppendEquivocation, KeyPair, SignedAppend
from node._appends import entry_digest, pack_envelope
from node._gossip import append_item, evidence_item
from node._keys import METRICS
from node._tls import client_context
from node._transport import pack_frame
from testnet import poll_until_async

from .helpers import InProcessNode, in_process_node


@pytest.fixture
async def ru(tmp_path: Path) -> AsyncIterator[InProcessNode]:
    """The RU node of a two-state chain; KZ's node is absent, its certificate and key are ours."""
    async with in_process_node(tmp_path, ("KZ", "RU"), "RU") as n:
        yield n


class KZ:
    """KZ's identity towards RU's peer API."""

    def __init__(self, n: InProcessNode) -> None:
        self.n = n
        layout = n.net.node("KZ")
        self.key = KeyPair.load(layout.node_key)
        self.id = NodeId(n.net.genesis.state("KZ").node_id)
        self.ru = NodeId(n.net.genesis.state("RU").node_id)
        ru_cert = (n.net.node("RU").dir / "tls.crt").read_text()
        self.ssl = client_context(layout.dir / "tls.crt", layout.dir / "tls.key", ru_cert)
        self.base = f"wss://{n.net.node('RU').peer_address}/peer"

    def append(self, term: int, data: bytes) -> Message:
        entry = Entry(Term(term), LogIndex(1), EntryType.NORMAL, data)
        return Message(MessageType.APP, to=self.ru, frm=self.id, term=Term(term), log_term=Term(0),
                       index=LogIndex(0), entries=(entry,), commit=LogIndex(0))

    def signed(self, m: Message, key: KeyPair | None = None, entry: Entry | None = None) -> SignedAppend:
        e = entry or m.entries[0]
        return SignedAppend.of_hash(key or self.key, self.n.net.chain_id, "KZ", e.term, e.index, entry_digest(e))

    async def send(self, socket: str, items: list[bytes]) -> None:
        async with aiohttp.ClientSession() as s, s.ws_connect(f"{self.base}/{socket}", ssl=self.ssl) as ws:
            await ws.send_bytes(pack_frame(items))


@pytest.fixture
def kz(ru: InProcessNode) -> KZ:
    return KZ(ru)


async def test_appends_without_a_valid_signature_are_dropped_whole_and_counted(ru: InProcessNode, kz: KZ) -> None:
    """No signature, a random one, one over another entry, one by another key: each
    counted under its reason, and Raft never sees the message (its term does not move)."""
    metrics = ru.app[METRICS]
    m = kz.append(5, b"block")
    other = Entry(Term(5), LogIndex(1), EntryType.NORMAL, b"another block")
    stranger = KeyPair.generate()
    items = [
        encode_message(m),
        pack_envelope(encode_message(m), [b"\x00" * 64]),
        pack_envelope(encode_message(m), [kz.signed(m, entry=other).signature]),
        pack_envelope(encode_message(m), [kz.signed(m, key=stranger).signature]),
    ]
    unsigned, bad = metrics.drops("append_unsigned"), metrics.drops("append_signature")
    await kz.send("raft", items)
    await poll_until_async(lambda: metrics.drops("append_unsigned") >= unsigned + 1
                           and metrics.drops("append_signature") >= bad + 3, 10, "four counted drops")
    driver = ru.node.driver
    assert driver.stats.messages_received == 0 and driver.status().term < 5


async def test_a_signed_append_reaches_raft_and_a_conflicting_header_is_evidence(ru: InProcessNode, kz: KZ) -> None:
    """The append signed by KZ's node key is taken (Raft moves to its term); KZ's signed
    header for another entry at the same (term, index), gossiped, is an
    AppendEquivocation the node stores, refuses KZ on and shows in /v1/evidence."""
    m = kz.append(5, b"block A")
    await kz.send("raft", [pack_envelope(encode_message(m), [kz.signed(m).signature])])
    await poll_until_async(lambda: ru.node.driver.status().term == 5, 10, "RU to follow term 5")
    other = Entry(Term(5), LogIndex(1), EntryType.NORMAL, b"block B")
    await kz.send("gossip", [append_item(kz.signed(m, entry=other))])
    await poll_until_async(lambda: ru.node.evidence_against("KZ"), 10, "evidence against KZ")
    listed = await (await ru.client.get("/v1/evidence")).json()
    (piece,) = listed["evidence"]
    assert piece["kind"] == "append_equivocation" and (piece["state"], piece["term"], piece["index"]) == ("KZ", 5, 1)
    assert piece["against"] is True
    full = await (await ru.client.get(f"/v1/evidence/{piece['id']}")).json()
    assert full["bytes"] and len(full["appends"]) == 2
    status = await (await ru.client.get("/v1/status")).json()
    assert status["evidence"]["against"] == ["KZ"]


async def test_append_evidence_gossiped_as_evidence_is_checked_kept_and_shown(ru: InProcessNode, kz: KZ) -> None:
    """The evidence item path carries the append kind: a proof gossiped whole (here by
    KZ itself; any peer relays it) is checked against genesis and held; a forged one
    (the second signature by another key) is refused and counted, never held."""
    a, b = kz.append(9, b"block A"), kz.append(9, b"block B")
    forged = AppendEquivocation(kz.signed(a), kz.signed(b, key=KeyPair.generate()))
    await kz.send("gossip", [evidence_item(forged)])
    await poll_until_async(lambda: ru.node.evidence.refused >= 1, 10, "the forged proof refused")
    assert not ru.node.evidence_against("KZ")
    proof = AppendEquivocation(kz.signed(a), kz.signed(b))
    await kz.send("gossip", [evidence_item(proof)])
    await poll_until_async(lambda: ru.node.evidence_against("KZ"), 10, "evidence against KZ")
    (piece,) = (await (await ru.client.get("/v1/evidence")).json())["evidence"]
    assert piece["id"] == proof.id.hex() and piece["kind"] == "append_equivocation"

