"""Throughput of the Raft core alone: RawNodes in one process, no faults, no disk.

Every node of the cluster runs in this one process, so the figure is the cost of the
whole cluster's consensus work on one core: proposals batched at the leader, appends,
acknowledgements, commit, apply (a hash chain), in-memory storage. A round stands for
a millisecond: the leader takes a batch of proposals, and every message sent in the
previous round arrives, in the order sent (one hop takes one round, so the leader
batches what arrives meanwhile, as on a network); every node ticks each
`ROUNDS_PER_TICK` rounds. Run:

    .venv/bin/python -m bench.raft_core_bench [--seconds 3] [--entry-bytes 200]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import random
import time
from collections import deque
from pathlib import Path

from consensus import (
    NONE,
    Config,
    EntryType,
    LogIndex,
    MemoryStorage,
    Message,
    NodeId,
    RawNode,
    Role,
)

SEED = 1
# Ticks of 10 ms with 1 ms rounds, as a node with a 10 ms tick would see them.
ROUNDS_PER_TICK = 10
# Rounds to elect a leader before giving up: many election timeouts.
ELECTION_ROUNDS_MAX = 10_000


class Member:
    """One RawNode, its in-memory log and its application: a hash chain of entries."""

    def __init__(self, node_id: NodeId, voters: tuple[NodeId, ...], rng: random.Random) -> None:
        self.storage = MemoryStorage(track_durability=False)
        config = Config(id=node_id, voters=voters, rng=random.Random(rng.getrandbits(64)))
        self.raw = RawNode(config, self.storage)
        self.applied = 0
        self.chain = b""

    def handle_ready(self, outbox: deque[Message]) -> None:
        """Persist, send, apply, advance: the driver contract, with no disk in between."""
        while self.raw.has_ready():
            rd = self.raw.ready()
            if rd.entries:
                self.storage.append(list(rd.entries))
            if rd.hard_state is not None:
                self.storage.set_hard_state(rd.hard_state)
            outbox.extend(rd.messages)
            for e in rd.committed_entries:
                if e.type == EntryType.NORMAL:
                    self.chain = hashlib.blake2b(self.chain + e.data, digest_size=16).digest()
                self.applied = e.index
            self.raw.advance(rd)


class Cluster:
    def __init__(self, nodes: int, seed: int = SEED) -> None:
        rng = random.Random(seed)
        voters = tuple(NodeId(i) for i in range(1, nodes + 1))
        self.members = {i: Member(i, voters, rng) for i in voters}
        self.outbox: deque[Message] = deque()
        self.rounds = 0

    def round(self) -> None:
        """Deliver the messages of the last round (their answers go out in the next); tick on schedule."""
        self.rounds += 1
        arriving, self.outbox = self.outbox, deque()
        for m in arriving:
            target = self.members[m.to]
            target.raw.step(m)
            target.handle_ready(self.outbox)
        if self.rounds % ROUNDS_PER_TICK == 0:
            for member in self.members.values():
                member.raw.tick()
                member.handle_ready(self.outbox)

    def leader(self) -> Member:
        for _ in range(ELECTION_ROUNDS_MAX):
            for member in self.members.values():
                status = member.raw.status()
                if status.role == Role.LEADER and status.leader != NONE:
                    return member
            self.round()
        raise RuntimeError(f"no leader within {ELECTION_ROUNDS_MAX} rounds (seed {SEED})")


def run(nodes: int, seconds: float, entry_bytes: int, batch: int) -> tuple[int, float]:
    cluster = Cluster(nodes)
    lead = cluster.leader()
    payload = b"x" * entry_bytes
    base = min(m.applied for m in cluster.members.values())
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(batch):
            lead.raw.propose(payload)
        lead.handle_ready(cluster.outbox)
        cluster.round()
    target = LogIndex(lead.raw.status().last_index)
    while min(m.applied for m in cluster.members.values()) < target:
        cluster.round()
    elapsed = time.perf_counter() - start
    return min(m.applied for m in cluster.members.values()) - base, elapsed


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--entry-bytes", type=int, default=200)
    parser.add_argument("--batch", type=int, default=64, help="proposals per round")
    args = parser.parse_args()
    print(f"machine: {_cpu_model()} x{os.cpu_count()}, Python {platform.python_version()}")
    print(f"{args.entry_bytes}-byte entries, {args.batch} proposals per round, no faults")
    for nodes in (3, 5):
        committed, elapsed = run(nodes, args.seconds, args.entry_bytes, args.batch)
        rate = committed / elapsed
        print(
            f"{nodes} nodes: {committed} entries committed and applied on every node "
            f"in {elapsed:.2f}s = {rate:,.0f} entries/s"
        )


if __name__ == "__main__":
    main()
