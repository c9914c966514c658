"""Plans: each request of the node API written once, as a generator, without I/O."""

from __future__ import annotations

import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

import msgpack

import ledger

from ._wire import (
    COMMIT_SLACK_S,
    MSGPACK,
    PAGE_ITEMS_MAX,
    POLL_FIRST_S,
    POLL_LAST_S,
    WAIT_MODES,
    ClientError,
    Pause,
    Plan,
    Request,
    Submitted,
    quote_code,
    with_query,
)

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


def wait_mode(wait: bool | str) -> str:
    """"none", "commit" or "final" from a client's `wait` (True means "commit", the
    meaning it had before finality existed)."""
    mode = ("commit" if wait else "none") if isinstance(wait, bool) else wait
    if mode not in WAIT_MODES:
        raise ValueError(f"wait is one of {', '.join(WAIT_MODES)} (or a bool), not {wait!r}")
    return mode


def submit_request(wires: bytes | Sequence[bytes], wait: bool | str, timeout_ms: int | None) -> Request:
    """One document's wire bytes, or a batch of them, as one msgpack submission.
    `wait`: "commit" (or True) answers once the block is applied, "final" once it is
    final too, "none" (or False) at once."""
    body = wires if isinstance(wires, bytes) else msgpack.packb(list(wires), use_bin_type=True)
    query: dict[str, str] = {}
    mode = wait_mode(wait)
    if mode != "none":
        query["wait"] = mode
    if timeout_ms is not None:
        query["timeout_ms"] = str(timeout_ms)
    budget_s = None if timeout_ms is None else timeout_ms / 1000 + COMMIT_SLACK_S
    return Request("POST", with_query("/v1/documents", query), body=body, content_type=MSGPACK,
                   accept=MSGPACK, signed=False, timeout_s=budget_s)


def submit_plan(signed_doc: ledger.SignedDocument, wait: bool | str, timeout_s: float) -> Plan[Submitted]:
    """Submit one document; with wait "commit" (or True) return only once it is applied
    or rejected, with "final" only once its block is final too."""
    mode = wait_mode(wait)
    timeout_ms = int(timeout_s * 1000) if mode != "none" else None
    answer = yield submit_request(signed_doc.wire(), mode, timeout_ms)
    result = Submitted.from_json(dict(answer or {}))
    if not result.id:
        result = Submitted(signed_doc.id.hex(), result.status, result.reason, result.message)
    if mode != "none" and not (result.settled and (result.final or mode == "commit")):
        result = yield from wait_for_plan(result.id, timeout_s, final=mode == "final")
    return result


def document_plan(doc_id: str) -> Plan[dict[str, Any]]:
    return _object(Request("GET", f"/v1/documents/{doc_id}"))


def wait_for_plan(doc_id: str, timeout_s: float, final: bool = False) -> Plan[Submitted]:
    """Poll a document's status until it is applied or rejected (and, with `final`, its
    block final), up to a deadline."""
    deadline = time.monotonic() + timeout_s
    pause_s = POLL_FIRST_S
    while True:
        result = Submitted.from_json((yield from document_plan(doc_id)))
        if result.settled and (result.final or not final):
            return result
        if time.monotonic() >= deadline:
            what = "final" if result.settled else "committed"
            raise ClientError(
                f"document {doc_id} was not {what} within {timeout_s:g} s (status {result.status}"
                f"{', not final' if result.settled else ''}); ask again with: tamga doc show {doc_id}"
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
