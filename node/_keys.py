"""The typed keys under which the application keeps its resources."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from ledger import Genesis, KeyPair, LedgerStore

from ._config import NodeConfig
from ._metrics import Metrics
from ._node import Node
from ._tls import PeerTrust

CONFIG = web.AppKey("config", NodeConfig)
GENESIS = web.AppKey("genesis", Genesis)
NODE_KEY = web.AppKey("node_key", KeyPair)
TRUST = web.AppKey("trust", PeerTrust)
METRICS = web.AppKey("metrics", Metrics)
STORE = web.AppKey("store", LedgerStore)
NODE = web.AppKey("node", Node)
SESSIONS = web.AppKey("sessions", dict[str, aiohttp.ClientSession])
# Set when the node must stop on its own (divergence, a failed driver); the runner
# waits on it next to SIGTERM. The code is the process's exit status.
STOP = web.AppKey("stop", asyncio.Event)
EXIT_CODE = web.AppKey("exit_code", list[int])
PEER_RUNNER = web.AppKey("peer_runner", web.AppRunner)
