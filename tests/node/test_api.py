"""The client API of one node, served in this process (a one-state chain: it leads itself)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from ledger import DocType, KeyPair
from node._api import MSGPACK
from node._keys import CONFIG
from testnet import GTIN, code_key, poll_until_async

from .helpers import InProcessNode, in_process_node


@pytest.fixture
async def ru(tmp_path: Path) -> AsyncIterator[InProcessNode]:
    async with in_process_node(tmp_path) as n:
        await poll_until_async(lambda: n.node.proposer.can_propose(), 10, "the node to lead")
        yield n


async def producer_with_codes(n: InProcessNode, count: int = 3) -> tuple[KeyPair, list[str]]:
    producer = KeyPair.generate()
    await n.submit_ok(n.docs.register(n.regulator(), producer, "RU", ["producer"], "Producer"))
    # The catalogue entry emit needs; a second producer of the test finds it there already.
    _, body = await n.submit(n.docs.register_product(n.regulator(), producer))
    assert body["reason"] in (None, "already_exists"), body
    serials = n.docs.serials(count)
    await n.submit_ok(n.docs.emit(n.regulator(), producer, serials))
    codes = [code_key(GTIN, s) for s in serials]
    await n.submit_ok(n.docs.introduce(producer, codes))
    return producer, codes


def snapshot(n: InProcessNode) -> tuple[int, int]:
    return n.node.store.head.height, len(n.node.mempool)


async def test_submit_with_wait_commit_answers_with_the_result(ru: InProcessNode) -> None:
    """wait=commit answers once the block is applied, with the document's result and place."""
    producer = KeyPair.generate()
    body = await ru.submit_ok(ru.docs.register(ru.regulator(), producer, "RU", ["producer"], "P"))
    assert body["height"] == 1 and body["position"] == 0 and body["reason"] is None
    status = await (await ru.client.get("/v1/status")).json()
    assert status["height"] == 1 and status["role"] == "leader" and status["state"] == "RU"


async def test_rejected_document_is_committed_with_its_reason(ru: InProcessNode) -> None:
    """A document the state machine refuses still commits, as rejected with a reason."""
    _, codes = await producer_with_codes(ru)
    stranger, other = KeyPair.generate(), KeyPair.generate()
    await ru.submit_ok(ru.docs.register(ru.regulator(), stranger, "RU", ["retailer"], "S"))
    await ru.submit_ok(ru.docs.register(ru.regulator(), other, "RU", ["retailer"], "O"))
    status, body = await ru.submit(ru.docs.ship(stranger, other, codes[:1]))
    assert status == 200 and body["status"] == "rejected" and body["reason"] == "not_owner", body


async def test_without_wait_202_then_the_document_resource(ru: InProcessNode) -> None:
    """Without wait the answer is 202 pending; GET /v1/documents/{id} then tells the result."""
    producer = KeyPair.generate()
    doc = ru.docs.register(ru.regulator(), producer, "RU", ["producer"], "P")
    response = await ru.client.post("/v1/documents", json=doc.to_json())
    assert response.status == 202
    body = await response.json()
    assert body == {"id": doc.id.hex(), "status": "pending", "final": False}
    path = f"/v1/documents/{doc.id.hex()}"
    await poll_until_async(lambda: ru.node.store.head.height == 1, 10, "the block")
    got = await ru.client.get(path, headers=ru.signed(ru.regulator(), path))
    view = await got.json()
    assert view["status"] == "applied" and view["document"]["document"]["type"] == "register_participant"


async def test_batches_in_json_and_msgpack(ru: InProcessNode) -> None:
    """A batch is admitted document by document: good ones commit, bad ones are refused in place."""
    a, b = KeyPair.generate(), KeyPair.generate()
    docs = [ru.docs.register(ru.regulator(), k, "RU", ["retailer"], "R") for k in (a, b)]
    response = await ru.client.post("/v1/documents?wait=commit", json=[docs[0].to_json(), {"bad": 1}])
    results = (await response.json())["results"]
    assert response.status == 200
    assert results[0]["status"] == "applied"
    assert results[1]["status"] == "refused" and results[1]["error"] == "malformed"
    body = msgpack.packb([docs[1].wire(), docs[0].wire()])
    response = await ru.client.post("/v1/documents?wait=commit", data=body,
                                    headers={"Content-Type": MSGPACK, "Accept": MSGPACK})
    results = msgpack.unpackb(await response.read())["results"]
    assert results[0]["status"] == "applied"
    assert results[1]["error"] == "duplicate"


async def expect_error(ru: InProcessNode, response: Any, status: int, error: str) -> None:
    assert response.status == status, await response.text()
    body = await response.json()
    assert set(body) == {"error", "message"} and body["error"] == error, body


async def test_bad_input_gets_a_4xx_json_and_changes_nothing(ru: InProcessNode) -> None:
    """Oversize, malformed, unknown fields, wrong chain, bad signature, expired, replay: 4xx, no change."""
    regulator = ru.regulator()
    good = ru.docs.register(regulator, KeyPair.generate(), "RU", ["producer"], "P")
    await ru.submit_ok(good)
    before = snapshot(ru)
    post = ru.client.post
    limit = ru.app[CONFIG].api.body_bytes_max
    await expect_error(ru, await post("/v1/documents", data=b"x" * (limit + 1),
                                      headers={"Content-Type": "application/json"}), 413, "too_large")
    await expect_error(ru, await post("/v1/documents", data=b"{not json",
                                      headers={"Content-Type": "application/json"}), 400, "malformed")
    await expect_error(ru, await post("/v1/documents", data=b"\xc1\x00",
                                      headers={"Content-Type": MSGPACK}), 400, "malformed")
    await expect_error(ru, await post("/v1/documents", data=b"hello",
                                      headers={"Content-Type": "text/plain"}), 415, "unsupported_media_type")
    unknown = good.to_json()
    unknown["document"]["colour"] = "red"
    await expect_error(ru, await post("/v1/documents", json=unknown), 400, "malformed")
    await expect_error(ru, await post("/v1/documents", json={**good.to_json(), "extra": 1}), 400, "malformed")
    await expect_error(ru, await post("/v1/documents?wait=commit&colour=red", json=good.to_json()),
                       400, "unknown_field")
    other_chain = ru.docs.doc(regulator, DocType.REGISTER_PARTICIPANT, chain_id="another-chain",
                              public_key=KeyPair.generate().public_key, state="RU", roles=["producer"], name="X")
    await expect_error(ru, await post("/v1/documents", json=other_chain.to_json()), 422, "wrong_chain")
    forged = ru.docs.register(regulator, KeyPair.generate(), "RU", ["producer"], "F").to_json()
    forged["signature"] = "00" * 64
    await expect_error(ru, await post("/v1/documents", json=forged), 422, "bad_signature")
    expired = ru.docs.doc(regulator, DocType.REGISTER_PARTICIPANT, expires_in_ms=-1000,
                          public_key=KeyPair.generate().public_key, state="RU", roles=["producer"], name="E")
    await expect_error(ru, await post("/v1/documents", json=expired.to_json()), 422, "expired")
    await expect_error(ru, await post("/v1/documents", json=good.to_json()), 409, "duplicate")
    nobody = KeyPair.generate()
    await expect_error(ru, await post("/v1/documents", json=ru.docs.introduce(nobody, ["x"]).to_json()),
                       403, "not_registered")
    await expect_error(ru, await ru.client.get("/v1/nothing-here"), 404, "not_found")
    await expect_error(ru, await ru.client.delete("/v1/documents"), 405, "method_not_allowed")
    assert snapshot(ru) == before
    assert ru.node.driver is not None and ru.node.driver.running


async def test_signed_reads(ru: InProcessNode) -> None:
    """Commercial reads need a fresh signature of an active participant; the public check does not."""
    producer, codes = await producer_with_codes(ru)
    path = f"/v1/codes/{codes[0]}"
    get = ru.client.get
    await expect_error(ru, await get(path), 401, "unsigned")
    headers = ru.signed(producer, path)
    response = await get(path, headers=headers)
    assert response.status == 200
    view = await response.json()
    assert view["owner"] == producer.participant_id and view["status"] == "introduced"
    await expect_error(ru, await get(path, headers={**headers, "X-Tamga-Signature": "00" * 64}),
                       401, "bad_request_signature")
    await expect_error(ru, await get(f"/v1/codes/{codes[1]}", headers=headers), 401, "bad_request_signature")
    stale = ru.signed(producer, path)
    stale["X-Tamga-Time"] = "1"
    await expect_error(ru, await get(path, headers=stale), 401, "stale_request")
    stranger = KeyPair.generate()
    await expect_error(ru, await get(path, headers=ru.signed(stranger, path)), 403, "not_registered")
    check = await (await get(f"/v1/check/{codes[0]}")).json()
    assert check == {"code": codes[0], "gtin": GTIN, "status": "introduced", "suspended": False}
    await expect_error(ru, await get("/v1/check/0123"), 400, "invalid_code")


async def test_reads_of_history_holdings_blocks_and_attestations(ru: InProcessNode) -> None:
    """History pages, holdings, blocks (JSON and the msgpack stream) and attestations."""
    producer, codes = await producer_with_codes(ru, 5)
    buyer = KeyPair.generate()
    await ru.submit_ok(ru.docs.register(ru.regulator(), buyer, "RU", ["wholesaler"], "B"))
    shipped = await ru.submit_ok(ru.docs.ship(producer, buyer, codes[:2]))

    async def signed_json(path: str, key: KeyPair = producer) -> Any:
        response = await ru.client.get(path, headers=ru.signed(key, path))
        assert response.status == 200, await response.text()
        return await response.json()

    history = await signed_json(f"/v1/codes/{codes[0]}/history?limit=2")
    assert [e["type"] for e in history["entries"]] == ["emit", "introduce"] and history["next"]
    rest = await signed_json(f"/v1/codes/{codes[0]}/history?after={history['next']}")
    assert [e["type"] for e in rest["entries"]] == ["ship"] and rest["next"] is None
    holdings = await signed_json(f"/v1/participants/{producer.participant_id}/holdings")
    assert set(codes[2:]) <= set(holdings["codes"])  # shipped codes stay until accepted
    shipment = await signed_json(f"/v1/shipments/{shipped['id']}")
    assert shipment["receiver"] == buyer.participant_id
    # Flows and whole blocks are the regulator's to read (docs/ACCESS.md).
    flows = await signed_json("/v1/flows?from_state=RU&to_state=RU", ru.regulator())
    assert isinstance(flows["shipments"], list)
    headers = await signed_json("/v1/blocks?from=1")
    assert [h["height"] for h in headers] == list(range(1, ru.node.store.head.height + 1))
    block = await signed_json("/v1/blocks/1", ru.regulator())
    assert block["header"]["hash"] == headers[0]["hash"] and block["attestations"][0]["state"] == "RU"
    path = "/v1/blocks?from=2&to=3"
    stream = await ru.client.get(path, headers={**ru.signed(ru.regulator(), path), "Accept": MSGPACK})
    items = list(msgpack.Unpacker(__import__("io").BytesIO(await stream.read())))
    assert len(items) == 2 and all(len(att) == 1 for _, att in items)
    atts = await (await ru.client.get("/v1/attestations/1")).json()
    assert atts[0]["block_hash"] == headers[0]["hash"]


async def test_openapi_describes_exactly_the_routes(ru: InProcessNode) -> None:
    """Every route is in /v1/openapi.json and the description names no route that does not exist."""
    spec = await (await ru.client.get("/v1/openapi.json")).json()
    described = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    routes = {
        (r.method, r.resource.canonical)
        for r in ru.app.router.routes()
        if r.method not in ("HEAD", "OPTIONS") and r.resource is not None
    }
    assert described == routes
    assert spec["openapi"].startswith("3.")


async def test_metrics_and_status(ru: InProcessNode) -> None:
    """/metrics exports height, role and document counters in Prometheus text."""
    await producer_with_codes(ru, 1)  # four blocks: producer, product, emit, introduce
    text = await (await ru.client.get("/metrics")).text()
    assert 'tamga_height{state="RU"} 4.0' in text
    assert "tamga_documents_applied_total" in text and "tamga_apply_latency_seconds_bucket" in text
    assert "tamga_commit_latency_seconds_count" in text
    status = await (await ru.client.get("/v1/status", headers={"Accept": MSGPACK})).read()
    assert msgpack.unpackb(status)["height"] == 4


async def test_json_and_msgpack_reads_agree(ru: InProcessNode) -> None:
    """The same resource reads the same in JSON and msgpack."""
    producer, codes = await producer_with_codes(ru, 1)
    path = f"/v1/codes/{codes[0]}"
    as_json = await (await ru.client.get(path, headers=ru.signed(producer, path))).json()
    raw = await (await ru.client.get(path, headers={**ru.signed(producer, path), "Accept": MSGPACK})).read()
    assert msgpack.unpackb(raw) == as_json
    assert json.loads(json.dumps(as_json)) == as_json


async def test_proofs_verify_offline(ru: InProcessNode) -> None:
    """The inclusion proof and the provenance bundle served verify against genesis alone."""
    from ledger import InclusionProof, ProvenanceBundle, verify_inclusion_proof, verify_provenance

    producer, codes = await producer_with_codes(ru, 2)
    genesis = ru.net.genesis
    doc = ru.docs.introduce(producer, codes)  # already introduced: recorded, as rejected
    await ru.submit(doc)
    path = f"/v1/proofs/documents/{doc.id.hex()}"
    response = await ru.client.get(path, headers=ru.signed(producer, path))
    assert response.status == 200, await response.text()
    proof = await response.json()
    assert proof["header"]["height"] == ru.node.store.head.height
    verify_inclusion_proof(InclusionProof.from_json(proof), genesis)
    path = f"/v1/proofs/codes/{codes[0]}"
    raw = await (await ru.client.get(path, headers={**ru.signed(producer, path), "Accept": MSGPACK})).read()
    verify_provenance(ProvenanceBundle.decode(raw), genesis)
    path = "/v1/proofs/codes/010468002946090821NOPE"
    await expect_error(ru, await ru.client.get(path, headers=ru.signed(producer, path)), 404, "unknown_code")


async def test_products_are_public_with_their_groups_rules(ru: InProcessNode) -> None:
    """GET /v1/products/{gtin} shows a registered product and its group's layouts to anyone,
    unsigned; an unknown GTIN is 404; the list pages by GTIN and filters by group."""
    await producer_with_codes(ru, 1)
    product = await (await ru.client.get(f"/v1/products/{GTIN}")).json()
    assert (product["gtin"], product["group"], product["state"]) == (GTIN, "water", "RU"), product
    assert product["layouts"] == [{"form": "gs1", "serial_chars": 13, "ais": ["93"]}]
    assert product["required"] == []
    await expect_error(ru, await ru.client.get("/v1/products/04609999000341"), 404, "unknown_product")
    await expect_error(ru, await ru.client.get("/v1/products/123"), 400, "malformed")
    page = await (await ru.client.get("/v1/products", params={"group": "water", "limit": "5"})).json()
    assert [p["gtin"] for p in page["products"]] == [GTIN] and page["next"] is None
    empty = await (await ru.client.get("/v1/products", params={"group": "dairy"})).json()
    assert empty == {"products": [], "next": None}
    await expect_error(ru, await ru.client.get("/v1/products", params={"group": "Dairy!"}), 400, "malformed")
