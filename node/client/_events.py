"""The inbox and the event feed from the client's side: plans, the server-sent-events
parser, the cursor file, the follower loop, and the signed delivery of `forward`.

A follower keeps one cursor, the place in the chain of the last event it handled;
every node holds the same chain, so the cursor resumes on any node with no gap and no
reordering. It is written to its file (write, fsync, rename) only after the event was
handled, so a follower killed at any moment handles each event at least once.

`forward` posts each event, in order, to a business's own system with an HMAC-SHA256
of the body in `X-Tamga-Signature: sha256=HEX`, retrying with capped exponential
backoff until the receiver answers 2xx; the node makes no outgoing calls itself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._plans import _object
from ._wire import ClientError, NodeError, NodeUnreachable, Plan, Request, with_query

if TYPE_CHECKING:
    from ._sync import SyncNodeClient

# A follower's long poll waits this long for an event before asking again.
FOLLOW_WAIT_MS = 20_000
EVENTS_PAGE = 500
# Retries of an unreachable node, a node behind the cursor, or a failing receiver:
# from half a second, doubling, to at most 30 s between tries: a receiver down for an
# hour is asked about 120 times, and one back up is reached within 30 s.
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
# A receiver that neither answers nor fails within this time counts as failed.
DELIVERY_TIMEOUT_S = 30.0
SIGNATURE_HEADER = "X-Tamga-Signature"
# Server-sent events: a line longer than this is not ours (a document of 30,000 codes
# is about 1.5 MB of JSON); the parser refuses it rather than grow without bound.
SSE_LINE_BYTES_MAX = 8 << 20


# -- plans -------------------------------------------------------------------------------


def inbox_plan(pending: bool, after: str | None, limit: int) -> Plan[dict[str, Any]]:
    query = {"status": "pending" if pending else "all", "limit": str(limit)}
    if after:
        query["after"] = after
    return _object(Request("GET", with_query("/v1/inbox", query)))


def events_request(after: str | None, limit: int, wait_ms: int, stream: bool = False) -> Request:
    query = {"limit": str(limit)}
    if not stream:
        query["wait_ms"] = str(wait_ms)
    if after:
        query["after"] = after
    accept = "text/event-stream" if stream else "application/json"
    # The answer may take the whole wait, and then some to cross the network.
    return Request("GET", with_query("/v1/events", query), accept=accept, timeout_s=wait_ms / 1000 + 10.0)


def events_plan(after: str | None, limit: int, wait_ms: int) -> Plan[dict[str, Any]]:
    return _object(events_request(after, limit, wait_ms))


# -- server-sent events --------------------------------------------------------------------


class SseParser:
    """Bytes of a text/event-stream in, the JSON events of its `data:` fields out."""

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[dict[str, Any]]:
        self._buffer += chunk
        out: list[dict[str, Any]] = []
        while True:
            line, found, rest = self._buffer.partition(b"\n")
            if not found:
                if len(self._buffer) > SSE_LINE_BYTES_MAX:
                    raise ClientError("the event stream sent a line longer than any event")
                return out
            self._buffer = rest
            line = line.rstrip(b"\r")
            if line.startswith(b"data:"):
                self._data.append(line[5:].lstrip(b" "))
            elif not line and self._data:
                try:
                    out.append(json.loads(b"\n".join(self._data)))
                except ValueError as exc:
                    raise ClientError(f"the event stream sent an event that is not JSON: {exc}") from None
                self._data = []


# -- the cursor file -----------------------------------------------------------------------


@dataclass
class CursorFile:
    """The last handled cursor, kept in a file that is replaced whole (write, fsync,
    rename), so a reader never finds it half written."""

    path: Path | None

    def load(self) -> str | None:
        if self.path is None or not self.path.exists():
            return None
        text = self.path.read_text().strip()
        return text or None

    def save(self, cursor: str) -> None:
        if self.path is None:
            return
        temporary = self.path.with_name(self.path.name + ".tmp")
        with open(temporary, "w") as f:
            f.write(cursor + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, self.path)


# -- signatures ----------------------------------------------------------------------------


def sign_body(secret: bytes, body: bytes) -> str:
    """The signature header's value for a delivered body."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_body(secret: bytes, body: bytes, header: str) -> bool:
    """What a receiver checks: the header is the HMAC-SHA256 of the exact body."""
    return hmac.compare_digest(sign_body(secret, body), header)


# -- following -----------------------------------------------------------------------------


class Backoff:
    """Capped exponential pauses between retries; reset after a success."""

    def __init__(self, first_s: float = BACKOFF_FIRST_S, max_s: float = BACKOFF_MAX_S,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.first_s, self.max_s, self._sleep = first_s, max_s, sleep
        self.next_s = first_s

    def pause(self) -> float:
        waited = self.next_s
        self._sleep(waited)
        self.next_s = min(self.next_s * 2, self.max_s)
        return waited

    def reset(self) -> None:
        self.next_s = self.first_s


# Node errors a follower waits out: a node behind the cursor catches up, a busy or
# stopping node comes back. Anything else (a bad cursor, a revoked key) ends it.
# A node behind the cursor catches up within seconds (even from a snapshot); a cursor
# still ahead after this long is not of this chain (or this node is stuck): stop and say so.
CURSOR_AHEAD_WAIT_S = 120.0
RETRIED_ERRORS = ("cursor_ahead", "mempool_full", "stopping", "signed_reads_busy", "feed_busy",
                  "too_many_refusals", "stale_request")


def follow(
    client: SyncNodeClient, cursor: CursorFile, handle: Callable[[dict[str, Any]], None], *,
    after: str | None = None, warn: Callable[[str], None] = lambda _m: None,
    backoff: Backoff | None = None, stop: Callable[[], bool] = lambda: False,
) -> None:
    """Hand every event after the cursor (the file's, else `after`) to `handle`, in
    chain order, saving the cursor after each; until `stop()` or an error that retrying
    cannot cure."""
    position = cursor.load() or after
    backoff = backoff or Backoff()
    ahead_since: float | None = None
    while not stop():
        try:
            page = client.events_page(position, EVENTS_PAGE, FOLLOW_WAIT_MS)
        except NodeUnreachable as exc:
            warn(f"{exc}; retrying in {backoff.next_s:g} s")
            backoff.pause()
            continue
        except NodeError as exc:
            if exc.code not in RETRIED_ERRORS:
                raise
            if exc.code == "cursor_ahead":
                ahead_since = ahead_since if ahead_since is not None else time.monotonic()
                if time.monotonic() - ahead_since > CURSOR_AHEAD_WAIT_S:
                    raise
            warn(f"{exc}; retrying in {backoff.next_s:g} s")
            backoff.pause()
            continue
        backoff.reset()
        ahead_since = None
        for event in page.get("events", []):
            handle(event)
            position = str(event["cursor"])
            cursor.save(position)
        nxt = page.get("next")
        if isinstance(nxt, str) and nxt != position and nxt != "0.0":
            position = nxt
            cursor.save(position)


def event_pages(client: SyncNodeClient, after: str | None = None) -> Iterator[dict[str, Any]]:
    """Every event after `after` up to the node's head, without waiting (for tools and tests)."""
    position = after
    while True:
        page = client.events_page(position, EVENTS_PAGE, 0)
        yield from page.get("events", [])
        nxt = page.get("next")
        if not page.get("events") and nxt == (position or "0.0"):
            return
        position = nxt


def deliver(
    url: str, secret: bytes, event: dict[str, Any], backoff: Backoff, warn: Callable[[str], None],
) -> int:
    """POST one event until the receiver answers 2xx; the number of tries it took."""
    body = json.dumps(event, separators=(",", ":"), sort_keys=True).encode()
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign_body(secret, body),
               "X-Tamga-Cursor": str(event.get("cursor")), "X-Tamga-Event": str(event.get("event"))}
    if event.get("document_id"):
        headers["X-Tamga-Document-Id"] = str(event["document_id"])
    tries = 0
    while True:
        tries += 1
        request = urllib.request.Request(url, data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=DELIVERY_TIMEOUT_S) as response:
                if 200 <= response.status < 300:
                    backoff.reset()
                    return tries
                why = f"answered {response.status}"
        except urllib.error.HTTPError as exc:
            why = f"answered {exc.code}"
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            why = f"cannot be reached ({getattr(exc, 'reason', exc)})"
        warn(f"{url} {why} for event {event.get('cursor')}; retrying in {backoff.next_s:g} s")
        backoff.pause()
