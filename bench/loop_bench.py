"""What the event loop costs per HTTP request: asyncio's loop against uvloop's, same run.

    .venv/bin/python -m bench.loop_bench [--requests 20000] [--pairs 3]

An aiohttp server and 64 keep-alive clients in one process on loopback: each client
POSTs a 213-byte msgpack body (the size of a signed single-code document) and reads a
msgpack answer shaped like POST /v1/documents' outcome. Each pair runs the same
workload once on asyncio's loop and once on uvloop's, alternating which goes first,
and reports CPU microseconds per request (server and clients together: one process)
and requests per second. The node and the load generator run on uvloop because of
this figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
import msgpack
import uvloop
from aiohttp import web

CLIENTS = 64
OUTCOME = {"id": "ab" * 32, "status": "applied", "reason": None, "message": "", "height": 123456,
           "position": 17}


async def _handler(request: web.Request) -> web.Response:
    msgpack.unpackb(await request.read())
    return web.Response(body=msgpack.packb(OUTCOME, use_bin_type=True), content_type="application/msgpack")


async def _drive(requests: int) -> dict[str, float]:
    app = web.Application()
    app.router.add_post("/v1/documents", _handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    body = msgpack.packb([os.urandom(144), os.urandom(64)], use_bin_type=True)
    url = f"http://127.0.0.1:{port}/v1/documents"
    headers = {"Content-Type": "application/msgpack"}
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CLIENTS * 2)) as session:

            async def clients(count: int) -> None:
                left = iter(range(count))

                async def client() -> None:
                    for _ in left:
                        async with session.post(url, data=body, headers=headers) as response:
                            await response.read()

                await asyncio.gather(*(client() for _ in range(CLIENTS)))

            await clients(requests // 4)  # warm-up: connections open, code paths hot
            cpu, wall = time.process_time(), time.perf_counter()
            await clients(requests)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await runner.cleanup()
    return {"cpu_us_per_request": 1e6 * cpu / requests, "requests_per_s": requests / wall}


def _run(loop_factory: Callable[[], asyncio.AbstractEventLoop], main: Coroutine[Any, Any, dict[str, float]],
         ) -> dict[str, float]:
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    loops: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    runs: dict[str, list[dict[str, float]]] = {"asyncio": [], "uvloop": []}
    for pair in range(args.pairs):
        order = ["asyncio", "uvloop"] if pair % 2 == 0 else ["uvloop", "asyncio"]
        for name in order:
            runs[name].append(_run(loops[name], _drive(args.requests)))
    cpu = {name: statistics.median(r["cpu_us_per_request"] for r in rs) for name, rs in runs.items()}
    rate = {name: statistics.median(r["requests_per_s"] for r in rs) for name, rs in runs.items()}
    print(json.dumps({
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "requests": args.requests, "pairs": args.pairs,
        "cpu_us_per_request": {k: round(v, 1) for k, v in cpu.items()},
        "requests_per_s": {k: round(v) for k, v in rate.items()},
        "uvloop_cpu_ratio": round(cpu["uvloop"] / cpu["asyncio"], 3),
        "uvloop_rate_ratio": round(rate["uvloop"] / rate["asyncio"], 3),
    }, indent=2))


if __name__ == "__main__":
    main()
