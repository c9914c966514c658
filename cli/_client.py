"""A synchronous HTTP client for one node's client API (docs/API.md).

Plain `urllib`: a command makes a handful of requests and then exits, so a connection
pool or an event loop would buy nothing. Every failure becomes a `ClientError` whose
message is one line a person can act on; the command layer prints it and exits 1.

Reads of commercial data are signed (`ledger.request_headers`) when the client holds a
key; the chain id the signature covers comes from the node's status or from genesis.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgpack

import ledger

# A command waits at most this long for one answer; submissions that wait for commit
# get their own, longer budget (see `submit`).
REQUEST_TIMEOUT_S = 30.0
# An error body is a short JSON object; anything longer is not worth reading whole.
ERROR_BODY_BYTES_MAX = 64 << 10
# Streamed blocks are read in chunks of this size; one block is at most 16 MiB
# (ChainParams.block_bytes_max) plus its documents' framing and attestations.
STREAM_CHUNK_BYTES = 1 << 20
STREAM_BUFFER_BYTES_MAX = 64 << 20
MSGPACK = "application/msgpack"


class ClientError(Exception):
    """A request to a node failed; `str()` is one line for a person."""


class NodeUnreachable(ClientError):
    """No answer at all: nothing listens there, a timeout, a bad address."""


class NodeError(ClientError):
    """The node answered with an error status and (usually) a JSON error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} ({code}, HTTP {status})" if code else f"HTTP {status}: {message}")
        self.status = status
        self.code = code
        self.message = message


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


def normalise_url(url: str) -> str:
    url = url.strip()
    if not url:
        raise ClientError("no node URL given: use --node URL or set TAMGA_NODE")
    if "://" not in url:
        url = "http://" + url
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ClientError(f"{url!r} is not a node URL such as http://127.0.0.1:8001")
    return url.rstrip("/")


def quote_code(code: str | bytes) -> str:
    """A code as one URL path segment (Digital Links and GS bytes included)."""
    text = code.decode("latin-1") if isinstance(code, bytes) else code
    return urllib.parse.quote(text, safe="")


class NodeClient:
    """The client API of one node, optionally signing reads with a participant's key."""

    def __init__(
        self,
        url: str,
        key: ledger.KeyPair | None = None,
        chain_id: str | None = None,
        timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self.url = normalise_url(url)
        self.key = key
        self._chain_id = chain_id
        self.timeout_s = timeout_s

    # Plumbing.

    def chain_id(self) -> str:
        """The chain id signatures must cover: given, or learnt from the node once."""
        if self._chain_id is None:
            status = self.status()
            chain = status.get("chain_id")
            if not isinstance(chain, str) or not chain:
                raise ClientError(
                    f"node {self.url} does not say its chain id; give --genesis FILE (or TAMGA_GENESIS)"
                )
            self._chain_id = chain
        return self._chain_id

    def _headers(self, method: str, path_qs: str, signed: bool) -> dict[str, str]:
        if not signed or self.key is None:
            return {}
        now_ms = int(time.time() * 1000)
        return ledger.request_headers(self.key, self.chain_id(), method, path_qs, now_ms)

    def _open(
        self,
        method: str,
        path_qs: str,
        *,
        body: bytes | None = None,
        content_type: str | None = None,
        accept: str = "application/json",
        signed: bool = True,
        timeout_s: float | None = None,
    ) -> Any:
        headers = {"Accept": accept, **self._headers(method, path_qs, signed)}
        if content_type:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(self.url + path_qs, data=body, method=method, headers=headers)
        try:
            return urllib.request.urlopen(request, timeout=timeout_s or self.timeout_s)
        except urllib.error.HTTPError as exc:
            raise _node_error(exc) from None
        except urllib.error.URLError as exc:
            raise NodeUnreachable(f"cannot reach node at {self.url}: {_reason(exc.reason)}") from None
        except TimeoutError:
            raise NodeUnreachable(f"node at {self.url} did not answer in time") from None
        except (ConnectionError, OSError) as exc:
            raise NodeUnreachable(f"cannot reach node at {self.url}: {_reason(exc)}") from None

    def _json(self, method: str, path_qs: str, *, signed: bool = True, **kwargs: Any) -> Any:
        with self._open(method, path_qs, signed=signed, **kwargs) as response:
            data = _read(response, self.url)
        try:
            return json.loads(data)
        except ValueError:
            raise ClientError(f"node at {self.url} sent a body that is not JSON") from None

    def _bytes(self, path_qs: str, accept: str = MSGPACK) -> bytes:
        with self._open("GET", path_qs, accept=accept) as response:
            return _read(response, self.url)

    # Unsigned reads.

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", "/v1/status", signed=False)
        return result

    def wait_height(self, height: int, timeout_s: float = 10.0) -> dict[str, Any]:
        """Poll the node's status until it has applied `height` (nodes apply a committed
        block a moment apart: committed means durable on a majority, not applied everywhere)."""
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.status()
            if int(status.get("height") or 0) >= height:
                return status
            if time.monotonic() >= deadline:
                raise ClientError(f"node {self.url} has not reached block {height} within {timeout_s:g} s")
            time.sleep(0.05)

    def check(self, code: str | bytes) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/v1/check/{quote_code(code)}", signed=False)
        return result

    # Documents.

    def submit(
        self, signed_doc: ledger.SignedDocument, wait: bool = True, timeout_s: float = 60.0
    ) -> Submitted:
        """Submit one document; with `wait`, return only once it is applied or rejected."""
        path = "/v1/documents"
        if wait:
            path += f"?wait=commit&timeout_ms={int(timeout_s * 1000)}"
        answer = self._json(
            "POST", path, body=signed_doc.wire(), content_type=MSGPACK, signed=False,
            timeout_s=timeout_s + 10.0,
        )
        result = Submitted.from_json(answer)
        if not result.id:
            result = Submitted(signed_doc.id.hex(), result.status, result.reason, result.message)
        if wait and not result.final:
            result = self.wait_for(result.id, timeout_s)
        return result

    def wait_for(self, doc_id: str, timeout_s: float, poll_s: float = 0.05) -> Submitted:
        """Poll a document's status until it is applied or rejected, up to a deadline."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = Submitted.from_json(self.document(doc_id))
            if result.final:
                return result
            if time.monotonic() >= deadline:
                raise ClientError(
                    f"document {doc_id} was not committed within {timeout_s:g} s (status {result.status}); "
                    f"ask again with: tamga doc show {doc_id}"
                )
            time.sleep(poll_s)
            poll_s = min(poll_s * 2, 0.5)

    def document(self, doc_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/v1/documents/{doc_id}")
        return result

    # State reads.

    def code(self, code: str | bytes) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/v1/codes/{quote_code(code)}")
        return result

    def history_page(self, code: str, after: str | None = None, limit: int = 1000) -> dict[str, Any]:
        query = {"limit": str(limit)}
        if after:
            query["after"] = after
        path = f"/v1/codes/{quote_code(code)}/history?{urllib.parse.urlencode(query)}"
        result: dict[str, Any] = self._json("GET", path)
        return result

    def history(self, code: str, limit: int | None = None) -> list[dict[str, Any]]:
        """A code's whole history (or its first `limit` entries), following pages."""
        entries: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            page = self.history_page(code, after)
            entries.extend(page.get("entries", []))
            after = page.get("next")
            if not after or (limit is not None and len(entries) >= limit):
                return entries[:limit] if limit is not None else entries

    def participant(self, pid: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/v1/participants/{urllib.parse.quote(pid, safe='')}")
        return result

    def holdings_page(self, pid: str, after: str | None = None, limit: int = 1000) -> dict[str, Any]:
        query = {"limit": str(limit)}
        if after:
            query["after"] = after
        path = f"/v1/participants/{urllib.parse.quote(pid, safe='')}/holdings?{urllib.parse.urlencode(query)}"
        result: dict[str, Any] = self._json("GET", path)
        return result

    def holdings(self, pid: str, limit: int | None = None) -> list[str]:
        codes: list[str] = []
        after: str | None = None
        while True:
            page = self.holdings_page(pid, after)
            codes.extend(page.get("codes", []))
            after = page.get("next")
            if not after or (limit is not None and len(codes) >= limit):
                return codes[:limit] if limit is not None else codes

    def shipment(self, shipment_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/v1/shipments/{shipment_id}")
        return result

    def flows(
        self, from_state: str, to_state: str, since: int = 0, until: int | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        query: dict[str, str] = {
            "from_state": from_state, "to_state": to_state, "since": str(since), "limit": str(limit),
        }
        if until is not None:
            query["until"] = str(until)
        answer = self._json("GET", f"/v1/flows?{urllib.parse.urlencode(query)}")
        if isinstance(answer, dict):
            answer = answer.get("flows", answer.get("shipments", []))
        return list(answer)

    # Chain reads.

    def block(self, height: int) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/v1/blocks/{height}")
        return result

    def headers(self, first: int, last: int) -> list[dict[str, Any]]:
        return list(self._json("GET", f"/v1/blocks?from={first}&to={last}"))

    def stream_blocks(self, first: int, last: int | None = None) -> Iterator[tuple[bytes, list[Any]]]:
        """Blocks `first..last` as `(block bytes, [attestation lists])`, in height order."""
        path = f"/v1/blocks?from={first}" + (f"&to={last}" if last is not None else "")
        response = self._open("GET", path, accept=MSGPACK, timeout_s=max(self.timeout_s, 120.0))
        unpacker = msgpack.Unpacker(raw=False, max_buffer_size=STREAM_BUFFER_BYTES_MAX)
        with response:
            while True:
                try:
                    chunk = response.read(STREAM_CHUNK_BYTES)
                except (OSError, TimeoutError) as exc:
                    raise NodeUnreachable(f"the block stream from {self.url} broke: {_reason(exc)}") from None
                if not chunk:
                    break
                unpacker.feed(chunk)
                for item in unpacker:
                    if not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], bytes):
                        raise ClientError(f"node at {self.url} streamed something that is not a block")
                    yield item[0], list(item[1] or [])

    def attestations(self, height: int) -> list[dict[str, Any]]:
        return list(self._json("GET", f"/v1/attestations/{height}"))

    def inclusion_proof(self, doc_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/v1/proofs/documents/{doc_id}")
        return result

    def provenance(self, code: str) -> bytes:
        """A code's provenance bundle, as the msgpack bytes `ProvenanceBundle.decode` reads."""
        return self._bytes(f"/v1/proofs/codes/{quote_code(code)}")


def _read(response: Any, url: str) -> bytes:
    try:
        data: bytes = response.read()
    except (OSError, TimeoutError) as exc:
        raise NodeUnreachable(f"the answer from {url} broke off: {_reason(exc)}") from None
    return data


def _reason(reason: object) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (is the node running?)"
    if isinstance(reason, socket.gaierror):
        return f"unknown host ({reason.strerror})"
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason) or type(reason).__name__


def _node_error(exc: urllib.error.HTTPError) -> NodeError:
    try:
        body = exc.read(ERROR_BODY_BYTES_MAX)
    except OSError:
        body = b""
    code, message = "", (exc.reason if isinstance(exc.reason, str) else "") or "error"
    try:
        obj = json.loads(body)
        if isinstance(obj, dict):
            code = str(obj.get("error") or "")
            message = str(obj.get("message") or message)
    except ValueError:
        pass
    return NodeError(exc.code, code, " ".join(message.split()))
