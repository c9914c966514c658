"""The client API under /v1: handlers that take parsed arguments, call the node or the
store, and respond.

Each handler is declared once in the route table (`_routes.py`), which checks the
signed read and parses every parameter before the handler runs. JSON by default;
msgpack when the client sends `Content-Type: application/msgpack` or asks for it with
`Accept: application/msgpack`. Every error is a `Refusal`, which the error middleware
turns into `{"error": reason, "message": text}`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ledger import (
    END,
    AnyEvidence,
    CodeError,
    DecodeError,
    DecodeLimits,
    SignedDocument,
    decode_signed,
    parse_code,
    signed_from_json,
    unpack_untrusted,
    withhold_in_json,
)

from ._budget import RefusalBudget
from ._errors import Refusal
from ._http import JSON, MSGPACK, READER, Args, history_window_of, respond
from ._keys import METRICS, NODE
from ._node import Node

# A batch is bounded so that one request cannot hold the node for long; clients with
# more split it (a 1,000-document batch is admitted in a fraction of a second).
BATCH_DOCUMENTS_MAX = 10_000
WAIT_TIMEOUT_MS_DEFAULT = 10_000
WAIT_TIMEOUT_MS_MAX = 60_000
OPENAPI = web.AppKey("openapi", dict)
REFUSAL_BUDGET = web.AppKey("refusal_budget", RefusalBudget)

# A msgpack batch is one flat array of document wires: nothing nested, no text.
BATCH_LIMITS = DecodeLimits(
    bytes_max=1 << 30, depth_max=1, items_max=BATCH_DOCUMENTS_MAX + 1, array_items_max=BATCH_DOCUMENTS_MAX,
    str_bytes_max=0, bin_bytes_max=1 << 30,
)
# JSON has no decoder with bounds, so the body's structure is counted before it is
# parsed: brackets and braces bound the containers, commas (plus one) the values.
# Counting also hits those characters inside strings, which only overestimates. A
# 10,000-document JSON batch has about 150,000 values and 30,000 containers; a JSON
# body of five million empty arrays took 1.7 s of the loop to parse.
JSON_VALUES_MAX = 400_000
JSON_CONTAINERS_MAX = 100_000
# Objects and arrays inside each other; a signed document nests four deep.
JSON_DEPTH_MAX = 16
# Documents of a batch decoded and admitted between two yields to the event loop:
# each costs a decode and a signature check (tens of microseconds to 0.1 ms), so a
# chunk holds the loop a few milliseconds. (Decoding in a worker thread was tried:
# the decoding is Python code holding the GIL, and the loop then waited for the GIL
# at every I/O call; /v1/status p99 went to 700 ms under a batch flood.)
ADMIT_CHUNK_DOCUMENTS = 100
# The whole body must arrive within this time: a client that trickles a 16 MiB body
# byte by byte would otherwise hold its connection and buffer for hours.
BODY_READ_TIMEOUT_S = 60.0


def node_of(request: web.Request) -> Node:
    return request.app[NODE]


def code_key(raw: str) -> str:
    """The canonical key of a code in any form `ledger.parse_code` reads."""
    try:
        return parse_code(raw).key
    except CodeError as exc:
        raise Refusal("invalid_code", exc.message) from exc


# -- documents -------------------------------------------------------------------------

Parsed = tuple[SignedDocument, bytes] | Refusal
# A batch's documents are decoded one by one as they are admitted, in chunks.
Deferred = Callable[[], Parsed]


def _parse_one_json(obj: Any) -> tuple[SignedDocument, bytes]:
    signed = signed_from_json(obj)
    return signed, signed.wire()


def _parse_body(content_type: str, body: bytes) -> tuple[list[Deferred], bool]:
    """The documents of a submission (each parsed, or its refusal) and whether it was a batch."""
    if not body:
        raise Refusal("malformed", "the request has no body")
    if content_type in (MSGPACK, "application/x-msgpack"):
        return _parse_msgpack(body)
    if content_type != JSON:
        raise Refusal("unsupported_media_type",
                      f"send {JSON} or {MSGPACK}, not {content_type or 'no content type'}")
    value = _parse_json(body)
    if isinstance(value, list):
        _check_batch(len(value))
        return [functools.partial(_guard, functools.partial(_parse_one_json, v)) for v in value], True
    parsed = _guard(functools.partial(_parse_one_json, value))
    if isinstance(parsed, Refusal):
        raise parsed
    return [functools.partial(_parsed, parsed)], False


def _parsed(value: Parsed) -> Parsed:
    return value


def _parse_json(body: bytes) -> Any:
    """A JSON body within the bounds above; Refusal("malformed") otherwise."""
    containers = body.count(b"[") + body.count(b"{")
    if containers > JSON_CONTAINERS_MAX or body.count(b",") + 1 > JSON_VALUES_MAX:
        raise Refusal("malformed", f"the JSON body holds more than {JSON_CONTAINERS_MAX} arrays and objects "
                                   f"or {JSON_VALUES_MAX} values")
    try:
        value = json.loads(body)
    # RecursionError: deeply nested arrays exhaust the parser's stack, not our patience.
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise Refusal("malformed", f"the body is not JSON: {str(exc)[:200]}") from None
    if containers and _json_depth_exceeds(value, JSON_DEPTH_MAX):
        raise Refusal("malformed", f"the JSON body nests deeper than {JSON_DEPTH_MAX} levels")
    # An unpaired surrogate can only come from a \u escape (raw UTF-8 cannot hold one):
    # such a body is not Unicode text, whatever the parser let through.
    if b"\\u" in body and not _all_strings_unicode(value):
        raise Refusal("malformed", "the JSON body holds a string that is not valid Unicode (an unpaired "
                                   "surrogate)")
    return value


def _all_strings_unicode(value: Any) -> bool:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return True


def _json_depth_exceeds(value: Any, depth_max: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        inner = v.values() if isinstance(v, dict) else v if isinstance(v, list) else None
        if inner is None:
            continue
        if depth >= depth_max:
            return True
        stack.extend((x, depth + 1) for x in inner if isinstance(x, dict | list))
    return False


def _parse_msgpack(body: bytes) -> tuple[list[Deferred], bool]:
    # A document [body, signature] and a batch [wire, ...] are both one flat array of
    # byte strings: anything else is refused by these bounds before it is built.
    try:
        value = unpack_untrusted(body, BATCH_LIMITS)
    except DecodeError as exc:
        raise Refusal("malformed", f"the body is not a signed document or a batch of them: {exc}") from None
    try:
        return [functools.partial(_parsed, (decode_signed(body), body))], False
    except DecodeError as single_error:
        if not (isinstance(value, list) and value and all(type(w) is bytes for w in value)
                and value[0][:1] in (b"\x92", b"\xdc")):
            raise Refusal("malformed", f"the body is not a signed document: {single_error}") from None
        _check_batch(len(value))
        return [functools.partial(_guard, functools.partial(_parse_one_wire, w)) for w in value], True


def _parse_one_wire(wire: bytes) -> tuple[SignedDocument, bytes]:
    return decode_signed(wire), wire


def _guard(parse: Callable[[], tuple[SignedDocument, bytes]]) -> Parsed:
    try:
        return parse()
    except DecodeError as exc:
        return Refusal("malformed", str(exc))
    except UnicodeEncodeError:
        # JSON may carry an unpaired surrogate ("\ud800"), which no UTF-8 encoding holds.
        return Refusal("malformed", "a string of the document is not valid Unicode (an unpaired surrogate)")


def _check_batch(count: int) -> None:
    if not 1 <= count <= BATCH_DOCUMENTS_MAX:
        raise Refusal("malformed", f"a batch holds 1 to {BATCH_DOCUMENTS_MAX} documents, not {count}")


def _error_item(exc: Refusal) -> dict[str, Any]:
    return {"status": "refused", "error": exc.reason, "message": exc.message}


async def _read_body(request: web.Request) -> bytes:
    try:
        async with asyncio.timeout(BODY_READ_TIMEOUT_S):
            return await request.read()
    except TimeoutError:
        raise Refusal("too_slow", f"the body did not arrive within {BODY_READ_TIMEOUT_S:.0f} s") from None


def _spent() -> Refusal:
    return Refusal("too_many_refusals",
                   "too many documents with bad signatures came from this client or signer; try again later")


def _admit_one(request: web.Request, node: Node, item: tuple[SignedDocument, bytes], now_ms: int) -> bytes:
    """Admit one document, within its client's and signer's budget of refused signatures."""
    budget = request.app[REFUSAL_BUDGET]
    client, signer = request.remote or "unknown", item[0].document.signer
    if not budget.allows(client, signer):
        node.metrics.refusal_budget_spent().inc()
        raise _spent()
    try:
        return node.admit(item[0], item[1], now_ms)
    except Refusal as exc:
        if exc.reason == "bad_signature":
            budget.refused(client, signer)
        raise


async def post_documents(request: web.Request, a: Args) -> web.Response:
    node = node_of(request)
    node.check_serving()
    budget, client = request.app[REFUSAL_BUDGET], request.remote or "unknown"
    if not budget.clients.has_tokens(client):
        # Spent before this request began: the whole request is refused unread.
        node.metrics.refusal_budget_spent().inc()
        raise _spent()
    deferred, batch = _parse_body(request.content_type, await _read_body(request))
    now_ms = int(time.time() * 1000)
    admitted: list[tuple[bytes, Any] | Refusal] = []
    for count, parse in enumerate(deferred, 1):
        if count % ADMIT_CHUNK_DOCUMENTS == 0:
            await asyncio.sleep(0)  # let the loop answer others between chunks of a batch
        # A client out of budget is refused before its documents are even decoded.
        item = parse() if budget.clients.has_tokens(client) else _spent()
        if isinstance(item, Refusal):
            if item.reason == "too_many_refusals":
                node.metrics.refusal_budget_spent().inc()
                if not batch:
                    raise item
            admitted.append(item)
            continue
        try:
            doc_id = _admit_one(request, node, item, now_ms)
        except Refusal as exc:
            node.metrics.refused(exc.reason).inc()
            if not batch:
                raise
            admitted.append(exc)
            continue
        admitted.append((doc_id, node.waiters.add(doc_id) if a["wait"] != "none" else None))
    deadline = time.monotonic() + a["timeout_ms"] / 1000
    final = a["wait"] == "final"
    results = [await _outcome(node, item, deadline, final) for item in admitted]
    if not batch:
        return respond(request, results[0], 200 if _answered(results[0], final) else 202)
    done = a["wait"] != "none" and all(_answered(r, final) or r["status"] == "refused" for r in results)
    return respond(request, {"results": results}, 200 if done else 202)


def _answered(outcome: dict[str, Any], final: bool) -> bool:
    """Whether an outcome is what the client waited for: applied or rejected, and final
    when it asked for wait=final."""
    return outcome["status"] in ("applied", "rejected") and (not final or outcome.get("final") is True)


async def _outcome(node: Node, admitted: tuple[bytes, Any] | Refusal, deadline: float,
                   final: bool) -> dict[str, Any]:
    if isinstance(admitted, Refusal):
        return _error_item(admitted)
    doc_id, future = admitted
    pending = {"id": doc_id.hex(), "status": "pending", "final": False}
    if future is None:
        return pending
    # All of a batch share one deadline: the timeout bounds the request, not each document.
    outcome = await node.wait_applied(doc_id, future, max(0.0, deadline - time.monotonic()))
    if outcome is None:
        pending["message"] = "not committed within the timeout; GET /v1/documents/{id} tells later"
        return pending
    outcome = dict(outcome)  # one outcome may be shared by several waiting clients
    height = outcome["height"]
    if final:
        outcome["final"] = await node.wait_final(height, max(0.0, deadline - time.monotonic()))
        if outcome["final"] and not node.final_at(doc_id, height):
            # Block `height` was undone by a heal (it was never final) and another took
            # its place: the document is proposed again; never say final for it here.
            outcome["final"] = False
            outcome["status"] = "pending"
            outcome["message"] = ("its block was rolled back (not final) after evidence of equivocation; "
                                  "it is proposed again: GET /v1/documents/{id} tells later")
        elif not outcome["final"]:
            outcome["message"] = (outcome.get("message") or "") + (
                f"; block {height} is not final yet (not attested by a Byzantine quorum of member "
                "states within the timeout); GET /v1/documents/{id} tells later").lstrip("; ")
    else:
        outcome["final"] = node.is_final(height)
    return outcome


async def get_document(request: web.Request, a: Args) -> web.Response:
    out = node_of(request).document_status(a["id"])
    signed = out.get("document")
    if signed is not None:
        # A shipment's number, price and VAT are for its parties only (issue 13, docs/ACCESS.md).
        signed["document"] = withhold_in_json(signed["document"], request.get(READER))
        if "withheld" in signed["document"]:
            signed.pop("signature")  # it covers what was cut: no longer checkable, so not shown
    return respond(request, out)


# -- state reads -----------------------------------------------------------------------


def _code_view(request: web.Request, key: str) -> dict[str, Any]:
    view = node_of(request).store.code(key)
    if view is None:
        raise Refusal("unknown_code", f"code {key} is not on the ledger")
    return view


async def get_code(request: web.Request, a: Args) -> web.Response:
    return respond(request, _code_view(request, a["code"]))


async def get_code_history(request: web.Request, a: Args) -> web.Response:
    key, limit = a["code"], a["limit"]
    store = node_of(request).store
    if store.code_record(key) is None:
        raise Refusal("unknown_code", f"code {key} is not on the ledger")
    entries = store.history(key, after=a["after"], limit=limit)
    nxt = f"{entries[-1].height}.{entries[-1].position}" if len(entries) == limit else None
    # A past holder sees the history up to the moment it passed the code on.
    window = history_window_of(request)
    if window != END:
        shown_entries = [e for e in entries if (e.height, e.position) <= window]
        nxt = nxt if len(shown_entries) == len(entries) else None
        entries = shown_entries
    node = node_of(request)
    views = [{**e.to_json(), "final": node.is_final(e.height)} for e in entries]
    return respond(request, {"code": key, "entries": views, "next": nxt,
                             "final_height": node.finality.final_height})


async def get_check(request: web.Request, a: Args) -> web.Response:
    """The public check: what anyone may learn by scanning a pack, nothing commercial."""
    view = _code_view(request, a["code"])
    out = {"code": view["code"], "status": view["status"], "suspended": bool(view["suspended"])}
    if "gtin" in view:
        out["gtin"] = view["gtin"]
    else:
        out["sscc"] = view["sscc"]
    if "recalled_by" in view:  # a recall is a public safety notice (docs/RECALL.md)
        out["recalled"] = True
    return respond(request, out)


def _participant_view(request: web.Request, pid: str) -> dict[str, Any]:
    view = node_of(request).store.participant(pid)
    if view is None:
        raise Refusal("unknown_participant", f"participant {pid} is not registered")
    return view


async def get_participant(request: web.Request, a: Args) -> web.Response:
    return respond(request, _participant_view(request, a["id"]))


async def get_holdings(request: web.Request, a: Args) -> web.Response:
    pid, limit = a["id"], a["limit"]
    _participant_view(request, pid)
    codes = node_of(request).store.holdings(pid, after=a["after"] or "", limit=limit)
    nxt = codes[-1] if len(codes) == limit else None
    return respond(request, {"participant": pid, "codes": codes, "next": nxt})


def product_view(node: Node, gtin: str) -> dict[str, Any] | None:
    """A product with the rules of its group, as the table in force states them."""
    view = node.store.product(gtin)
    if view is None:
        return None
    table = node.store.product_groups()
    group = table.groups.get(view["group"])
    if group is not None:
        view["group_status"] = table.status(group.name)
        view["layouts"] = [layout.to_json() for layout in group.layouts]
        view["required"] = list(group.required)
    return view


async def get_product(request: web.Request, a: Args) -> web.Response:
    view = product_view(node_of(request), a["gtin"])
    if view is None:
        raise Refusal("unknown_product", f"GTIN {a['gtin']} is not in the product catalogue")
    return respond(request, view)


async def get_product_groups(request: web.Request, a: Args) -> web.Response:
    return respond(request, {"groups": node_of(request).store.product_groups().to_json()})


async def get_products(request: web.Request, a: Args) -> web.Response:
    products, nxt = node_of(request).store.products(a["group"] or "", a["after"] or "", a["limit"])
    return respond(request, {"products": products, "next": nxt})


async def get_shipment(request: web.Request, a: Args) -> web.Response:
    view = node_of(request).store.shipment(a["id"])
    if view is None:
        raise Refusal("unknown_shipment", "no such shipment")
    return respond(request, view)


async def get_flows(request: web.Request, a: Args) -> web.Response:
    node = node_of(request)
    from_state, to_state = a["from_state"], a["to_state"]
    # The parameters name any member state of the union; this chain may have fewer.
    states = {s.code for s in node.genesis.states}
    if from_state not in states or to_state not in states:
        names = ", ".join(sorted(states))
        raise Refusal("malformed", f"from_state and to_state must be member states of this chain: {names}")
    flows = node.store.flows(from_state, to_state, a["since"], a["until"], a["limit"])
    return respond(request, {"from_state": from_state, "to_state": to_state, "shipments": flows})


# -- node ------------------------------------------------------------------------------


async def get_evidence_list(request: web.Request, a: Args) -> web.Response:
    node = node_of(request)
    return respond(request, {"evidence": [_evidence_json(node, e) for e in node.evidence.all()]})


async def get_evidence(request: web.Request, a: Args) -> web.Response:
    node = node_of(request)
    evidence = node.evidence.get(a["id"])
    if evidence is None:
        raise Refusal("unknown_evidence", "this node holds no evidence with that id")
    return respond(request, {**_evidence_json(node, evidence), "bytes": evidence.encode().hex()})


def _evidence_json(node: Node, evidence: AnyEvidence) -> dict[str, Any]:
    """The evidence (of either kind), and whether it still holds against its state (not cleared)."""
    return {**evidence.to_json(), "against": node.evidence.holds(evidence)}


async def get_status(request: web.Request, a: Args) -> web.Response:
    return respond(request, node_of(request).status())


async def get_metrics(request: web.Request, a: Args) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


async def get_openapi(request: web.Request, a: Args) -> web.Response:
    return web.json_response(request.app[OPENAPI])
