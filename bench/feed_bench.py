"""The event feed under the single-document benchmark's load: does a stream keep up?

    .venv/bin/python -m bench.feed_bench --fresh [--duration 15] [--clients 64] [--json]
    .venv/bin/python -m bench.feed_bench --testnet DIR ...

64 clients submit signed single-code shipments with wait=commit to every node in turn,
as `bench.tamga_bench --kind single` does, while one reader (the buyer, whom every
shipment names) follows its feed as server-sent events from one node. For every
document the benchmark notes when its client heard "committed" and when the stream
delivered it; reported: committed and delivered documents/s, documents never
delivered, and the delivery delay (stream arrival minus commit answer; negative when
the stream was first) at p50/p99/max. The issue's target: the stream keeps up with the
committed rate, p99 delay under one second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

from bench.tamga_bench import Submitter, _documents, _setup, percentile
from node.client import NodeClient
from testnet import down, init_testnet, leader_agreed, load_testnet, up

# Codes prepared per second of run: above the single-document rate on this machine.
CODES_PER_SECOND = 2_000
# After the load stops, the stream gets this long to deliver what was committed.
DRAIN_S = 15.0


async def run_async(testnet_dir: Path | str, duration_s: float, clients: int) -> dict[str, Any]:
    net = load_testnet(testnet_dir)
    if leader_agreed(net) is None:
        raise RuntimeError(f"the testnet in {testnet_dir} has no agreed leader: is it up?")
    urls = [n.api_url for n in net.nodes.values()]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients * 2 + 8)) as session:
        sub = Submitter(session, urls, net.genesis)
        docs, producer, buyer, codes = await _setup(net, sub, "single", int(CODES_PER_SECOND * duration_s))
        wires = [d.wire() for d in _documents(docs, producer, buyer, codes, 1)]
        committed: dict[str, float] = {}
        arrived: dict[str, float] = {}
        reader = NodeClient(urls[1], buyer, session=session, genesis=net.genesis)

        async def follow() -> None:
            async for event in reader.stream_events(limit=500):
                if event.get("type") == "ship":
                    arrived[event["document_id"]] = time.perf_counter()

        stream = asyncio.create_task(follow())
        cursor = iter(range(len(wires)))
        started = time.perf_counter()
        deadline = started + duration_s

        async def client(i: int) -> None:
            while time.perf_counter() < deadline:
                index = next(cursor, None)
                if index is None:
                    return
                try:
                    (result,) = await sub.submit([wires[index]], i)
                except Exception:  # a failed request is not a commit; the bench goes on
                    continue
                if result.get("status") == "applied":
                    committed[result["id"]] = time.perf_counter()

        await asyncio.gather(*(client(i) for i in range(clients)))
        elapsed = time.perf_counter() - started
        drain_deadline = time.perf_counter() + DRAIN_S
        while time.perf_counter() < drain_deadline and not set(committed) <= set(arrived):
            await asyncio.sleep(0.1)
        stream.cancel()
        delays = sorted(arrived[d] - t for d, t in committed.items() if d in arrived)
        delivered_in_window = sum(1 for d in committed if d in arrived and arrived[d] <= started + elapsed)
        return {
            "clients": clients,
            "duration_s": round(elapsed, 2),
            "committed": len(committed),
            "committed_per_s": round(len(committed) / elapsed, 1),
            "delivered": sum(1 for d in committed if d in arrived),
            "delivered_per_s_in_window": round(delivered_in_window / elapsed, 1),
            "never_delivered": sum(1 for d in committed if d not in arrived),
            "delay_p50_ms": round(1000 * percentile(delays, 0.50), 1),
            "delay_p99_ms": round(1000 * percentile(delays, 0.99), 1),
            "delay_max_ms": round(1000 * delays[-1], 1) if delays else 0.0,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "load_average": [round(x, 2) for x in os.getloadavg()],
        }


def run(testnet_dir: Path | str, duration_s: float, clients: int) -> dict[str, Any]:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(run_async(testnet_dir, duration_s, clients))


def run_fresh(duration_s: float, clients: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tamga-feed-bench-") as tmp:
        net = init_testnet(Path(tmp) / "net", ("BY", "KZ", "RU"), config={"log": {"level": "WARNING"}})
        try:
            up(net.dir)
            return run(net.dir, duration_s, clients)
        finally:
            down(net.dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--testnet", help="directory of a running testnet")
    parser.add_argument("--fresh", action="store_true", help="start a 3-state testnet of its own")
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.fresh and not args.testnet:
        parser.error("give --testnet DIR or --fresh")
    result = run_fresh(args.duration, args.clients) if args.fresh else run(args.testnet, args.duration,
                                                                           args.clients)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        print(f"{key:>28}: {value}")


if __name__ == "__main__":
    main()
