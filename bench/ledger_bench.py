"""Ledger apply throughput, next to the raw Ed25519 verification rate of the same run.

    .venv/bin/python -m bench.ledger_bench [--transfers 20000] [--shipments 200] [--million]
        [--preload N]

One process, one core. Measures:
  1. single-code shipment documents applied per second (signature checks included),
     against raw Ed25519 verifications per second of the same documents' bytes;
  2. codes per second for 1,000-code shipment documents;
  3. undo data (ledger/_undo.py) in bytes per non-final block of each kind: the final
     height is set to the head before the measured blocks and never moved, so every
     measured block keeps its undo record;
  4. (--million) resident memory while 1,000,000 codes are emitted, introduced and
     shipped, sampled every 100,000 codes: it must stay flat, the state being in LevelDB;
  5. (--preload N) the shipments of 2. again on a store that holds N more codes, as a
     node's store does after the node benchmark's setup (about 1.5 million codes for a
     15-second shipment run): LevelDB reads and compactions cost more on a larger store,
     and a node's apply runs on one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from bench.world import World, raw_verify_seconds
from ledger import DocType, KeyPair, Result

BLOCK_DOCUMENTS = 1_000
# Nodes write blocks without fsync, since the Raft log already holds each block durably
# on a majority (and the ledger is fsynced before that log is compacted); --sync
# measures the stricter fsync-per-block store as well.
SYNC_EACH_BLOCK = False


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def setup(world: World, codes: int) -> tuple[KeyPair, KeyPair, list[str]]:
    producer = world.register("RU", ["producer"], "Producer")
    buyer = world.register("KZ", ["wholesaler"], "Buyer")
    out: list[str] = []
    while len(out) < codes:
        batch = world.emit("RU", producer, min(30_000, codes - len(out)))
        world.apply_ok(world.doc(producer, DocType.INTRODUCE, codes=batch))
        out.extend(batch)
    return producer, buyer, out


def bench_single(tmp: Path, count: int) -> dict[str, float]:
    """Blocks of single-code shipments, each timed right after a raw verification of the
    same block's signatures, so that both see the machine in the same state."""
    world = World(tmp / "single")
    world.store.sync = SYNC_EACH_BLOCK
    producer, buyer, codes = setup(world, count)
    docs = [world.doc(producer, DocType.SHIP, receiver=buyer.participant_id, codes=[c]) for c in codes]
    chain_id = world.genesis.chain_id
    world.store.set_final_height(world.store.head.height)  # measured blocks only
    raw_s = apply_s = raw_cpu_s = apply_cpu_s = 0.0
    for i in range(0, len(docs), BLOCK_DOCUMENTS):
        block = docs[i : i + BLOCK_DOCUMENTS]
        wires = [d.wire() for d in block]
        cpu = time.process_time()
        raw_s += raw_verify_seconds(producer.public_key, chain_id, block)
        raw_cpu_s += time.process_time() - cpu
        block_time_ms = world.next_block_time()
        start, cpu = time.perf_counter(), time.process_time()
        results = world.store.apply_block(wires, block_time_ms, "RU").results
        apply_s += time.perf_counter() - start
        apply_cpu_s += time.process_time() - cpu
        _all_applied(results)
    undo = undo_per_block(world)
    world.store.close()
    raw, rate = len(docs) / raw_s, len(docs) / apply_s
    # By CPU time as well: on a shared machine the wall clock counts other tenants' work.
    return {"docs": len(docs), "docs_per_s": rate, "raw_verify_per_s": raw, "ratio": rate / raw,
            "ratio_cpu": raw_cpu_s / apply_cpu_s, "docs_per_block": BLOCK_DOCUMENTS,
            "undo_bytes_per_block": undo}


def undo_per_block(world: World) -> float:
    """Mean bytes of undo data per block above the final height."""
    blocks, size = world.store.undo_size()
    return size / blocks if blocks else 0.0


def _all_applied(results: list[Result]) -> None:
    bad = [r for r in results if not r.applied]
    if bad:
        raise RuntimeError(f"{len(bad)} documents did not apply, the first: {bad[0]}")


def bench_shipments(tmp: Path, shipments: int, preload: int = 0) -> dict[str, float]:
    world = World(tmp / f"ship-{preload}")
    world.store.sync = SYNC_EACH_BLOCK
    producer, buyer, codes = setup(world, preload + shipments * 1_000)
    codes = codes[preload:]
    docs = [
        world.doc(producer, DocType.SHIP, receiver=buyer.participant_id, codes=codes[i : i + 1_000]).wire()
        for i in range(0, len(codes), 1_000)
    ]
    world.store.set_final_height(world.store.head.height)  # measured blocks only
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(docs), 10):
        results = world.store.apply_block(docs[i : i + 10], world.next_block_time(), "RU").results
        _all_applied(results)
    elapsed, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    undo = undo_per_block(world)
    world.store.close()
    return {"codes": len(codes), "codes_per_s": len(codes) / elapsed, "codes_per_cpu_s": len(codes) / cpu_s,
            "docs_per_s": len(docs) / elapsed, "codes_per_block": 10_000, "undo_bytes_per_block": undo,
            "codes_in_store_before": preload}


def bench_million(tmp: Path) -> dict[str, object]:
    world = World(tmp / "million")
    producer = world.register("RU", ["producer"], "Producer")
    buyer = world.register("KZ", ["wholesaler"], "Buyer")
    samples = []
    done = 0
    start = time.perf_counter()
    while done < 1_000_000:
        batch = world.emit("RU", producer, 20_000)
        world.apply_ok(world.doc(producer, DocType.INTRODUCE, codes=batch))
        ships = [
            world.doc(producer, DocType.SHIP, receiver=buyer.participant_id, codes=batch[i : i + 1_000])
            for i in range(0, len(batch), 1_000)
        ]
        world.apply_ok(*ships)
        done += len(batch)
        if done % 100_000 == 0:
            samples.append((done, round(rss_mib(), 1)))
    elapsed = time.perf_counter() - start
    world.store.close()
    return {"codes": done, "seconds": round(elapsed, 1), "rss_mib_by_codes": samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transfers", type=int, default=20_000)
    parser.add_argument("--shipments", type=int, default=200)
    parser.add_argument("--million", action="store_true")
    parser.add_argument("--preload", type=int, default=0,
                        help="also measure shipments on a store holding N codes")
    parser.add_argument("--sync", action="store_true", help="fsync every block, as a standalone store would")
    args = parser.parse_args()
    global SYNC_EACH_BLOCK
    SYNC_EACH_BLOCK = args.sync
    report: dict[str, object] = {
        "fsync_each_block": args.sync,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    }
    with tempfile.TemporaryDirectory() as tmp:
        report["single_code_transfers"] = bench_single(Path(tmp), args.transfers)
        print(json.dumps(report["single_code_transfers"]), file=sys.stderr)
        report["shipments_1000_codes"] = bench_shipments(Path(tmp), args.shipments)
        print(json.dumps(report["shipments_1000_codes"]), file=sys.stderr)
        if args.preload:
            preloaded = bench_shipments(Path(tmp), args.shipments, args.preload)
            report["shipments_1000_codes_preloaded"] = preloaded
            print(json.dumps(preloaded), file=sys.stderr)
        if args.million:
            report["million_codes"] = bench_million(Path(tmp))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
