"""What travels between a client and a node: errors, requests, answers, the certificate pin."""

from __future__ import annotations

import functools
import hashlib
import http.client
import ipaddress
import json
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import msgpack

import ledger

JSON = "application/json"
MSGPACK = "application/msgpack"
# A request waits at most this long for its answer unless it says otherwise;
# submissions that wait for commit get the node's wait plus `COMMIT_SLACK_S`.
REQUEST_TIMEOUT_S = 30.0
COMMIT_TIMEOUT_S = 60.0
COMMIT_SLACK_S = 10.0
# What a submission may wait for: nothing, its block applied (committed), or final.
WAIT_MODES = ("none", "commit", "final")
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
    # The document's block is attested by a Byzantine quorum of member states (4 of 5)
    # and can never be replaced: what the node said; False while it is not, or unknown.
    final: bool = False

    @property
    def applied(self) -> bool:
        return self.status == "applied"

    @property
    def rejected(self) -> bool:
        return self.status == "rejected"

    @property
    def settled(self) -> bool:
        """Applied or rejected: the document is in a committed block (which may not be
        final yet: see `final`)."""
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
            final=obj.get("final") is True,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "height": self.height,
            "position": self.position,
            "final": self.final,
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
