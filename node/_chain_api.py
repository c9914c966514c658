"""The client API's chain reads: block headers and whole blocks, attestations, and
the proofs an auditor checks offline (a document's inclusion, a code's provenance).

Declared in the route table (`_routes.py`) like every handler; `stream_blocks` also
serves the peer API's block fetch (`_peer.py`).
"""

from __future__ import annotations

from typing import Any

import msgpack
from aiohttp import web

from ledger import END, BlockRead, inclusion_proof, not_final_heights, provenance

from ._api import node_of
from ._errors import Refusal
from ._http import MSGPACK, Args, entitle, history_window_of, respond, wants_msgpack

# JSON lists of block headers are for people; auditors stream msgpack, which has a
# larger bound because it is written out one block at a time.
BLOCKS_JSON_MAX = 1_000
BLOCKS_STREAM_MAX = 1_000_000


def _range(request: web.Request, a: Args, bound: int) -> tuple[int, int]:
    head = node_of(request).store.head.height
    lo = a["from"]
    hi = min(head if a["to"] is None else a["to"], head, lo + bound - 1)
    return lo, hi


async def get_blocks(request: web.Request, a: Args) -> web.StreamResponse:
    store = node_of(request).store
    if not wants_msgpack(request):
        lo, hi = _range(request, a, BLOCKS_JSON_MAX)
        headers = [h.to_json() for h in (store.header(i) for i in range(lo, hi + 1)) if h is not None]
        return respond(request, headers)
    entitle(request, BlockRead())  # whole blocks: regulators and auditors only
    lo, hi = _range(request, a, BLOCKS_STREAM_MAX)
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


async def get_block(request: web.Request, a: Args) -> web.Response:
    store, height = node_of(request).store, a["height"]
    block = store.block(height)
    if block is None:
        raise Refusal("unknown_block", f"there is no block {height}")
    return respond(request, {
        "header": block.header.to_json(),
        "documents": [w.hex() for w in block.documents],
        "results": [r.to_json() for r in block.results],
        "attestations": [att.to_json() for att in store.attestations(height)],
    })


async def get_attestations(request: web.Request, a: Args) -> web.Response:
    store, height = node_of(request).store, a["height"]
    if store.header(height) is None:
        raise Refusal("unknown_block", f"there is no block {height}")
    return respond(request, [att.to_json() for att in store.attestations(height)])


async def get_document_proof(request: web.Request, a: Args) -> web.Response:
    proof = inclusion_proof(node_of(request).store, a["id"])
    if proof is None:
        raise Refusal("unknown_document", "the document is not in a block")
    return respond(request, proof.to_json())


async def get_code_proof(request: web.Request, a: Args) -> web.Response:
    key = a["code"]
    node = node_of(request)
    # A past holder's bundle ends where its view of the history ends; its proofs verify
    # all the same, each document against its attested block.
    window = history_window_of(request)
    bundle = provenance(node.store, key, until=None if window == END else window)
    if bundle is None:
        raise Refusal("unknown_code", f"code {key} is not on the ledger")
    # A bundle insists on final blocks (ledger.verify_provenance refuses others): one
    # that would not verify is not handed out; the client asks again once they are.
    waiting = not_final_heights(bundle, node.genesis)
    if waiting:
        shown = ", ".join(str(h) for h in waiting[:10])
        raise Refusal("not_final", f"the provenance of {key} is not final yet: block(s) {shown} are not "
                                   "attested by a Byzantine quorum of member states; ask again shortly")
    if wants_msgpack(request):
        return web.Response(body=bundle.encode(), content_type=MSGPACK)
    return respond(request, bundle.to_json())
