"""A small Tamga network inside the test process: three member-state nodes on loopback.

Each node is its aiohttp application (node.create_app) on an event loop of its own in a
background thread, on the ports `testnet.init_testnet` picked; CLI tests talk to them
over real HTTPS exactly as `tamga` does. Cheaper than processes (no interpreter start,
no imports per node), and every node stops with the fixture: all at once, as
`tamga testnet down` stops processes, so that no node waits on peers that stay up.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from aiohttp import web

import testnet
from ledger import Genesis
from node import api_ssl_context, create_app, load_config

STATES = ("RU", "KZ", "KG")
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
# Short Raft ticks elect a leader in a fraction of a second on loopback.
FAST = {"raft": {"tick_ms": 20, "election_ticks": 10}, "log": {"level": "WARNING"}}


class _NodeThread:
    """One node: an event loop in a thread, serving the node's app."""

    def __init__(self, config_path: Path) -> None:
        self.config = load_config(config_path)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"node-{self.config.state}", daemon=True)
        self.runner: web.AppRunner | None = None

    def call(self, coro: Any, timeout_s: float) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout_s)

    async def _start(self) -> None:
        runner = web.AppRunner(create_app(self.config), access_log=None, handle_signals=False)
        await runner.setup()
        self.runner = runner
        # HTTPS with the certificate genesis pins, as `serve` does.
        tls = api_ssl_context(self.config, Genesis.load(self.config.genesis))
        await web.TCPSite(runner, self.config.api.host, self.config.api.port, ssl_context=tls,
                          reuse_address=True).start()

    async def _stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    def start(self) -> None:
        self.thread.start()
        self.call(self._start(), START_TIMEOUT_S)

    def begin_stop(self) -> Future[Any] | None:
        if not self.thread.is_alive():
            return None
        return asyncio.run_coroutine_threadsafe(self._stop(), self.loop)

    def end(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(STOP_TIMEOUT_S)
        if not self.thread.is_alive():
            self.loop.close()


class InProcessNetwork:
    def __init__(self, directory: Path, states: tuple[str, ...] = STATES) -> None:
        self.net = testnet.init_testnet(directory, states, config=FAST)
        self.dir = self.net.dir
        self.genesis_path = self.net.genesis_path
        self._nodes = [_NodeThread(self.net.node(s).config) for s in states]

    def url(self, state: str) -> str:
        return self.net.node(state).api_url

    def regulator_key(self, state: str) -> Path:
        return self.net.node(state).regulator_key

    def start(self) -> InProcessNetwork:
        try:
            for node in self._nodes:
                node.start()
            testnet.poll_until(lambda: testnet.leader_agreed(self.net), START_TIMEOUT_S, "a leader")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        futures = [f for f in (n.begin_stop() for n in self._nodes) if f is not None]
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for future in futures:
            # A node that fails to stop must not keep the others running.
            with contextlib.suppress(Exception):
                future.result(max(0.1, deadline - time.monotonic()))
        for node in self._nodes:
            node.end()
