"""The client API under /v1: handlers that parse, call the node or the store, respond.

JSON by default; msgpack when the client sends `Content-Type: application/msgpack` or
asks for it with `Accept: application/msgpack`. Every error is an `ApiError`, turned
into `{"error": code, "message": text}` by the one middleware in `_app.py`.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from typing import Any

import msgpack
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ledger import (
    DOMAIN_REQUEST,
    REQUEST_HEADER_PARTICIPANT,
    REQUEST_HEADER_SIGNATURE,
    REQUEST_HEADER_TIME,
    REQUEST_SKEW_MS,
    CodeError,
    DecodeError,
    SignedDocument,
    decode_signed,
    inclusion_proof,
    is_participant_id,
    parse_code,
    provenance,
    request_message,
    signed_from_json,
)
from ledger._records import ACTIVE, P_PARTICIPANT, ParticipantRecord

from ._errors import ApiError, Forbidden, Malformed, NotFound, Refusal, Unauthorized, UnsupportedMedia
from ._keys import METRICS, NODE
from ._node import Node

MSGPACK = "application/msgpack"
JSON = "application/json"
# A batch is bounded so that one request cannot hold the node for long; clients with
# more split it (a 1,000-document batch is admitted in a fraction of a second).
BATCH_DOCUMENTS_MAX = 10_000
WAIT_TIMEOUT_MS_DEFAULT = 10_000
WAIT_TIMEOUT_MS_MAX = 60_000
# JSON lists of block headers are for people; auditors stream msgpack, which has a
# larger bound because it is written out one block at a time.
BLOCKS_JSON_MAX = 1_000
BLOCKS_STREAM_MAX = 1_000_000


# -- helpers ---------------------------------------------------------------------------


def wants_msgpack(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return MSGPACK in accept or "application/x-msgpack" in accept


def respond(request: web.Request, value: Any, status: int = 200) -> web.Response:
    if wants_msgpack(request):
        return web.Response(body=msgpack.packb(value, use_bin_type=True), status=status, content_type=MSGPACK)
    return web.Response(text=json.dumps(value, separators=(",", ":")), status=status, content_type=JSON)


def query(request: web.Request, allowed: set[str]) -> dict[str, str]:
    unknown = set(request.query) - allowed
    if unknown:
        raise Malformed(f"unknown query parameter(s): {', '.join(sorted(unknown))}", code="unknown_field")
    return {k: v for k, v in request.query.items()}


def int_param(q: dict[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = q.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Malformed(f"{name} must be an integer") from None
    if not lo <= value <= hi:
        raise Malformed(f"{name} must be between {lo} and {hi}")
    return value


def hex_id(raw: str, what: str, size: int = 32) -> bytes:
    try:
        value = bytes.fromhex(raw)
    except ValueError:
        raise Malformed(f"{what} must be hex") from None
    if len(value) != size:
        raise Malformed(f"{what} must be {size} bytes ({size * 2} hex digits)")
    return value


def code_key(raw: str) -> str:
    try:
        return parse_code(raw).key
    except CodeError as exc:
        raise Malformed(exc.message, code="invalid_code") from exc


def node_of(request: web.Request) -> Node:
    return request.app[NODE]


def require_signed(request: web.Request) -> str:
    """Check a signed read request; the participant id of who asked."""
    node = node_of(request)
    h = request.headers
    pid, stamp, signature = (h.get(REQUEST_HEADER_PARTICIPANT), h.get(REQUEST_HEADER_TIME),
                             h.get(REQUEST_HEADER_SIGNATURE))
    if not pid or not stamp or not signature:
        raise Unauthorized("this read needs a signed request (X-Tamga-* headers)", code="unsigned")
    try:
        time_ms = int(stamp)
        sig = bytes.fromhex(signature)
    except ValueError:
        raise Unauthorized("X-Tamga-Time must be an integer and X-Tamga-Signature hex",
                           code="bad_request_signature") from None
    if abs(time.time() * 1000 - time_ms) > REQUEST_SKEW_MS:
        raise Unauthorized("the request time is too far from the node's clock", code="stale_request")
    if not is_participant_id(pid):
        raise Unauthorized("X-Tamga-Participant is not a participant id", code="bad_request_signature")
    raw = node.store.db.get(P_PARTICIPANT + pid.encode())
    if raw is None:
        raise Forbidden(f"participant {pid} is not registered", code="not_registered")
    record = ParticipantRecord.unpack(raw)
    if record.status != ACTIVE:
        raise Forbidden(f"participant {pid} is revoked", code="revoked")
    message = request_message(request.method, request.raw_path, time_ms)
    if not node.verifier.verify(record.public_key, sig, DOMAIN_REQUEST, node.genesis.chain_id, message):
        raise Unauthorized("the request signature does not verify", code="bad_request_signature")
    return pid


# -- documents -------------------------------------------------------------------------


def _parse_one_json(obj: Any) -> tuple[SignedDocument, bytes]:
    signed = signed_from_json(obj)
    return signed, signed.wire()


def _parse_body(content_type: str, body: bytes) -> tuple[list[tuple[SignedDocument, bytes] | ApiError], bool]:
    """The documents of a submission (each parsed, or its error) and whether it was a batch."""
    if not body:
        raise Malformed("the request has no body")
    if content_type in (MSGPACK, "application/x-msgpack"):
        return _parse_msgpack(body)
    if content_type != JSON:
        raise UnsupportedMedia(f"send {JSON} or {MSGPACK}, not {content_type or 'no content type'}")
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Malformed(f"the body is not JSON: {exc}") from None
    if isinstance(value, list):
        _check_batch(len(value))
        return [_guard(functools.partial(_parse_one_json, v)) for v in value], True
    signed, wire = _parse_one_json_or_raise(value)
    return [(signed, wire)], False


def _parse_one_json_or_raise(value: Any) -> tuple[SignedDocument, bytes]:
    try:
        return _parse_one_json(value)
    except DecodeError as exc:
        raise Malformed(str(exc)) from None


def _parse_msgpack(body: bytes) -> tuple[list[tuple[SignedDocument, bytes] | ApiError], bool]:
    try:
        return [(decode_signed(body), body)], False
    except DecodeError as single_error:
        try:
            value = msgpack.unpackb(body, raw=False, use_list=True)
        except Exception:  # msgpack raises many types; all mean "not msgpack"
            raise Malformed(f"the body is not a signed document: {single_error}") from None
        if not (isinstance(value, list) and value and all(type(w) is bytes for w in value)
                and value[0][:1] in (b"\x92", b"\xdc")):
            raise Malformed(f"the body is not a signed document: {single_error}") from None
        _check_batch(len(value))
        return [_guard(functools.partial(_parse_one_wire, w)) for w in value], True


def _parse_one_wire(wire: bytes) -> tuple[SignedDocument, bytes]:
    return decode_signed(wire), wire


def _guard(parse: Callable[[], tuple[SignedDocument, bytes]]) -> tuple[SignedDocument, bytes] | ApiError:
    try:
        return parse()
    except DecodeError as exc:
        return Malformed(str(exc))


def _check_batch(count: int) -> None:
    if not 1 <= count <= BATCH_DOCUMENTS_MAX:
        raise Malformed(f"a batch holds 1 to {BATCH_DOCUMENTS_MAX} documents, not {count}")


def _error_item(exc: Refusal) -> dict[str, Any]:
    return {"status": "refused", "error": exc.reason, "message": exc.message}


async def post_documents(request: web.Request) -> web.Response:
    node = node_of(request)
    q = query(request, {"wait", "timeout_ms"})
    wait = q.get("wait", "none")
    if wait not in ("none", "commit"):
        raise Malformed("wait must be commit or none")
    timeout_s = int_param(q, "timeout_ms", WAIT_TIMEOUT_MS_DEFAULT, 1, WAIT_TIMEOUT_MS_MAX) / 1000
    node.check_serving()
    body = await request.read()
    parsed, batch = _parse_body(request.content_type, body)
    now_ms = int(time.time() * 1000)
    admitted: list[tuple[bytes, Any] | Refusal] = []
    for item in parsed:
        if isinstance(item, ApiError):
            admitted.append(item)
            continue
        try:
            doc_id = node.admit(item[0], item[1], now_ms)
        except Refusal as exc:
            node.metrics.refused(exc.reason).inc()
            if not batch:
                raise
            admitted.append(exc)
            continue
        admitted.append((doc_id, node.waiters.add(doc_id) if wait == "commit" else None))
    deadline = time.monotonic() + timeout_s
    results = [await _outcome(node, a, deadline) for a in admitted]
    if not batch:
        status = 200 if results[0]["status"] in ("applied", "rejected") else 202
        return respond(request, results[0], status)
    return respond(request, {"results": results}, 200 if wait == "commit" else 202)


async def _outcome(node: Node, admitted: tuple[bytes, Any] | Refusal, deadline: float) -> dict[str, Any]:
    if isinstance(admitted, Refusal):
        return _error_item(admitted)
    doc_id, future = admitted
    pending = {"id": doc_id.hex(), "status": "pending"}
    if future is None:
        return pending
    # All of a batch share one deadline: the timeout bounds the request, not each document.
    outcome = await node.wait_applied(doc_id, future, max(0.0, deadline - time.monotonic()))
    if outcome is None:
        pending["message"] = "not committed within the timeout; GET /v1/documents/{id} tells later"
        return pending
    return outcome


async def get_document(request: web.Request) -> web.Response:
    require_signed(request)
    query(request, set())
    doc_id = hex_id(request.match_info["id"], "a document id")
    return respond(request, node_of(request).document_status(doc_id))


# -- state reads -----------------------------------------------------------------------


async def get_code(request: web.Request) -> web.Response:
    require_signed(request)
    query(request, set())
    key = code_key(request.match_info["code"])
    view = node_of(request).store.code(key)
    if view is None:
        raise NotFound(f"code {key} is not on the ledger", code="unknown_code")
    return respond(request, view)


def _position(raw: str | None) -> tuple[int, int] | None:
    if raw is None:
        return None
    try:
        height, position = raw.split(".")
        return int(height), int(position)
    except ValueError:
        raise Malformed("after must be HEIGHT.POSITION, e.g. 12.0") from None


async def get_code_history(request: web.Request) -> web.Response:
    require_signed(request)
    q = query(request, {"after", "limit"})
    key = code_key(request.match_info["code"])
    store = node_of(request).store
    if store.code_record(key) is None:
        raise NotFound(f"code {key} is not on the ledger", code="unknown_code")
    limit = int_param(q, "limit", 100, 1, 1000)
    entries = store.history(key, after=_position(q.get("after")), limit=limit)
    nxt = f"{entries[-1].height}.{entries[-1].position}" if len(entries) == limit else None
    return respond(request, {"code": key, "entries": [e.to_json() for e in entries], "next": nxt})


async def get_check(request: web.Request) -> web.Response:
    """The public check: what anyone may learn by scanning a pack, nothing commercial."""
    query(request, set())
    key = code_key(request.match_info["code"])
    view = node_of(request).store.code(key)
    if view is None:
        raise NotFound(f"code {key} is not on the ledger", code="unknown_code")
    out = {"code": key, "status": view["status"], "suspended": bool(view["suspended"])}
    if "gtin" in view:
        out["gtin"] = view["gtin"]
    else:
        out["sscc"] = view["sscc"]
    return respond(request, out)


async def get_participant(request: web.Request) -> web.Response:
    require_signed(request)
    query(request, set())
    pid = request.match_info["id"]
    view = node_of(request).store.participant(pid) if is_participant_id(pid) else None
    if view is None:
        raise NotFound(f"participant {pid} is not registered", code="unknown_participant")
    return respond(request, view)


async def get_holdings(request: web.Request) -> web.Response:
    require_signed(request)
    q = query(request, {"after", "limit"})
    pid = request.match_info["id"]
    store = node_of(request).store
    if not is_participant_id(pid) or store.participant(pid) is None:
        raise NotFound(f"participant {pid} is not registered", code="unknown_participant")
    limit = int_param(q, "limit", 100, 1, 1000)
    codes = store.holdings(pid, after=q.get("after", ""), limit=limit)
    nxt = codes[-1] if len(codes) == limit else None
    return respond(request, {"participant": pid, "codes": codes, "next": nxt})


async def get_shipment(request: web.Request) -> web.Response:
    require_signed(request)
    query(request, set())
    shipment_id = hex_id(request.match_info["id"], "a shipment id")
    view = node_of(request).store.shipment(shipment_id)
    if view is None:
        raise NotFound("no such shipment", code="unknown_shipment")
    return respond(request, view)


async def get_flows(request: web.Request) -> web.Response:
    require_signed(request)
    q = query(request, {"from_state", "to_state", "since", "until", "limit"})
    node = node_of(request)
    states = {s.code for s in node.genesis.states}
    from_state, to_state = q.get("from_state", ""), q.get("to_state", "")
    if from_state not in states or to_state not in states:
        names = ", ".join(sorted(states))
        raise Malformed(f"from_state and to_state must be member states of this chain: {names}")
    since = int_param(q, "since", 0, 0, 2**63)
    until = int_param(q, "until", 2**62, 0, 2**63) if "until" in q else None
    limit = int_param(q, "limit", 100, 1, 1000)
    flows = node.store.flows(from_state, to_state, since, until, limit)
    return respond(request, {"from_state": from_state, "to_state": to_state, "shipments": flows})


# -- chain reads -----------------------------------------------------------------------


def _range(request: web.Request, bound: int) -> tuple[int, int]:
    q = query(request, {"from", "to"})
    head = node_of(request).store.head.height
    lo = int_param(q, "from", 1, 1, 2**62)
    hi = int_param(q, "to", head, 1, 2**62)
    hi = min(hi, head, lo + bound - 1)
    return lo, hi


async def get_blocks(request: web.Request) -> web.StreamResponse:
    require_signed(request)
    store = node_of(request).store
    if not wants_msgpack(request):
        lo, hi = _range(request, BLOCKS_JSON_MAX)
        headers = [h.to_json() for h in (store.header(i) for i in range(lo, hi + 1)) if h is not None]
        return respond(request, headers)
    lo, hi = _range(request, BLOCKS_STREAM_MAX)
    return await stream_blocks(request, store, lo, hi)


async def stream_blocks(request: web.Request, store: Any, lo: int, hi: int,
                        headers: dict[str, str] | None = None) -> web.StreamResponse:
    """Blocks lo..hi as concatenated msgpack values [block bytes, [attestations]]."""
    response = web.StreamResponse(headers={"Content-Type": MSGPACK, **(headers or {})})
    await response.prepare(request)
    for height in range(lo, hi + 1):
        block = store.block(height)
        if block is None:
            break
        atts = [a.to_list() for a in store.attestations(height)]
        await response.write(msgpack.packb([block.encode(), atts], use_bin_type=True))
    await response.write_eof()
    return response


async def get_block(request: web.Request) -> web.Response:
    require_signed(request)
    query(request, set())
    store = node_of(request).store
    try:
        height = int(request.match_info["height"])
    except ValueError:
        raise Malformed("a height is an integer") from None
    block = store.block(height)
    if block is None:
        raise NotFound(f"there is no block {height}", code="unknown_block")
    return respond(request, {
        "header": block.header.to_json(),
        "documents": [w.hex() for w in block.documents],
        "results": [r.to_json() for r in block.results],
        "attestations": [a.to_json() for a in store.attestations(height)],
    })


async def get_attestations(request: web.Request) -> web.Response:
    query(request, set())
    store = node_of(request).store
    try:
        height = int(request.match_info["height"])
    except ValueError:
        raise Malformed("a height is an integer") from None
    if store.header(height) is None:
        raise NotFound(f"there is no block {height}", code="unknown_block")
    return respond(request, [a.to_json() for a in store.attestations(height)])


async def get_document_proof(request: web.Request) -> web.Response:
    require_signed(request)
    query(request, set())
    doc_id = hex_id(request.match_info["id"], "a document id")
    proof = inclusion_proof(node_of(request).store, doc_id)
    if proof is None:
        raise NotFound("the document is not in a block", code="unknown_document")
    return respond(request, proof.to_json())


async def get_code_proof(request: web.Request) -> web.Response:
    require_signed(request)
    query(request, set())
    key = code_key(request.match_info["code"])
    bundle = provenance(node_of(request).store, key)
    if bundle is None:
        raise NotFound(f"code {key} is not on the ledger", code="unknown_code")
    if wants_msgpack(request):
        return web.Response(body=bundle.encode(), content_type=MSGPACK)
    return respond(request, bundle.to_json())


# -- node ------------------------------------------------------------------------------


async def get_status(request: web.Request) -> web.Response:
    query(request, set())
    return respond(request, node_of(request).status())


async def get_metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


async def get_openapi(request: web.Request) -> web.Response:
    from ._openapi import openapi

    return web.json_response(openapi())


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/v1/documents", post_documents)
    r.add_get("/v1/documents/{id}", get_document)
    r.add_get("/v1/codes/{code}", get_code)
    r.add_get("/v1/codes/{code}/history", get_code_history)
    r.add_get("/v1/check/{code}", get_check)
    r.add_get("/v1/participants/{id}", get_participant)
    r.add_get("/v1/participants/{id}/holdings", get_holdings)
    r.add_get("/v1/shipments/{id}", get_shipment)
    r.add_get("/v1/flows", get_flows)
    r.add_get("/v1/blocks", get_blocks)
    r.add_get("/v1/blocks/{height}", get_block)
    r.add_get("/v1/attestations/{height}", get_attestations)
    r.add_get("/v1/proofs/documents/{id}", get_document_proof)
    r.add_get("/v1/proofs/codes/{code}", get_code_proof)
    r.add_get("/v1/status", get_status)
    r.add_get("/v1/openapi.json", get_openapi)
    r.add_get("/metrics", get_metrics)
