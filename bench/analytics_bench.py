"""Parquet export and `tamga sql` on a chain of a million code events.

    python -m bench.analytics_bench --events 1000000 --dir /tmp/analytics-bench \
        [--codes-per-document 10000] [--reuse]

Builds the chain with the ledger directly (no nodes; bench/world.py), spread over
months of block time, then times the two commands as a user runs them, each in its own
process: `tamga export parquet --data-dir` and `tamga sql --report flows_by_month`.
Figures: bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from ledger import ChainParams, DocType, Genesis, LedgerStore

from .world import World, make_genesis

# Codes per document: a pallet-sized batch, well under the 30,000 a document may carry.
BATCH_CODES = 10_000
# Each batch goes emit, introduce, ship RU->KZ, accept, ship to a KZ shop, accept, sell:
# seven code events per code.
EVENTS_PER_CODE = 7
# Days of block time between batches, so that flows spread over months.
DAYS_PER_BATCH = 9
DAY_MS = 86_400_000
GTINS = ("04680029460908", "02900002317701", "04600000000008")


def bench_genesis() -> Genesis:
    """The bench genesis, allowing blocks days apart (a real chain moves a minute at most
    per block; the bench compresses months into a few hundred blocks)."""
    base = make_genesis()
    params = replace(ChainParams(), block_time_step_max_ms=60 * DAY_MS)
    return Genesis(base.chain_id, base.time_ms, base.states, params)


def build(path: Path, events: int, batch_codes: int = BATCH_CODES) -> tuple[int, float]:
    """A chain with at least `events` code events, documents of `batch_codes` codes;
    (blocks, seconds). Block time moves in proportion, so any batch size spans the same
    months."""
    started = time.perf_counter()
    world = World(path / "ledger", bench_genesis())
    maker = world.register("RU", ["producer"], "Maker")
    trader = world.register("KZ", ["wholesaler"], "Trader")
    shop = world.register("KZ", ["retailer"], "Shop")
    batch = 0
    while batch * batch_codes * EVENTS_PER_CODE < events:
        world.time_ms += DAYS_PER_BATCH * DAY_MS * batch_codes // BATCH_CODES
        codes = world.emit("RU", maker, batch_codes, GTINS[batch % len(GTINS)])
        world.apply_ok(world.doc(maker, DocType.INTRODUCE, codes=codes))
        ship = world.doc(maker, DocType.SHIP, receiver=trader.participant_id, codes=codes)
        world.apply_ok(ship)
        world.apply_ok(world.doc(trader, DocType.ACCEPT, shipment=ship.id, codes=[]))
        to_shop = world.doc(trader, DocType.SHIP, receiver=shop.participant_id, codes=codes)
        world.apply_ok(to_shop)
        world.apply_ok(world.doc(shop, DocType.ACCEPT, shipment=to_shop.id, codes=[]))
        world.apply_ok(world.doc(shop, DocType.RETIRE, reason="retail_sale", codes=codes))
        batch += 1
    world.genesis.save(path / "genesis.json")
    height = world.store.head.height
    world.store.close()
    return height, time.perf_counter() - started


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# CPU seconds of each command, beside its wall time: on a shared machine the wall
# clock also counts the time other processes held the cores.
CPU_S: dict[str, float] = {}


def tamga(label: str, *args: str) -> tuple[float, str]:
    started, cpu = time.perf_counter(), _children_cpu_s()
    command = [sys.executable, "-m", "cli.main", *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    CPU_S[label] = round(_children_cpu_s() - cpu, 2)
    if done.returncode != 0:
        raise SystemExit(f"tamga {' '.join(args)} failed: {done.stderr.strip()}")
    return seconds, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="code events to build, at least")
    parser.add_argument("--dir", type=Path, required=True, help="work directory (emptied first)")
    parser.add_argument("--codes-per-document", type=int, default=BATCH_CODES,
                        help="codes in each document (1 to 30,000)")
    parser.add_argument("--reuse", action="store_true", help="keep a chain built before in --dir")
    args = parser.parse_args()
    work: Path = args.dir
    if not (args.reuse and (work / "genesis.json").exists()):
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        blocks, build_s = build(work, args.events, args.codes_per_document)
        print(f"built {blocks} blocks in {build_s:.1f} s", file=sys.stderr)
    out = work / "export"
    shutil.rmtree(out, ignore_errors=True)
    export_s, text = tamga("export", "export", "parquet", "--data-dir", str(work / "ledger"),
                           "--genesis", str(work / "genesis.json"), "--out", str(out), "--json")
    report = json.loads(text)
    sql_s, text = tamga("sql_flows_by_month", "sql", "--data", str(out), "--report", "flows_by_month",
                        "--json")
    months = len(text.splitlines())
    again_s, _ = tamga("export_up_to_date", "export", "parquet", "--data-dir", str(work / "ledger"),
                       "--genesis", str(work / "genesis.json"), "--out", str(out), "--json")
    startup_s, _ = tamga("tamga_startup", "--version")
    inside = in_process(work)
    print(json.dumps({
        "load_average_1m": round(os.getloadavg()[0], 1),
        "code_events": report["rows"]["code_events"],
        "documents": report["rows"]["documents"],
        "blocks": report["blocks"],
        "export_s": round(export_s, 2),
        "export_bytes": report["bytes"],
        "sql_flows_by_month_s": round(sql_s, 2),
        "flows_by_month_rows": months,
        "export_up_to_date_s": round(again_s, 2),
        "tamga_startup_s": round(startup_s, 2),
        "cpu_s": CPU_S,
        **inside,
    }, indent=2))


def in_process(work: Path) -> dict[str, float]:
    """The same two steps without a process start: the export and the query alone."""
    from cli import analytics
    from cli import sql as engine

    genesis = Genesis.load(work / "genesis.json")
    out = work / "export-in-process"
    shutil.rmtree(out, ignore_errors=True)
    store = LedgerStore(work / "ledger", genesis)
    try:
        started, cpu = time.perf_counter(), time.process_time()
        analytics.export(analytics.StoreSource(store), out, None, analytics.genesis_regulators(genesis),
                         genesis.time_ms)
        export_s, export_cpu_s = time.perf_counter() - started, time.process_time() - cpu
    finally:
        store.close()
    started, cpu = time.perf_counter(), time.process_time()
    con = engine.connect(out)
    engine.run(con, engine.report_query(con, "flows_by_month"))
    sql_s, sql_cpu_s = time.perf_counter() - started, time.process_time() - cpu
    con.close()
    return {"in_process_export_s": round(export_s, 2), "in_process_export_cpu_s": round(export_cpu_s, 2),
            "in_process_sql_s": round(sql_s, 3), "in_process_sql_cpu_s": round(sql_cpu_s, 3)}


if __name__ == "__main__":
    main()
