"""Throughput of the Raft core alone: RawNodes in the simulator, no faults, no disk.

Every node of the cluster runs in this one process, so the figure is the cost of the
whole cluster's consensus work on one core: proposals batched at the leader, appends,
acknowledgements, commit, apply (a hash chain), in-memory storage. Run:

    .venv/bin/python bench/raft_core_bench.py [--seconds 3] [--entry-bytes 200]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.consensus.sim import Sim  # noqa: E402


def run(nodes: int, seconds: float, entry_bytes: int, batch: int) -> tuple[int, float]:
    sim = Sim(seed=1, n=nodes, check=False, keep_values=False, durable=False)
    lead = sim.wait_leader()
    raw = sim.raw(lead)
    payload = b"x" * entry_bytes
    base = sim.applied(lead)
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(batch):
            raw.propose(payload)
        sim.handle_ready(sim.nodes[lead])
        sim.run_for(1)
    target = sim.raw(lead).status().last_index
    sim.wait_applied(target, max_ms=60_000)
    elapsed = time.perf_counter() - start
    return min(sim.applied(n) for n in sim.nodes) - base, elapsed


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
    parser.add_argument("--batch", type=int, default=64, help="proposals per virtual ms")
    args = parser.parse_args()
    print(f"machine: {_cpu_model()} x{os.cpu_count()}, Python {platform.python_version()}")
    print(f"{args.entry_bytes}-byte entries, {args.batch} proposals per virtual ms, no faults")
    for nodes in (3, 5):
        committed, elapsed = run(nodes, args.seconds, args.entry_bytes, args.batch)
        rate = committed / elapsed
        print(
            f"{nodes} nodes: {committed} entries committed and applied on every node "
            f"in {elapsed:.2f}s = {rate:,.0f} entries/s"
        )


if __name__ == "__main__":
    main()
