"""The inbox and the event feed of one node served in this process: pages, cursors, the
long poll, the server-sent stream, bad cursors, revocation, and the finality hook."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ledger import DocType, KeyPair
from node import _feed
from node._errors import Refusal
from node._feed import Feed, standin_visible
from testnet import GTIN, code_key, poll_until_async

from .helpers import InProcessNode, in_process_node


@pytest.fixture
async def ru(tmp_path: Path) -> AsyncIterator[InProcessNode]:
    async with in_process_node(tmp_path) as n:
        await poll_until_async(lambda: n.node.proposer.can_propose(), 10, "the node to lead")
        yield n


async def actors(n: InProcessNode, count: int = 3) -> tuple[KeyPair, KeyPair, list[str]]:
    producer, buyer = KeyPair.generate(), KeyPair.generate()
    await n.submit_ok(n.docs.register(n.regulator(), producer, "RU", ["producer"], "Producer"))
    await n.submit_ok(n.docs.register(n.regulator(), buyer, "RU", ["wholesaler"], "Buyer"))
    # The catalogue entry emit needs; a second producer of the test finds it there already.
    _, body = await n.submit(n.docs.register_product(n.regulator(), producer))
    assert body["reason"] in (None, "already_exists"), body
    serials = n.docs.serials(count)
    await n.submit_ok(n.docs.emit(n.regulator(), producer, serials))
    codes = [code_key(GTIN, s) for s in serials]
    await n.submit_ok(n.docs.introduce(producer, codes))
    # Every block final, so that a test's first page already holds each block's `final` event.
    await poll_until_async(lambda: n.node.finality.final_height >= n.node.store.head.height, 10, "final blocks")
    return producer, buyer, codes


async def signed_get(n: InProcessNode, key: KeyPair, path: str, **headers: str) -> Any:
    return await n.client.get(path, headers={**n.signed(key, path), **headers})


async def ok_json(n: InProcessNode, key: KeyPair, path: str) -> Any:
    response = await signed_get(n, key, path)
    assert response.status == 200, await response.text()
    return await response.json()


async def test_inbox_lists_an_incoming_shipment_until_it_is_accepted(ru: InProcessNode) -> None:
    """The receiver finds a shipment in its pending inbox with sender and item count; accepted, it is gone."""
    producer, buyer, codes = await actors(ru)
    shipped = await ru.submit_ok(ru.docs.ship(producer, buyer, codes[:2]))
    inbox = await ok_json(ru, buyer, "/v1/inbox")
    assert [i["kind"] for i in inbox["items"]] == ["incoming_shipment"]
    item = inbox["items"][0]
    assert item["document_id"] == shipped["id"] and item["shipment"]["shipper"] == producer.participant_id
    assert item["shipment"]["items"] == 2 and item["time_ms"] <= inbox["now_ms"]
    accepted = await ru.submit_ok(ru.docs.accept(buyer, bytes.fromhex(shipped["id"])))
    assert (await ok_json(ru, buyer, "/v1/inbox"))["items"] == []
    everything = await ok_json(ru, buyer, "/v1/inbox?status=all")
    assert [i["kind"] for i in everything["items"]] == ["registered", "incoming_shipment"]
    told = (await ok_json(ru, producer, "/v1/inbox?status=all"))["items"]
    assert told[-1]["kind"] == "shipment_accepted" and told[-1]["document_id"] == accepted["id"]
    assert told[-1]["shipment"]["id"] == shipped["id"] and told[-1]["shipment"]["accepted"] == 2
    page = await ok_json(ru, producer, "/v1/inbox?status=all&limit=1")
    assert len(page["items"]) == 1 and page["next"] == page["items"][0]["cursor"]
    rest = await ok_json(ru, producer, f"/v1/inbox?status=all&after={page['next']}")
    assert [i["cursor"] for i in page["items"] + rest["items"]] == [i["cursor"] for i in told]


async def test_events_are_the_readers_documents_in_chain_order(ru: InProcessNode) -> None:
    """A reader's feed holds the documents the access rule lets it read, in chain order,
    each final block followed by its `final` event, and resumes after a cursor."""
    producer, buyer, codes = await actors(ru)
    shipped = await ru.submit_ok(ru.docs.ship(producer, buyer, codes[:1]), wait="final")
    page = await ok_json(ru, buyer, "/v1/events?wait_ms=0")
    # The receiver of a pending shipment reads the history of the codes in it (docs/ACCESS.md).
    assert documents(page) == ["register_participant", "emit", "introduce", "ship"]
    assert {e["height"] for e in page["events"] if e["event"] == "final"} == set(range(1, shipped["height"] + 1))
    last_doc = [e for e in page["events"] if e["event"] == "document"][-1]
    assert last_doc["document_id"] == shipped["id"]
    assert last_doc["cursor"] == f"{shipped['height']}.{shipped['position']}"
    assert page["events"][-1] == {**page["events"][-1], "event": "final", "height": shipped["height"]}
    whole = await ok_json(ru, producer, "/v1/events?wait_ms=0")
    assert documents(whole)[-3:] == ["emit", "introduce", "ship"]
    producer_page = await ok_json(ru, producer, "/v1/events?wait_ms=0&limit=4")
    rest = await ok_json(ru, producer, f"/v1/events?wait_ms=0&after={producer_page['next']}")
    assert producer_page["events"] + rest["events"] == whole["events"]
    # The regulator of the state sees every document of it.
    regulator_page = await ok_json(ru, ru.regulator(), "/v1/events?wait_ms=0")
    assert len(documents(regulator_page)) == ru.node.store.head.height
    # A rejected document is an event too, for its signer.
    rejected = await ru.submit(ru.docs.ship(buyer, producer, codes[1:2]), wait="final")
    assert rejected[1]["status"] == "rejected"
    last = await ok_json(ru, buyer, f"/v1/events?wait_ms=0&after={page['next']}")
    assert [(e["type"], e["status"], e["reason"]) for e in last["events"] if e["event"] == "document"] == [
        ("ship", "rejected", "not_owner")]


def documents(page: dict[str, Any]) -> list[str]:
    """The types of a page's document events (final events left out)."""
    return [e["type"] for e in page["events"] if e["event"] == "document"]


async def test_bad_cursors_and_limits_answer_400(ru: InProcessNode) -> None:
    """A cursor that does not parse, names no event, or lies past the head is a 400 with a clear reason."""
    producer, _buyer, _codes = await actors(ru)
    head = ru.node.store.head.height
    cases = {
        "/v1/events?after=abc": "malformed",
        "/v1/events?after=1.2.3": "malformed",
        "/v1/events?after=-1.0": "malformed",
        f"/v1/events?after={head + 1}.0": "cursor_ahead",
        "/v1/events?after=99999999999.0": "cursor_ahead",
        "/v1/events?after=1.5": "malformed",
        "/v1/events?after=0.3": "malformed",
        "/v1/events?limit=0": "malformed",
        "/v1/events?limit=1001": "malformed",
        "/v1/events?wait_ms=30001": "malformed",
        "/v1/inbox?status=later": "malformed",
        "/v1/inbox?after=x": "malformed",
        "/v1/events?since=1": "unknown_field",
    }
    for path, reason in cases.items():
        response = await signed_get(ru, producer, path)
        body = await response.json()
        assert (response.status, body["error"]) == (400, reason), (path, body)
    stream = await signed_get(ru, producer, f"/v1/events?after={head + 5}.0", Accept="text/event-stream")
    assert stream.status == 400 and (await stream.json())["error"] == "cursor_ahead"
    assert (await ru.client.get("/v1/events")).status == 401


async def test_an_expired_cursor_is_refused(ru: InProcessNode) -> None:
    """A cursor older than the node keeps answers cursor_expired (the node says where it starts)."""
    await actors(ru)
    feed = Feed(ru.node.store, standin_visible(ru.node.store), retained_from=lambda: 4)
    with pytest.raises(Refusal) as refused:
        feed.check_cursor((1, 0))
    assert refused.value.reason == "cursor_expired"
    assert feed.check_cursor((3, 0)) == (3, 0)


async def test_a_long_poll_returns_when_an_event_arrives(ru: InProcessNode) -> None:
    """A page with nothing new waits, and answers as soon as a document for the reader is applied."""
    producer, buyer, codes = await actors(ru)
    first = await ok_json(ru, buyer, "/v1/events?wait_ms=0")
    path = f"/v1/events?after={first['next']}&wait_ms=20000"
    waiting = asyncio.create_task(signed_get(ru, buyer, path))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    # A block becoming final ends the wait with its `final` event; the buyer's next poll
    # then finds the shipment, and never the registration that does not concern it.
    await ru.submit_ok(ru.docs.register(ru.regulator(), KeyPair.generate(), "RU", ["retailer"], "X"))
    shipped = await ru.submit_ok(ru.docs.ship(producer, buyer, codes[:1]))
    response = await asyncio.wait_for(waiting, 10)
    seen = (await response.json())["events"]
    while not any(e.get("document_id") == shipped["id"] for e in seen):
        after = seen[-1]["cursor"] if seen else first["next"]
        seen += (await ok_json(ru, buyer, f"/v1/events?after={after}&wait_ms=5000"))["events"]
    assert [e["document_id"] for e in seen if e["event"] == "document"] == [shipped["id"]]


async def read_sse(response: Any, count: int) -> list[dict[str, Any]]:
    """The next `count` events of a server-sent stream (comments and blocks' `final`
    events skipped)."""
    events: list[dict[str, Any]] = []
    data: list[str] = []
    while len(events) < count:
        line = (await asyncio.wait_for(response.content.readline(), 10)).decode()
        if not line:
            break
        line = line.rstrip("\n")
        if line.startswith("data: "):
            data.append(line[6:])
        elif line == "" and data:
            event = json.loads("".join(data))
            if event.get("event") != "final":
                events.append(event)
            data = []
    return events


async def test_the_stream_follows_the_chain_and_ends_at_revocation(ru: InProcessNode) -> None:
    """Server-sent events carry the reader's documents as they are applied; revoked, the reader is cut off at once."""
    producer, buyer, codes = await actors(ru)
    response = await signed_get(ru, buyer, "/v1/events", Accept="text/event-stream")
    assert response.status == 200 and response.headers["Content-Type"] == "text/event-stream"
    assert [e["type"] for e in await read_sse(response, 1)] == ["register_participant"]
    shipped = await ru.submit_ok(ru.docs.ship(producer, buyer, codes[:1]))
    (event,) = await read_sse(response, 1)
    assert event["document_id"] == shipped["id"] and event["cursor"] == f"{shipped['height']}.0"
    revoke = ru.docs.doc(ru.regulator(), DocType.REVOKE_PARTICIPANT, participant=buyer.participant_id)
    await ru.submit_ok(revoke)
    # The revocation names the buyer, but the buyer is no longer active: it gets an error and the end.
    (gone,) = await read_sse(response, 1)
    assert gone["event"] == "error" and gone["error"] == "revoked"
    assert await asyncio.wait_for(response.content.read(), 10) == b""
    assert ru.node.feed.streams == {}


async def test_a_reader_that_does_not_drain_is_closed() -> None:
    """A write that cannot drain within the stall bound ends the stream (the reader resumes from its cursor)."""

    class Stuck:
        async def write(self, _data: bytes) -> None:
            await asyncio.sleep(3600)

    original = _feed.STREAM_STALL_S
    _feed.STREAM_STALL_S = 0.05
    try:
        assert await _feed._write(Stuck(), b"data") is False  # type: ignore[arg-type]
    finally:
        _feed.STREAM_STALL_S = original


async def test_streams_are_bounded_per_reader(ru: InProcessNode) -> None:
    """More streams than a reader may hold are refused with 429 feed_busy."""
    producer, _buyer, _codes = await actors(ru)
    open_ = [await signed_get(ru, producer, "/v1/events", Accept="text/event-stream")
             for _ in range(_feed.STREAMS_PER_READER_MAX)]
    assert all(r.status == 200 for r in open_)
    refused = await signed_get(ru, producer, "/v1/events", Accept="text/event-stream")
    assert refused.status == 429 and (await refused.json())["error"] == "feed_busy"
    for response in open_:
        response.close()


async def test_final_events_follow_each_final_block(ru: InProcessNode) -> None:
    """With a finality hook, the feed serves final blocks only, each followed by its `final` event."""
    producer, _buyer, _codes = await actors(ru)
    store = ru.node.store
    final_height = store.head.height - 1
    feed = Feed(store, standin_visible(store), final=lambda: final_height)
    page = feed.page(producer.participant_id, None, 100)
    kinds = [(e["event"], e["height"]) for e in page.events]
    # Blocks 2 and 3 register the buyer and the product, which the producer does not see;
    # those blocks still become final.
    assert kinds == [("document", 1), ("final", 1), ("final", 2), ("final", 3), ("document", 4), ("final", 4)]
    assert page.at_head and page.next == f"{final_height}.1"
    # Resuming after a final event, or a document, gives the same suffix.
    resumed = feed.page(producer.participant_id, feed.check_cursor((3, 1)), 100)
    assert [(e["event"], e["height"]) for e in resumed.events] == [("document", 4), ("final", 4)]
    with pytest.raises(Refusal):
        feed.check_cursor((store.head.height, 0))  # not final yet: past what the feed serves


async def test_a_scan_cut_short_skips_no_document_before_final_events(ru: InProcessNode) -> None:
    """With finality and pages that look at few documents, the final events never run ahead of unseen documents."""
    producer, _buyer, _codes = await actors(ru)
    store = ru.node.store
    feed = Feed(store, standin_visible(store), final=lambda: store.head.height)
    whole = feed.page(producer.participant_id, None, 1000).events
    original = _feed.SCAN_DOCUMENTS_MAX
    _feed.SCAN_DOCUMENTS_MAX = 1
    try:
        pieces: list[dict[str, object]] = []
        after = None
        for _ in range(100):
            page = feed.page(producer.participant_id, after, 1000)
            pieces += page.events
            if page.at_head:
                break
            after = feed.check_cursor(tuple(map(int, page.next.split("."))))  # type: ignore[arg-type]
    finally:
        _feed.SCAN_DOCUMENTS_MAX = original
    assert pieces == whole and [e["event"] for e in whole].count("final") == store.head.height


async def test_stopping_the_node_ends_long_polls_and_streams(ru: InProcessNode) -> None:
    """At shutdown the feed answers waiting long polls and ends its streams, instead of holding the stop."""
    producer, _buyer, _codes = await actors(ru)
    # Past every event there is so far (the last block's `final` event included).
    head = (await ok_json(ru, producer, "/v1/events?wait_ms=0&limit=1000"))["next"]
    polling = asyncio.create_task(signed_get(ru, producer, f"/v1/events?after={head}&wait_ms=30000"))
    stream = await signed_get(ru, producer, f"/v1/events?after={head}", Accept="text/event-stream")
    await asyncio.sleep(0.2)
    assert not polling.done()
    ru.node.feed.close()
    answer = await asyncio.wait_for(polling, 10)
    assert answer.status == 200 and (await answer.json())["events"] == []
    assert await asyncio.wait_for(stream.content.read(), 10) == b""


async def test_a_shipments_commercial_details_reach_only_its_parties(ru: InProcessNode) -> None:
    """Issue 13: the number, price and VAT of a shipment are in the feed of the shipper and the
    receiver; the regulator, who reads the document, gets it without them and is told so."""
    producer, buyer, codes = await actors(ru)
    details = [["doc_date", 1_000], ["doc_number", "UPD-9"], ["price", 12_000], ["vat", 2_000]]
    shipped = await ru.submit_ok(ru.docs.doc(producer, DocType.SHIP, receiver=buyer.participant_id,
                                             codes=codes[:1], details=details))

    async def seen_by(key: KeyPair) -> dict[str, Any]:
        events = (await ok_json(ru, key, "/v1/events?wait_ms=0&limit=100"))["events"]
        (event,) = [e for e in events if e.get("document_id") == shipped["id"]]
        return dict(event["document"])

    for party in (producer, buyer):
        document = await seen_by(party)
        assert document["details"] == details and "withheld" not in document
    overseen = await seen_by(ru.regulator())
    assert overseen["details"] == [["doc_date", 1_000]]
    assert overseen["withheld"] == ["doc_number", "price", "vat"]
    # The document route cuts the same, and drops the signature it no longer matches.
    path = f"/v1/documents/{shipped['id']}"
    full = (await ok_json(ru, buyer, path))["document"]
    assert full["document"]["details"] == details and "signature" in full
    cut = (await ok_json(ru, ru.regulator(), path))["document"]
    assert cut["document"]["withheld"] == ["doc_number", "price", "vat"] and "signature" not in cut
