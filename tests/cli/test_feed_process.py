"""`tamga events follow` and `tamga events forward` as real processes against a real
three-state testnet: the node they read from is killed mid-stream, they are killed too,
and restarted against another node from their cursor file. What they printed (or what
a local receiving server got, through failures) is the chain's events, in order, with
no gap; every delivery's HMAC verifies."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from ledger import KeyPair
from node import NodeClient
from node.client import SIGNATURE_HEADER, event_pages, verify_body
from testnet import (
    GTIN,
    DocFactory,
    Testnet,
    code_key,
    down,
    fetch_status,
    init_testnet,
    kill,
    poll_until_async,
    start,
    up,
)

ROOT = Path(__file__).resolve().parents[2]
STATES = ("AM", "KZ", "RU")
CONFIG = {"raft": {"tick_ms": 50}}
SHIPMENTS = 24


@dataclass
class Journey:
    net: Testnet
    docs: DocFactory
    producer: KeyPair
    buyer: KeyPair
    key_file: Path
    codes: list[str]


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testnet]:
    testnet = init_testnet(tmp_path_factory.mktemp("feed") / "net", STATES, config=CONFIG)
    try:
        up(testnet.dir)
        yield testnet
    finally:
        down(testnet.dir)


@pytest.fixture
async def journey(net: Testnet, tmp_path: Path) -> AsyncIterator[Journey]:
    for state in STATES:
        start(net.dir, state)  # a previous test killed one
    docs = DocFactory(net.chain_id)
    producer, buyer = KeyPair.generate(), KeyPair.generate()
    serials = docs.serials(SHIPMENTS)
    codes = [code_key(GTIN, s) for s in serials]
    async with NodeClient(net.node("KZ").api_url, genesis=net.genesis) as kz:
        batch = [docs.register(net.regulator("RU"), producer, "RU", ["producer"], "Producer"),
                 docs.register(net.regulator("KZ"), buyer, "KZ", ["wholesaler"], "Buyer")]
        assert all(r["status"] == "applied" for r in (await kz.submit(batch))["results"])
        # The catalogue entry emit needs; the module's second test finds it there already.
        product = await kz.submit(docs.register_product(net.regulator("RU"), producer))
        assert product["status"] == "applied" or product.get("reason") == "already_exists", product
        for doc in (docs.emit(net.regulator("RU"), producer, serials), docs.introduce(producer, codes)):
            assert (await kz.submit(doc))["status"] == "applied"
    key_file = tmp_path / "producer.key"
    producer.save(key_file)
    yield Journey(net, docs, producer, buyer, key_file, codes)


async def ship_all(j: Journey, pause_s: float = 0.1) -> None:
    """Ship each code in its own document, through the nodes that stay up."""
    for i, code in enumerate(j.codes):
        state = ("KZ", "AM")[i % 2]
        async with NodeClient(j.net.node(state).api_url, genesis=j.net.genesis) as client:
            result = await client.submit(j.docs.ship(j.producer, j.buyer, [code]))
            assert result["status"] == "applied", result
        await asyncio.sleep(pause_s)


def chain_events(j: Journey) -> list[tuple[str, str]]:
    """The reader's events as the KZ node lists them, page by page."""
    client = j.net.node("KZ").client(j.producer)
    return [(e["cursor"], e.get("document_id", e["event"])) for e in event_pages(client)]


async def all_chain_events(j: Journey) -> list[tuple[str, str]]:
    """The reader's events once the KZ node applied every shipment (a shipment commits
    when durable on a majority; KZ may apply its block a moment later): registered,
    emitted to, introduced, and each shipment."""
    found: list[list[tuple[str, str]]] = []

    def documents() -> list[tuple[str, str]]:
        return [e for e in found[0] if e[1] != "final"]

    def complete() -> bool:
        found[:] = [chain_events(j)]
        # Every shipment there, and the last block final (its `final` event last).
        return len(documents()) >= SHIPMENTS + 3 and found[0][-1][1] == "final"

    await poll_until_async(complete, 30, "the KZ node to apply every shipment, final")
    assert len(documents()) == SHIPMENTS + 3, documents()
    return found[0]


async def tamga(j: Journey, state: str, out: Path, *args: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in ("TAMGA_NODE", "TAMGA_KEY", "TAMGA_GENESIS"):
        env.pop(name, None)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli.main", "events", *args, "--node", j.net.node(state).api_url,
        "--genesis", str(j.net.genesis_path), "--key", str(j.key_file),
        stdout=out.open("wb"), stderr=out.with_suffix(".err").open("wb"), env=env, cwd=ROOT,
    )


async def stop_process(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGKILL)
        await process.wait()


def printed(path: Path) -> list[tuple[str, str]]:
    lines = path.read_text().splitlines() if path.exists() else []
    # A line cut by the kill is the one whose cursor was not saved: it comes again.
    events = []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        events.append((event["cursor"], event.get("document_id", event["event"])))
    return events


def joined(first: list[tuple[str, str]], second: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Two runs' events; an event handled but not yet saved when the first was killed repeats once."""
    if first and second and second[0] == first[-1]:
        second = second[1:]
    return first + second


async def test_follow_resumes_on_another_node_after_a_kill(journey: Journey, tmp_path: Path) -> None:
    """A follower whose node is killed mid-stream resumes on another node from its cursor file: no gap, no reorder."""
    j, cursor = journey, tmp_path / "cursor"
    out1, out2 = tmp_path / "follow1.jsonl", tmp_path / "follow2.jsonl"
    follower = await tamga(j, "RU", out1, "follow", "--json", "--cursor-file", str(cursor))
    shipping = asyncio.create_task(ship_all(j))
    try:
        await poll_until_async(lambda: len(printed(out1)) >= 8, 60, "the follower to print some events")
        kill(j.net.dir, "RU")
        await stop_process(follower)
        follower = await tamga(j, "KZ", out2, "follow", "--json", "--cursor-file", str(cursor))
        await asyncio.wait_for(shipping, 120)
        expected = await all_chain_events(j)
        await poll_until_async(lambda: len(joined(printed(out1), printed(out2))) >= len(expected),
                               60, "the second follower to reach the head")
        assert joined(printed(out1), printed(out2)) == expected
        # The follower prints an event, then saves its cursor.
        last = tuple(map(int, expected[-1][0].split(".")))
        await poll_until_async(lambda: tuple(map(int, cursor.read_text().split("."))) >= last, 30,
                               "the cursor file to reach the last event")
    finally:
        shipping.cancel()
        await stop_process(follower)


@dataclass
class Receiver:
    """A business's own endpoint: fails for a while, then now and then; checks each HMAC."""

    secret: bytes
    fail_first: int = 3
    fail_every: int = 7
    requests: int = 0
    bad_signatures: int = 0
    delivered: list[tuple[str, str]] | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.read()
        if not verify_body(self.secret, body, request.headers.get(SIGNATURE_HEADER, "")):
            self.bad_signatures += 1
            return web.Response(status=401)
        if self.requests <= self.fail_first or self.requests % self.fail_every == 0:
            return web.Response(status=503)
        event: dict[str, Any] = json.loads(body)
        assert self.delivered is not None
        self.delivered.append((event["cursor"], event.get("document_id", event["event"])))
        return web.Response(status=204)


def caught_up(j: Journey, state: str) -> bool:
    here, there = fetch_status(j.net.node(state)), fetch_status(j.net.node("KZ"))
    return bool(here and there and here.get("height", 0) >= there.get("height", 0) > 0)


def in_order_once(delivered: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Deliveries with at-least-once repeats taken out (each repeat is of the event just before)."""
    out: list[tuple[str, str]] = []
    for item in delivered:
        if not out or out[-1] != item:
            out.append(item)
    return out


async def test_forward_delivers_every_event_in_order_through_failures(journey: Journey, tmp_path: Path) -> None:
    """forward, killed with its node and restarted on another, delivers every event in order to a failing receiver."""
    j, cursor, secret_file = journey, tmp_path / "cursor", tmp_path / "secret"
    secret_file.write_bytes(b"a shared secret of the business\n")
    receiver = Receiver(b"a shared secret of the business", delivered=[])
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}/hook"
    args = ("forward", "--to", url, "--secret-file", str(secret_file), "--cursor-file", str(cursor))
    # RU was killed by the test before and restarted by the fixture: it serves the
    # forwarder once it has caught up with the journey (the producer's registration).
    await poll_until_async(lambda: caught_up(j, "RU"), 60, "RU to catch up with KZ")
    forwarder = await tamga(j, "RU", tmp_path / "forward1.log", *args)
    shipping = asyncio.create_task(ship_all(j))
    delivered = receiver.delivered
    assert delivered is not None
    try:
        await poll_until_async(lambda: len(delivered) >= 8, 90, "some deliveries")
        kill(j.net.dir, "RU")
        await stop_process(forwarder)
        forwarder = await tamga(j, "KZ", tmp_path / "forward2.log", *args)
        await asyncio.wait_for(shipping, 120)
        expected = await all_chain_events(j)
        await poll_until_async(lambda: len(in_order_once(delivered)) >= len(expected), 120,
                               "every event delivered")
        assert in_order_once(delivered) == expected
        assert receiver.bad_signatures == 0 and receiver.requests > len(expected)  # failures were retried
    finally:
        shipping.cancel()
        await stop_process(forwarder)
        await runner.cleanup()
