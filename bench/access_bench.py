"""What the access rule costs on reads: code show and history, rule on against rule off.

    .venv/bin/python -m bench.access_bench [--requests 5120] [--pairs 3] [--clients 64]

One node of a one-state testnet, in this process, over plain HTTP on loopback. 64
producers each hold codes with a history (emit, introduce, ship, accept) and have
passed others on. Each round starts the node on the same data directory with
`[api] access_rule` true or false (the switch exists for this measurement and is
refused off loopback), signs all its requests ahead (so that the clients' signing is
not measured), then 64 keep-alive clients send them: alternately GET /v1/codes/{code}
and GET /v1/codes/{code}/history of a code the client holds ("holder"), and, in a
second workload, the history of a code it passed on ("past holder": the rule walks
the code's history to find where the client's view ends). Rounds alternate which mode
goes first; the figures are the medians over pairs of the ratio of CPU time per read
(the process's, clients included) and of reads per second.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import platform
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from ledger import KeyPair, request_headers
from node import NodeConfig, create_app, load_config
from testnet import DocFactory, Testnet, init_testnet

FAST = {"raft": {"tick_ms": 20, "election_ticks": 10}, "log": {"level": "WARNING"}}
CLIENTS = 64
START_TIMEOUT_S = 30.0
# Requests signed ahead at a time: a few seconds of reads even on a loaded machine, well
# inside the 30 s a signed read stays good.
CHUNK_REQUESTS = 1280


@dataclasses.dataclass
class World:
    net: Testnet
    config: NodeConfig
    keys: list[KeyPair]
    held: list[str]  # held[i]: a code producer i holds, received from producer i-1
    passed: list[str]  # passed[i]: a code producer i shipped on to producer i+1


async def _serve(config: NodeConfig) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(create_app(config), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, config.api.host, config.api.port, reuse_address=True)
    await site.start()
    return runner, f"http://{config.api.host}:{config.api.port}"


async def _submit(session: aiohttp.ClientSession, url: str, docs: list[Any]) -> None:
    body = [d.to_json() for d in docs]
    params = {"wait": "commit", "timeout_ms": "60000"}
    async with session.post(f"{url}/v1/documents", json=body, params=params) as r:
        results = (await r.json())["results"]
    bad = [x for x in results if x.get("status") != "applied"]
    if bad:
        raise RuntimeError(f"setup document refused: {bad[0]}")


async def _setup(tmp: Path, clients: int) -> World:
    net = init_testnet(tmp / "net", ("RU",), config=FAST, api_tls=False)
    config = load_config(net.node("RU").config)
    docs = DocFactory(net.chain_id)
    regulator = net.regulator("RU")
    keys = [KeyPair.generate() for _ in range(clients)]
    runner, url = await _serve(config)
    try:
        async with aiohttp.ClientSession() as session:
            await _wait_leader(session, url)
            await _submit(session, url, [docs.register(regulator, k, "RU", ["producer"], f"P{i}")
                                         for i, k in enumerate(keys)])
            emits = [docs.emit(regulator, k, docs.serials(2)) for k in keys]
            await _submit(session, url, emits)
            codes = [["01" + e.document.payload[1] + "21" + s for s in e.document.payload[2]] for e in emits]
            await _submit(session, url, [docs.introduce(k, c) for k, c in zip(keys, codes)])
            ships = [docs.ship(k, keys[(i + 1) % clients], [codes[i][1]]) for i, k in enumerate(keys)]
            await _submit(session, url, ships)
            accepts = [docs.accept(keys[(i + 1) % clients], s.id) for i, s in enumerate(ships)]
            await _submit(session, url, accepts)
    finally:
        await runner.cleanup()
    held = [codes[(i - 1) % clients][1] for i in range(clients)]
    passed = [codes[i][1] for i in range(clients)]
    return World(net, config, keys, held, passed)


async def _wait_leader(session: aiohttp.ClientSession, url: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        async with session.get(f"{url}/v1/status") as r:
            if (await r.json()).get("role") == "leader":
                return
        await asyncio.sleep(0.05)
    raise RuntimeError("the node did not become leader")


def _requests(world: World, workload: str, count: int) -> list[list[tuple[str, dict[str, str]]]]:
    """Each client's signed requests, signed now (they stay good for 30 s)."""
    now = int(time.time() * 1000)
    per_client = count // len(world.keys)
    out = []
    for i, key in enumerate(world.keys):
        mine = []
        for n in range(per_client):
            if workload == "holder":
                code = world.held[i]
                path = f"/v1/codes/{code}" if n % 2 == 0 else f"/v1/codes/{code}/history"
            else:
                path = f"/v1/codes/{world.passed[i]}/history"
            nonce = secrets.token_hex(16)
            mine.append((path, request_headers(key, world.net.chain_id, "GET", path, now, "RU", nonce)))
        out.append(mine)
    return out


async def _round(world: World, rule: bool, workload: str, count: int) -> tuple[float, float]:
    """Reads per second of one mode, and CPU microseconds per read (server and clients:
    one process), which other load on the machine disturbs far less than the wall
    clock. Requests are signed a chunk at a time, outside the timed part, so that each
    is sent well within its 30 s."""
    config = dataclasses.replace(world.config, api=dataclasses.replace(world.config.api, access_rule=rule))
    runner, url = await _serve(config)
    sent, elapsed, cpu = 0, 0.0, 0.0
    try:
        connector = aiohttp.TCPConnector(limit=len(world.keys) * 2)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def client(mine: list[tuple[str, dict[str, str]]]) -> None:
                for path, headers in mine:
                    async with session.get(url + path, headers=headers) as r:
                        await r.read()
                        if r.status != 200:
                            raise RuntimeError(f"{path}: {r.status} {await r.text()}")

            while sent < count:
                plan = _requests(world, workload, min(CHUNK_REQUESTS, count - sent))
                start, start_cpu = time.perf_counter(), time.process_time()
                await asyncio.gather(*(client(m) for m in plan))
                elapsed += time.perf_counter() - start
                cpu += time.process_time() - start_cpu
                sent += sum(len(m) for m in plan)
        return sent / elapsed, cpu / sent * 1e6
    finally:
        await runner.cleanup()


async def run(requests: int, pairs: int, clients: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tamga-access-bench-") as tmp:
        world = await _setup(Path(tmp), clients)
        out: dict[str, Any] = {}
        for workload in ("holder", "past_holder"):
            rows: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
            cpu_ratios, rate_ratios = [], []
            for p in range(pairs):
                order = (True, False) if p % 2 == 0 else (False, True)
                got = {rule: await _round(world, rule, workload, requests) for rule in order}
                for rule in order:
                    rows[rule].append(got[rule])
                cpu_ratios.append(got[True][1] / got[False][1])
                rate_ratios.append(got[True][0] / got[False][0])
            out[workload] = {
                "on_reads_per_s": [round(r) for r, _ in rows[True]],
                "off_reads_per_s": [round(r) for r, _ in rows[False]],
                "on_cpu_us_per_read": [round(c) for _, c in rows[True]],
                "off_cpu_us_per_read": [round(c) for _, c in rows[False]],
                "cpu_cost_percent": round(100 * (statistics.median(cpu_ratios) - 1), 1),
                "rate_cost_percent": round(100 * (1 - statistics.median(rate_ratios)), 1),
            }
        out["machine"] = f"{platform.machine()}, Python {platform.python_version()}"
        out["requests_per_round"], out["clients"] = requests, clients
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5120, help="signed reads per round")
    parser.add_argument("--pairs", type=int, default=3, help="rounds of (on, off), alternating the order")
    parser.add_argument("--clients", type=int, default=CLIENTS)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - the node's own dependency
        pass
    print(json.dumps(asyncio.run(run(args.requests, args.pairs, args.clients)), indent=2))


if __name__ == "__main__":
    main()
