"""The Driver simulator itself: virtual time, the simulated disk and crashes, and
membership changes through the Driver, each on a fixed seed."""

from __future__ import annotations

from consensus import ConfChange, ConfChangeType, NodeId
from tests.consensus.sim import Faults
from tests.consensus.vopr import DriverSim, run_random


def test_virtual_time_jumps_to_the_next_timer() -> None:
    """Ten seconds of cluster life pass without waiting: the clock jumps from timer to
    timer, and the leader elected first is still leading at the end."""
    sim = DriverSim(seed=1, n=3)
    try:
        lead = sim.wait_leader()
        sim.run_for(10_000)
        assert sim.now >= 10_000
        assert sim.leader() == lead
    finally:
        sim.close()


def test_a_stalled_disk_makes_the_driver_miss_ticks_and_recover() -> None:
    """While the leader's fsync hangs, its ticks pile up and are taken as one (the others
    may elect a new leader meanwhile); once the disk answers, the cluster commits again
    and every invariant held throughout."""
    sim = DriverSim(seed=2, n=3, faults=Faults(sync_ms=(1, 3)))
    try:
        lead = sim.wait_leader()
        sim.propose(b"before")
        sim.stall_disk(lead, 300)
        sim.propose(b"during")
        sim.run_for(400)
        assert sim.nodes[lead].driver.stats.ticks_missed > 0
        sim.converge()
        assert sim.acked_count >= 1  # the barrier at least; "during" may have been dropped
    finally:
        sim.close()


def test_crashes_at_fsync_lose_nothing_acknowledged() -> None:
    """Nodes crash just before or after their fsyncs, with torn unsynced writes; every
    proposal a client saw acknowledged survives and all nodes converge."""
    sim = DriverSim(seed=3, n=5, faults=Faults(crash_in_ready=0.02, torn_writes=True, sync_ms=(0, 2)))
    try:
        sim.wait_leader()
        for i in range(200):
            sim.propose(b"c%d" % i)
            sim.run_for(5)
            for node in list(sim.nodes.values()):
                if not node.alive:
                    sim.restart(node.id)
        assert sum(n.crashes for n in sim.nodes.values()) > 0
        sim.converge()
        assert sim.acked_count > 50
    finally:
        sim.close()


def test_membership_changes_through_the_driver() -> None:
    """A spare node is added as a learner and promoted through Driver.propose_conf_change;
    it then holds every entry, and the voters are four."""
    sim = DriverSim(seed=4, n=3)
    try:
        sim.add_node(4)
        sim.wait_leader()
        sim.commit(b"first")
        for kind in (ConfChangeType.ADD_LEARNER, ConfChangeType.ADD_VOTER):
            sim.propose_conf_change(ConfChange(kind, NodeId(4)))
            sim.run_for(200)
        sim.converge()
        assert sim.status(sim.leader()).voters == (1, 2, 3, 4)
        assert sim.applied(4) == sim.applied(sim.leader())
    finally:
        sim.close()


def test_seeds_that_found_stale_reads_after_a_restart() -> None:
    """Regression: in these seeds a duplicated answer to a read of a node's previous life
    completed a read of its new life with a stale index, because read contexts restarted
    at 1 with each Driver. Contexts now carry a random nonce per Driver."""
    for seed in (300027, 300072):
        assert run_random(seed, 2_000).reads > 0
