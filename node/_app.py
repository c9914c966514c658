"""The node's aiohttp application: a factory, its resources, the error middleware, a runner.

`create_app(config)` checks everything it can before anything starts (genesis, keys,
certificates), then registers one cleanup context per resource, in the order they
depend on each other; aiohttp starts them in that order and cleans up in the reverse
one, and only those that started:

    ledger store -> Raft log -> peer sessions -> node (every part built, nothing
    started) -> peer API server -> peer links -> Raft driver -> applier, proposer and
    housekeeping tasks

(The links start before the driver because a driver that starts from a snapshot the
ledger has not reached fetches the missing blocks from peers at once.)

`run_node(path)` runs one node until SIGTERM or SIGINT (exit 0), or until the node
stops itself because it diverged or its Raft driver failed (exit 3).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import plyvel
import uvloop
from aiohttp import web

from consensus import LevelDBStorage, StorageError
from ledger import DecodeError, Genesis, KeyFileError, KeyPair, LedgerStore, StoreError

from ._api import REFUSAL_BUDGET
from ._budget import RefusalBudget
from ._config import ConfigError, NodeConfig, load_config
from ._http import error_middleware
from ._keys import (
    CONFIG,
    EXIT_CODE,
    GENESIS,
    METRICS,
    NODE,
    NODE_KEY,
    PEER_RUNNER,
    SESSIONS,
    STOP,
    STORE,
    TRUST,
)
from ._metrics import Metrics
from ._node import Node
from ._peer import make_peer_app
from ._routes import add_routes
from ._server import API_GATE, PEER_GATE, ConnectionGate, GateLimits, GuardedSite, runner_limits
from ._tls import (
    PeerTrust,
    TlsError,
    api_ssl_context,
    check_own_certificate,
    client_context,
    load_trust,
    server_context,
)

log = logging.getLogger(__name__)

EXIT_DIVERGED = 3
RAFT_LOG = web.AppKey("raft_log", LevelDBStorage)


class StartError(Exception):
    """The node cannot start as configured (a one-line reason for the operator)."""


# -- the factory -----------------------------------------------------------------------


def create_app(config: NodeConfig) -> web.Application:
    """The node's application; every check that can fail early fails here."""
    try:
        genesis = Genesis.load(config.genesis)
    except DecodeError as exc:
        raise StartError(str(exc)) from exc
    if config.state not in {s.code for s in genesis.states}:
        raise StartError(f"genesis {config.genesis} has no member state {config.state}")
    try:
        key = KeyPair.load(config.node_key)
    except KeyFileError as exc:
        raise StartError(str(exc)) from exc
    # The node key and our certificate are checked against the member table once the
    # store is open (_store_ctx): governance may have replaced genesis's.
    try:
        # Genesis's pins for now: the store, opened next, holds the pins in force.
        trust = load_trust(genesis, config.state, config.tls_cert, config.peer_certs, check_own=False)
    except TlsError as exc:
        raise StartError(str(exc)) from exc

    app = web.Application(client_max_size=config.api.body_bytes_max, middlewares=[error_middleware])
    app[CONFIG] = config
    app[GENESIS] = genesis
    app[NODE_KEY] = key
    app[TRUST] = trust
    app[METRICS] = Metrics(config.state)
    app[STOP] = asyncio.Event()
    app[EXIT_CODE] = [0]
    app[REFUSAL_BUDGET] = RefusalBudget()
    add_routes(app)
    # Long polls and event streams end at shutdown rather than hold it for their wait.
    app.on_shutdown.append(_close_feed)
    app.cleanup_ctx.extend(
        [_store_ctx, _raft_log_ctx, _sessions_ctx, _node_ctx, _peer_server_ctx, _links_ctx, _driver_ctx,
         _tasks_ctx]
    )
    return app


async def _close_feed(app: web.Application) -> None:
    if NODE in app:
        app[NODE].feed.close()


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    try:
        config.make_data_dirs()
    except OSError as exc:
        raise StartError(f"cannot create the data directory {config.data_dir}: {exc.strerror}") from exc
    try:
        # No fsync per block: the block is already durable on a majority in the Raft
        # log before it is applied. After a power loss LevelDB comes back at an earlier
        # whole block; the Raft log replays what follows, or, where the log is already
        # compacted, the driver restores a snapshot and we fetch those blocks from peers.
        store = LedgerStore(config.ledger_dir, app[GENESIS], sync=False)
    except StoreError as exc:
        raise StartError(str(exc)) from exc
    try:
        _check_membership(config, app[NODE_KEY], store, app[TRUST])
    except StartError:
        store.close()
        raise
    app[STORE] = store
    yield
    store.close()


def _check_membership(config: NodeConfig, key: KeyPair, store: LedgerStore, trust: PeerTrust) -> None:
    """Our key and certificate against the member table (genesis's nodes, as the
    governance documents this ledger applied changed them); pin the peers' certificates.

    A key or certificate the local table does not pin is an error only at the start of
    the chain (genesis's table, nothing applied): a node whose certificate governance
    replaced may restart with the new one before its ledger applied that replacement
    (its peers cut the old certificate off as soon as they applied it), and catches up
    with it; until then it logs why its peers may refuse it."""
    table = store.members()
    member = table.member(config.state)
    if member is None:
        raise StartError(f"the member table has no member state {config.state}")
    if not member.active:
        # Not an error that stops it: only a running node learns that the states add
        # it back (its peers refuse it until then).
        log.error("governance removed %s's node at or before block %d: its peers refuse it until the "
                  "states add it back", config.state, store.head.height)
    pins = {**table.pins(), config.state: member.tls_cert_sha256}
    try:
        if key.public_key != member.node_public_key:
            raise TlsError(f"the node key {config.node_key} is not the one pinned for {config.state} "
                           "(by genesis, as governance last changed it)")
        check_own_certificate(config.tls_cert, config.state, pins)
    except TlsError as exc:
        if store.head.height == 0:
            raise StartError(str(exc)) from exc
        log.error("%s at block %d; starting anyway, in case governance replaced it in a block this "
                  "node has not applied yet", exc, store.head.height)
    trust.set_pins(pins)
    missing = [m.code for m in table.active() if m.code != config.state and m.code not in trust.certs_pem]
    if missing:
        log.warning("no pinned certificate found for %s in %s: they are unreachable", ", ".join(missing),
                    config.peer_certs)


async def _raft_log_ctx(app: web.Application) -> AsyncIterator[None]:
    path = app[CONFIG].raft_dir
    path.mkdir(parents=True, exist_ok=True)
    try:
        storage = LevelDBStorage(path)
    except (plyvel.Error, StorageError) as exc:
        raise StartError(f"cannot open the Raft log {path}: {exc}") from exc
    app[RAFT_LOG] = storage
    yield
    storage.close()


def session_factory(config: NodeConfig, trust: PeerTrust) -> Callable[[str], aiohttp.ClientSession | None]:
    """Opens a client session to one peer that trusts only its pinned certificate (None
    when the bundle holds none for it)."""

    def make(state: str) -> aiohttp.ClientSession | None:
        pem = trust.certs_pem.get(state)
        if pem is None:
            return None
        ctx = client_context(config.tls_cert, config.tls_key, pem)
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=16))

    return make


async def _sessions_ctx(app: web.Application) -> AsyncIterator[None]:
    """One client session per peer, each trusting only that peer's pinned certificate;
    the links open and close sessions in this dict as the member table changes."""
    make = session_factory(app[CONFIG], app[TRUST])
    sessions: dict[str, aiohttp.ClientSession] = {}
    for state in app[TRUST].certs_pem:
        session = make(state)
        if session is not None:
            sessions[state] = session
    app[SESSIONS] = sessions
    yield
    await asyncio.gather(*(s.close() for s in sessions.values()))


async def _peer_server_ctx(app: web.Application) -> AsyncIterator[None]:
    config, genesis = app[CONFIG], app[GENESIS]
    peer_app = make_peer_app(error_middleware)
    peer_app[CONFIG] = config
    peer_app[NODE] = app[NODE]
    peer_app[TRUST] = app[TRUST]
    peer_app[METRICS] = app[METRICS]
    host, _, port = genesis.state(config.state).peer_address.rpartition(":")
    runner = web.AppRunner(peer_app, access_log=None, handle_signals=False, **runner_limits())
    await runner.setup()
    ctx = server_context(config.tls_cert, config.tls_key, app[TRUST])
    site = GuardedSite(
        runner, config.peer.host or host, config.peer.port or int(port), ssl_context=ctx, reuse_address=True,
        gate=make_gate(app[METRICS], "peer", PEER_GATE),
    )
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise StartError(f"cannot listen for peers on {config.peer.host or host}:{config.peer.port or port}: "
                         f"{exc.strerror}") from exc
    app[PEER_RUNNER] = runner
    yield
    await runner.cleanup()


async def _node_ctx(app: web.Application) -> AsyncIterator[None]:
    def on_fatal(_reason: str) -> None:
        app[EXIT_CODE][0] = EXIT_DIVERGED
        app[STOP].set()

    node = Node(app[CONFIG], app[GENESIS], app[NODE_KEY], app[STORE], app[RAFT_LOG], app[SESSIONS],
                app[METRICS], on_fatal, make_session=session_factory(app[CONFIG], app[TRUST]),
                pin_peers=app[TRUST].set_pins)
    app[NODE] = node
    yield
    node.close()


async def _links_ctx(app: web.Application) -> AsyncIterator[None]:
    links = app[NODE].links
    links.start()
    yield
    await links.stop()


async def _driver_ctx(app: web.Application) -> AsyncIterator[None]:
    driver = app[NODE].driver
    await driver.start()
    app[NODE].offer_at_start()  # documents a heal finished at start undid (node/_healing.py)
    yield
    await driver.stop()


async def _tasks_ctx(app: web.Application) -> AsyncIterator[None]:
    node = app[NODE]
    tasks = [
        asyncio.create_task(node.pipeline.run(), name="applier"),
        asyncio.create_task(node.proposer.run(), name="proposer"),
        asyncio.create_task(node.housekeeping.run(), name="housekeeping"),
    ]
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# -- running one node ------------------------------------------------------------------


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def make_gate(metrics: Metrics, server: str, limits: GateLimits) -> ConnectionGate:
    """The connection cap and header deadline of one server, counted in its metrics."""
    refused, too_slow = metrics.connections_refused(server), metrics.header_timeouts(server)
    return ConnectionGate(limits, refused.inc, too_slow.inc)


async def serve(config: NodeConfig) -> int:
    """Serve until a signal or a fatal error; the exit status."""
    app = create_app(config)
    try:
        api_tls = api_ssl_context(config, app[GENESIS])
    except TlsError as exc:
        raise StartError(str(exc)) from exc
    runner = web.AppRunner(app, access_log=None, handle_signals=False, **runner_limits())
    try:
        await runner.setup()
        site = GuardedSite(runner, config.api.host, config.api.port, ssl_context=api_tls, reuse_address=True,
                           gate=make_gate(app[METRICS], "api", API_GATE))
        try:
            await site.start()
        except OSError as exc:
            raise StartError(f"cannot listen on {config.api.host}:{config.api.port}: {exc.strerror}") from exc
        stop = app[STOP]
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("node %s serving the API on %s://%s:%d", config.state, config.api.scheme, config.api.host,
                 config.api.port)
        await stop.wait()
        log.info("node %s stopping", config.state)
    finally:
        with contextlib.suppress(Exception):
            await runner.cleanup()
    return app[EXIT_CODE][0]


def run_node(config_path: Path | str) -> int:
    """Run one node from its config file; returns the process exit status.

    Raises ConfigError or StartError, each with a one-line reason, when it cannot start.
    """
    config = load_config(config_path)
    setup_logging(config.log_level)
    # uvloop's event loop, with asyncio's semantics: less CPU per HTTP request in the
    # profile (x0.76) and in bench.loop_bench (x0.84 to x1.05 on a noisy day; see
    # bench/README.md), and never measured worse beyond that noise.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(serve(config))


__all__ = ["ConfigError", "StartError", "create_app", "run_node", "serve"]
