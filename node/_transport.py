"""Links to the other member-state nodes: persistent websockets over mutual TLS.

Each node dials two websockets to every peer, one for Raft messages and one for gossip
(documents, attestations, status), so that a burst of documents never holds up a
heartbeat. A link only sends; what a peer sends us arrives on the websockets it dialed
to our peer API. Items wait in a bounded queue per link and go out batched into frames:
a frame is one msgpack array of byte strings, each one item.

When a link is down it redials with exponential backoff. Raft tolerates lost messages
(it retransmits), so a full Raft queue drops its oldest messages and a broken
connection drops the whole queue; gossip keeps its queue across a reconnect, bounded.

The peers are the member table's active nodes (genesis's, as governance last changed
them): `PeerLinks.set_peers` closes the links of a node that was removed or whose
address or certificate was replaced, and dials the new ones with a session that
trusts exactly the newly pinned certificate.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import ssl
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import msgpack

from consensus import Message, encode_message
from ledger import DecodeError, DecodeLimits, Genesis, unpack_untrusted

log = logging.getLogger(__name__)

# One frame carries at most this many bytes of items (one larger item goes alone):
# large enough to carry a whole block in one Raft append, small enough that a frame
# never delays the next by more than a few milliseconds on loopback.
FRAME_BYTES_MAX = 8 << 20
# What a receiver accepts in one websocket message. Above the largest Raft message the
# core builds (a block of at most 32 MiB plus framing) and below what would let a
# peer make us allocate without limit.
FRAME_BYTES_LIMIT = 64 << 20
# Items in one frame. A frame of tiny items (gossiped statuses, small documents) stays
# a few hundred kilobytes; the bound lets a receiver refuse a frame of a million empty
# items before it builds them.
FRAME_ITEMS_MAX = 10_000
# What a frame may be: one flat array of byte strings, nothing else.
FRAME_LIMITS = DecodeLimits(
    bytes_max=FRAME_BYTES_LIMIT, depth_max=1, items_max=FRAME_ITEMS_MAX + 1,
    array_items_max=FRAME_ITEMS_MAX, str_bytes_max=0, bin_bytes_max=FRAME_BYTES_LIMIT,
)
# Items and bytes queued per link. Raft needs little (it sends small, retries lost
# messages); gossip holds a burst of documents while a peer reconnects.
RAFT_QUEUE_ITEMS_MAX = 10_000
RAFT_QUEUE_BYTES_MAX = 64 << 20
GOSSIP_QUEUE_ITEMS_MAX = 200_000
GOSSIP_QUEUE_BYTES_MAX = 256 << 20
BACKOFF_MIN_S = 0.05
BACKOFF_MAX_S = 2.0
# Websocket pings find a dead peer (a half-open TCP connection) within seconds.
HEARTBEAT_S = 5.0


def pack_frame(items: list[bytes]) -> bytes:
    out: bytes = msgpack.packb(items, use_bin_type=True)
    return out


def unpack_frame(data: bytes) -> list[bytes]:
    """A frame back to its items; `ledger.DecodeError` (a ValueError) if it is not an
    array of at most FRAME_ITEMS_MAX byte strings."""
    items = unpack_untrusted(data, FRAME_LIMITS)
    if not isinstance(items, list) or not all(type(i) is bytes for i in items):
        raise DecodeError("a frame is an array of byte strings")
    return items


class Link:
    """One outgoing websocket to one peer, with its bounded queue and sender task."""

    def __init__(
        self,
        peer: str,
        url: str,
        session: aiohttp.ClientSession,
        *,
        items_max: int,
        bytes_max: int,
        drop_on_disconnect: bool,
        on_down: Callable[[], None] | None = None,
        on_up: Callable[[], None] | None = None,
    ) -> None:
        self.peer = peer
        self.url = url
        self._session = session
        self._items_max = items_max
        self._bytes_max = bytes_max
        self._drop_on_disconnect = drop_on_disconnect
        self._on_down = on_down
        self._on_up = on_up
        self._queue: collections.deque[bytes] = collections.deque()
        self._bytes = 0
        self._ready = asyncio.Event()
        self.connected = False
        self.dropped = 0
        self.sent_frames = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"link-{self.url}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def put(self, item: bytes) -> None:
        """Queue an item; at the bound the oldest items make room (and are counted)."""
        self._queue.append(item)
        self._bytes += len(item)
        while len(self._queue) > self._items_max or (self._bytes > self._bytes_max and len(self._queue) > 1):
            self._bytes -= len(self._queue.popleft())
            self.dropped += 1
        self._ready.set()

    def _take_frame(self) -> list[bytes]:
        items: list[bytes] = []
        size = 0
        while self._queue and len(items) < FRAME_ITEMS_MAX:
            nxt = len(self._queue[0])
            if items and size + nxt > FRAME_BYTES_MAX:
                break
            items.append(self._queue.popleft())
            size += nxt
        self._bytes -= size
        return items

    async def _run(self) -> None:
        backoff = BACKOFF_MIN_S
        while True:
            try:
                async with self._session.ws_connect(
                    self.url, heartbeat=HEARTBEAT_S, max_msg_size=FRAME_BYTES_LIMIT, compress=0
                ) as ws:
                    self.connected = True
                    backoff = BACKOFF_MIN_S
                    log.info("link to %s up", self.url)
                    if self._on_up is not None:
                        self._on_up()
                    await self._send_loop(ws)
            except asyncio.CancelledError:
                raise
            except (TimeoutError, aiohttp.ClientError, OSError, ssl.SSLError, ConnectionError) as exc:
                log.debug("link to %s failed: %r", self.url, exc)
            except Exception:
                log.exception("link to %s failed unexpectedly", self.url)
            if self.connected:
                log.info("link to %s down", self.url)
            self.connected = False
            if self._drop_on_disconnect:
                self.dropped += len(self._queue)
                self._queue.clear()
                self._bytes = 0
            if self._on_down is not None:
                self._on_down()
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _send_loop(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        closed = asyncio.ensure_future(ws.receive())  # we never expect data: only a close
        try:
            while True:
                if not self._queue:
                    self._ready.clear()
                    waiter = asyncio.ensure_future(self._ready.wait())
                    done, _ = await asyncio.wait({waiter, closed}, return_when=asyncio.FIRST_COMPLETED)
                    if closed in done:
                        waiter.cancel()
                        return
                items = self._take_frame()
                if items:
                    await ws.send_bytes(pack_frame(items))
                    self.sent_frames += 1
        finally:
            closed.cancel()


class PeerLinks:
    """The Raft and gossip links to every peer, plus plain HTTPS requests to them."""

    def __init__(
        self,
        sessions: dict[str, aiohttp.ClientSession],
        addresses: dict[str, str],
        on_raft_down: Callable[[str], None],
        on_gossip_up: Callable[[str], None],
        make_session: Callable[[str], aiohttp.ClientSession | None] | None = None,
    ) -> None:
        """`on_raft_down(peer)` when a Raft link breaks; `on_gossip_up(peer)` when a
        gossip link (re)connects. `make_session(peer)` opens a session that trusts the
        peer's pinned certificate (None: none is known) when `set_peers` links a new
        node; `sessions` holds the open ones (their owner closes what is left at the
        end). Nothing is dialed before `start`."""
        self.sessions = sessions
        self.addresses = dict(addresses)
        self.raft: dict[str, Link] = {}
        self.gossip: dict[str, Link] = {}
        self._on_raft_down = on_raft_down
        self._on_gossip_up = on_gossip_up
        self._make_session = make_session
        self._started = False
        self._closing: set[asyncio.Task[None]] = set()
        for peer, session in sessions.items():
            if peer in self.addresses:
                self._link(peer, session)

    def _link(self, peer: str, session: aiohttp.ClientSession) -> None:
        base = f"wss://{self.addresses[peer]}/peer"
        self.raft[peer] = Link(
            peer, f"{base}/raft", session, items_max=RAFT_QUEUE_ITEMS_MAX,
            bytes_max=RAFT_QUEUE_BYTES_MAX, drop_on_disconnect=True,
            on_down=lambda p=peer: self._on_raft_down(p),  # type: ignore[misc]
        )
        self.gossip[peer] = Link(
            peer, f"{base}/gossip", session, items_max=GOSSIP_QUEUE_ITEMS_MAX,
            bytes_max=GOSSIP_QUEUE_BYTES_MAX, drop_on_disconnect=False,
            on_up=lambda p=peer: self._on_gossip_up(p),  # type: ignore[misc]
        )

    def start(self) -> None:
        self._started = True
        for link in [*self.raft.values(), *self.gossip.values()]:
            link.start()

    async def stop(self) -> None:
        self._started = False
        await asyncio.gather(*(link.stop() for link in [*self.raft.values(), *self.gossip.values()]))
        await asyncio.gather(*self._closing, return_exceptions=True)

    def set_peers(self, addresses: dict[str, str], changed: set[str]) -> None:
        """Link exactly the nodes in `addresses` (state -> peer address): close the
        links of a node no longer there, or whose address or pinned certificate
        (`changed`) is not what it was, and link the new ones. What was queued for a
        closed link is dropped: it was meant for a node that is no longer trusted."""
        for peer in list(self.raft):
            if peer not in addresses or peer in changed or addresses[peer] != self.addresses.get(peer):
                self._unlink(peer)
        self.addresses = dict(addresses)
        for peer in addresses:
            if peer in self.raft or self._make_session is None:
                continue
            session = self._make_session(peer)
            if session is None:
                log.warning("no pinned certificate for %s in the peer bundle: it is unreachable", peer)
                continue
            self.sessions[peer] = session
            self._link(peer, session)
            if self._started:
                self.raft[peer].start()
                self.gossip[peer].start()
            log.info("linked to %s at %s", peer, addresses[peer])

    def _unlink(self, peer: str) -> None:
        links = (self.raft.pop(peer), self.gossip.pop(peer))
        session = self.sessions.pop(peer, None)
        log.info("closing the links to %s", peer)

        async def close() -> None:
            await asyncio.gather(*(link.stop() for link in links))
            if session is not None:
                await session.close()

        task = asyncio.get_running_loop().create_task(close(), name=f"unlink-{peer}")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def gossip_all(self, item: bytes) -> None:
        for link in self.gossip.values():
            link.put(item)

    def gossip_others(self, sender: str, item: bytes) -> None:
        """To every peer but `sender` (what a follower learned from its leader)."""
        for peer, link in self.gossip.items():
            if peer != sender:
                link.put(item)

    def gossip_to(self, peer: str, item: bytes) -> None:
        link = self.gossip.get(peer)
        if link is not None:
            link.put(item)

    def connected(self, peer: str) -> bool:
        raft, gossip = self.raft.get(peer), self.gossip.get(peer)
        return raft is not None and gossip is not None and raft.connected and gossip.connected

    async def get(self, peer: str, path: str, timeout_s: float = 30.0) -> Any:
        """A GET on a peer's API; the response object is for streaming (caller closes).
        A peer that is not linked (removed, or no pinned certificate) raises
        aiohttp.ClientError, as an unreachable one does."""
        session = self.sessions.get(peer)
        if session is None or peer not in self.addresses:
            raise aiohttp.ClientConnectionError(f"{peer} is not a linked peer")
        url = f"https://{self.addresses[peer]}{path}"
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        return await session.get(url, timeout=timeout)


class RaftTransport:
    """The driver's transport: each message goes on the Raft link to its node, as the
    frame item `wrap` makes of it (the node's: appends go in an envelope with their
    entries' signatures, node/_appends.py; consensus knows nothing of it)."""

    def __init__(self, genesis: Genesis, links: PeerLinks,
                 wrap: Callable[[Message], bytes] = encode_message) -> None:
        self._links = links
        self._wrap = wrap
        self._state_of = {s.node_id: s.code for s in genesis.states}

    def send(self, messages: Sequence[Message]) -> None:
        raft = self._links.raft
        for m in messages:
            link = raft.get(self._state_of.get(m.to, ""))
            if link is not None:
                link.put(self._wrap(m))
