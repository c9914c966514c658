"""Issue 10, "honest nodes never stop on bytes" and "clients and inputs": bounded bodies,
frames and items, a budget of refused signatures, server connection limits."""

from __future__ import annotations

import asyncio
import socket
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import msgpack
import pytest
from aiohttp import web

from ledger import DocType, SignedDocument, make_document
from node._api import REFUSAL_BUDGET, _parse_body
from node._budget import CLIENT_REFUSALS_BURST
from node._errors import Refusal
from node._gossip import GOSSIP_ATTESTATION, GOSSIP_STATUS, status_item
from node._http import MSGPACK
from node._keys import METRICS
from node._server import ConnectionGate, GateLimits, GuardedSite
from node._tls import client_context
from node._transport import pack_frame
from testnet import poll_until_async

from .helpers import InProcessNode, in_process_node


@pytest.fixture
async def ru(tmp_path: Path) -> AsyncIterator[InProcessNode]:
    async with in_process_node(tmp_path, ("KZ", "RU"), "RU") as n:
        yield n


def empty_arrays_body(count: int) -> bytes:
    """One msgpack array of `count` empty arrays: a byte each (finding 7)."""
    return b"\xdd" + count.to_bytes(4, "big") + b"\x90" * count


def forged_batch(n: InProcessNode, count: int) -> list[SignedDocument]:
    """Documents under the regulator's public id with signatures that do not verify."""
    regulator = n.regulator().participant_id
    now_ms = int(time.time() * 1000)
    out = []
    for i in range(count):
        doc = make_document(n.net.chain_id, DocType.REGISTER_PARTICIPANT, regulator, now_ms + i, now_ms + 600_000,
                            public_key=bytes(32), state="RU", roles=["producer"], name=f"F{i}")
        out.append(SignedDocument(doc.body_bytes(), bytes(64), doc))
    return out


# -- finding 7: a body of empty arrays ---------------------------------------------------


def test_a_msgpack_body_of_empty_arrays_is_refused_before_it_is_built() -> None:
    """1 MiB of empty arrays (a million Python lists before) is refused within a few MB."""
    body = empty_arrays_body(1 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(Refusal) as refused:
            _parse_body(MSGPACK, body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused.value.reason == "malformed"
    assert peak < 8 << 20, f"decoding took {peak} bytes"


def test_json_bodies_are_bounded_in_values_containers_and_depth() -> None:
    """Many empty arrays, too many values, deep nesting: 400 malformed, before or right after parsing."""
    for body in (b"[" + b",".join([b"[]"] * 200_000) + b"]", b"[" + b"0," * 500_000 + b"0]",
                 b"[" * 20 + b"]" * 20, b"[" * 100_000):
        with pytest.raises(Refusal) as refused:
            _parse_body("application/json", body)
        assert refused.value.reason == "malformed"


# -- finding 8: a batch of bad signatures ------------------------------------------------


async def test_a_batch_of_bad_signatures_spends_the_budget_and_the_loop_keeps_answering(
    ru: InProcessNode,
) -> None:
    """10,000 forged documents: only the budget's worth is verified, the rest and the next
    submission answer too_many_refusals (429), and /v1/status answers during the flood."""
    forged = forged_batch(ru, 10_000)
    budget = ru.app[REFUSAL_BUDGET]
    budget.clients.clock = budget.signers.clock = lambda: 0.0  # no refill during the test
    body = msgpack.packb([d.wire() for d in forged])
    answered: list[int] = []
    flooding = asyncio.Event()

    async def poll_status() -> None:
        while not flooding.is_set():
            await asyncio.sleep(0)
        while flooding.is_set():
            response = await ru.client.get("/v1/status")
            answered.append(response.status)

    poller = asyncio.create_task(poll_status())
    flooding.set()
    try:
        responses = []
        for _ in range(3):  # the batch again and again, as an attacker would
            response = await ru.client.post("/v1/documents", data=body, headers={"Content-Type": MSGPACK})
            responses.append((response.status, await response.json()))
            response = await ru.client.post("/v1/documents", data=empty_arrays_body(6 << 20),
                                            headers={"Content-Type": MSGPACK})
            assert response.status in (400, 429)
    finally:
        flooding.clear()
        await poller
    assert answered and set(answered) == {200}
    status, first = responses[0]
    assert status == 202
    errors = [r["error"] for r in first["results"]]
    assert errors.count("bad_signature") == CLIENT_REFUSALS_BURST
    assert errors.count("too_many_refusals") == 10_000 - CLIENT_REFUSALS_BURST
    # Once spent, a whole request is refused unread: 429, however many documents it carries.
    assert all(status == 429 and later["error"] == "too_many_refusals" for status, later in responses[1:])
    single = await ru.client.post("/v1/documents", json=forged[0].to_json())
    assert single.status == 429 and (await single.json())["error"] == "too_many_refusals"
    assert len(ru.node.mempool) == 0


# -- finding 9: a gossiped attestation at height -1 --------------------------------------


async def test_a_peer_socket_survives_out_of_range_items_and_keeps_reading(ru: InProcessNode) -> None:
    """An attestation at height -1 or 2^63, a status with a negative height, a frame of
    nested arrays: each dropped and counted, and the status after them is still read."""
    metrics = ru.app[METRICS]
    kz = ru.net.node("KZ").dir
    ctx = client_context(kz / "tls.crt", kz / "tls.key", (ru.net.node("RU").dir / "tls.crt").read_text())
    url = f"wss://{ru.net.node('RU').peer_address}/peer/gossip"
    bad_items = [
        msgpack.packb([GOSSIP_ATTESTATION, ["KZ", -1, bytes(32), bytes(64)]]),
        msgpack.packb([GOSSIP_ATTESTATION, ["KZ", 1 << 63, bytes(32), bytes(64)]]),
        msgpack.packb([GOSSIP_STATUS, [-5, "00", "leader", 1, 1, "x"]]),
        msgpack.packb([GOSSIP_STATUS, [1, "00", "leader", -1, 1, "x"]]),
        b"\x92\x01" + b"\x91" * 100 + b"\xc0",
    ]
    async with aiohttp.ClientSession() as s, s.ws_connect(url, ssl=ctx) as ws:
        await ws.send_bytes(pack_frame(bad_items))
        await ws.send_bytes(empty_arrays_body(1 << 16))  # a frame that is not a list of bytes
        await ws.send_bytes(pack_frame([status_item(0, "00" * 32, "follower", 1, 2, "test")]))
        await poll_until_async(lambda: "KZ" in ru.node.gossip.peers, 10, "the status after the bad items")
    assert metrics.drops("gossip_item") == len(bad_items)
    assert metrics.drops("frame") == 1
    assert metrics.drops("gossip_handler") == 0


# -- finding 11: header trickle and connection floods ------------------------------------


async def hello(_request: web.Request) -> web.Response:
    return web.Response(text="hello")


async def guarded_server(limits: GateLimits) -> tuple[web.AppRunner, GuardedSite, list[str]]:
    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    events: list[str] = []
    gate = ConnectionGate(limits, lambda: events.append("refused"), lambda: events.append("too_slow"))
    site = GuardedSite(runner, "127.0.0.1", 0, gate=gate)
    await site.start()
    return runner, site, events


async def closed_by_server(sock: socket.socket, timeout_s: float) -> bool:
    """True once the server closes `sock` (recv returns b"" or the connection resets)."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                data = await loop.sock_recv(sock, 1024)
                if not data:
                    return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


async def connect(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return sock


async def test_a_connection_trickling_its_headers_is_closed_at_the_deadline() -> None:
    """One header byte every 50 ms: closed once the header deadline passes; a prompt client is served."""
    runner, site, events = await guarded_server(GateLimits(8, 8, header_timeout_s=0.5))
    loop = asyncio.get_running_loop()
    try:
        sock = await connect(site.port)
        request = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 1000

        async def trickle() -> None:
            for byte in request:
                try:
                    await loop.sock_sendall(sock, bytes([byte]))
                except OSError:
                    return
                await asyncio.sleep(0.05)

        trickler = asyncio.create_task(trickle())
        assert await closed_by_server(sock, 10.0)
        trickler.cancel()
        sock.close()
        assert events == ["too_slow"]
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{site.port}/") as r:
            assert await r.text() == "hello"
        assert site.gate.open <= 1
    finally:
        await runner.cleanup()


async def test_connections_beyond_the_cap_are_closed_at_once() -> None:
    """With a cap of three: a fourth idle connection is closed, and one is admitted again
    once another closes."""
    runner, site, events = await guarded_server(GateLimits(3, 3, header_timeout_s=30.0))
    socks = []
    try:
        for _ in range(3):
            socks.append(await connect(site.port))
        await poll_until_async(lambda: site.gate.open == 3, 5, "three admitted")
        extra = await connect(site.port)
        assert await closed_by_server(extra, 5.0)
        extra.close()
        assert events == ["refused"] and site.gate.open == 3
        socks.pop().close()
        await poll_until_async(lambda: site.gate.open == 2, 5, "a slot freed")
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{site.port}/") as r:
            assert await r.text() == "hello"
    finally:
        for sock in socks:
            sock.close()
        await runner.cleanup()


async def test_the_cap_per_address_holds_below_the_servers_cap() -> None:
    """One address may hold at most its share, even when the server has room."""
    runner, site, events = await guarded_server(GateLimits(10, 2, header_timeout_s=30.0))
    socks = []
    try:
        socks = [await connect(site.port) for _ in range(2)]
        await poll_until_async(lambda: site.gate.open == 2, 5, "two admitted")
        extra = await connect(site.port)
        assert await closed_by_server(extra, 5.0)
        extra.close()
        assert events == ["refused"]
    finally:
        for sock in socks:
            sock.close()
        await runner.cleanup()


async def test_a_json_batch_with_an_unpaired_surrogate_is_malformed(ru: InProcessNode) -> None:
    """A JSON body whose strings are not Unicode (an unpaired surrogate escape) is a 400,
    batch or not; a proper surrogate pair (an emoji) is still text."""
    for body in (b'["\\udfff"]', b'{"document": {"chain_id": "\\ud800"}, "signature": "00"}'):
        response = await ru.client.post("/v1/documents", data=body, headers={"Content-Type": "application/json"})
        assert response.status == 400, body
        assert (await response.json())["error"] == "malformed"
