"""End-to-end benchmark of a running testnet: signed documents committed per second.

    .venv/bin/python -m bench.tamga_bench --testnet DIR [--kind single|shipment]
        [--duration 10] [--clients 64] [--batch 1] [--fresh [--plain-http]] [--json]

Clients (asyncio, in this process) submit signed documents with wait=commit to every
node in turn and time each until its commit answer: single-code shipments, or
shipments of 1,000 codes. Before the clock starts, the benchmark registers a producer
and a buyer, emits and introduces the codes it will ship, and signs every document
(signing is the client's work, and here it would take CPU from the nodes on the same
machine). Reported: committed documents/s, codes/s, latency p50/p95/p99, and the CPU
each node process used during the run (percent of one core).

With --fresh it creates, starts and finally stops a three-state testnet of its own in
a temporary directory instead of using --testnet.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

from bench.chart import write_chart
from ledger import CODES_PER_DOCUMENT_MAX, Genesis, KeyPair, SignedDocument
from node.client import NodeClient
from testnet import (
    GTIN,
    DocFactory,
    Testnet,
    code_key,
    down,
    init_testnet,
    leader_agreed,
    load_testnet,
    node_pid,
    up,
)

SHIPMENT_CODES = 1000
# How many documents the benchmark prepares per second of run: more than any run
# consumes, so that the clients never wait for work. Shipments: the best run so far
# committed 68,759 codes/s; every code prepared costs an emission and an introduction
# in the setup (300,000 per second of run took longer than the run itself), so the
# ceiling is 100,000 and a run that exhausts it says so (clients then return early).
SINGLE_RATE_CEILING = 6_000
SHIPMENT_CODES_CEILING = 100_000
# How long a node may hold a submission for its commit: measured documents, and the
# larger setup documents (emissions of up to 30,000 codes).
COMMIT_WAIT_MS = 30_000
SETUP_COMMIT_WAIT_MS = 60_000
# Time for a request beyond the node's own wait.
REQUEST_TIMEOUT_S = 120.0


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def machine_cpu_seconds() -> float:
    """CPU time used by the whole machine (all processes, user and system), in seconds."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    busy = sum(int(v) for i, v in enumerate(fields) if i not in (3, 4))  # not idle, not iowait
    return busy / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Submitter:
    """Submits to the nodes in turn, through one client per node over one shared session."""

    def __init__(self, session: aiohttp.ClientSession, urls: list[str], genesis: Genesis,
                 wait: str = "commit") -> None:
        self.wait = wait  # "commit", or "final": answered once the block is final too
        # Each client checks its node's API certificate against the pin in genesis.
        self.clients = [NodeClient(url, session=session, timeout_s=REQUEST_TIMEOUT_S, genesis=genesis)
                        for url in urls]

    async def submit(
        self, wires: list[bytes], node: int, timeout_ms: int = COMMIT_WAIT_MS
    ) -> list[dict[str, Any]]:
        client = self.clients[node % len(self.clients)]
        one = len(wires) == 1
        value = await client.submit_wires(wires[0] if one else wires, wait=self.wait, timeout_ms=timeout_ms)
        return [value] if one else list(value["results"])


async def _setup(net: Testnet, sub: Submitter, kind: str, codes_needed: int) -> tuple[DocFactory, KeyPair,
                                                                                          KeyPair, list[str]]:
    states = list(net.nodes)
    home, away = states[-1], states[0]
    docs = DocFactory(net.chain_id)
    producer, buyer = KeyPair.generate(), KeyPair.generate()
    regs = [docs.register(net.regulator(home), producer, home, ["producer"], "Bench producer"),
            docs.register_product(net.regulator(home), producer),
            docs.register(net.regulator(away), buyer, away, ["wholesaler"], "Bench buyer")]
    results = await sub.submit([d.wire() for d in regs], 0)
    # The product is in the catalogue already when the network served a benchmark before.
    if not all(r["status"] == "applied" or r["reason"] == "already_exists" for r in results):
        raise RuntimeError(f"setup failed: {results}")
    codes: list[str] = []
    pending = []
    while len(codes) < codes_needed:
        serials = docs.serials(min(CODES_PER_DOCUMENT_MAX, codes_needed - len(codes)))
        batch = [code_key(GTIN, s) for s in serials]
        pending.append((docs.emit(net.regulator(home), producer, serials), docs.introduce(producer, batch)))
        codes.extend(batch)
    for emit, introduce in pending:
        for doc in (emit, introduce):
            (result,) = await sub.submit([doc.wire()], 0, timeout_ms=SETUP_COMMIT_WAIT_MS)
            if result["status"] != "applied":
                raise RuntimeError(f"setup failed: {result}")
    return docs, producer, buyer, codes


def _documents(docs: DocFactory, producer: KeyPair, buyer: KeyPair, codes: list[str],
               per_doc: int) -> Iterator[SignedDocument]:
    for i in range(0, len(codes) - per_doc + 1, per_doc):
        yield docs.ship(producer, buyer, codes[i:i + per_doc])


async def run_bench_async(
    testnet_dir: Path | str, kind: str = "single", duration_s: float = 10.0, clients: int = 64,
    batch: int = 1, progress: Callable[[float], None] | None = None, wait: str = "commit",
) -> dict[str, Any]:
    if kind not in ("single", "shipment"):
        raise ValueError("kind is single or shipment")
    net = load_testnet(testnet_dir)
    if leader_agreed(net) is None:
        raise RuntimeError(f"the testnet in {testnet_dir} has no agreed leader: is it up?")
    per_doc = 1 if kind == "single" else SHIPMENT_CODES
    codes_needed = int((SINGLE_RATE_CEILING if kind == "single" else SHIPMENT_CODES_CEILING) * duration_s)
    urls = [n.api_url for n in net.nodes.values()]
    connector = aiohttp.TCPConnector(limit=clients * 2 + 8)
    async with aiohttp.ClientSession(connector=connector) as session:
        sub = Submitter(session, urls, net.genesis)
        docs, producer, buyer, codes = await _setup(net, sub, kind, codes_needed)
        wires = [d.wire() for d in _documents(docs, producer, buyer, codes, per_doc)]
        sub.wait = wait  # the setup waits for the commit only; the measured documents as asked
        result = await _measure(net, sub, wires, per_doc, duration_s, clients, batch, kind, progress)
        return {**result, "wait": wait}


async def _settle(pids: list[int], quiet_percent: float = 10.0, longest_s: float = 180.0) -> float:
    """Wait until the nodes are quiet (together under `quiet_percent` of a core for two
    half-seconds in a row) and return how long that took. The setup writes every code it
    will move, a million and more for shipments, and LevelDB compacts those writes in the
    background for a while afterwards: measured then, the run would count the setup's
    compactions as its own work."""
    started = time.perf_counter()
    quiet = 0
    last = sum(cpu_seconds(p) for p in pids)
    while quiet < 2 and time.perf_counter() - started < longest_s:
        await asyncio.sleep(0.5)
        now = sum(cpu_seconds(p) for p in pids)
        quiet = quiet + 1 if (now - last) / 0.5 * 100 < quiet_percent else 0
        last = now
    return round(time.perf_counter() - started, 1)


async def _measure(net: Testnet, sub: Submitter, wires: list[bytes], per_doc: int, duration_s: float,
                   clients: int, batch: int, kind: str,
                   progress: Callable[[float], None] | None = None) -> dict[str, Any]:
    pids = {s: node_pid(n) for s, n in net.nodes.items()}
    settle_s = await _settle([p for p in pids.values() if p])
    cpu_before = {s: cpu_seconds(p) for s, p in pids.items() if p}
    own_before = time.process_time()
    machine_before = machine_cpu_seconds()
    latencies: list[float] = []
    timeline: dict[int, int] = {}
    second_latencies: dict[int, list[float]] = {}
    errors: list[str] = []
    rejected = 0
    exhausted = False  # every prepared document went out before the run's end
    cursor = iter(range(0, len(wires), batch))
    started = time.perf_counter()
    deadline = started + duration_s

    async def client(i: int) -> None:
        nonlocal rejected, exhausted
        while time.perf_counter() < deadline:
            start = next(cursor, None)
            if start is None:
                exhausted = True
                return
            chunk = wires[start:start + batch]
            t0 = time.perf_counter()
            try:
                results = await sub.submit(chunk, i)
            except Exception as exc:  # a failed request counts as an error, not a commit
                errors.append(repr(exc)[:200])
                continue
            t1 = time.perf_counter()
            for result in results:
                done = result.get("status") in ("applied", "rejected")
                if done and (sub.wait != "final" or result.get("final") is True):
                    latencies.append(t1 - t0)
                    second = int(t1 - started)
                    timeline[second] = timeline.get(second, 0) + 1
                    second_latencies.setdefault(second, []).append(t1 - t0)
                    rejected += result["status"] == "rejected"
                else:
                    errors.append(str(result)[:200])

    async def report_progress() -> None:
        while progress is not None and time.perf_counter() < deadline:
            await asyncio.sleep(0.5)
            progress(min(time.perf_counter() - started, duration_s))

    watcher = asyncio.ensure_future(report_progress())
    await asyncio.gather(*(client(i) for i in range(clients)))
    watcher.cancel()
    elapsed = time.perf_counter() - started
    cpu = {s: round(100 * (cpu_seconds(p) - cpu_before[s]) / elapsed, 1) for s, p in pids.items() if p}
    own = 100 * (time.process_time() - own_before) / elapsed
    machine = 100 * (machine_cpu_seconds() - machine_before) / elapsed
    latencies.sort()
    committed = len(latencies)
    return {
        "kind": kind,
        "nodes": len(net.nodes),
        "clients": clients,
        "batch": batch,
        "codes_per_document": per_doc,
        "duration_s": round(elapsed, 2),
        "documents": committed,
        "rejected": rejected,
        "errors": len(errors),
        "first_errors": errors[:3],
        "prepared_documents_exhausted": exhausted,
        "docs_per_s": round(committed / elapsed, 1),
        "codes_per_s": round(committed * per_doc / elapsed, 1),
        "p50_ms": round(1000 * percentile(latencies, 0.50), 1),
        "p95_ms": round(1000 * percentile(latencies, 0.95), 1),
        "p99_ms": round(1000 * percentile(latencies, 0.99), 1),
        "cpu_percent_per_node": cpu,
        "settle_s": settle_s,
        "cpu_percent_bench_clients": round(own, 1),
        # What else ran on the machine meanwhile (a shared machine skews every figure).
        "cpu_percent_other_processes": round(max(0.0, machine - own - sum(cpu.values())), 1),
        "timeline_docs_per_s": [timeline.get(s, 0) for s in range(int(elapsed) + 1)],
        "timeline_p99_ms": [
            round(1000 * percentile(sorted(second_latencies[s]), 0.99), 1) if s in second_latencies else 0.0
            for s in range(int(elapsed) + 1)
        ],
        "client_api": "https" if net.node(next(iter(net.nodes))).api_url.startswith("https") else "http",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def run_bench(testnet_dir: Path | str, kind: str = "single", duration_s: float = 10.0, clients: int = 64,
              batch: int = 1, progress: Callable[[float], None] | None = None,
              wait: str = "commit") -> dict[str, Any]:
    """Drive a running testnet; a dict with docs_per_s, codes_per_s, p50_ms, p95_ms, p99_ms, ...
    `progress` is called about twice a second with the seconds measured so far."""
    # The load generator shares the machine's cores with the nodes: uvloop's loop spends
    # less CPU per request, so more of the machine is left to what is measured.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(run_bench_async(testnet_dir, kind, duration_s, clients, batch, progress, wait))


def run_fresh(kind: str, duration_s: float, clients: int, batch: int, api_tls: bool = True,
              wait: str = "commit", states: tuple[str, ...] = ("BY", "KZ", "RU")) -> dict[str, Any]:
    """Create, start, bench and stop a 3-state testnet of its own (its client API over
    HTTPS, or plain HTTP with `api_tls=False`, to measure what TLS costs)."""
    with tempfile.TemporaryDirectory(prefix="tamga-bench-") as tmp:
        net = init_testnet(Path(tmp) / "net", states, config={"log": {"level": "WARNING"}},
                           api_tls=api_tls)
        try:
            up(net.dir)
            return run_bench(net.dir, kind, duration_s, clients, batch, wait=wait)
        finally:
            down(net.dir)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--testnet", help="directory of a running testnet")
    parser.add_argument("--fresh", action="store_true", help="start a 3-state testnet of its own")
    parser.add_argument("--kind", choices=("single", "shipment"), default="single")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1, help="documents per request")
    parser.add_argument("--plain-http", action="store_true",
                        help="with --fresh: serve the client API over plain HTTP instead of HTTPS")
    parser.add_argument("--wait", choices=("commit", "final"), default="commit",
                        help="what each request waits for: its block applied (commit) or final too "
                             "(attested by a Byzantine quorum of member states)")
    parser.add_argument("--states", default="BY,KZ,RU", help="with --fresh: the member states, e.g. "
                        "AM,BY,KZ,KG,RU")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--png", type=Path, help="draw throughput and p99 latency over time here")
    args = parser.parse_args()
    if not args.fresh and not args.testnet:
        parser.error("give --testnet DIR or --fresh")
    if args.fresh:
        result = run_fresh(args.kind, args.duration, args.clients, args.batch, api_tls=not args.plain_http,
                           wait=args.wait, states=tuple(args.states.upper().split(",")))
    else:
        result = run_bench(args.testnet, args.kind, args.duration, args.clients, args.batch, wait=args.wait)
    if args.png:
        write_chart(args.png, result["timeline_docs_per_s"], result["timeline_p99_ms"])
    if args.json:
        print(json.dumps(result))
        return
    for key in ("kind", "wait", "client_api", "nodes", "clients", "batch", "duration_s", "documents",
                "errors",
                "docs_per_s", "codes_per_s", "p50_ms", "p95_ms", "p99_ms", "cpu_percent_per_node",
                "cpu_percent_bench_clients", "cpu_percent_other_processes", "machine", "load_average"):
        print(f"{key:28} {result[key]}")


if __name__ == "__main__":
    main()
