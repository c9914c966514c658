"""The client library of a node's client API (docs/API.md), for the CLI, tools and tests.

Every request is built once, without I/O, by a *plan*: a generator that yields what to
send (a `Request`, or a `Pause` between polls) and receives each decoded answer, so
that following pages, waiting for a commit and learning the chain id are written once.
Two faces run the plans:

- `SyncNodeClient`, over urllib, for the CLI: a command makes a handful of requests and
  exits, so a connection pool or an event loop would buy nothing;
- `NodeClient`, over aiohttp, for benchmarks, tests and tools that keep many requests
  in flight (`async with NodeClient(url) as c: await c.submit(doc)`).

Both talk HTTPS to a node whose API certificate genesis pins: given the genesis file,
a client finds the member state whose `api_url` is its URL and accepts exactly the
certificate whose SHA-256 genesis names for it (checked after the TLS handshake and
before any request byte is sent; no CA is involved), refusing any other with
`CertificateMismatch`. Plain HTTP is only for a node genesis pins no certificate for,
and only on loopback. Both sign reads of commercial data when they hold a key
(`ledger.request_headers`: for that one node, with a fresh nonce), decode answers
with `decode_answer`, stream blocks through `BlockFrames`, and turn every failure
into a `ClientError`: a `NodeError` when the node answered with an error status
(its status, stable error code and message), `NodeUnreachable` when nothing answered.
The message of each is one line a person can act on.

This module imports only ledger, msgpack, aiohttp and the standard library, never the
node's server modules: the CLI imports it and nothing else of the node.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import http.client
import ipaddress
import json
import secrets
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import aiohttp
import msgpack
from yarl import URL

import ledger

JSON = "application/json"
MSGPACK = "application/msgpack"
# A request waits at most this long for its answer unless it says otherwise;
# submissions that wait for commit get the node's wait plus `COMMIT_SLACK_S`.
REQUEST_TIMEOUT_S = 30.0
COMMIT_TIMEOUT_S = 60.0
COMMIT_SLACK_S = 10.0
# A block stream of the whole chain takes longer than one answer.
STREAM_TIMEOUT_S = 120.0
# An error body is a short JSON object; anything longer is not worth reading whole.
ERROR_BODY_BYTES_MAX = 64 << 10
# Streamed blocks are read in chunks of this size; one block is at most 16 MiB
# (ChainParams.block_bytes_max) plus its documents' framing and attestations.
STREAM_CHUNK_BYTES = 1 << 20
STREAM_BUFFER_BYTES_MAX = 64 << 20
# Pages of a code's history or a participant's holdings; the node's cap is higher.
PAGE_ITEMS_MAX = 1000
# Polling a document or a height backs off from the first to the last interval.
POLL_FIRST_S = 0.05
POLL_LAST_S = 0.5

T = TypeVar("T")


# -- errors ----------------------------------------------------------------------------


class ClientError(Exception):
    """A request to a node failed; `str()` is one line for a person."""


class NodeUnreachable(ClientError):
    """No answer at all: nothing listens there, a timeout, a bad address, a broken stream."""


class CertificateMismatch(ClientError):
    """The node presented a TLS certificate other than the one genesis pins for it."""


class NodeError(ClientError):
    """The node answered with an error status and (usually) a JSON error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} ({code}, HTTP {status})" if code else f"HTTP {status}: {message}")
        self.status = status
        self.code = code
        self.message = message


# -- what the plans yield ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request. `path_qs` is sent and signed exactly as written (percent-encoded)."""

    method: str
    path_qs: str
    body: bytes | None = None
    content_type: str | None = None
    accept: str = JSON
    signed: bool = True
    timeout_s: float | None = None  # None: the client's own
    # "value": the answer decoded by its content type; "bytes": the body as it came.
    answer: Literal["value", "bytes"] = "value"


@dataclass(frozen=True, slots=True)
class Pause:
    """Wait this long before the next request (between polls)."""

    seconds: float


Step = Request | Pause
Plan = Generator[Step, Any, T]


@dataclass(frozen=True, slots=True)
class Submitted:
    """What a node said about a submitted document."""

    id: str
    status: str  # pending | applied | rejected | unknown
    reason: str | None = None
    message: str = ""
    height: int | None = None
    position: int | None = None

    @property
    def applied(self) -> bool:
        return self.status == "applied"

    @property
    def rejected(self) -> bool:
        return self.status == "rejected"

    @property
    def final(self) -> bool:
        return self.status in ("applied", "rejected")

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Submitted:
        return cls(
            id=str(obj.get("id", "")),
            status=str(obj.get("status", "unknown")),
            reason=obj.get("reason") or None,
            message=str(obj.get("message") or ""),
            height=obj.get("height"),
            position=obj.get("position"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "height": self.height,
            "position": self.position,
        }


# -- pure helpers: URLs, answers, block frames --------------------------------------------


def normalise_url(url: str) -> str:
    url = url.strip()
    if not url:
        raise ClientError("no node URL given: use --node URL or set TAMGA_NODE")
    if "://" not in url:
        url = "https://" + url
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ClientError(f"{url!r} is not a node URL such as https://127.0.0.1:8001")
    return url.rstrip("/")


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    """Who a client expects at its URL."""

    state: str | None  # the member state whose node it is; None: learnt from its status
    cert_sha256: str | None  # the API certificate genesis pins; None: plain HTTP on loopback


def node_identity(url: str, genesis: ledger.Genesis | None) -> NodeIdentity:
    """The node at `url` as genesis names it (its state and pinned certificate); without
    genesis, only a plain-HTTP node on loopback, whose state its status tells."""
    parts = urllib.parse.urlsplit(url)
    if genesis is None:
        if parts.scheme == "https":
            raise ClientError(f"cannot check the certificate of {url} without the genesis file that pins it: "
                              "give --genesis FILE (or set TAMGA_GENESIS)")
        _plain_http_allowed(url)
        return NodeIdentity(None, None)
    member = _member_at(genesis, url)
    if member.api_cert_sha256:
        if parts.scheme != "https":
            raise ClientError(f"genesis pins an API certificate for the {member.code} node: use "
                              f"https://{parts.netloc}, not {url}")
        return NodeIdentity(member.code, member.api_cert_sha256.lower())
    if parts.scheme == "https":
        raise ClientError(f"genesis pins no API certificate for the {member.code} node, so it serves plain "
                          f"HTTP: use http://{parts.netloc}")
    _plain_http_allowed(url)
    return NodeIdentity(member.code, None)


def _host_port(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise ClientError(f"{url!r} has a bad port") from None
    return (parts.hostname or "", port or (443 if parts.scheme == "https" else 80))


def _member_at(genesis: ledger.Genesis, url: str) -> ledger.MemberState:
    where = _host_port(url)
    for member in genesis.states:
        if _host_port(member.api_url) == where:
            return member
    known = ", ".join(f"{m.code} {m.api_url}" for m in genesis.states)
    raise ClientError(f"genesis names no member node at {url} (its nodes: {known})")


def _plain_http_allowed(url: str) -> None:
    host = urllib.parse.urlsplit(url).hostname or ""
    if not is_loopback(host):
        raise ClientError(f"plain HTTP is allowed only to a node on this machine (loopback), not {url}: "
                          "use https:// with the genesis file that pins the node's certificate")


def check_certificate(url: str, identity: NodeIdentity, cert_der: bytes | None) -> None:
    """Refuse a peer certificate other than the pinned one (`CertificateMismatch`)."""
    got = hashlib.sha256(cert_der).hexdigest() if cert_der else "none"
    if got != identity.cert_sha256:
        raise _mismatch(url, identity, got)


def _mismatch(url: str, identity: NodeIdentity, got: str) -> CertificateMismatch:
    return CertificateMismatch(
        f"the node at {url} presented a TLS certificate with sha256 {got[:16]}..., not the one genesis "
        f"pins for {identity.state} ({(identity.cert_sha256 or '')[:16]}...): refusing to talk to it"
    )


def _pinning_context() -> ssl.SSLContext:
    """Accepts any certificate in the handshake: the pin, checked right after it and
    before a byte of the request is sent, is the whole of the trust (no CA, no name)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """urllib's HTTPS connection, refusing a server whose certificate is not the pin."""

    def __init__(self, *args: Any, url: str, identity: NodeIdentity, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._url = url
        self._identity = identity

    def connect(self) -> None:
        super().connect()
        try:
            check_certificate(self._url, self._identity, self.sock.getpeercert(binary_form=True))
        except CertificateMismatch:
            self.close()
            raise


class _PinnedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, url: str, identity: NodeIdentity) -> None:
        self._pinning = _pinning_context()
        super().__init__(context=self._pinning)
        self._connection = functools.partial(_PinnedHTTPSConnection, url=url, identity=identity)

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        response: http.client.HTTPResponse = self.do_open(self._connection, req, context=self._pinning)
        return response


def quote_code(code: str | bytes) -> str:
    """A code as one URL path segment (Digital Links and GS bytes included)."""
    text = code.decode("latin-1") if isinstance(code, bytes) else code
    return urllib.parse.quote(text, safe="")


def with_query(path: str, query: dict[str, str] | None) -> str:
    return f"{path}?{urllib.parse.urlencode(query)}" if query else path


def decode_answer(url: str, status: int, content_type: str, body: bytes, reason: str = "") -> Any:
    """An answer's value; an error status becomes a `NodeError` with the node's code."""
    if status >= 400:
        raise error_from_body(status, body, reason)
    if not body:
        return None
    if content_type == MSGPACK:
        try:
            return msgpack.unpackb(body, raw=False)
        except Exception:  # msgpack raises many types; all mean "not msgpack"
            raise ClientError(f"node at {url} sent a body that is not msgpack") from None
    try:
        return json.loads(body)
    except ValueError:
        raise ClientError(f"node at {url} sent a body that is not JSON") from None


def error_from_body(status: int, body: bytes, reason: str = "") -> NodeError:
    """The node's error body (`{"error", "message"}`, JSON or msgpack) as a `NodeError`."""
    code, message = "", reason or "error"
    obj: Any = None
    try:
        obj = json.loads(body)
    except ValueError:
        try:
            obj = msgpack.unpackb(body, raw=False)
        except Exception:  # not msgpack either: keep the status's reason
            obj = None
    if isinstance(obj, dict):
        code = str(obj.get("error") or "")
        message = str(obj.get("message") or message)
    return NodeError(status, code, " ".join(message.split()))


class BlockFrames:
    """The `/v1/blocks` msgpack stream: chunks in, `(block bytes, [attestations])` out."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._unpacker = msgpack.Unpacker(raw=False, max_buffer_size=STREAM_BUFFER_BYTES_MAX)

    def feed(self, chunk: bytes) -> list[tuple[bytes, list[Any]]]:
        self._unpacker.feed(chunk)
        out = []
        for item in self._unpacker:
            if not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], bytes):
                raise ClientError(f"node at {self.url} streamed something that is not a block")
            out.append((item[0], list(item[1] or [])))
        return out


def blocks_request(first: int, last: int | None) -> Request:
    path = f"/v1/blocks?from={first}" + (f"&to={last}" if last is not None else "")
    return Request("GET", path, accept=MSGPACK, timeout_s=STREAM_TIMEOUT_S)


def _why(reason: object) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (is the node running?)"
    if isinstance(reason, socket.gaierror):
        return f"unknown host ({reason.strerror})"
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason) or type(reason).__name__


# -- plans: the API's requests, written once -------------------------------------------------


def _one(request: Request) -> Plan[Any]:
    answer = yield request
    return answer


def _object(request: Request) -> Plan[dict[str, Any]]:
    answer = yield request
    return dict(answer or {})


def _list(request: Request) -> Plan[list[Any]]:
    answer = yield request
    return list(answer or [])


def status_plan() -> Plan[dict[str, Any]]:
    return _object(Request("GET", "/v1/status", signed=False))


def chain_id_plan(url: str) -> Plan[str]:
    """The chain id signatures must cover, as the node's status says it."""
    chain, _state = yield from signing_plan(url)
    return chain


def signing_plan(url: str) -> Plan[tuple[str, str]]:
    """What a signed read names, as the node's status says it: the chain id and the
    node's member state (used only without genesis, with a node on loopback)."""
    status = yield from status_plan()
    chain, state = status.get("chain_id"), status.get("state")
    if not isinstance(chain, str) or not chain:
        raise ClientError(f"node {url} does not say its chain id; give --genesis FILE (or TAMGA_GENESIS)")
    if not isinstance(state, str) or not state:
        raise ClientError(f"node {url} does not say its member state; give --genesis FILE (or TAMGA_GENESIS)")
    return chain, state


def submit_request(wires: bytes | Sequence[bytes], wait: bool, timeout_ms: int | None) -> Request:
    """One document's wire bytes, or a batch of them, as one msgpack submission."""
    body = wires if isinstance(wires, bytes) else msgpack.packb(list(wires), use_bin_type=True)
    query: dict[str, str] = {}
    if wait:
        query["wait"] = "commit"
    if timeout_ms is not None:
        query["timeout_ms"] = str(timeout_ms)
    budget_s = None if timeout_ms is None else timeout_ms / 1000 + COMMIT_SLACK_S
    return Request("POST", with_query("/v1/documents", query), body=body, content_type=MSGPACK,
                   accept=MSGPACK, signed=False, timeout_s=budget_s)


def submit_plan(signed_doc: ledger.SignedDocument, wait: bool, timeout_s: float) -> Plan[Submitted]:
    """Submit one document; with `wait`, return only once it is applied or rejected."""
    timeout_ms = int(timeout_s * 1000) if wait else None
    answer = yield submit_request(signed_doc.wire(), wait, timeout_ms)
    result = Submitted.from_json(dict(answer or {}))
    if not result.id:
        result = Submitted(signed_doc.id.hex(), result.status, result.reason, result.message)
    if wait and not result.final:
        result = yield from wait_for_plan(result.id, timeout_s)
    return result


def document_plan(doc_id: str) -> Plan[dict[str, Any]]:
    return _object(Request("GET", f"/v1/documents/{doc_id}"))


def wait_for_plan(doc_id: str, timeout_s: float) -> Plan[Submitted]:
    """Poll a document's status until it is applied or rejected, up to a deadline."""
    deadline = time.monotonic() + timeout_s
    pause_s = POLL_FIRST_S
    while True:
        result = Submitted.from_json((yield from document_plan(doc_id)))
        if result.final:
            return result
        if time.monotonic() >= deadline:
            raise ClientError(
                f"document {doc_id} was not committed within {timeout_s:g} s (status {result.status}); "
                f"ask again with: tamga doc show {doc_id}"
            )
        yield Pause(pause_s)
        pause_s = min(pause_s * 2, POLL_LAST_S)


def wait_height_plan(url: str, height: int, timeout_s: float) -> Plan[dict[str, Any]]:
    """Poll the node's status until it has applied `height` (nodes apply a committed
    block a moment apart: committed means durable on a majority, not applied everywhere)."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = yield from status_plan()
        if int(status.get("height") or 0) >= height:
            return status
        if time.monotonic() >= deadline:
            raise ClientError(f"node {url} has not reached block {height} within {timeout_s:g} s")
        yield Pause(POLL_FIRST_S)


def page_plan(path: str, after: str | None, limit: int) -> Plan[dict[str, Any]]:
    query = {"limit": str(limit)}
    if after:
        query["after"] = after
    return _object(Request("GET", with_query(path, query)))


def all_pages_plan(path: str, items: str, limit: int | None) -> Plan[list[Any]]:
    """Every item of a paged list (or its first `limit`), following `next`."""
    out: list[Any] = []
    after: str | None = None
    while True:
        page = yield from page_plan(path, after, PAGE_ITEMS_MAX)
        out.extend(page.get(items, []))
        after = page.get("next")
        if not after or (limit is not None and len(out) >= limit):
            return out[:limit] if limit is not None else out


def history_path(code: str | bytes) -> str:
    return f"/v1/codes/{quote_code(code)}/history"


def holdings_path(pid: str) -> str:
    return f"/v1/participants/{urllib.parse.quote(pid, safe='')}/holdings"


def flows_plan(
    from_state: str, to_state: str, since: int, until: int | None, limit: int
) -> Plan[list[dict[str, Any]]]:
    query = {"from_state": from_state, "to_state": to_state, "since": str(since), "limit": str(limit)}
    if until is not None:
        query["until"] = str(until)
    answer = yield Request("GET", with_query("/v1/flows", query))
    if isinstance(answer, dict):
        answer = answer.get("flows", answer.get("shipments", []))
    return list(answer or [])


# -- the two faces -------------------------------------------------------------------------


class _Face:
    """What both faces hold: the node and who genesis says it is, the signing key, the
    chain id and the node's state once known."""

    def __init__(
        self, url: str, key: ledger.KeyPair | None, chain_id: str | None, timeout_s: float,
        genesis: ledger.Genesis | None,
    ) -> None:
        self.genesis = genesis
        self.key = key
        self._chain_id = (genesis.chain_id if genesis is not None else chain_id) or None
        self.timeout_s = timeout_s
        self.url = ""
        self.identity = NodeIdentity(None, None)
        self._learnt_state: str | None = None
        self._set_url(url)

    def _set_url(self, url: str) -> None:
        self.url = normalise_url(url)
        self.identity = node_identity(self.url, self.genesis)
        self._learnt_state = None

    @property
    def base_url(self) -> str:
        """The node's URL (the older name of `url`); set it to talk to another node."""
        return self.url

    @base_url.setter
    def base_url(self, url: str) -> None:
        self._set_url(url)

    @property
    def node_state(self) -> str | None:
        """The member state whose node this client talks to: from genesis, else learnt."""
        return self.identity.state or self._learnt_state

    def _needs_signing_facts(self, request: Request) -> bool:
        return request.signed and self.key is not None and (self._chain_id is None or self.node_state is None)

    def _learnt(self, facts: tuple[str, str]) -> None:
        chain, state = facts
        self._chain_id = self._chain_id or chain
        self._learnt_state = state

    def _headers(self, request: Request) -> dict[str, str]:
        headers = {"Accept": request.accept}
        if request.content_type:
            headers["Content-Type"] = request.content_type
        state = self.node_state
        if request.signed and self.key is not None and self._chain_id is not None and state is not None:
            now_ms = int(time.time() * 1000)
            headers.update(ledger.request_headers(
                self.key, self._chain_id, request.method, request.path_qs, now_ms, state,
                secrets.token_hex(ledger.REQUEST_NONCE_BYTES_MIN),
            ))
        return headers

    def _timeout_s(self, request: Request) -> float:
        return max(self.timeout_s, request.timeout_s or 0.0)


class SyncNodeClient(_Face):
    """The client API of one node over urllib, optionally signing reads with a key."""

    def __init__(
        self,
        url: str,
        key: ledger.KeyPair | None = None,
        chain_id: str | None = None,
        timeout_s: float = REQUEST_TIMEOUT_S,
        *,
        genesis: ledger.Genesis | None = None,
    ) -> None:
        super().__init__(url, key, chain_id, timeout_s, genesis)

    def _set_url(self, url: str) -> None:
        super()._set_url(url)
        handlers = [_PinnedHTTPSHandler(self.url, self.identity)] if self.identity.cert_sha256 else []
        self._opener = urllib.request.build_opener(*handlers)

    # Running plans.

    def run(self, plan: Plan[T]) -> T:
        """Send what `plan` asks for, one request at a time; its result."""
        try:
            step = next(plan)
            while True:
                if isinstance(step, Pause):
                    time.sleep(step.seconds)
                    step = plan.send(None)
                else:
                    step = plan.send(self._send(step))
        except StopIteration as done:
            result: T = done.value
            return result

    def _send(self, request: Request) -> Any:
        with self._open(request) as response:
            try:
                body: bytes = response.read()
            except (OSError, TimeoutError) as exc:
                raise NodeUnreachable(f"the answer from {self.url} broke off: {_why(exc)}") from None
            if request.answer == "bytes":
                return body
            return decode_answer(self.url, response.status, response.headers.get_content_type(), body)

    def _open(self, request: Request) -> Any:
        if self._needs_signing_facts(request):
            self._learnt(self.run(signing_plan(self.url)))
        http = urllib.request.Request(
            self.url + request.path_qs, data=request.body, method=request.method,
            headers=self._headers(request),
        )
        try:
            return self._opener.open(http, timeout=self._timeout_s(request))
        except urllib.error.HTTPError as exc:
            raise _http_error(exc) from None
        except urllib.error.URLError as exc:
            raise NodeUnreachable(f"cannot reach node at {self.url}: {_why(exc.reason)}") from None
        except TimeoutError:
            raise NodeUnreachable(f"node at {self.url} did not answer in time") from None
        except (ConnectionError, OSError) as exc:
            raise NodeUnreachable(f"cannot reach node at {self.url}: {_why(exc)}") from None

    # The API.

    def chain_id(self) -> str:
        """The chain id signatures must cover: given, or learnt from the node once."""
        if self._chain_id is None:
            self._learnt(self.run(signing_plan(self.url)))
        return self._chain_id or ""

    def status(self) -> dict[str, Any]:
        return self.run(status_plan())

    def wait_height(self, height: int, timeout_s: float = 10.0) -> dict[str, Any]:
        return self.run(wait_height_plan(self.url, height, timeout_s))

    def check(self, code: str | bytes) -> dict[str, Any]:
        return self.run(_object(Request("GET", f"/v1/check/{quote_code(code)}", signed=False)))

    def submit(
        self, signed_doc: ledger.SignedDocument, wait: bool = True, timeout_s: float = COMMIT_TIMEOUT_S
    ) -> Submitted:
        return self.run(submit_plan(signed_doc, wait, timeout_s))

    def wait_for(self, doc_id: str, timeout_s: float) -> Submitted:
        return self.run(wait_for_plan(doc_id, timeout_s))

    def document(self, doc_id: str) -> dict[str, Any]:
        return self.run(document_plan(doc_id))

    def code(self, code: str | bytes) -> dict[str, Any]:
        return self.run(_object(Request("GET", f"/v1/codes/{quote_code(code)}")))

    def history_page(
        self, code: str, after: str | None = None, limit: int = PAGE_ITEMS_MAX
    ) -> dict[str, Any]:
        return self.run(page_plan(history_path(code), after, limit))

    def history(self, code: str, limit: int | None = None) -> list[dict[str, Any]]:
        """A code's whole history (or its first `limit` entries), following pages."""
        return self.run(all_pages_plan(history_path(code), "entries", limit))

    def participant(self, pid: str) -> dict[str, Any]:
        return self.run(_object(Request("GET", f"/v1/participants/{urllib.parse.quote(pid, safe='')}")))

    def holdings_page(
        self, pid: str, after: str | None = None, limit: int = PAGE_ITEMS_MAX
    ) -> dict[str, Any]:
        return self.run(page_plan(holdings_path(pid), after, limit))

    def holdings(self, pid: str, limit: int | None = None) -> list[str]:
        return self.run(all_pages_plan(holdings_path(pid), "codes", limit))

    def shipment(self, shipment_id: str) -> dict[str, Any]:
        return self.run(_object(Request("GET", f"/v1/shipments/{shipment_id}")))

    def flows(
        self, from_state: str, to_state: str, since: int = 0, until: int | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        return self.run(flows_plan(from_state, to_state, since, until, limit))

    def block(self, height: int) -> dict[str, Any]:
        return self.run(_object(Request("GET", f"/v1/blocks/{height}")))

    def headers(self, first: int, last: int) -> list[dict[str, Any]]:
        return self.run(_list(Request("GET", f"/v1/blocks?from={first}&to={last}")))

    def attestations(self, height: int) -> list[dict[str, Any]]:
        return self.run(_list(Request("GET", f"/v1/attestations/{height}")))

    def inclusion_proof(self, doc_id: str) -> dict[str, Any]:
        return self.run(_object(Request("GET", f"/v1/proofs/documents/{doc_id}")))

    def provenance(self, code: str) -> bytes:
        """A code's provenance bundle, as the msgpack bytes `ProvenanceBundle.decode` reads."""
        request = Request("GET", f"/v1/proofs/codes/{quote_code(code)}", accept=MSGPACK, answer="bytes")
        data: bytes = self.run(_one(request))
        return data

    def stream_blocks(self, first: int, last: int | None = None) -> Iterator[tuple[bytes, list[Any]]]:
        """Blocks `first..last` as `(block bytes, [attestation lists])`, in height order."""
        frames = BlockFrames(self.url)
        with self._open(blocks_request(first, last)) as response:
            while True:
                try:
                    chunk = response.read(STREAM_CHUNK_BYTES)
                except (OSError, TimeoutError) as exc:
                    raise NodeUnreachable(
                        f"the block stream from {self.url} broke: {_why(exc)}"
                    ) from None
                if not chunk:
                    return
                yield from frames.feed(chunk)


def _http_error(exc: urllib.error.HTTPError) -> NodeError:
    try:
        body = exc.read(ERROR_BODY_BYTES_MAX)
    except OSError:
        body = b""
    return error_from_body(exc.code, body, exc.reason if isinstance(exc.reason, str) else "")


class NodeClient(_Face):
    """The client API of one node over aiohttp: `async with NodeClient(url) as c: ...`.

    Submissions answer as the node does (one outcome, or `{"results": [...]}` for a
    batch); give `session` to share one connection pool between clients of many nodes.
    """

    def __init__(
        self,
        url: str,
        key: ledger.KeyPair | None = None,
        chain_id: str | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout_s: float = COMMIT_TIMEOUT_S,
        genesis: ledger.Genesis | None = None,
    ) -> None:
        super().__init__(url, key, chain_id, timeout_s, genesis)
        self._own_session = session is None
        self._session = session

    def _set_url(self, url: str) -> None:
        super()._set_url(url)
        # aiohttp checks a Fingerprint right after the handshake, before the request.
        pin = self.identity.cert_sha256
        self._ssl: aiohttp.Fingerprint | bool = aiohttp.Fingerprint(bytes.fromhex(pin)) if pin else True

    def _pin_refused(self, exc: aiohttp.ServerFingerprintMismatch) -> CertificateMismatch:
        return _mismatch(self.url, self.identity, exc.got.hex())

    async def __aenter__(self) -> NodeClient:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("use NodeClient in `async with`, or give it a session")
        return self._session

    # Running plans.

    async def run(self, plan: Plan[T]) -> T:
        """Send what `plan` asks for, one request at a time; its result."""
        try:
            step = next(plan)
            while True:
                if isinstance(step, Pause):
                    await asyncio.sleep(step.seconds)
                    step = plan.send(None)
                else:
                    step = plan.send(await self._send(step))
        except StopIteration as done:
            result: T = done.value
            return result

    async def _send(self, request: Request) -> Any:
        if self._needs_signing_facts(request):
            self._learnt(await self.run(signing_plan(self.url)))
        try:
            async with self.session.request(
                request.method, URL(self.url + request.path_qs, encoded=True), data=request.body,
                headers=self._headers(request), timeout=aiohttp.ClientTimeout(total=self._timeout_s(request)),
                ssl=self._ssl,
            ) as response:
                body = await response.read()
        except aiohttp.ServerFingerprintMismatch as exc:
            raise self._pin_refused(exc) from None
        except TimeoutError:
            raise NodeUnreachable(f"node at {self.url} did not answer in time") from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError) as exc:
            raise NodeUnreachable(f"cannot reach node at {self.url}: {_why(exc)}") from None
        if request.answer == "bytes" and response.status < 400:
            return body
        return decode_answer(self.url, response.status, response.content_type, body, response.reason or "")

    # The API: the calls the tools use; anything else is `await client.run(some_plan)`.

    async def submit(
        self, docs: ledger.SignedDocument | Sequence[ledger.SignedDocument], *, wait: bool = True,
        timeout_ms: int | None = None,
    ) -> Any:
        """Submit one document (its outcome) or several (`{"results": [...]}`)."""
        if isinstance(docs, ledger.SignedDocument):
            return await self.submit_wires(docs.wire(), wait=wait, timeout_ms=timeout_ms)
        return await self.submit_wires([d.wire() for d in docs], wait=wait, timeout_ms=timeout_ms)

    async def submit_wires(
        self, wires: bytes | Sequence[bytes], *, wait: bool = True, timeout_ms: int | None = None
    ) -> Any:
        return await self.run(_one(submit_request(wires, wait, timeout_ms)))

    async def get(
        self, path: str, *, signed: bool | None = None, params: dict[str, str] | None = None
    ) -> Any:
        """GET a resource; signed when the client holds a key (or `signed` says so)."""
        if signed and self.key is None:
            raise ClientError("a signed read needs a key")
        return await self.run(_one(Request("GET", with_query(path, params), signed=signed is not False)))

    async def status(self) -> dict[str, Any]:
        return await self.run(status_plan())

    async def document(self, doc_id: str) -> dict[str, Any]:
        return await self.run(document_plan(doc_id))

    async def stream_blocks(
        self, first: int, last: int | None = None
    ) -> AsyncIterator[tuple[bytes, list[Any]]]:
        """Blocks `first..last` as `(block bytes, [attestation lists])`, in height order."""
        request = blocks_request(first, last)
        if self._needs_signing_facts(request):
            self._learnt(await self.run(signing_plan(self.url)))
        frames = BlockFrames(self.url)
        timeout = aiohttp.ClientTimeout(total=self._timeout_s(request))
        try:
            async with self.session.get(
                URL(self.url + request.path_qs, encoded=True), headers=self._headers(request),
                timeout=timeout, ssl=self._ssl,
            ) as response:
                if response.status >= 400:
                    raise error_from_body(response.status, await response.read(), response.reason or "")
                async for chunk in response.content.iter_chunked(STREAM_CHUNK_BYTES):
                    for frame in frames.feed(chunk):
                        yield frame
        except aiohttp.ServerFingerprintMismatch as exc:
            raise self._pin_refused(exc) from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError) as exc:
            raise NodeUnreachable(f"the block stream from {self.url} broke: {_why(exc)}") from None


__all__ = [
    "COMMIT_TIMEOUT_S",
    "JSON",
    "MSGPACK",
    "REQUEST_TIMEOUT_S",
    "BlockFrames",
    "CertificateMismatch",
    "ClientError",
    "NodeClient",
    "NodeError",
    "NodeIdentity",
    "NodeUnreachable",
    "Pause",
    "Plan",
    "Request",
    "Submitted",
    "SyncNodeClient",
    "chain_id_plan",
    "decode_answer",
    "document_plan",
    "check_certificate",
    "error_from_body",
    "flows_plan",
    "is_loopback",
    "node_identity",
    "normalise_url",
    "quote_code",
    "signing_plan",
    "status_plan",
    "submit_plan",
    "submit_request",
    "wait_for_plan",
    "wait_height_plan",
]
