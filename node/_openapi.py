"""The OpenAPI 3 description of the client API, served at /v1/openapi.json.

Built from one table of routes so that it stays short; a test checks that its paths and
methods are exactly the application's routes (docs/API.md says the same in prose).
"""

from __future__ import annotations

from typing import Any

from ._node import VERSION

_ERROR = {"$ref": "#/components/schemas/Error"}

# (method, path, summary, signed read, query parameters, success status)
ROUTES: tuple[tuple[str, str, str, bool, tuple[str, ...], str], ...] = (
    ("post", "/v1/documents", "Submit one signed document or a batch", False, ("wait", "timeout_ms"), "202"),
    ("get", "/v1/documents/{id}", "A document's status, result and content", True, (), "200"),
    ("get", "/v1/codes/{code}", "A marking code's state", True, (), "200"),
    ("get", "/v1/codes/{code}/history", "Every document that touched a code", True,
     ("after", "limit"), "200"),
    ("get", "/v1/check/{code}", "Public check: product and status only", False, (), "200"),
    ("get", "/v1/participants/{id}", "A registered participant", True, (), "200"),
    ("get", "/v1/participants/{id}/holdings", "Codes a participant holds", True, ("after", "limit"), "200"),
    ("get", "/v1/shipments/{id}", "A shipment", True, (), "200"),
    ("get", "/v1/flows", "Cross-border shipments between two member states", True,
     ("from_state", "to_state", "since", "until", "limit"), "200"),
    ("get", "/v1/blocks", "Block headers (JSON) or whole blocks streamed (msgpack)", True,
     ("from", "to"), "200"),
    ("get", "/v1/blocks/{height}", "One block with its documents, results and attestations", True, (), "200"),
    ("get", "/v1/attestations/{height}", "Member states' signatures of a block hash", False, (), "200"),
    ("get", "/v1/proofs/documents/{id}", "Inclusion proof of a document", True, (), "200"),
    ("get", "/v1/proofs/codes/{code}", "Provenance bundle of a code", True, (), "200"),
    ("get", "/v1/status", "The node's view: role, term, height, head, peers", False, (), "200"),
    ("get", "/v1/openapi.json", "This description", False, (), "200"),
    ("get", "/metrics", "Prometheus metrics", False, (), "200"),
)

_PARAM_DOCS = {
    "wait": "`commit`: answer only once the document's block is applied (durable on a majority)",
    "timeout_ms": "how long wait=commit waits (1 to 60000, default 10000); then 202 pending",
    "after": "page after this cursor (the `next` of the previous page)",
    "limit": "page size, 1 to 1000 (default 100)",
    "from_state": "member state the goods left", "to_state": "member state the goods entered",
    "since": "first block height", "until": "last block height",
    "from": "first block height (default 1)", "to": "last block height (default the head)",
}


def _operation(path: str, summary: str, signed: bool, params: tuple[str, ...], ok: str) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in (p[1:-1] for p in path.split("/") if p.startswith("{"))
    ]
    parameters += [
        {"name": name, "in": "query", "required": False, "schema": {"type": "string"},
         "description": _PARAM_DOCS.get(name, "")}
        for name in params
    ]
    responses: dict[str, Any] = {ok: {"description": "success"}}
    if ok == "202":
        responses["200"] = {"description": "committed (with wait=commit): applied or rejected with reason"}
    for status, text in (("400", "malformed"), ("404", "unknown"), ("413", "too large"),
                         ("415", "wrong content type"), ("422", "refused"), ("503", "unavailable")):
        responses[status] = {"description": text, "content": {"application/json": {"schema": _ERROR}}}
    if signed:
        responses["401"] = {"description": "unsigned or badly signed request",
                            "content": {"application/json": {"schema": _ERROR}}}
        responses["403"] = {"description": "not an active participant",
                            "content": {"application/json": {"schema": _ERROR}}}
    op: dict[str, Any] = {"summary": summary, "parameters": parameters, "responses": responses}
    if signed:
        op["security"] = [{"tamgaSignature": []}]
    if path == "/v1/documents":
        op["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"oneOf": [
                    {"$ref": "#/components/schemas/SignedDocument"},
                    {"type": "array", "items": {"$ref": "#/components/schemas/SignedDocument"}},
                ]}},
                "application/msgpack": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    return op


def openapi() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary, signed, params, ok in ROUTES:
        paths.setdefault(path, {})[method] = _operation(path, summary, signed, params, ok)
    return {
        "openapi": "3.0.3",
        "info": {"title": "Tamga node client API", "version": VERSION},
        "paths": paths,
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
                },
                "SignedDocument": {
                    "type": "object",
                    "required": ["document", "signature"],
                    "additionalProperties": False,
                    "properties": {"document": {"type": "object"}, "signature": {"type": "string"}},
                },
            },
            "securitySchemes": {
                "tamgaSignature": {
                    "type": "apiKey", "in": "header", "name": "X-Tamga-Signature",
                    "description": "with X-Tamga-Participant and X-Tamga-Time; see docs/API.md",
                },
            },
        },
    }
