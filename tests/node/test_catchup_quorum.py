"""Catch-up believes a quorum of attestations and its own re-execution, never one peer
(finding 3): forged streams are refused and the next peer is asked."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlparse

import msgpack
import pytest

from consensus import LogIndex, Snapshot, SnapshotMeta
from ledger import Attestation, Block, Genesis, LedgerStore, Verifier
from node import _catchup
from node._admission import Verified
from node._catchup import PROCESSED_HEADER, CatchUp, catchup_quorum
from node._mempool import Mempool
from node._metrics import Metrics
from node._pipeline import ApplyPipeline
from node._transport import PeerLinks
from node._waiters import Waiters
from tests.ledger.world import World, make_genesis, seeded_key

pytestmark = pytest.mark.unit

RAFT_STEP = 10  # block n was committed at Raft index 10 n
BLOCKS = 3
HONEST = ("AM", "BY", "KZ", "KG")  # four of five: a Byzantine quorum attests every block


class _Content:
    def __init__(self, data: bytes) -> None:
        self._data = data

    async def iter_any(self) -> AsyncIterator[bytes]:
        for i in range(0, len(self._data), 97):  # chunks that cut items apart
            yield self._data[i:i + 97]


class _Response:
    def __init__(self, status: int, data: bytes, headers: dict[str, str]) -> None:
        self.status, self.headers, self.content = status, headers, _Content(data)
        self.released = False

    def release(self) -> None:
        self.released = True


class _Links:
    """What each peer serves: items [block bytes, [attestations]] by height, and headers."""

    def __init__(self, streams: dict[str, tuple[dict[int, list[Any]], dict[str, str]]]) -> None:
        self.streams = streams
        self.asked: list[str] = []

    async def get(self, peer: str, path: str, timeout_s: float = 30.0) -> _Response:
        self.asked.append(peer)
        if peer not in self.streams:
            return _Response(503, b"", {})
        items, headers = self.streams[peer]
        start = int(parse_qs(urlparse(path).query)["from"][0])
        data = b"".join(msgpack.packb(items[h], use_bin_type=True) for h in sorted(items) if h >= start)
        return _Response(200, data, headers)


def _source_chain(tmp: Path) -> tuple[Genesis, list[Block]]:
    """Three blocks at Raft indexes 10, 20, 30, as a peer holds them."""
    world = World(tmp / "source")
    for n in range(1, BLOCKS + 1):
        doc = world.doc(world.regulator("RU"), "register_participant", public_key=seeded_key(f"shop-{n}").public_key,
                        state="RU", roles=["retailer"], name=f"Shop {n}")
        world.time_ms += 1_000
        world.store.apply_block([doc.wire()], world.time_ms, "RU", raft_term=1, raft_index=RAFT_STEP * n)
    blocks = [cast(Block, world.store.block(n)) for n in range(1, BLOCKS + 1)]
    world.store.close()
    return world.genesis, blocks


def _attest(genesis: Genesis, block: Block, states: tuple[str, ...], signer: str | None = None) -> list[Any]:
    """Attestations of `block` by `states`, each signed by that state's node key (or all
    by `signer`'s key, which makes them forgeries for every other state)."""
    return [Attestation.make(seeded_key(f"node-{signer or s}"), genesis.chain_id, s, block.header).to_list()
            for s in states]


def _items(genesis: Genesis, blocks: list[Block], states: tuple[str, ...] = HONEST,
           signer: str | None = None) -> dict[int, list[Any]]:
    return {b.header.height: [b.encode(), _attest(genesis, b, states, signer)] for b in blocks}


@contextmanager
def _node(tmp: Path, genesis: Genesis, links: _Links) -> Iterator[tuple[CatchUp, LedgerStore, list[str]]]:
    """The catch-up of an RU node with an empty ledger, fetching through `links`."""
    store = LedgerStore(tmp / "node", genesis, sync=False)
    failures: list[str] = []
    pipeline = ApplyPipeline("RU", store, Mempool(1000, 1 << 20), set(), Verified(), Waiters(), Metrics("RU"),
                             lambda _block, _accepted: None, failures.append)
    catchup = CatchUp(genesis, "RU", store, Verifier(), pipeline, cast(PeerLinks, links),
                      leader=lambda: 0, fail=failures.append)
    try:
        yield catchup, store, failures
    finally:
        pipeline.close()
        store.close()


def _snapshot(index: int) -> Snapshot:
    return Snapshot(SnapshotMeta(index=LogIndex(index)))


@pytest.fixture(autouse=True)
def _short_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_catchup, "RESTORE_DEADLINE_S", 0.5)


def test_the_quorum_is_a_byzantine_quorum_of_genesis_states() -> None:
    """One function says how many states must attest a fetched block: a Byzantine quorum
    (4 of 5, 2 of 3), not a majority (3 of 5 was accepted before issue 11)."""
    assert catchup_quorum(make_genesis()) == 4
    assert catchup_quorum(make_genesis(("AM", "BY", "RU"))) == 2


async def test_forged_streams_are_refused_and_the_next_peer_gives_the_chain(tmp_path: Path) -> None:
    """Peers in order AM, BY, KZ, KG: AM's blocks lack a quorum, BY's attestations are all
    signed by BY's key under other states' names, KZ stops after one block and claims in
    its header to have processed everything; KG serves the attested chain. The node
    applies exactly KG's blocks, checked by its own execution, and reaches the index."""
    genesis, blocks = _source_chain(tmp_path)
    links = _Links({
        "AM": (_items(genesis, blocks, ("AM", "BY", "KZ")), {}),  # a majority is not final
        "BY": (_items(genesis, blocks, HONEST, signer="BY"), {}),
        "KZ": (_items(genesis, blocks[:1]), {PROCESSED_HEADER: str(10**9)}),
        "KG": (_items(genesis, blocks), {}),
    })
    with _node(tmp_path, genesis, links) as (catchup, store, failures):
        await catchup.restore(_snapshot(RAFT_STEP * BLOCKS))
        assert store.head.height == BLOCKS and store.head.hash == blocks[-1].header.hash
        assert store.head.raft_index == RAFT_STEP * BLOCKS
        assert links.asked == ["AM", "BY", "KZ", "KG"]
        assert catchup.refused_streams == 2  # AM and BY broke the rules; KZ only stopped short
        assert {a.state for a in store.attestations(BLOCKS)} == set(HONEST)
        assert failures == []


@pytest.mark.parametrize("case", ["too few attestations", "forged attestations", "attestations of another block",
                                  "tampered documents", "lying header only"])
async def test_no_forged_stream_alone_restores_the_node(tmp_path: Path, case: str) -> None:
    """With only a forging peer to ask, the node applies nothing and gives up at its
    deadline (before the fix it took the peer's blocks and believed its header)."""
    genesis, blocks = _source_chain(tmp_path)
    items = _items(genesis, blocks)
    if case == "too few attestations":
        items = _items(genesis, blocks, ("AM", "BY", "KZ", "KZ"))  # a majority, one state twice
    elif case == "forged attestations":
        items = _items(genesis, blocks, HONEST, signer="AM")
    elif case == "attestations of another block":
        other = [replace(b, header=replace(b.header, proposer="KZ")) for b in blocks]
        items = {h: [blocks[h - 1].encode(), _attest(genesis, other[h - 1], HONEST)] for h in items}
    elif case == "tampered documents":
        doc = blocks[0].documents[0]
        tampered = replace(blocks[0], documents=[doc[:-1] + bytes([doc[-1] ^ 1])])
        items[1] = [tampered.encode(), items[1][1]]
    elif case == "lying header only":
        items = {1: items[1]}
    headers = {PROCESSED_HEADER: str(10**9)}
    links = _Links({"AM": (items, headers)})
    with _node(tmp_path, genesis, links) as (catchup, store, failures):
        with pytest.raises(TimeoutError):
            await catchup.restore(_snapshot(RAFT_STEP * BLOCKS))
        expected_height = 1 if case == "lying header only" else 0
        assert store.head.height == expected_height
        assert failures == []


def test_a_stream_of_nested_empty_arrays_is_refused_before_it_is_built() -> None:
    """The block stream is a peer's bytes: megabytes of empty arrays inside one item are
    refused while decoding, not turned into millions of lists; a real item passes."""
    from node._catchup import Unproven, stream_unpacker

    unpacker, next_item = stream_unpacker()
    unpacker.feed(msgpack.packb([b"block", [[b"KZ", 1, b"h" * 32, b"s" * 64]]], use_bin_type=True))
    next_item()
    assert next(unpacker)[0] == b"block"
    bomb = b"\x92\xc4\x01x\xdc\x10\x00" + b"\xdc\x10\x00" + b"\x90" * 4096
    unpacker, next_item = stream_unpacker()
    unpacker.feed(bomb)
    next_item()
    with pytest.raises((Unproven, ValueError)):
        next(unpacker)
