"""Limits of the node's two HTTP servers (client API and peer API) on their connections.

aiohttp bounds a request's line and headers by size, and closes an idle keep-alive
connection after `keepalive_timeout`, but it has neither a connection cap nor a
deadline for the first request's headers: a client that trickles one header byte a
second was held for 120 s (issue 10, finding 11), and nothing stopped a few thousand
such clients from taking every file descriptor. A `ConnectionGate` wraps each
connection's protocol and adds both:

- a cap on open connections per server and per client address; a connection beyond
  it is closed at once (and counted);
- a deadline for the first request's line and headers; a connection that has not
  sent them in time is closed (and counted). Later requests on the same connection
  are covered by aiohttp's keep-alive timeout, which closes a connection still
  waiting for a complete request when it expires.

`GuardedSite` is aiohttp's `TCPSite` serving through a gate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

# How long a new connection may take to send its first request line and headers. A
# real client sends them in one packet; ten seconds forgive a slow mobile link.
HEADER_TIMEOUT_S = 10.0
# An idle keep-alive connection is closed after this long (aiohttp's default is an
# hour, meant for reverse proxies); a client that comes back just reconnects.
KEEPALIVE_TIMEOUT_S = 30.0
# Request line and each header line: a signed read's path with its query fits in a
# few hundred bytes; aiohttp's own default of 8 KiB is kept, and named here.
REQUEST_LINE_BYTES_MAX = 8190
HEADER_FIELD_BYTES_MAX = 8190
# Headers in one request: ours send fewer than a dozen.
HEADERS_MAX = 64
# Open connections to the client API. Below the usual 1,024 file descriptors of a
# process, with room for LevelDB's files and the peer links; one address may hold at
# most half, so a single client cannot take them all.
API_CONNECTIONS_MAX = 512
API_CONNECTIONS_PER_ADDRESS_MAX = 256
# Open connections to the peer API: each of at most a few dozen member nodes dials
# two websockets and a few HTTPS requests (a session holds at most 16). The cap per
# address matters before TLS: anyone can connect, and must not fill the peer port.
PEER_CONNECTIONS_MAX = 256
PEER_CONNECTIONS_PER_ADDRESS_MAX = 64
# Bytes of the end of the previous packet kept to find a header end split across two.
_TAIL_BYTES = 3


def runner_limits() -> dict[str, Any]:
    """The keyword arguments of `web.AppRunner` that bound requests and idle time."""
    return {
        "keepalive_timeout": KEEPALIVE_TIMEOUT_S,
        "max_line_size": REQUEST_LINE_BYTES_MAX,
        "max_field_size": HEADER_FIELD_BYTES_MAX,
        "max_headers": HEADERS_MAX,
    }


@dataclass(frozen=True, slots=True)
class GateLimits:
    connections_max: int
    connections_per_address_max: int
    header_timeout_s: float = HEADER_TIMEOUT_S


API_GATE = GateLimits(API_CONNECTIONS_MAX, API_CONNECTIONS_PER_ADDRESS_MAX)
PEER_GATE = GateLimits(PEER_CONNECTIONS_MAX, PEER_CONNECTIONS_PER_ADDRESS_MAX)


class ConnectionGate:
    """Counts a server's open connections and enforces its `GateLimits`."""

    def __init__(self, limits: GateLimits, on_refused: Callable[[], None] = lambda: None,
                 on_header_timeout: Callable[[], None] = lambda: None) -> None:
        self.limits = limits
        self.open = 0
        self._by_address: dict[str, int] = {}
        self._on_refused = on_refused
        self._on_header_timeout = on_header_timeout

    def factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for `loop.create_server` that wraps `inner`'s protocols."""
        return lambda: _GuardedProtocol(self, inner())

    def _admit(self, address: str) -> bool:
        held = self._by_address.get(address, 0)
        if self.open >= self.limits.connections_max or held >= self.limits.connections_per_address_max:
            self._on_refused()
            return False
        self.open += 1
        self._by_address[address] = held + 1
        return True

    def _release(self, address: str) -> None:
        self.open -= 1
        held = self._by_address[address] - 1
        if held:
            self._by_address[address] = held
        else:
            del self._by_address[address]


class _GuardedProtocol(asyncio.Protocol):
    """Passes everything to aiohttp's protocol, after the gate let the connection in,
    and until the header deadline closes it."""

    def __init__(self, gate: ConnectionGate, inner: asyncio.Protocol) -> None:
        self._gate = gate
        self._inner = inner
        self._address: str | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        if not self._gate._admit(address):
            transport.abort()  # type: ignore[attr-defined]
            return
        self._address = address
        self._transport = transport
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self._gate.limits.header_timeout_s, self._headers_too_slow)
        self._inner.connection_made(transport)

    def _headers_too_slow(self) -> None:
        self._deadline = None
        self._gate._on_header_timeout()
        if self._transport is not None:
            self._transport.abort()  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if self._address is None:
            return
        if self._deadline is not None:
            seen = self._tail + data
            if b"\r\n\r\n" in seen or b"\n\n" in seen:
                self._deadline.cancel()
                self._deadline = None
                self._tail = b""
            else:
                self._tail = seen[-_TAIL_BYTES:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self._address is None:
            return None
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._address is None:
            return
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._gate._release(self._address)
        self._address = None
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class GuardedSite(web.TCPSite):
    """aiohttp's TCPSite, with every connection passing through a `ConnectionGate`."""

    __slots__ = ("gate",)

    def __init__(self, runner: web.BaseRunner, host: str | None, port: int | None, *,
                 gate: ConnectionGate, **kwargs: Any) -> None:
        super().__init__(runner, host, port, **kwargs)
        self.gate = gate

    async def start(self) -> None:
        # TCPSite.start, with the server's protocol factory wrapped by the gate.
        await web.BaseSite.start(self)
        server = self._runner.server
        if server is None:
            raise RuntimeError("call the runner's setup() before starting a site")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.gate.factory(server), self._host, self._port, ssl=self._ssl_context, backlog=self._backlog,
            reuse_address=self._reuse_address, reuse_port=self._reuse_port,
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port
