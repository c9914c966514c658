"""The peer API under /peer: served over mutual TLS to the member-state nodes only.

The TLS layer already refuses any client without a certificate that was pinned; the
middleware here maps the client's certificate to its member state by the pins in force
(the member table: genesis, as governance last changed it), so every handler knows
which node it talks to, and a Raft message that claims to come from another node than
the one on the connection is dropped. A websocket stays open only while its
certificate stays pinned: once governance removes the node or replaces its
certificate, its next frame is refused and the socket closed.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import WSMsgType, web

from consensus import MalformedMessage, MessageType

from ._appends import AppendRefused, unwrap
from ._chain_api import stream_blocks
from ._errors import Refusal
from ._http import MSGPACK, Args, Integer, Ok, Param, Route, add_routes, respond
from ._keys import METRICS, NODE, TRUST
from ._node import PROCESSED_HEADER
from ._tls import fingerprint
from ._transport import FRAME_BYTES_LIMIT, unpack_frame

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Raft messages an honest Tamga peer never sends: HUP is local by definition; documents
# travel to the leader as gossip, never as forwarded Raft proposals; and leadership
# moves only when the leader itself decides, never at a peer's request (a hostile node
# asking to be handed leadership would otherwise stall proposals while it runs).
NOT_FROM_PEERS = frozenset({MessageType.HUP, MessageType.PROPOSE, MessageType.TRANSFER_LEADER})
PEER_STATE = web.RequestKey("peer_state", str)
PEER_CERT = web.RequestKey("peer_cert", str)  # the SHA-256 of the certificate it presented


def _peer_of(request: web.Request) -> str:
    return request[PEER_STATE]


@web.middleware
async def peer_identity(request: web.Request, handler: Handler) -> web.StreamResponse:
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    der = ssl_object.getpeercert(binary_form=True) if isinstance(ssl_object, ssl.SSLObject) else None
    state = request.app[TRUST].state_of(der)
    if state is None or der is None:
        raise Refusal("not_a_peer", "the peer API serves only the member-state nodes the member table pins")
    request[PEER_STATE] = state
    request[PEER_CERT] = fingerprint(der)
    return await handler(request)


async def _open_socket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(max_msg_size=FRAME_BYTES_LIMIT, heartbeat=5.0, compress=False)
    await ws.prepare(request)
    return ws


async def _frames(request: web.Request, ws: web.WebSocketResponse, what: str) -> AsyncIterator[list[bytes]]:
    """The items of each well-formed frame from one peer's websocket; anything else is
    dropped and counted, never raised."""
    peer = _peer_of(request)
    trust, cert = request.app[TRUST], request[PEER_CERT]
    async for msg in ws:
        if not trust.holds(peer, cert):
            _drop(request, peer, "peer_unpinned", f"a frame on the {what} socket of a certificate no longer "
                  "pinned (governance removed the node or replaced its certificate); closing it")
            await ws.close()
            return
        if msg.type != WSMsgType.BINARY:
            _drop(request, peer, "frame_type", f"a {msg.type.name} frame on the {what} socket")
            continue
        try:
            items = unpack_frame(msg.data)
        except ValueError as exc:  # ledger.DecodeError
            _drop(request, peer, "frame", str(exc))
            continue
        yield items


async def raft_socket(request: web.Request) -> web.WebSocketResponse:
    """Frames of Raft messages from one peer, handed to our driver. An append with
    entries reaches it only with every entry signed by the sender (node/_appends.py)."""
    node = request.app[NODE]
    peer = _peer_of(request)
    peer_id = node.genesis.state(peer).node_id
    own_id = node.member.node_id
    ws = await _open_socket(request)
    async for items in _frames(request, ws, "raft"):
        driver = node.driver
        for item in items:
            try:
                message, signatures = unwrap(item)
            except MalformedMessage as exc:
                _drop(request, peer, "raft_message", f"malformed raft message: {exc}")
                continue
            if message.frm != peer_id or message.to != own_id:
                _drop(request, peer, "raft_sender",
                      f"a raft message from {message.frm} to {message.to} on {peer}'s link")
                continue
            if message.type in NOT_FROM_PEERS:
                _drop(request, peer, "raft_type", f"a {message.type.name} message, which no peer sends")
                continue
            try:
                node.appends.check(peer, message, signatures)
            except AppendRefused as exc:
                _drop(request, peer, exc.reason, str(exc))
                continue
            except Exception:  # a peer's bytes must not end this handler, whatever our bug
                request.app[METRICS].dropped("append_check")
                log.exception("checking the signatures of an append from %s failed; dropped", peer)
                continue
            # Whatever a well-formed message makes the driver do, a peer's bytes must not
            # end this handler (and with it every later message from that peer).
            try:
                driver.receive(message)
            except Exception:
                request.app[METRICS].dropped("raft_handler")
                log.exception("a raft message from %s failed in the driver; dropped", peer)
    return ws


async def gossip_socket(request: web.Request) -> web.WebSocketResponse:
    """Frames of gossip items (documents, attestations, status) from one peer."""
    node = request.app[NODE]
    peer = _peer_of(request)
    ws = await _open_socket(request)
    async for items in _frames(request, ws, "gossip"):
        # GossipInbox drops a bad item itself; this guards what it cannot foresee.
        try:
            node.on_gossip(peer, items)
        except Exception:
            request.app[METRICS].dropped("gossip_handler")
            log.exception("a gossip frame from %s failed; dropped", peer)
    return ws


def _drop(request: web.Request, peer: str, reason: str, what: str) -> None:
    request.app[METRICS].dropped(reason)
    log.warning("dropped from %s: %s", peer, what)


async def peer_blocks(request: web.Request, a: Args) -> web.StreamResponse:
    """Blocks for a peer that restores a snapshot: the same stream auditors read."""
    node = request.app[NODE]
    store = node.store
    # Read before the head: every block up to this Raft index is at or below the head.
    processed = node.processed_index()
    head = store.head.height
    hi = head if a["to"] is None else min(a["to"], head)
    return await stream_blocks(request, store, a["from"], hi, {PROCESSED_HEADER: str(processed)})


async def peer_status(request: web.Request, a: Args) -> web.Response:
    return respond(request, request.app[NODE].status())


_HEIGHT = Integer(1, 2**63 - 1)
# The peer API's table: the plain HTTP routes, checked like the client API's. The two
# websockets carry their own framing and are registered beside it.
PEER_ROUTES = (
    Route("GET", "/peer/blocks", peer_blocks, "Blocks for a peer that restores a snapshot",
          answers=(Ok(200, "the msgpack block stream of /v1/blocks", None, (MSGPACK,)),),
          params=(Param("from", _HEIGHT, "first block height", default=1),
                  Param("to", _HEIGHT, "last block height (default: the head)")),
          reasons=("not_a_peer",)),
    Route("GET", "/peer/status", peer_status, "As /v1/status",
          answers=(Ok(200, "the node's status", "Status"),), reasons=("not_a_peer",)),
)


def make_peer_app(error_middleware: Callable[..., Awaitable[web.StreamResponse]]) -> web.Application:
    # Peers send frames over websockets, never large bodies.
    app = web.Application(client_max_size=1 << 20, middlewares=[error_middleware, peer_identity])
    app.router.add_get("/peer/raft", raft_socket)
    app.router.add_get("/peer/gossip", gossip_socket)
    add_routes(app, PEER_ROUTES)
    return app
