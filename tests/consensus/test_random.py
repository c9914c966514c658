"""Randomized fault campaigns over the real Driver (hashicorp's fuzzy tests, TigerBeetle's
VOPR) and determinism. `SIM_SEEDS=100000 make sim` runs a long campaign; `SIM_SEED=n`
replays one seed; `SIM_DURATION_MS` lengthens each run."""

from __future__ import annotations

import os
import random
import traceback

from consensus import NodeId
from tests.consensus.sim import Faults, SimFailure
from tests.consensus.vopr import DriverSim, StorageLog, run_random

SEEDS = int(os.environ.get("SIM_SEEDS", "1000"))
ONE_SEED = os.environ.get("SIM_SEED")
# Seeds start here so that a long campaign does not just repeat `make test`'s seeds.
FIRST_SEED = int(os.environ.get("SIM_FIRST_SEED", "0"))
# Virtual time of one run's faults (convergence comes after): 40 ticks of 10 ms by
# default, time for a first election and a few faults, crashes at fsyncs and leader
# changes, while `make test`'s thousand seeds of real Drivers stay near half a minute.
# Long campaigns should lengthen it (SIM_DURATION_MS=3000 matches the old RawNode runs).
DURATION_MS = int(os.environ.get("SIM_DURATION_MS", "400"))


def test_random_fault_campaign() -> None:
    """Across many seeds of crashes (at fsyncs too), torn writes, partitions, loss,
    duplication, reordering and stalled disks, real Drivers keep every invariant after
    every step and converge with every acknowledged proposal applied everywhere."""
    seeds = [int(ONE_SEED)] if ONE_SEED else range(FIRST_SEED, FIRST_SEED + SEEDS)
    failures = []
    for seed in seeds:
        try:
            run_random(seed, DURATION_MS)
        except Exception as exc:  # collect all, so that one run reports every bad seed
            failures.append(f"seed {seed}: {type(exc).__name__}: {exc}")
            if ONE_SEED:
                traceback.print_exc()
        if len(failures) >= 5:
            break
    replay = f"replay with SIM_SEED=<seed> SIM_DURATION_MS={DURATION_MS}"
    assert not failures, replay + ":\n" + "\n".join(failures)


def test_same_seed_same_trace() -> None:
    """A run replays exactly from its seed: the hash of its whole trace matches, and a
    different seed gives a different trace."""
    first = run_random(4242)
    again = run_random(4242)
    other = run_random(4243)
    assert first.trace_hash() == again.trace_hash()
    assert first.now == again.now and first.acked_count == again.acked_count
    assert first.trace_hash() != other.trace_hash()


def test_clock_skew_and_swizzle_clogging_under_load() -> None:
    """Nodes tick at different rates while links are clogged one by one and restored
    in random order (FoundationDB's swizzle-clog); proposals keep flowing and all
    invariants hold."""
    for seed in range(3):
        rng = random.Random(seed)
        sim = DriverSim(seed=900 + seed, n=5, tick_skew=0.4, faults=Faults(loss=0.02, sync_ms=(0, 2)))
        sim.wait_leader()
        links = [(a, b) for a in range(1, 6) for b in range(1, 6) if a != b]
        rng.shuffle(links)
        clogged = links[: rng.randint(4, 12)]
        for i, (a, b) in enumerate(clogged):
            sim.cut_link(a, b, one_way=True)
            sim.propose(b"clog%d-%d" % (seed, i))
            sim.run_for(rng.randint(10, 60))
        rng.shuffle(clogged)
        for i, (a, b) in enumerate(clogged):
            sim.cut_links.discard((a, b))
            sim.propose(b"unclog%d-%d" % (seed, i))
            sim.run_for(rng.randint(10, 60))
        sim.converge()
        sim.close()
        assert sim.acked_count > 0


def test_a_failure_names_its_seed() -> None:
    """An invariant violation reports the seed to replay."""
    sim = DriverSim(seed=77, n=3)
    lead = sim.wait_leader()
    other = sim.nodes[NodeId(lead % 3 + 1)]
    try:
        sim.checker.on_leader(other.id, sim.status(lead).term, StorageLog(other.storage))
    except SimFailure as failure:
        assert "seed=77" in str(failure)
    else:
        raise AssertionError("a second leader in one term went unnoticed")
    finally:
        sim.close()
