"""A recall matching 1,000,000 codes, and what the recall check adds to every move.

    .venv/bin/python -m bench.recall_bench [--codes 1000000] [--moves 5000]

One process, one core, the ledger without a network (bench/world.py). Measures:
  1. seconds to apply one `recall` of a batch that 1,000,000 codes carry (built with the
     ledger directly: emitted and introduced with their batch and expiry, a share shipped
     to holders in the other four member states), with the holders' inbox notices it
     writes (found through the lot index), and without them (the state transition alone);
  2. seconds to build the per-state holders view (`GET /v1/recalls/{id}`);
  3. per-move cost of the recall check: single-code shipments applied with no recall
     active, with a recall active on another GTIN, and with one active on the same GTIN
     for another batch (each code's attributes are read), in alternating rounds;
  4. per-move cost of the holdings index (ledger/_holdings.py), which changes only when
     goods change holder: accepts of single-code shipments, of 1,000-code shipments and
     of a pallet of 1,000 units (all with batch and expiry), beside the shipments
     themselves, best of the rounds. Run the same script against the tree before the
     index to compare (it measures the same documents there).

    .venv/bin/python -m bench.recall_bench --skip-recall   # parts 3 and 4 only
    .venv/bin/python -m bench.recall_bench --only-accepts  # part 4 only (CPU time)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.world import GTIN, World, make_genesis
from ledger import DocType, KeyPair, RecallCheck, gs1_check_digit, recall_holders, recall_record
from testnet import product_groups

BATCH = "LOT-1"
OTHER_BATCH = "LOT-2"
EXPIRY = "270630"
OTHER_GTIN = "04607008131352"  # a second registered product for the "other GTIN" case
DOC_CODES_MAX = 30_000  # codes per document, the ledger's cap
SHIPPED_PER_STATE = 30_000  # codes sent to a holder in each other member state


def _world(path: Path) -> World:
    genesis = dataclasses.replace(make_genesis(), product_groups=product_groups())
    return World(path, genesis)


def _introduce(world: World, producer: KeyPair, count: int, batch: str, gtin: str = GTIN) -> list[str]:
    out: list[str] = []
    while len(out) < count:
        codes = world.emit("RU", producer, min(DOC_CODES_MAX, count - len(out)), gtin)
        world.apply_ok(world.doc(producer, DocType.INTRODUCE, codes=codes,
                                 attributes=[["10", batch], ["17", EXPIRY]]))
        out.extend(codes)
    return out


def _register_product(world: World, producer: KeyPair, gtin: str) -> None:
    world.apply_ok(world.doc(world.regulator("RU"), DocType.REGISTER_PRODUCT, gtin=gtin, group="medicines",
                             name=f"Medicine {gtin}", tnved="3004", producer=producer.participant_id))


class _GetOnly:
    """The store's LevelDB with reads only: without an ordered scan, the state machine
    writes no recall notices (ledger/_inbox.py), which isolates the state transition."""

    def __init__(self, db: Any) -> None:
        self.get = db.get


def bench_recall(tmp: Path, count: int) -> dict[str, Any]:
    world = _world(tmp / "recall")
    producer = world.register("RU", ["producer"], "Producer")
    _register_product(world, producer, GTIN)
    start = time.perf_counter()
    codes = _introduce(world, producer, count, BATCH)
    build_s = time.perf_counter() - start
    each = min(SHIPPED_PER_STATE, count // 8)
    for i, state in enumerate(("AM", "BY", "KZ", "KG")):
        holder = world.register(state, ["wholesaler"], f"Holder {state}")
        share = codes[i * each:(i + 1) * each]
        ship = world.doc(producer, DocType.SHIP, receiver=holder.participant_id, codes=share)
        world.apply_ok(ship)
        world.apply_ok(world.doc(holder, DocType.ACCEPT, shipment=ship.id, codes=[]))
    recall = world.doc(world.regulator("RU"), DocType.RECALL, gtin=GTIN, batch=BATCH, expiry_from="",
                       expiry_to="", codes=[], reason="contamination")
    wire = recall.wire()
    machine = world.store.machine
    head = world.store.head
    # The state transition alone, as every node and auditor computes it.
    start = time.perf_counter()
    bare = machine.execute_block(_GetOnly(world.store.db), [wire], head.height + 1, head.time_ms + 1_000)
    transition_s = time.perf_counter() - start
    assert bare.results[0].applied, bare.results[0]
    # The same, with the inbox notices of every holder (what a node does), written.
    start = time.perf_counter()
    applied = world.store.apply_block([wire], world.next_block_time(), "RU")
    apply_s = time.perf_counter() - start
    assert applied.results[0].applied, applied.results[0]
    notices = len(applied_notices(world, recall.id))
    record = recall_record(world.store.db, recall.id)
    assert record is not None
    start = time.perf_counter()

    def state_of(pid: str) -> str:
        participant = world.store.participant_record(pid)
        return participant.state if participant is not None else ""

    view = recall_holders(world.store.db, recall.id, record, state_of)
    holders_s = time.perf_counter() - start
    world.store.close()
    return {
        "codes_matched": view["codes"], "build_codes_s": round(build_s, 1),
        "recall_state_transition_ms": round(transition_s * 1e3, 2), "state_writes": len(bare.writes),
        "recall_apply_with_inbox_ms": round(apply_s * 1e3, 2), "holders_notified": notices,
        "holders_view_ms": round(holders_s * 1e3, 2),
        "per_state": {s: v["codes"] for s, v in view["states"].items()},
    }


def applied_notices(world: World, doc_id: bytes) -> list[bytes]:
    """The inbox entries of a document: one per holder it was addressed to."""
    return [k for k, v in world.store.db.iterator(start=b"i", stop=b"j") if v.endswith(doc_id)]


def bench_moves(tmp: Path, moves: int, rounds: int) -> dict[str, Any]:
    """Single-code shipments, in blocks of 1,000, under three recall situations taken in
    turn (so that each sees the machine in the same state); the best round of each."""
    world = _world(tmp / "moves")
    producer = world.register("RU", ["producer"], "Producer")
    buyer = world.register("KZ", ["wholesaler"], "Buyer")
    _register_product(world, producer, GTIN)
    _register_product(world, producer, OTHER_GTIN)
    per_case = moves * rounds
    codes = {case: _introduce(world, producer, per_case, OTHER_BATCH) for case in ("none", "other", "same")}
    recalls = {
        "other": dict(gtin=OTHER_GTIN, batch=BATCH),  # a recall of another product
        "same": dict(gtin=GTIN, batch=BATCH),  # a recall of this product, another batch
    }
    active: list[bytes] = []
    best: dict[str, float] = {}
    checks: dict[str, float] = {}
    for r in range(rounds):
        for case in ("none", "other", "same"):
            for doc_id in active:  # release what the previous case filed
                release = world.doc(world.regulator("RU"), DocType.RELEASE_RECALL, recall=doc_id, note="")
                world.apply_ok(release)
            active.clear()
            if case in recalls:
                doc = world.doc(world.regulator("RU"), DocType.RECALL, expiry_from="", expiry_to="", codes=[],
                                reason="bench", **recalls[case])
                world.apply_ok(doc)
                active.append(doc.id)
            mine = codes[case][r * moves:(r + 1) * moves]
            docs = [world.doc(producer, DocType.SHIP, receiver=buyer.participant_id, codes=[c]).wire()
                    for c in mine]
            elapsed = 0.0
            for i in range(0, len(docs), 1_000):
                block_time = world.next_block_time()
                start = time.perf_counter()
                results = world.store.apply_block(docs[i:i + 1_000], block_time, "RU").results
                elapsed += time.perf_counter() - start
                bad = [x for x in results if not x.applied]
                if bad:
                    raise RuntimeError(f"{case}: {bad[0]}")
            best[case] = min(best.get(case, float("inf")), elapsed / len(docs) * 1e6)
            checks[case] = min(checks.get(case, float("inf")), _check_us(world, mine))
    world.store.close()
    return {
        "moves_per_round": moves, "rounds": rounds,
        "us_per_move_no_recall": round(best["none"], 1),
        "us_per_move_recall_on_other_gtin": round(best["other"], 1),
        "us_per_move_recall_on_same_gtin_other_batch": round(best["same"], 1),
        # The check alone, in a tight loop over the same codes (what it adds to each move,
        # without the noise of the rest of the apply path on a shared machine).
        "check_us_per_code_no_recall": round(checks["none"], 2),
        "check_us_per_code_recall_on_other_gtin": round(checks["other"], 2),
        "check_us_per_code_recall_on_same_gtin_other_batch": round(checks["same"], 2),
    }


def _sscc(n: int) -> str:
    body = f"0460700{n:010d}"
    return "00" + body + str(gs1_check_digit(body))


def _timed(world: World, wires: list[bytes], per_block: int) -> float:
    """CPU seconds of this process to apply `wires` in blocks of `per_block` (every
    document must apply): on a machine shared with other jobs, wall time counts the
    time others held the core, which swamps what the index adds."""
    elapsed = 0.0
    for i in range(0, len(wires), per_block):
        block_time = world.next_block_time()
        start = time.process_time()
        results = world.store.apply_block(wires[i:i + per_block], block_time, "RU").results
        elapsed += time.process_time() - start
        bad = [x for x in results if not x.applied]
        if bad:
            raise RuntimeError(f"{len(bad)} documents did not apply, the first: {bad[0]}")
    return elapsed


def bench_accepts(tmp: Path, moves: int, rounds: int) -> dict[str, Any]:
    """Shipments and their accepts, of units carrying a batch and an expiry: `moves`
    single-code shipments in blocks of 1,000, ten 1,000-code shipments in blocks of ten,
    and one pallet of 1,000 units, per round; microseconds per document (single) or per
    code (the others), best round of each."""
    world = _world(tmp / "accepts")
    producer = world.register("RU", ["producer"], "Producer")
    buyer = world.register("KZ", ["wholesaler"], "Buyer")
    _register_product(world, producer, GTIN)
    big = 1_000
    best: dict[str, float] = {}

    def keep(label: str, value: float) -> None:
        best[label] = min(best.get(label, float("inf")), value)

    for r in range(rounds):
        singles = _introduce(world, producer, moves, BATCH)
        ships = [world.doc(producer, DocType.SHIP, receiver=buyer.participant_id, codes=[c]) for c in singles]
        keep("ship_single_us_per_doc", _timed(world, [d.wire() for d in ships], 1_000) / moves * 1e6)
        accepts = [world.doc(buyer, DocType.ACCEPT, shipment=d.id, codes=[]).wire() for d in ships]
        keep("accept_single_us_per_doc", _timed(world, accepts, 1_000) / moves * 1e6)
        lots = _introduce(world, producer, 10 * big, BATCH)
        ships = [world.doc(producer, DocType.SHIP, receiver=buyer.participant_id, codes=lots[i:i + big])
                 for i in range(0, len(lots), big)]
        keep("ship_1000_us_per_code", _timed(world, [d.wire() for d in ships], 10) / len(lots) * 1e6)
        accepts = [world.doc(buyer, DocType.ACCEPT, shipment=d.id, codes=[]).wire() for d in ships]
        keep("accept_1000_us_per_code", _timed(world, accepts, 10) / len(lots) * 1e6)
        units = _introduce(world, producer, big, BATCH)
        pallet = _sscc(r + 1)
        world.apply_ok(world.doc(producer, DocType.AGGREGATE, sscc=pallet, codes=units))
        ship = world.doc(producer, DocType.SHIP, receiver=buyer.participant_id, codes=[pallet])
        world.apply_ok(ship)
        accept = world.doc(buyer, DocType.ACCEPT, shipment=ship.id, codes=[]).wire()
        keep("accept_pallet_of_1000_us_per_unit", _timed(world, [accept], 1) / big * 1e6)
    world.store.close()
    return {"moves_per_round": moves, "rounds": rounds, **{k: round(v, 2) for k, v in best.items()}}


def _check_us(world: World, codes: list[str]) -> float:
    """Microseconds per code of the recall check a move makes (one RecallCheck per
    document, as the state machine does for each single-code shipment)."""
    get = world.store.db.get
    start = time.perf_counter()
    for code in codes:
        RecallCheck(get).recall_of(code)
    return (time.perf_counter() - start) / len(codes) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codes", type=int, default=1_000_000)
    parser.add_argument("--moves", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-recall", action="store_true", help="only the per-move costs (parts 3, 4)")
    parser.add_argument("--only-accepts", action="store_true", help="only the holdings index's cost (part 4)")
    args = parser.parse_args()
    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average": os.getloadavg()[0],
    }
    with tempfile.TemporaryDirectory() as tmp:
        if not args.only_accepts:
            report["moves"] = bench_moves(Path(tmp), args.moves, args.rounds)
            print(json.dumps(report["moves"]), file=sys.stderr)
        report["accepts"] = bench_accepts(Path(tmp), args.moves, args.rounds)
        print(json.dumps(report["accepts"]), file=sys.stderr)
        if not (args.skip_recall or args.only_accepts):
            report["recall"] = bench_recall(Path(tmp), args.codes)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
