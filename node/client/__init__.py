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

from ._async import NodeClient
from ._events import (
    SIGNATURE_HEADER,
    Backoff,
    CursorFile,
    SseParser,
    deliver,
    event_pages,
    events_plan,
    follow,
    inbox_plan,
    sign_body,
    verify_body,
)
from ._plans import (
    chain_id_plan,
    document_plan,
    flows_plan,
    signing_plan,
    status_plan,
    submit_plan,
    submit_request,
    wait_for_plan,
    wait_height_plan,
)
from ._sync import SyncNodeClient
from ._wire import (
    COMMIT_TIMEOUT_S,
    JSON,
    MSGPACK,
    REQUEST_TIMEOUT_S,
    WAIT_MODES,
    BlockFrames,
    CertificateMismatch,
    ClientError,
    NodeError,
    NodeIdentity,
    NodeUnreachable,
    Pause,
    Plan,
    Request,
    Submitted,
    check_certificate,
    decode_answer,
    error_from_body,
    is_loopback,
    node_identity,
    normalise_url,
    quote_code,
)

__all__ = [
    "SIGNATURE_HEADER",
    "Backoff",
    "CursorFile",
    "SseParser",
    "deliver",
    "event_pages",
    "events_plan",
    "follow",
    "inbox_plan",
    "sign_body",
    "verify_body",
    "COMMIT_TIMEOUT_S",
    "WAIT_MODES",
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
