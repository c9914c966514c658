"""Three real node processes on loopback: commit, crash the leader, catch up, agree, audit.

One testnet serves the whole module (starting it costs seconds); every test leaves all
three nodes running, and the fixture stops every process it started, also on failure.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ledger import Auditor, KeyPair
from node import NodeClient, NodeError
from testnet import (
    GTIN,
    DocFactory,
    Testnet,
    code_key,
    down,
    fetch_status,
    init_testnet,
    kill,
    leader_agreed,
    poll_until,
    poll_until_async,
    start,
    stop,
    up,
)

STATES = ("BY", "KZ", "RU")
# Ticks of 50 ms (elections in 0.5 to 1 s) and a log compacted every 40 entries, so
# that a node down for a few dozen blocks must catch up from a snapshot.
CONFIG = {"raft": {"tick_ms": 50, "snapshot_every_entries": 40}}
CODES = 3000


@dataclass
class Cluster:
    net: Testnet
    docs: DocFactory
    producer: KeyPair
    buyers: dict[str, KeyPair]
    codes: list[str]
    used: set[str] = field(default_factory=set)

    def url(self, state: str) -> str:
        return self.net.node(state).api_url

    def client(self, state: str, **kwargs: Any) -> NodeClient:
        """A client of one node over HTTPS, checking the certificate genesis pins for it."""
        return NodeClient(self.url(state), genesis=self.net.genesis, **kwargs)

    def fresh_codes(self, count: int) -> list[str]:
        out = [c for c in self.codes if c not in self.used][:count]
        assert len(out) == count, "the module ran out of codes"
        self.used.update(out)
        return out

    def leader(self, states: list[str] | None = None) -> str:
        found: list[str] = []

        def agreed() -> bool:
            leader = leader_agreed(self.net, states)
            if leader is not None and leader in (states or STATES):
                found.append(leader)
                return True
            return False

        poll_until(agreed, 30, "an agreed leader")
        return found[-1]

    def wait_agreement(self, timeout_s: float = 60) -> dict[str, Any]:
        """Every node at the same height with the same head hash; their status."""
        seen: dict[str, Any] = {}

        def same() -> bool:
            statuses = {s: fetch_status(self.net.node(s)) for s in STATES}
            if any(v is None for v in statuses.values()):
                return False
            seen.update(statuses)
            return len({(v["height"], v["head_hash"]) for v in statuses.values() if v}) == 1

        poll_until(same, timeout_s, "every node to hold the same head")
        return seen


async def _setup(net: Testnet) -> Cluster:
    docs = DocFactory(net.chain_id)
    producer = KeyPair.generate()
    buyers = {s: KeyPair.generate() for s in STATES}
    async with NodeClient(net.node("RU").api_url, genesis=net.genesis) as ru:
        batch = [docs.register(net.regulator("RU"), producer, "RU", ["producer"], "Producer"),
                 docs.register_product(net.regulator("RU"), producer)]
        batch += [docs.register(net.regulator(s), k, s, ["wholesaler"], f"Buyer {s}") for s, k in buyers.items()]
        results = (await ru.submit(batch))["results"]
        assert all(r["status"] == "applied" for r in results), results
        serials = docs.serials(CODES)
        codes = [code_key(GTIN, s) for s in serials]
        for doc in (docs.emit(net.regulator("RU"), producer, serials), docs.introduce(producer, codes)):
            result = await ru.submit(doc)
            assert result["status"] == "applied", result
    return Cluster(net, docs, producer, buyers, codes)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    net = init_testnet(tmp_path_factory.mktemp("cluster") / "net", STATES, config=CONFIG)
    try:
        up(net.dir)
        yield asyncio.run(_setup(net))
    finally:
        down(net.dir)


def ensure_all_up(cluster: Cluster) -> None:
    for state in STATES:
        start(cluster.net.dir, state)


async def doc_status(client: NodeClient, doc_id: str) -> str:
    return str((await client.get(f"/v1/documents/{doc_id}"))["status"])


async def test_documents_commit_through_every_node(cluster: Cluster) -> None:
    """A document submitted to any node commits, and all nodes then hold the same head."""
    buyer = cluster.buyers["KZ"]
    for state in STATES:
        async with cluster.client(state) as client:
            doc = cluster.docs.ship(cluster.producer, buyer, cluster.fresh_codes(1))
            result = await client.submit(doc)
            assert result["status"] == "applied", result
    statuses = cluster.wait_agreement()
    assert len({s["leader_state"] for s in statuses.values()}) == 1


async def test_the_same_code_shipped_twice_at_once_applies_once(cluster: Cluster) -> None:
    """Two shipments of one code to two receivers, through two nodes at the same moment: one applies."""
    for _ in range(3):
        code = cluster.fresh_codes(1)
        first = cluster.docs.ship(cluster.producer, cluster.buyers["KZ"], code)
        second = cluster.docs.ship(cluster.producer, cluster.buyers["BY"], code)
        async with cluster.client("BY") as a, cluster.client("KZ") as b:
            results = await asyncio.gather(a.submit(first), b.submit(second))
        assert sorted(r["status"] for r in results) == ["applied", "rejected"], results
        loser = next(r for r in results if r["status"] == "rejected")
        assert loser["reason"] in ("in_transit", "not_owner"), loser
    cluster.wait_agreement()


async def _load(cluster: Cluster, acked: dict[str, str], stop_at: asyncio.Event, workers: int) -> None:
    """Clients that submit single-code shipments with wait=commit to every node in turn."""
    buyer = cluster.buyers["KZ"]
    urls = [cluster.url(s) for s in STATES]

    async def worker(i: int) -> None:
        turn = itertools.count(i)
        async with NodeClient(urls[0], timeout_s=10, genesis=cluster.net.genesis) as client:
            while not stop_at.is_set():
                doc = cluster.docs.ship(cluster.producer, buyer, cluster.fresh_codes(1))
                client.base_url = urls[next(turn) % len(urls)]
                try:
                    result = await client.submit(doc, timeout_ms=5000)
                except (TimeoutError, NodeError, OSError, Exception):
                    await asyncio.sleep(0.05)
                    continue
                if result.get("status") in ("applied", "rejected"):
                    acked[result["id"]] = result["status"]

    await asyncio.gather(*(worker(i) for i in range(workers)))


async def test_leader_killed_under_load_loses_nothing_acknowledged(cluster: Cluster) -> None:
    """SIGKILL the leader under load: a new leader takes over, every acknowledged document
    stays, and the killed node restarts and catches up."""
    ensure_all_up(cluster)
    old = cluster.leader()
    acked: dict[str, str] = {}
    stop_at = asyncio.Event()
    load = asyncio.ensure_future(_load(cluster, acked, stop_at, workers=12))
    try:
        await poll_until_async(lambda: len(acked) >= 150, 60, "acknowledgements before the kill")
        await asyncio.to_thread(kill, cluster.net.dir, old)
        before_kill = len(acked)
        survivors = [s for s in STATES if s != old]
        new = await asyncio.to_thread(cluster.leader, survivors)
        assert new != old
        await poll_until_async(lambda: len(acked) >= before_kill + 150, 60, "acknowledgements after the kill")
    finally:
        stop_at.set()
        await load
    assert all(status == "applied" for status in acked.values()), "single-code shipments of fresh codes apply"
    async with cluster.client(new, key=cluster.producer) as client:
        statuses = await asyncio.gather(*(doc_status(client, doc_id) for doc_id in acked))
    assert set(statuses) == {"applied"}, f"{statuses.count('unknown')} acknowledged documents are missing"
    await asyncio.to_thread(start, cluster.net.dir, old)
    await asyncio.to_thread(cluster.wait_agreement)


async def test_documents_admitted_while_the_leader_is_dead_reach_the_next_leader(cluster: Cluster) -> None:
    """Followers forward documents to the leader only: what a follower admitted while the
    leader was dead is sent to the next leader as soon as it appears, and commits."""
    ensure_all_up(cluster)
    old = cluster.leader()
    await asyncio.to_thread(kill, cluster.net.dir, old)
    follower = next(s for s in STATES if s != old)
    docs = [cluster.docs.ship(cluster.producer, cluster.buyers["BY"], cluster.fresh_codes(1)) for _ in range(5)]
    try:
        async with cluster.client(follower, key=cluster.producer) as client:
            pending = [await client.submit(doc, wait=False) for doc in docs]
            assert {p["status"] for p in pending} == {"pending"}, pending

            async def all_applied() -> bool:
                statuses = await asyncio.gather(*(doc_status(client, p["id"]) for p in pending))
                return set(statuses) == {"applied"}

            await poll_until_async(all_applied, 30, "the documents admitted during the election to commit")
    finally:
        await asyncio.to_thread(start, cluster.net.dir, old)
    await asyncio.to_thread(cluster.wait_agreement)


async def test_a_node_far_behind_catches_up_from_a_snapshot(cluster: Cluster) -> None:
    """A node down while the others commit more than a compaction interval restores a
    snapshot by fetching and re-executing the blocks it lacks, then follows again."""
    ensure_all_up(cluster)
    leader = cluster.leader()
    lagging = next(s for s in STATES if s != leader)
    await asyncio.to_thread(kill, cluster.net.dir, lagging)
    height_before = fetch_status(cluster.net.node(leader))["height"]  # type: ignore[index]
    async with cluster.client(leader) as client:
        for _ in range(int(CONFIG["raft"]["snapshot_every_entries"] * 1.5)):
            doc = cluster.docs.ship(cluster.producer, cluster.buyers["BY"], cluster.fresh_codes(1))
            assert (await client.submit(doc))["status"] == "applied"
    assert fetch_status(cluster.net.node(leader))["height"] > height_before + 40  # type: ignore[index]
    log_size = cluster.net.node(lagging).log.stat().st_size
    await asyncio.to_thread(start, cluster.net.dir, lagging)
    await asyncio.to_thread(cluster.wait_agreement)
    new_log = cluster.net.node(lagging).log.read_text()[log_size:]
    assert "restoring: fetching blocks" in new_log, new_log[-2000:]


async def test_every_node_agrees_and_the_chain_audits(cluster: Cluster, tmp_path: Path) -> None:
    """All nodes hold the same head, and the auditor verifies a copy of one node's chain."""
    ensure_all_up(cluster)
    statuses = cluster.wait_agreement()
    state = random.choice(STATES)
    await asyncio.to_thread(stop, cluster.net.dir, state)  # a clean stop, so the copy is consistent
    copy = tmp_path / "ledger"
    shutil.copytree(cluster.net.node(state).data_dir / "ledger", copy)
    await asyncio.to_thread(start, cluster.net.dir, state)
    with Auditor(cluster.net.genesis, tmp_path / "replica") as auditor:
        report = auditor.verify_data_dir(copy)
    assert report.ok, report.failure
    assert report.head_hash.hex() == statuses[state]["head_hash"]
    assert report.height == statuses[state]["height"] and report.final_height >= report.height - 2
