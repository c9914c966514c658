"""A hostile member state: a test peer that holds one genesis state's real identity.

The harness takes over the identity of one state of a real testnet (its pinned TLS
certificate and key, its node key and its regulator's key, all read from the testnet
directory) after that state's node was stopped, and speaks the peer protocol as that
state: it dials the honest nodes' /peer/raft and /peer/gossip websockets over mutual TLS
and sends them whatever it likes (raw websocket frames, frames of items, Raft messages,
gossip items), and it serves that state's peer API (the websockets the honest nodes dial
to it, the block stream and the status) so that honest nodes that fetch from it get
whatever it chooses to answer. This is exactly what a hostile state can do: genesis pins
its certificate, so every honest node lets it in.

It runs its own event loop on a thread, so that synchronous tests drive it between
checks of the honest nodes without sharing their event loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import msgpack
from aiohttp import WSMsgType, web

from consensus import (
    ConfState,
    Entry,
    EntryType,
    LogIndex,
    Message,
    MessageType,
    NodeId,
    Snapshot,
    SnapshotMeta,
    Term,
    encode_message,
)
from ledger import Attestation, KeyPair, SignedAppend
from node._appends import carries_entries, entry_digest, pack_envelope, unwrap
from node._tls import client_context, load_trust, server_context
from node._transport import pack_frame
from testnet import Testnet, fetch_status, poll_until

T = TypeVar("T")
# Frames up to this size leave the harness: above the honest nodes' own limit (64 MiB),
# so that an oversized frame is the receiver's problem, not ours.
HARNESS_FRAME_BYTES_MAX = 128 << 20
CALL_TIMEOUT_S = 60.0
# Heartbeats while the harness poses as leader: well inside the honest nodes' election
# timeout (at least election_ticks x tick_ms = 10 x 50 ms in the test configuration).
HEARTBEAT_INTERVAL_S = 0.1
# Received Raft messages kept for inspection; older ones are dropped.
INBOX_MAX = 20_000

BlocksHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seized:
    """What the harness knows after taking leadership of some honest nodes."""

    term: int
    last_index: int  # the last index of the entries it appended
    commit: int


@dataclass
class _Inbox:
    raft: collections.deque[Message] = field(default_factory=lambda: collections.deque(maxlen=INBOX_MAX))
    gossip: collections.deque[tuple[str, bytes]] = field(
        default_factory=lambda: collections.deque(maxlen=INBOX_MAX))
    changed: threading.Condition = field(default_factory=threading.Condition)


class HostilePeer:
    """One genesis state's identity in the hands of a test, speaking the peer protocol."""

    def __init__(self, net: Testnet, state: str) -> None:
        self.net = net
        self.state = state
        self.genesis = net.genesis
        self.member = self.genesis.state(state)
        self.node_id = NodeId(self.member.node_id)
        layout = net.node(state)
        self.node_key = KeyPair.load(layout.node_key)
        self.regulator = KeyPair.load(layout.regulator_key)
        self.tls_cert = layout.dir / "tls.crt"
        self.tls_key = layout.dir / "tls.key"
        self.trust = load_trust(self.genesis, state, self.tls_cert, net.dir / "peers.pem")
        self.honest = [s.code for s in self.genesis.states if s.code != state]
        self.inbox = _Inbox()
        # What the fake peer API answers; tests replace these.
        self.blocks_handler: BlocksHandler | None = None
        self.status_answer: dict[str, Any] = {"state": state, "height": 0, "role": "follower"}
        self.blocks_requests = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"hostile-{state}", daemon=True)
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._sockets: dict[tuple[str, str], aiohttp.ClientWebSocketResponse] = {}
        self._runner: web.AppRunner | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._readers: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        self.call(self._start())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call(self._close(), timeout_s=20)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float = CALL_TIMEOUT_S) -> T:
        """Run a coroutine on the harness's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    async def _start(self) -> None:
        for peer, pem in self.trust.certs_pem.items():
            ctx = client_context(self.tls_cert, self.tls_key, pem)
            self._sessions[peer] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=64))
        app = web.Application(client_max_size=HARNESS_FRAME_BYTES_MAX)
        app.router.add_get("/peer/raft", self._serve_raft)
        app.router.add_get("/peer/gossip", self._serve_gossip)
        app.router.add_get("/peer/blocks", self._serve_blocks)
        app.router.add_get("/peer/status", self._serve_status)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        host, _, port = self.member.peer_address.rpartition(":")
        ctx = server_context(self.tls_cert, self.tls_key, self.trust)
        site = web.TCPSite(self._runner, host, int(port), ssl_context=ctx, reuse_address=True)
        await site.start()

    async def _close(self) -> None:
        self._stop_heartbeat()
        for task in self._readers:
            task.cancel()
        for ws in self._sockets.values():
            with contextlib.suppress(Exception):
                await ws.close()
        for session in self._sessions.values():
            await session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- the fake peer API (what honest nodes dial and fetch) ---------------------------

    async def _serve_raft(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=HARNESS_FRAME_BYTES_MAX)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type != WSMsgType.BINARY:
                continue
            with contextlib.suppress(Exception):
                for item in msgpack.unpackb(msg.data, raw=False):
                    self._note_raft(unwrap(item)[0])
        return ws

    async def _serve_gossip(self, request: web.Request) -> web.WebSocketResponse:
        peer = self.trust.state_of(_peer_der(request)) or "?"
        ws = web.WebSocketResponse(max_msg_size=HARNESS_FRAME_BYTES_MAX)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type != WSMsgType.BINARY:
                continue
            with contextlib.suppress(Exception):
                items = msgpack.unpackb(msg.data, raw=False)
                with self.inbox.changed:
                    self.inbox.gossip.extend((peer, item) for item in items)
                    self.inbox.changed.notify_all()
        return ws

    def _note_raft(self, message: Message) -> None:
        with self.inbox.changed:
            self.inbox.raft.append(message)
            self.inbox.changed.notify_all()

    async def _serve_blocks(self, request: web.Request) -> web.StreamResponse:
        self.blocks_requests += 1
        if self.blocks_handler is not None:
            return await self.blocks_handler(request)
        return web.Response(status=404)

    async def _serve_status(self, request: web.Request) -> web.Response:
        return web.json_response(self.status_answer)

    # -- dialing the honest nodes --------------------------------------------------------

    async def _socket(self, peer: str, kind: str) -> aiohttp.ClientWebSocketResponse:
        ws = self._sockets.get((peer, kind))
        if ws is None or ws.closed:
            url = f"wss://{self.genesis.state(peer).peer_address}/peer/{kind}"
            ws = await self._sessions[peer].ws_connect(url, max_msg_size=HARNESS_FRAME_BYTES_MAX, compress=0)
            self._sockets[(peer, kind)] = ws
            # Someone must read: that answers the server's pings (else it hangs up within
            # its heartbeat) and notices its close.
            self._readers.add(asyncio.get_running_loop().create_task(self._drain(ws)))
        return ws

    async def _drain(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        with contextlib.suppress(Exception):
            async for _ in ws:
                pass

    async def _send(self, peer: str, kind: str, payloads: Sequence[bytes | str]) -> None:
        ws = await self._socket(peer, kind)
        for payload in payloads:
            if isinstance(payload, str):
                await ws.send_str(payload)
            else:
                await ws.send_bytes(payload)

    def send_raw(self, peer: str, kind: str, payloads: Sequence[bytes | str]) -> None:
        """Websocket messages as they are: bytes as binary frames, str as text frames. A
        socket the server closed (after an earlier attack) is dialed again once."""

        async def go() -> None:
            try:
                await self._send(peer, kind, payloads)
            except (aiohttp.ClientError, ConnectionError):
                stale = self._sockets.pop((peer, kind), None)
                if stale is not None:
                    with contextlib.suppress(Exception):
                        await stale.close()
                await self._send(peer, kind, payloads)

        self.call(go())

    def send_items(self, peer: str, kind: str, items: Sequence[bytes], per_frame: int = 1000) -> None:
        """Items packed into well-formed frames."""
        frames = [pack_frame(list(items[i:i + per_frame])) for i in range(0, len(items), per_frame)]
        self.send_raw(peer, kind, frames)

    def send_raft(self, peer: str, messages: Sequence[Message], sign: bool = True) -> None:
        """Raft messages, appends with their entries signed by our node key (`sign`)."""
        self.send_items(peer, "raft", [self.wrap(m) if sign else encode_message(m) for m in messages])

    def send_raft_at_once(self, messages: dict[str, Sequence[Message]]) -> None:
        """Raft messages to several peers, signed and framed first and then written to
        every socket concurrently: an equivocation must reach each follower before the
        followers' own gossip of what they took can warn the others."""
        frames = {peer: [pack_frame([self.wrap(m) for m in msgs])] for peer, msgs in messages.items()}

        async def go() -> None:
            await asyncio.gather(*(self._send(peer, "raft", fr) for peer, fr in frames.items()))

        self.call(go())

    def sign_append(self, entry: Entry) -> SignedAppend:
        """Our node key's statement that we appended `entry` at its (term, index)."""
        return SignedAppend.of_hash(self.node_key, self.genesis.chain_id, self.state, int(entry.term),
                                    int(entry.index), entry_digest(entry))

    def wrap(self, m: Message) -> bytes:
        """The frame item for `m`: an append's entries signed with our node key, as an
        honest leader's are (the honest nodes take no append without), but whatever we
        appended before at the same (term, index): the harness equivocates at will."""
        if not carries_entries(m):
            return encode_message(m)
        return pack_envelope(encode_message(m), [self.sign_append(e).signature for e in m.entries])

    def gossip(self, peer: str, items: Sequence[bytes]) -> None:
        self.send_items(peer, "gossip", items)

    def drop_sockets(self) -> None:
        async def go() -> None:
            for key in list(self._sockets):
                with contextlib.suppress(Exception):
                    await self._sockets.pop(key).close()

        self.call(go())

    # -- received messages ---------------------------------------------------------------

    def wait_raft(self, cond: Callable[[Message], bool], timeout_s: float = 5.0) -> Message | None:
        """The first message in the inbox that satisfies `cond`, waiting up to `timeout_s`
        (clear the inbox first to see only what arrives from then on)."""
        deadline = time.monotonic() + timeout_s
        with self.inbox.changed:
            while True:
                for m in list(self.inbox.raft):
                    if cond(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.inbox.changed.wait(left)

    def clear_inbox(self) -> None:
        with self.inbox.changed:
            self.inbox.raft.clear()
            self.inbox.gossip.clear()

    def attestations_seen(self) -> list[Attestation]:
        out = []
        with self.inbox.changed:
            items = list(self.inbox.gossip)
        for _, item in items:
            with contextlib.suppress(Exception):
                value = msgpack.unpackb(item, raw=False)
                if value[0] == 1:
                    out.append(Attestation.from_list(value[1]))
        return out

    # -- posing as leader -----------------------------------------------------------------

    def quiesce(self, timeout_s: float = 30.0) -> tuple[int, int]:
        """Wait until the honest nodes agree on term and commit index; (term, commit)."""
        found: list[tuple[int, int]] = []

        def agreed() -> bool:
            views = [fetch_status(self.net.node(s)) for s in self.honest]
            if any(v is None or v.get("role") == "stopped" for v in views):
                return False
            keys = {(v["term"], v["commit_index"]) for v in views if v}
            if len(keys) == 1 and any(v and v.get("role") == "leader" for v in views):
                found.append(keys.pop())
                return True
            return False

        poll_until(agreed, timeout_s, "the honest nodes to agree on term and commit index")
        return found[-1]

    def seize(self, make_entries: Callable[[int, int], list[Entry]], targets: Sequence[str] | None = None,
              commit: bool = True) -> Seized:
        """Claim leadership in a new term towards `targets` (default: every honest node)
        with one append of `make_entries(first_index, term)`, committed at once: what a
        hostile state's node can do whenever it likes, since Raft follows a higher term."""
        targets = list(targets or self.honest)
        views = {s: fetch_status(self.net.node(s)) for s in targets}
        term = max(int(v["term"]) for v in views.values() if v) + 1
        prev_index = min(int(v["commit_index"]) for v in views.values() if v)
        prev_term = max(int(v["term"]) for v in views.values() if v)
        # Find the follower's real last entry of that index by probing.
        for _ in range(6):
            entries = make_entries(prev_index + 1, term)
            last = prev_index + len(entries)
            self.clear_inbox()
            for peer in targets:
                self.send_raft(peer, [Message(
                    MessageType.APP, to=self._id(peer), frm=self.node_id, term=Term(term),
                    log_term=Term(prev_term), index=LogIndex(prev_index), entries=tuple(entries),
                    commit=LogIndex(last if commit else prev_index))])
            answers: dict[int, Message] = {}
            deadline = time.monotonic() + 5
            while len(answers) < len(targets) and time.monotonic() < deadline:
                known = set(answers)
                self.wait_raft(lambda m, known=known: m.type == MessageType.APP_RESP  # type: ignore[misc]
                               and m.term == term and m.frm not in known, 0.5)
                with self.inbox.changed:
                    for m in self.inbox.raft:
                        if m.type == MessageType.APP_RESP and m.term == term:
                            answers[m.frm] = m
            rejected = [m for m in answers.values() if m.reject]
            if answers and not rejected:
                return Seized(term, last, last if commit else prev_index)
            if rejected:
                prev_index, prev_term = rejected[0].reject_hint, rejected[0].log_term
        raise AssertionError("the honest nodes did not take the hostile append")

    def heartbeat(self, term: int, targets: Sequence[str] | None = None) -> None:
        """Keep leading in `term`: heartbeats until `stop_heartbeat`."""
        targets = list(targets or self.honest)

        async def beat() -> None:
            while True:
                for peer in targets:
                    with contextlib.suppress(Exception):
                        await self._send(peer, "raft", [pack_frame([encode_message(Message(
                            MessageType.HEARTBEAT, to=self._id(peer), frm=self.node_id, term=Term(term)))])])
                await asyncio.sleep(HEARTBEAT_INTERVAL_S)

        async def go() -> None:
            self._stop_heartbeat()
            self._heartbeat = asyncio.get_running_loop().create_task(beat())

        self.call(go())

    def stop_heartbeat(self) -> None:
        async def go() -> None:
            self._stop_heartbeat()

        self.call(go())

    def _stop_heartbeat(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None

    def send_snapshot(self, peer: str, term: int, index: int, data: bytes = b"") -> None:
        voters = tuple(NodeId(s.node_id) for s in self.genesis.states)
        snap = Snapshot(SnapshotMeta(LogIndex(index), Term(term), ConfState(voters=voters)), data)
        self.send_raft(peer, [Message(MessageType.SNAP, to=self._id(peer), frm=self.node_id, term=Term(term),
                                      snapshot=snap)])

    def attest(self, att: Attestation) -> Attestation:
        """Our own signature on a block hash another state attested."""
        header = _Header(att.height, att.block_hash, att.round)
        return Attestation.make(self.node_key, self.genesis.chain_id, self.state, header)  # type: ignore[arg-type]

    def _id(self, peer: str) -> NodeId:
        return NodeId(self.genesis.state(peer).node_id)


@dataclass(frozen=True)
class _Header:
    """What `Attestation.make` reads of a block header."""

    height: int
    hash: bytes
    raft_term: int  # the attestation's round


def block_entry(index: int, term: int, data: bytes, kind: EntryType = EntryType.NORMAL) -> Entry:
    return Entry(Term(term), LogIndex(index), kind, data)


def _peer_der(request: web.Request) -> bytes | None:
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    return ssl_object.getpeercert(binary_form=True) if isinstance(ssl_object, ssl.SSLObject) else None
