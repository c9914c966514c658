"""Benchmark (2): three in-process Raft nodes with LevelDB logs and real fsync.

Three Drivers share one event loop and a temporary directory on the local disk; their
messages go through the wire codec (unless --no-codec). Many clients keep one proposal
each in flight against the leader. Reported: committed entries per second (a proposal
counts once the leader's application has applied it), commit latency p50/p99 as the
client sees it, fsyncs per node, and, for comparison, the rate of single synchronous
LevelDB writes (put with sync=True) on the same disk in the same run.

    .venv/bin/python -m bench.raft_bench [--seconds N] [--clients N] [--entry-bytes N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import plyvel

from consensus import (
    Config,
    Driver,
    DriverConfig,
    Entry,
    LevelDBStorage,
    LogIndex,
    Message,
    NodeId,
    ProposalDropped,
    Snapshot,
    decode_message,
    encode_message,
)
from testnet import poll_until_async

IDS = (NodeId(1), NodeId(2), NodeId(3))
LEADER_TIMEOUT_S = 10.0


class CountingApp:
    """Applies by remembering the index: the benchmark measures Raft, not a ledger."""

    def __init__(self) -> None:
        self.index = LogIndex(0)

    async def apply(self, entries: Sequence[Entry]) -> None:
        self.index = entries[-1].index

    def applied_index(self) -> LogIndex:
        return self.index

    def snapshot(self) -> bytes:
        return b""

    async def restore(self, snapshot: Snapshot) -> None:
        self.index = snapshot.meta.index


class LoopbackTransport:
    def __init__(self, drivers: dict[NodeId, Driver], codec: bool) -> None:
        self.drivers, self.codec = drivers, codec

    def send(self, messages: Sequence[Message]) -> None:
        for m in messages:
            if self.codec:
                m = decode_message(encode_message(m))
            self.drivers[m.to].receive(m)


def sync_put_rate(directory: Path, duration_s: float) -> float:
    """Single 200-byte puts with sync=True per second on this disk."""
    db = plyvel.DB(str(directory / "sync-put"), create_if_missing=True)
    value = os.urandom(200)
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < duration_s:
        db.put(b"k%d" % n, value, sync=True)
        n += 1
    rate = n / (time.perf_counter() - start)
    db.close()
    return rate


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))
    return sorted_values[k]


async def run_cluster(args: argparse.Namespace, root: Path) -> dict[str, float]:
    drivers: dict[NodeId, Driver] = {}
    storages = []
    dc = DriverConfig(tick_interval_s=args.tick_ms / 1000)
    for node in IDS:
        storage = LevelDBStorage(root / f"node{node}")
        storages.append(storage)
        config = Config(id=node, voters=IDS, rng=random.Random(node))
        drivers[node] = Driver(config, storage, LoopbackTransport(drivers, args.codec), CountingApp(), dc)
    for d in drivers.values():
        await d.start()
    try:
        return await drive_load(args, drivers)
    finally:
        for d in drivers.values():
            await d.stop()
        for s in storages:
            s.close()


async def drive_load(args: argparse.Namespace, drivers: dict[NodeId, Driver]) -> dict[str, float]:
    leader = await poll_until_async(
        lambda: next((d for d in drivers.values() if d.is_leader), None), LEADER_TIMEOUT_S, "a leader",
        interval_s=0.01,
    )

    payload = os.urandom(args.entry_bytes)
    latencies: list[float] = []
    committed = 0
    dropped = 0
    measuring = False
    stop = False

    async def client() -> None:
        nonlocal committed, dropped
        while not stop:
            t0 = time.perf_counter()
            try:
                await leader.propose(payload, timeout_s=10)
            except ProposalDropped:
                dropped += 1  # leadership moved or the queue was full: back off a little
                await asyncio.sleep(0.01)
                continue
            if measuring:
                latencies.append(time.perf_counter() - t0)
                committed += 1

    tasks = [asyncio.ensure_future(client()) for _ in range(args.clients)]
    await asyncio.sleep(args.warmup_s)  # let the pipeline fill before measuring
    syncs_before = {n: d.stats.syncs for n, d in drivers.items()}
    measuring = True
    t_start = time.perf_counter()
    await asyncio.sleep(args.seconds)
    measuring = False
    elapsed = time.perf_counter() - t_start
    syncs = {n: d.stats.syncs - syncs_before[n] for n, d in drivers.items()}
    stop = True
    await asyncio.gather(*tasks, return_exceptions=True)
    latencies.sort()
    return {
        "committed_per_s": committed / elapsed,
        "committed": committed,
        "dropped": dropped,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": (latencies[-1] if latencies else float("nan")) * 1000,
        "leader_fsyncs_per_s": syncs[leader.node_id] / elapsed,
        "entries_per_leader_fsync": committed / max(1, syncs[leader.node_id]),
        "ticks_missed": sum(d.stats.ticks_missed for d in drivers.values()),
    }


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured duration")
    parser.add_argument("--warmup", dest="warmup_s", type=float, default=2.0, help="unmeasured lead-in")
    parser.add_argument("--clients", type=int, default=1000, help="proposals in flight")
    parser.add_argument("--entry-bytes", type=int, default=200)
    parser.add_argument("--tick-ms", type=float, default=50.0)
    parser.add_argument("--dir", type=Path, default=None, help="where the logs go (a temp dir)")
    parser.add_argument(
        "--no-codec", dest="codec", action="store_false", help="pass message objects instead of encoding them"
    )
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="tamga-raft-bench-", dir=args.dir))
    try:
        put_rate = sync_put_rate(root, 2.0)
        result = asyncio.run(run_cluster(args, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(f"machine:                       {machine()}")
    print(f"log directory:                 {root} (removed)")
    print(f"single sync LevelDB puts:      {put_rate:,.0f} /s")
    print(
        f"3 nodes, {args.clients} in flight, {args.entry_bytes}-byte entries, "
        f"codec {'on' if args.codec else 'off'}, {args.seconds:g} s measured"
    )
    print(
        f"committed entries:             {result['committed_per_s']:,.0f} /s "
        f"({int(result['committed']):,} in total, {int(result['dropped'])} dropped)"
    )
    print(
        f"commit latency:                p50 {result['p50_ms']:.1f} ms, "
        f"p99 {result['p99_ms']:.1f} ms, max {result['max_ms']:.1f} ms"
    )
    print(
        f"leader fsyncs:                 {result['leader_fsyncs_per_s']:,.0f} /s, "
        f"{result['entries_per_leader_fsync']:.0f} entries each"
    )
    print(f"ticks missed (loop too busy):  {int(result['ticks_missed'])}")
    target = result["committed_per_s"] >= 20_000 and result["p99_ms"] <= 50
    print(f"target (>= 20,000/s, p99 <= 50 ms): {'met' if target else 'NOT met'}")


if __name__ == "__main__":
    main()
