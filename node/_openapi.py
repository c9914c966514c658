"""The OpenAPI 3.1 description of the client API, served at /v1/openapi.json.

Rendered from the route table (`_routes.py`), so the description cannot name a route,
a parameter or an answer that the server does not have: parameters carry the table's
types and bounds, and each error status lists exactly the reasons the route may answer.
The success schemas name the main fields of each answer; answers may carry more.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._http import HTTP_STATUS, MSGPACK, Route
from ._node import VERSION

_HEX64 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_HEX = {"type": "string", "pattern": "^([0-9a-f]{2})*$"}
_PID = {"type": "string", "pattern": "^[0-9a-f]{40}$"}
_UINT = {"type": "integer", "minimum": 0}
_STR = {"type": "string"}
_BOOL = {"type": "boolean"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _object(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "object", "required": list(required), "properties": {**required, **(optional or {})}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_RESULT = {"status": {"enum": ["applied", "rejected"]}, "reason": _nullable(_STR), "message": _STR}

SCHEMAS: dict[str, dict[str, Any]] = {
    "SignedDocument": {
        "type": "object",
        "required": ["document", "signature"],
        "additionalProperties": False,
        "properties": {
            "document": {
                "type": "object",
                "required": ["chain_id", "type", "signer", "nonce", "expires_at_ms"],
                "properties": {"chain_id": _STR, "type": _STR, "signer": _PID, "nonce": _UINT,
                               "expires_at_ms": _UINT},
            },
            "signature": {"type": "string", "pattern": "^[0-9a-fA-F]{128}$"},
        },
    },
    "Pending": _object({"id": _HEX64, "status": {"const": "pending"}}, {"message": _STR, "final": _BOOL}),
    # `final`: the block is attested by a Byzantine quorum of member states and can no
    # longer be replaced (wait=final waits for it; wait=commit only for the block).
    "Outcome": _object({"id": _HEX64, **_RESULT, "height": _UINT, "position": _UINT, "final": _BOOL}),
    "Refused": _object({"status": {"const": "refused"}, "error": _STR, "message": _STR}),
    "BatchResults": _object({"results": {"type": "array", "items": {"anyOf": [
        _ref("Pending"), _ref("Outcome"), _ref("Refused")]}}}),
    "DocumentStatus": _object({
        "id": _HEX64,
        "status": {"enum": ["pending", "applied", "rejected", "unknown"]},
        "reason": _nullable(_STR), "message": _STR,
        "height": _nullable(_UINT), "position": _nullable(_UINT),
        "document": _nullable(_ref("SignedDocument")),
        "final": _BOOL,
    }),
    "Code": _object({
        "code": _STR, "kind": {"enum": ["unit", "aggregate"]}, "status": _STR, "owner": _PID,
        "owner_state": _nullable(_STR), "aggregate": _nullable(_STR), "outermost_aggregate": _nullable(_STR),
        "in_transit": _nullable(_HEX64), "suspended": {"type": "boolean"}, "retire_reason": _nullable(_STR),
    }, {"gtin": _STR, "serial": _STR, "sscc": _STR, "children": _UINT, "recalled_by": _HEX64}),
    "History": _object({
        "code": _STR,
        "entries": {"type": "array", "items": _object({
            "height": _UINT, "position": _UINT, "document_id": _HEX64, "type": _STR,
            "sscc": _nullable(_STR), "via": _nullable(_STR)}, {"final": _BOOL})},
        "next": _nullable({"type": "string", "pattern": "^[0-9]+\\.[0-9]+$"}),
    }, {"final_height": _UINT}),
    "Check": {**_object({"code": _STR, "status": _STR, "suspended": {"type": "boolean"}},
                        {"gtin": _STR, "sscc": _STR, "recalled": {"type": "boolean"}}),
              "additionalProperties": False},
    "Participant": _object({
        "id": _PID, "public_key": _HEX64, "state": _STR, "roles": {"type": "array", "items": _STR},
        "name": _STR, "status": {"enum": ["active", "revoked"]}, "registered_height": _UINT,
    }, {"tax_id": _nullable(_STR)}),  # INN, BIN, UNP, TIN as registered (ledger/_tax_ids.py); null: none
    "Holdings": _object({"participant": _PID, "codes": {"type": "array", "items": _STR},
                         "next": _nullable(_STR)}),
    "Shipment": _object({
        "id": _HEX64, "shipper": _PID, "receiver": _PID, "status": _STR, "height": _UINT,
        "from_state": _STR, "to_state": _STR, "cross_border": {"type": "boolean"},
    }),
    "Flows": _object({"from_state": _STR, "to_state": _STR,
                      "shipments": {"type": "array", "items": _ref("Shipment")}}),
    # The inbox and the event feed (node/_feed.py).
    "Inbox": _object({
        "participant": _PID, "status": {"enum": ["pending", "all"]},
        "items": {"type": "array", "items": _object(
            {"cursor": _STR, "height": _UINT, "position": _UINT, "kind": _STR, "document_id": _HEX64,
             "time_ms": _nullable(_UINT)},
            {"shipment": _object({"id": _HEX64, "shipper": _PID, "receiver": _PID, "items": _UINT,
                                  "status": _STR, "from_state": _STR, "to_state": _STR,
                                  "accepted": _UINT})})},
        "next": _nullable(_STR), "now_ms": _UINT,
    }),
    "Events": _object({
        "events": {"type": "array", "items": _object(
            {"event": {"enum": ["document", "final"]}, "cursor": _STR, "height": _UINT},
            {"position": _UINT, "document_id": _nullable(_HEX64), "type": _nullable(_STR),
             "signer": _nullable(_STR), **_RESULT, "document": {"type": "object"},
             "block_hash": _nullable(_HEX64)})},
        "next": {"type": "string", "pattern": "^[0-9]+\\.[0-9]+$"}, "head": _UINT,
    }),
    "BlockHeader": _object({
        "chain_id": _STR, "height": _UINT, "hash": _HEX64, "prev_hash": _HEX64, "documents_root": _HEX64,
        "results_root": _HEX64, "state_hash": _HEX64, "time_ms": _UINT, "proposer": _STR,
        "raft_term": _UINT, "raft_index": _UINT, "documents": _UINT,
    }),
    # The round is the Raft term of the entry that carried the block (its header's raft_term).
    "Attestation": _object({"state": _STR, "height": _UINT, "round": _UINT, "block_hash": _HEX64,
                            "signature": _HEX}),
    "Block": _object({
        "header": _ref("BlockHeader"), "documents": {"type": "array", "items": _HEX},
        "results": {"type": "array", "items": _object(_RESULT)},
        "attestations": {"type": "array", "items": _ref("Attestation")},
    }),
    "InclusionProof": _object({
        "header": _ref("BlockHeader"), "header_bytes": _HEX,
        "attestations": {"type": "array", "items": _ref("Attestation")}, "position": _UINT,
        "document": _HEX, "document_path": {"type": "array", "items": _HEX64}, "result": _object(_RESULT),
        "result_bytes": _HEX, "result_path": {"type": "array", "items": _HEX64},
    }),
    "ProvenanceBundle": _object({
        "version": {"type": "integer"}, "code": _STR, "genesis_hash": _HEX64,
        "entries": {"type": "array", "items": _ref("InclusionProof")},
        "registrations": {"type": "array", "items": _ref("InclusionProof")},
    }),
    # Raft node ids are integers; a leader is 0 or null while there is none.
    "Status": _object({
        "state": _STR, "node_id": _UINT, "chain_id": _STR,
        "role": {"enum": ["leader", "follower", "candidate", "pre_candidate", "stopped"]},
        "term": _UINT, "leader": _nullable(_UINT), "leader_state": _nullable(_STR), "height": _UINT,
        "head_hash": _HEX64, "state_hash": _HEX64, "time_ms": _UINT, "commit_index": _UINT,
        "applied_index": _UINT, "mempool": _object({"documents": _UINT, "bytes": _UINT}), "version": _STR,
        "error": _nullable(_STR), "peers": {"type": "object", "additionalProperties": _ref("Peer")},
        # The last alarm of each kind this node raised (e.g. a block time out of bounds).
        "alarms": {"type": "object", "additionalProperties": _object({
            "count": _UINT, "height": _UINT, "message": _STR, "at_ms": _UINT})},
    }, {
        # Every block up to final_height is attested by a Byzantine quorum; the gap to
        # `height` has an alarm (`finality_gap`) beyond gap_blocks_max.
        "final_height": _UINT,
        "finality": _object({"final_height": _UINT, "gap_blocks": _UINT, "gap_blocks_max": _UINT},
                            {"unsigned_heights": {"type": "array", "items": _UINT}}),
        "evidence": _object({"pieces": _UINT, "against": {"type": "array", "items": _STR}, "refused": _UINT}),
    }),
    # Two attestations signed by one state for different blocks at one height in one round
    # (kind attestation_equivocation: height, round, attestations), or two appends its
    # node signed as leader for different entries at one Raft (term, index)
    # (append_equivocation: term, index, appends).
    "Evidence": _object({"id": _HEX64, "kind": _STR, "state": _STR, "against": _BOOL}, {
        "height": _UINT, "round": _UINT, "attestations": {"type": "array", "items": _ref("Attestation")},
        "term": _UINT, "index": _UINT, "appends": {"type": "array", "items": _object({
            "state": _STR, "term": _UINT, "index": _UINT, "entry_hash": _HEX64, "signature": _HEX})}}),
    "EvidenceList": _object({"evidence": {"type": "array", "items": _ref("Evidence")}}),
    # What gossip last said of a peer, and whether its link is up; a peer not heard from
    # yet has only `connected`.
    "Peer": {"type": "object", "properties": {
        "height": _UINT, "head_hash": _STR, "role": _STR, "term": _UINT, "leader": _UINT, "version": _STR,
        "seen_ms_ago": {"type": "integer"}, "connected": {"type": "boolean"}}},
}

# The five headers of a signed read: all or none.
_SIGNED_HEADERS = {
    "tamgaParticipant": ("X-Tamga-Participant", "participant id of the reader"),
    "tamgaTime": ("X-Tamga-Time", "ms since the epoch, within ledger.REQUEST_SKEW_MS of the node's clock"),
    "tamgaNode": ("X-Tamga-Node", "the member state whose node the request is for (its code, e.g. RU)"),
    "tamgaNonce": ("X-Tamga-Nonce", "16 to 64 random bytes in lower-case hex, new for every request"),
    "tamgaSignature": ("X-Tamga-Signature", "hex Ed25519 signature of ledger.request_message(method, "
                                            "path_with_query, time_ms, node, nonce); see docs/API.md"),
}

_STATUS_TEXT = {400: "malformed request", 401: "unsigned or badly signed request",
                403: "not an active participant", 404: "not found", 409: "conflict", 413: "too large",
                415: "unsupported content type", 422: "refused", 429: "too many requests",
                503: "the node cannot serve now"}


def _error_schema(reasons: Sequence[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["error", "message"],
        "additionalProperties": False,
        "properties": {"error": {"enum": list(reasons)}, "message": _STR},
    }


def _errors(route: Route) -> dict[str, Any]:
    by_status: dict[int, list[str]] = {}
    for reason in route.all_reasons():
        by_status.setdefault(HTTP_STATUS[reason], []).append(reason)
    return {
        str(status): {
            "description": f"{_STATUS_TEXT.get(status, 'error')}: {', '.join(reasons)}",
            "content": {"application/json": {"schema": _error_schema(reasons)}},
        }
        for status, reasons in sorted(by_status.items())
    }


def _operation(route: Route) -> dict[str, Any]:
    parameters = [
        {"name": p.name, "in": p.where, "required": p.is_required, "description": p.doc,
         "schema": p.kind.schema() if p.default is None else {**p.kind.schema(), "default": p.default}}
        for p in route.params
    ]
    responses: dict[str, Any] = {}
    for ok in route.answers:
        schema = {} if ok.schema is None else _ref(ok.schema) if isinstance(ok.schema, str) else ok.schema
        content = {m: {"schema": schema} for m in ok.media}
        if ok.msgpack_binary:
            content[MSGPACK] = {"schema": {"type": "string", "format": "binary"}}
        responses[str(ok.status)] = {"description": ok.description, "content": content}
    responses.update(_errors(route))
    op: dict[str, Any] = {"summary": route.summary, "operationId": _operation_id(route),
                          "parameters": parameters, "responses": responses}
    if route.signed:
        op["security"] = [{name: [] for name in _SIGNED_HEADERS}]
    if route.body is not None:
        op["requestBody"] = {"required": True, "content": route.body}
    return op


def _operation_id(route: Route) -> str:
    return route.handler.__name__


def openapi(routes: Sequence[Route]) -> dict[str, Any]:
    """The OpenAPI document of `routes`."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Tamga node client API", "version": VERSION},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                name: {"type": "apiKey", "in": "header", "name": header, "description": text}
                for name, (header, text) in _SIGNED_HEADERS.items()
            },
        },
    }
