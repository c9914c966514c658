"""Shared helpers of the node tests: polling with a deadline, in-process nodes, actors."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ledger import KeyPair, request_headers
from node import create_app, load_config
from node._keys import NODE
from node._node import Node
from testnet import DocFactory, Testnet, init_testnet

# Fast ticks: a single node elects itself in 0.1 to 0.2 s.
FAST = {"raft": {"tick_ms": 10, "election_ticks": 10, "heartbeat_ticks": 1}}


@dataclass
class InProcessNode:
    net: Testnet
    state: str
    app: web.Application
    client: TestClient[web.Request, web.Application]
    docs: DocFactory

    @property
    def node(self) -> Node:
        return self.app[NODE]

    def regulator(self) -> KeyPair:
        return self.net.regulator(self.state)

    def signed(self, key: KeyPair, path: str, method: str = "GET", *, node: str | None = None,
               time_ms: int | None = None, nonce: str | None = None) -> dict[str, str]:
        """Headers of a signed read of `path` at this node (or for `node`), now (or at
        `time_ms`), with a fresh nonce (or `nonce`)."""
        return request_headers(key, self.net.chain_id, method, path,
                               int(time.time() * 1000) if time_ms is None else time_ms,
                               node or self.state, nonce or secrets.token_hex(16))

    async def submit(self, doc: Any, **params: str) -> tuple[int, Any]:
        query = {"wait": "commit", **params}
        response = await self.client.post("/v1/documents", json=doc.to_json(), params=query)
        return response.status, await response.json()

    async def submit_ok(self, doc: Any, **params: str) -> dict[str, Any]:
        status, body = await self.submit(doc, **params)
        assert status == 200 and body["status"] == "applied", body
        return body


@asynccontextmanager
async def in_process_node(tmp: Path, states: tuple[str, ...] = ("RU",), state: str = "RU",
                          config: dict[str, Any] | None = None) -> AsyncIterator[InProcessNode]:
    """One node of a fresh testnet, served in this process (other states' nodes absent)."""
    net = init_testnet(tmp / "net", states, config={**FAST, **(config or {})})
    app = create_app(load_config(net.node(state).config))
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield InProcessNode(net, state, app, client, DocFactory(net.chain_id))
    finally:
        await client.close()
