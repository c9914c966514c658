"""The asyncio Driver: three nodes in one event loop, LevelDB logs, an in-memory network."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from consensus import Entry, EntryType, LogIndex, MemoryStorage, Message, MessageType, NodeId, Snapshot, Term
from consensus._codec import decode_message, encode_message
from consensus._core import Config, NotLeader, ProposalDropped
from consensus._driver import (
    Driver,
    DriverConfig,
    DriverStopped,
    ProposalTimeout,
    coalesce_appends,
)
from consensus._leveldb import LevelDBStorage

IDS = (NodeId(1), NodeId(2), NodeId(3))
# Fast ticks keep elections quick (10 to 20 ticks, 0.1 to 0.2 s) so the suite stays short.
FAST = DriverConfig(tick_interval_s=0.01)


class ListApp:
    """An application whose state is the list of applied (index, data) pairs."""

    def __init__(self) -> None:
        self.applied: list[tuple[int, bytes]] = []
        self._applied_index = LogIndex(0)
        self.restores = 0

    async def apply(self, entries: Sequence[Entry]) -> None:
        for e in entries:
            assert e.index > self._applied_index, "an entry was applied twice"
            if e.data:  # the empty entries of new leaders are not application data
                self.applied.append((e.index, e.data))
            self._applied_index = e.index

    def applied_index(self) -> LogIndex:
        return self._applied_index

    def snapshot(self) -> bytes:
        return json.dumps([[i, d.hex()] for i, d in self.applied]).encode()

    async def restore(self, snapshot: Snapshot) -> None:
        self.applied = [(i, bytes.fromhex(d)) for i, d in json.loads(snapshot.data or b"[]")]
        self._applied_index = snapshot.meta.index
        self.restores += 1

    def data(self) -> list[bytes]:
        return [d for _, d in self.applied]


class Network:
    """Delivers messages between drivers through the wire codec; links can be cut."""

    def __init__(self) -> None:
        self.drivers: dict[NodeId, Driver] = {}
        self.cut: set[tuple[NodeId, NodeId]] = set()

    def transport(self, frm: NodeId) -> _Endpoint:
        return _Endpoint(self, frm)

    def isolate(self, node: NodeId) -> None:
        for other in IDS:
            if other != node:
                self.cut |= {(node, other), (other, node)}

    def heal(self) -> None:
        self.cut.clear()

    def deliver(self, frm: NodeId, messages: Sequence[Message]) -> None:
        for m in messages:
            target = self.drivers.get(m.to)
            if target is not None and (frm, m.to) not in self.cut:
                target.receive(decode_message(encode_message(m)))


class _Endpoint:
    def __init__(self, net: Network, frm: NodeId) -> None:
        self.net, self.frm = net, frm

    def send(self, messages: Sequence[Message]) -> None:
        self.net.deliver(self.frm, messages)


class Cluster:
    def __init__(self, root: Path, dc: DriverConfig = FAST, check_quorum: bool = True) -> None:
        self.root, self.dc, self.check_quorum = root, dc, check_quorum
        self.net = Network()
        self.apps: dict[NodeId, ListApp] = {}
        self.storages: dict[NodeId, LevelDBStorage] = {}
        self.seed = 7

    async def start(self, node: NodeId, app: ListApp | None = None) -> Driver:
        self.seed += 1
        config = Config(id=node, voters=IDS, rng=random.Random(self.seed), check_quorum=self.check_quorum)
        storage = LevelDBStorage(self.root / f"node{node}")
        self.apps[node] = app if app is not None else ListApp()
        self.storages[node] = storage
        driver = Driver(config, storage, self.net.transport(node), self.apps[node], self.dc)
        self.net.drivers[node] = driver
        await driver.start()
        return driver

    async def start_all(self) -> None:
        for node in IDS:
            await self.start(node)

    async def stop(self, node: NodeId) -> None:
        driver = self.net.drivers.pop(node)
        await driver.stop()
        assert driver.failure is None, driver.failure
        self.storages.pop(node).close()

    async def stop_all(self) -> None:
        for node in list(self.net.drivers):
            await self.stop(node)

    async def leader(self, timeout_s: float = 5.0) -> Driver:
        """The one leader that every running node agrees on."""

        def agreed() -> bool:
            leaders = {d.leader for d in self.net.drivers.values()}
            return len(leaders) == 1 and any(d.is_leader for d in self.net.drivers.values())

        await until(agreed, timeout_s, "an agreed leader")
        return next(d for d in self.net.drivers.values() if d.is_leader)

    def follower(self) -> Driver:
        return next(d for d in self.net.drivers.values() if not d.is_leader)


async def until(cond: Callable[[], bool], timeout_s: float = 5.0, what: str = "") -> None:
    """Poll `cond` until it holds; fail after `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.005)


@pytest.fixture
async def cluster(tmp_path: Path):  # type: ignore[no-untyped-def]
    c = Cluster(tmp_path)
    await c.start_all()
    yield c
    await c.stop_all()


async def propose_all(driver: Driver, payloads: Sequence[bytes]) -> list[LogIndex]:
    return list(await asyncio.gather(*(driver.propose(p, timeout_s=10) for p in payloads)))


async def test_concurrent_proposals_apply_in_one_order_everywhere(cluster: Cluster) -> None:
    """Many concurrent proposals all commit, and every node applies the same sequence."""
    leader = await cluster.leader()
    payloads = [b"p%d" % i for i in range(500)]
    indexes = await propose_all(leader, payloads)
    assert len(set(indexes)) == len(payloads)
    target = cluster.apps[leader.node_id].applied
    assert sorted(d for _, d in target) == sorted(payloads)
    await until(lambda: all(a.applied == target for a in cluster.apps.values()), what="agreement")
    assert leader.stats.syncs < len(payloads) / 2, "proposals must share fsyncs"
    assert leader.stats.proposals_applied == len(payloads)


async def test_follower_refuses_with_the_leader_id(cluster: Cluster) -> None:
    """A proposal on a follower fails at once with NotLeader naming the leader."""
    leader = await cluster.leader()
    follower = cluster.follower()
    with pytest.raises(NotLeader) as info:
        await follower.propose(b"x")
    assert info.value.leader == leader.node_id


async def test_proposal_times_out_without_a_quorum(tmp_path: Path) -> None:
    """A leader cut off from its followers cannot commit: the proposal times out."""
    cluster = Cluster(tmp_path, check_quorum=False)
    await cluster.start_all()
    try:
        leader = await cluster.leader()
        cluster.net.isolate(leader.node_id)
        with pytest.raises(ProposalTimeout):
            await leader.propose(b"lost?", timeout_s=0.2)
        assert leader.stats.proposals_timed_out == 1
    finally:
        await cluster.stop_all()


async def test_a_new_leader_keeps_every_committed_proposal(cluster: Cluster) -> None:
    """After the leader stops, the others elect a new one that holds every committed entry."""
    old = await cluster.leader()
    payloads = [b"before-%d" % i for i in range(200)]
    await propose_all(old, payloads)
    await cluster.stop(old.node_id)
    new = await cluster.leader()
    assert new is not old
    assert set(payloads) <= set(cluster.apps[new.node_id].data())
    await propose_all(new, [b"after-%d" % i for i in range(50)])
    survivors = [cluster.apps[n] for n in cluster.net.drivers]
    await until(lambda: survivors[0].applied == survivors[1].applied, what="agreement")


async def test_overwritten_proposal_fails_with_dropped(tmp_path: Path) -> None:
    """A proposal left on a cut-off leader fails when a newer leader commits its index."""
    cluster = Cluster(tmp_path)
    await cluster.start_all()
    try:
        old = await cluster.leader()
        cluster.net.isolate(old.node_id)
        doomed = asyncio.ensure_future(old.propose(b"doomed", timeout_s=20))
        others = [d for n, d in cluster.net.drivers.items() if d is not old]
        await until(lambda: any(d.is_leader for d in others), what="a new leader")
        new = next(d for d in others if d.is_leader)
        await propose_all(new, [b"winner-%d" % i for i in range(5)])
        cluster.net.heal()
        with pytest.raises(ProposalDropped):
            await doomed
        assert b"doomed" not in cluster.apps[old.node_id].data()
    finally:
        await cluster.stop_all()


async def test_restart_from_leveldb_catches_up(cluster: Cluster, tmp_path: Path) -> None:
    """A node restarted from its LevelDB directory replays its log and catches up."""
    leader = await cluster.leader()
    await propose_all(leader, [b"a%d" % i for i in range(100)])
    follower = cluster.follower()
    node = follower.node_id
    await until(lambda: len(cluster.apps[node].applied) == 100, what="the follower applying")
    kept_app = cluster.apps[node]
    await cluster.stop(node)
    await propose_all(leader, [b"b%d" % i for i in range(100)])

    await cluster.start(node)  # a fresh application: everything is replayed
    target = cluster.apps[leader.node_id]
    await until(lambda: cluster.apps[node].applied == target.applied, what="the replay")

    await cluster.stop(node)
    await propose_all(leader, [b"c%d" % i for i in range(10)])
    await cluster.start(node, app=kept_app)  # an application that kept its state: no re-apply
    await until(lambda: kept_app.applied == target.applied, what="catching up")


async def test_read_index_on_leader_and_follower(cluster: Cluster) -> None:
    """read_index returns only once the node has applied every entry committed before it."""
    leader = await cluster.leader()
    last = max(await propose_all(leader, [b"r%d" % i for i in range(20)]))
    assert await leader.read_index(timeout_s=5) >= last
    follower = cluster.follower()
    index = await follower.read_index(timeout_s=5)
    assert index >= last
    assert follower.applied_index >= index


async def test_transfer_leadership(cluster: Cluster) -> None:
    """transfer_leadership moves the leader to the chosen node."""
    leader = await cluster.leader()
    target = cluster.follower().node_id
    await leader.transfer_leadership(target, timeout_s=5)
    assert (await cluster.leader()) is cluster.net.drivers[target]


async def test_snapshots_compact_and_catch_up_a_lagging_node(tmp_path: Path) -> None:
    """With periodic snapshots the log is compacted, and a lagging node restores one."""
    cluster = Cluster(tmp_path, dc=DriverConfig(tick_interval_s=0.01, snapshot_every_entries=50))
    await cluster.start_all()
    try:
        leader = await cluster.leader()
        lagging = cluster.follower().node_id
        await cluster.stop(lagging)
        for round_ in range(6):
            await propose_all(leader, [b"s%d-%d" % (round_, i) for i in range(50)])
        storage = cluster.storages[leader.node_id]
        assert storage.first_index() > 250
        assert leader.stats.snapshots_taken >= 5
        await cluster.start(lagging)
        target = cluster.apps[leader.node_id]
        await until(lambda: cluster.apps[lagging].applied == target.applied, what="snapshot")
        assert cluster.apps[lagging].restores >= 1
    finally:
        await cluster.stop_all()


class QueueingApp(ListApp):
    """An application that takes entries in at once but processes them later."""

    def __init__(self) -> None:
        super().__init__()
        self.queued: list[Entry] = []

    async def apply(self, entries: Sequence[Entry]) -> None:
        self.queued.extend(entries)

    async def process(self) -> None:
        queued, self.queued = self.queued, []
        await ListApp.apply(self, queued)


async def test_compaction_waits_for_what_the_application_processed(tmp_path: Path) -> None:
    """The log keeps every entry an application has taken in but not yet processed."""
    cluster = Cluster(tmp_path, dc=DriverConfig(tick_interval_s=0.01, snapshot_every_entries=10))
    apps = {node: QueueingApp() for node in IDS}
    for node in IDS:
        await cluster.start(node, apps[node])
    try:
        leader = await cluster.leader()
        app = apps[leader.node_id]
        await propose_and_process(leader, app, [b"early-%d" % i for i in range(3)])
        before = app.applied_index()
        pending = [asyncio.ensure_future(leader.propose(b"queued-%d" % i, timeout_s=10)) for i in range(40)]
        await asyncio.gather(*pending)  # resolved once taken in, not yet processed
        storage = cluster.storages[leader.node_id]
        assert storage.first_index() <= before + 1, "compacted past what the app processed"
        await app.process()
        await propose_and_process(leader, app, [b"late-%d" % i for i in range(12)])
        assert storage.first_index() > before + 40
    finally:
        await cluster.stop_all()


async def propose_and_process(driver: Driver, app: QueueingApp, payloads: Sequence[bytes]) -> None:
    pending = [asyncio.ensure_future(driver.propose(p, timeout_s=10)) for p in payloads]
    await until(lambda: len(app.queued) >= len(payloads), what="entries taken in")
    await app.process()
    await asyncio.gather(*pending)


async def test_full_inbox_drops_and_counts(cluster: Cluster) -> None:
    """Messages beyond the inbox bound are dropped and counted, not queued."""
    driver = cluster.follower()
    bound = FAST.inbox_messages_max
    leader = await cluster.leader()
    heartbeat = Message(MessageType.HEARTBEAT, to=driver.node_id, frm=leader.node_id)
    for _ in range(bound + 10):
        driver.receive(heartbeat)
    assert driver.stats.messages_dropped >= 10


async def test_stop_fails_waiting_proposals(tmp_path: Path) -> None:
    """Stopping a driver fails the proposals still waiting instead of leaving them hanging."""
    cluster = Cluster(tmp_path, check_quorum=False)
    await cluster.start_all()
    leader = await cluster.leader()
    cluster.net.isolate(leader.node_id)
    waiting = asyncio.ensure_future(leader.propose(b"never", timeout_s=30))
    await until(lambda: leader.stats.proposals == 1, what="the proposal")
    await cluster.stop_all()
    with pytest.raises(DriverStopped):
        await waiting


def _app(to: int, index: int, n: int, term: int = 2, commit: int = 0) -> Message:
    entries = tuple(Entry(Term(term), LogIndex(index + 1 + k), data=b"x" * 10) for k in range(n))
    return Message(
        MessageType.APP,
        to=NodeId(to),
        frm=NodeId(1),
        term=Term(term),
        log_term=Term(term),
        index=LogIndex(index),
        entries=entries,
        commit=LogIndex(commit),
    )


def test_coalesce_merges_appends_that_continue_each_other() -> None:
    """Consecutive appends to one node become one append with all entries and the last commit."""
    msgs = [_app(2, 5, 1, commit=3), _app(3, 5, 1), _app(2, 6, 2, commit=4), _app(3, 6, 1)]
    out = coalesce_appends(msgs, 1 << 20)
    assert [(m.to, m.index, len(m.entries), m.commit) for m in out] == [(2, 5, 3, 4), (3, 5, 2, 0)]
    assert [e.index for e in out[0].entries] == [6, 7, 8]


def test_coalesce_keeps_order_gaps_and_bounds() -> None:
    """Appends are not merged across another message to the node, a gap, or the byte bound."""
    heartbeat = Message(MessageType.HEARTBEAT, to=NodeId(2), frm=NodeId(1), term=Term(2))
    across = [_app(2, 5, 1), heartbeat, _app(2, 6, 1)]
    assert coalesce_appends(across, 1 << 20) == across
    gap = [_app(2, 5, 1), _app(2, 7, 1)]
    assert coalesce_appends(gap, 1 << 20) == gap
    new_term = [_app(2, 5, 1), _app(2, 6, 1, term=3)]
    assert coalesce_appends(new_term, 1 << 20) == new_term
    bounded = [_app(2, 5, 1), _app(2, 6, 1), _app(2, 7, 1)]
    assert [len(m.entries) for m in coalesce_appends(bounded, 20)] == [2, 1]


async def test_malformed_committed_conf_change_is_skipped_on_every_start() -> None:
    """A committed CONF_CHANGE entry whose data is not a change is logged, counted and
    skipped, as the core skips it, instead of stopping the node, also after a restart."""
    storage = MemoryStorage()
    entries = (
        Entry(Term(1), LogIndex(1), EntryType.CONF_CHANGE, b"\xc1"),  # not msgpack
        Entry(Term(1), LogIndex(2), EntryType.CONF_CHANGE, b"\x93\x01\x07"),  # wrong shape
        Entry(Term(1), LogIndex(3), data=b"after"),
    )
    append = Message(
        MessageType.APP, to=NodeId(2), frm=NodeId(1), term=Term(1), entries=entries, commit=LogIndex(3)
    )
    for _ in range(2):  # the second start replays the same committed entries
        driver = await _run_follower_until_applied(storage, append, b"after")
        assert driver.failure is None, driver.failure
        assert driver.stats.conf_changes_skipped == 2
        assert driver.applied_index == 3


async def _run_follower_until_applied(storage: MemoryStorage, append: Message, last: bytes) -> Driver:
    """Start node 2 over `storage`, hand it `append`, stop once `last` applied or it failed."""
    app = ListApp()
    config = Config(id=NodeId(2), voters=IDS, rng=random.Random(1))
    driver = Driver(config, storage, Network().transport(NodeId(2)), app, FAST)
    await driver.start()
    driver.receive(append)
    await until(lambda: last in app.data() or driver.failure is not None, what="the apply")
    await driver.stop()
    return driver


class Capture:
    """A transport that keeps what it is given."""

    def __init__(self) -> None:
        self.sent: list[Message] = []

    def send(self, messages: Sequence[Message]) -> None:
        self.sent.extend(messages)


async def test_read_contexts_differ_across_restarts() -> None:
    """A restarted node never reuses a read context of its earlier life, so a late answer
    to an old read cannot complete a new one with a stale index (found by the Driver
    simulator, seeds 300027 and 300072 at SIM_DURATION_MS=2000)."""
    storage = MemoryStorage()
    heartbeat = Message(MessageType.HEARTBEAT, to=NodeId(2), frm=NodeId(1), term=Term(1))
    contexts = []
    for life in range(2):
        transport = Capture()
        config = Config(id=NodeId(2), voters=IDS, rng=random.Random(life))
        driver = Driver(config, storage, transport, ListApp(), FAST)
        await driver.start()
        driver.receive(heartbeat)  # node 1 leads term 1
        await until(lambda d=driver: d.leader == 1, what="the leader")
        read = asyncio.ensure_future(driver.read_index(timeout_s=5))
        await until(lambda t=transport: any(m.type == MessageType.READ_INDEX for m in t.sent), what="a read")
        contexts.append(next(m.context for m in transport.sent if m.type == MessageType.READ_INDEX))
        await driver.stop()
        with pytest.raises(DriverStopped):
            await read
    assert contexts[0] != contexts[1]


async def test_campaign_stands_for_election_without_waiting_for_a_timeout(tmp_path: Path) -> None:
    """`Driver.campaign()` starts an election at once: with ticks far apart, no election
    timeout can fire during the test, yet the node that campaigns becomes the leader."""
    cluster = Cluster(tmp_path, dc=DriverConfig(tick_interval_s=30.0))
    await cluster.start_all()
    try:
        assert not any(d.is_leader for d in cluster.net.drivers.values())
        cluster.net.drivers[NodeId(2)].campaign()
        assert (await cluster.leader(timeout_s=10)) is cluster.net.drivers[NodeId(2)]
    finally:
        await cluster.stop_all()
