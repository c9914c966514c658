"""The inbox and the event feed of the client API.

The inbox (`GET /v1/inbox`) lists what is addressed to the signed-in participant,
read from the store's inbox index (ledger/_inbox.py): a page costs O(page).

The event feed (`GET /v1/events`) is the chain itself, document by document in chain
order, filtered per event by the read rule: each applied or rejected document the
reader may see, with its cursor "HEIGHT.POSITION" and its document id. Every node
holds the same chain, so a cursor from one node means the same place on any other,
and a client that resumes after its last cursor gets no gap and no reordering (a
repeat after a reconnect is harmless: each event carries its document id). It is
served as a long-poll JSON page and as server-sent events (`Accept:
text/event-stream`).

Who may see what is one callable, `visible(reader_id, DocumentRecord) -> bool`, given
to `Feed` by the composition root (node/_node.py): `ruled_visible`, the access rule of
ledger/_access.py (docs/ACCESS.md). `standin_visible`, the simpler rule the feed was
first built with, stays for the feed's own tests of paging and resuming. When finality
exists, `final()` (the highest final height) makes the feed serve final blocks only
and add one `final` event after each block's documents.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ledger import (
    INCOMING_SHIPMENT,
    DecodeError,
    DocType,
    DocumentRecord,
    InboxEntry,
    LedgerStore,
    Reason,
    Result,
    SignedDocument,
    decode_signed,
    document_json_for,
    document_visible,
    reader_of,
    withheld_details,
)

from ._errors import Refusal

Place = tuple[int, int]
Visible = Callable[[str, DocumentRecord], bool]

# Documents one page may look at, seen or not: a reader who sees one document in ten
# thousand still gets an answer (empty, with a `next` further on) within a few
# milliseconds of the loop, instead of a scan of the whole chain.
SCAN_DOCUMENTS_MAX = 2_000
# Events in one page or one write of a stream; clients ask for fewer with `limit`.
EVENTS_PAGE_MAX = 1_000
# A long poll waits at most this long for a first event: below common proxy and load
# balancer idle timeouts (60 s), long enough that an idle reader asks twice a minute.
LONG_POLL_WAIT_MS_MAX = 30_000
LONG_POLL_WAIT_MS_DEFAULT = 10_000
# A stream writes a comment this often when it has nothing to say, so that the reader
# and any proxy between see the connection alive (and a dead reader is found out).
STREAM_HEARTBEAT_S = 15.0
# The bytes a stream may hold unsent for its reader (the transport's high-water mark):
# about 100 typical events. A reader that lets this fill and does not drain it within
# STREAM_STALL_S is closed; it resumes from its cursor, so nothing is lost, and a
# stalled reader holds no more than this much of the node's memory.
STREAM_BUFFER_BYTES_MAX = 256 << 10
STREAM_STALL_S = 10.0
# Streams open at once: each holds a connection and a task. Per reader, a few (an ERP
# and an operator's console); for the node, half the client API's connections
# (node/_server.py API_CONNECTIONS_MAX = 512), so that streams cannot crowd out the
# rest of the API.
STREAMS_MAX = 256
STREAMS_PER_READER_MAX = 4

EVENT_STREAM = "text/event-stream"


@dataclass(frozen=True, slots=True)
class Page:
    events: list[dict[str, Any]]
    next: str  # the cursor to resume after: the last place looked at, seen or not
    at_head: bool  # nothing more to look at until a block is applied


def cursor_text(place: Place | None) -> str:
    return "0.0" if place is None else f"{place[0]}.{place[1]}"


def standin_visible(store: LedgerStore) -> Visible:
    """A conservative read rule until ledger/_access.py lands: an active reader sees a
    document it signed or that names it (receiver, shipper, owner, holder of an affected
    code: the document's parties), and a regulator sees the documents touching its
    member state. Anything else, and anything for a reader no longer active, is hidden."""

    def visible(reader: str, record: DocumentRecord) -> bool:
        me = store.participant_record(reader)
        if me is None or not me.active:
            return False
        if record.signer == reader or reader in record.parties:
            return True
        return "regulator" in me.roles and me.state in record.states

    return visible


def ruled_visible(store: LedgerStore) -> Visible:
    """The access rule, event by event: the reader is looked up again for each event, so
    a revocation or a withdrawn grant hides later events at once. Bytes that never decoded
    are shown only to those who may read whole blocks (regulators, entitled auditors), as
    the document route does."""

    def visible(reader_id: str, record: DocumentRecord) -> bool:
        reader = reader_of(store, reader_id)
        if record.signed is None:
            return reader.active and reader.reads_blocks and (reader.is_regulator or reader.oversees_all)
        return document_visible(store, reader, record.signed, (record.height, record.position))

    return visible


class Feed:
    """Pages of the event feed and of the inbox; wakes long polls when a block is applied."""

    def __init__(
        self, store: LedgerStore, visible: Visible, final: Callable[[], int] | None = None,
        retained_from: Callable[[], int] = lambda: 1,
    ) -> None:
        self.store = store
        self.visible = visible
        self.final = final
        self.retained_from = retained_from
        self._advanced = asyncio.Event()
        self.streams: dict[str, int] = {}
        self.closing = False

    # -- waking -----------------------------------------------------------------------

    def advanced(self) -> None:
        """A block was applied (or became final): wake every waiting reader."""
        event, self._advanced = self._advanced, asyncio.Event()
        event.set()

    def close(self) -> None:
        """The node is stopping: long polls answer now and streams end (readers resume
        from their cursors elsewhere)."""
        self.closing = True
        self.advanced()

    async def wait(self, timeout_s: float) -> None:
        """Until the next block, or the timeout."""
        event = self._advanced
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), max(0.0, timeout_s))

    # -- cursors ----------------------------------------------------------------------

    def upto(self) -> int:
        """The last height the feed serves: the head, or the last final block."""
        head = self.store.head.height
        return head if self.final is None else min(head, self.final())

    def check_cursor(self, after: Place | None) -> Place | None:
        """A client's cursor, checked against this node's chain: None (or 0.0) is the
        start; a place past what this node serves, or older than it keeps, is refused."""
        if after is None or after == (0, 0):
            return None
        height, position = after
        upto = self.upto()
        if height == 0:
            raise Refusal("malformed", "a cursor at height 0 can only be 0.0, the start of the chain")
        if height > upto:
            raise Refusal("cursor_ahead", f"cursor {cursor_text(after)} is past this node's last block "
                                          f"{upto}; the node may be behind: retry, or ask another node")
        if height < self.retained_from() - 1:
            raise Refusal("cursor_expired", f"cursor {cursor_text(after)} is older than this node keeps "
                                            f"(from block {self.retained_from()}); start again from 0.0")
        header = self.store.header(height)
        count = header.documents if header is not None else 0
        last = count if self.final is not None else count - 1
        if position > max(last, 0):
            raise Refusal("malformed", f"cursor {cursor_text(after)} names no event: block {height} holds "
                                       f"{count} documents")
        return after

    # -- the feed ---------------------------------------------------------------------

    def page(self, reader: str, after: Place | None, limit: int) -> Page:
        """The events after `after` that `reader` may see, at most `limit`, looking at
        no more than SCAN_DOCUMENTS_MAX documents."""
        events: list[dict[str, Any]] = []
        last = after
        exhausted = True
        for place, make in self._items(after, SCAN_DOCUMENTS_MAX):
            event = make(reader)
            last = place
            if event is not None:
                events.append(event)
                if len(events) >= limit:
                    exhausted = False
                    break
        else:
            exhausted = self._at_end(last)
        return Page(events, cursor_text(last), exhausted)

    def _at_end(self, last: Place | None) -> bool:
        upto = self.upto()
        if last is None:
            return upto == 0
        height, position = last
        if height < upto:
            return False
        header = self.store.header(height)
        count = header.documents if header is not None else 0
        return position >= (count if self.final is not None else count - 1)

    def _items(
        self, after: Place | None, scan_max: int
    ) -> Iterator[tuple[Place, Callable[[str], dict[str, Any] | None]]]:
        """Places after `after` up to `upto()`, in chain order, each with the function
        that makes its event for a reader (None: not for that reader)."""
        upto = self.upto()
        store, final = self.store, self.final
        # The last block whose final event the reader had: the one before the cursor's,
        # or the cursor's own when the cursor is that final event.
        if after is None:
            final_done = 0
        else:
            header = store.header(after[0])
            final_done = after[0] if header is not None and after[1] >= header.documents else after[0] - 1
        results: dict[int, list[Result]] = {}
        documents = store.documents_after(after, scan_max)
        # Only a scan that reached the end may add the final events of the blocks after
        # its last document: a scan cut short by scan_max has not seen their documents.
        reached_end = len(documents) < scan_max
        for height, position, wire in documents:
            if height > upto:
                reached_end = True
                break
            if final is not None:
                for h in range(final_done + 1, height):
                    yield (h, self._count(h)), self._final_event(h)
                final_done = height - 1
            if height not in results:
                results = {height: store.results(height)}
            yield (height, position), self._document_event(height, position, wire, results[height])
        if final is not None and reached_end:
            for h in range(final_done + 1, upto + 1):
                yield (h, self._count(h)), self._final_event(h)

    def _count(self, height: int) -> int:
        header = self.store.header(height)
        return header.documents if header is not None else 0

    def _final_event(self, height: int) -> Callable[[str], dict[str, Any] | None]:
        def make(_reader: str) -> dict[str, Any] | None:
            header = self.store.header(height)
            return {"event": "final", "cursor": f"{height}.{self._count(height)}", "height": height,
                    "block_hash": header.hash.hex() if header is not None else None}
        return make

    def _document_event(
        self, height: int, position: int, wire: bytes, results: list[Result]
    ) -> Callable[[str], dict[str, Any] | None]:
        def make(reader: str) -> dict[str, Any] | None:
            record = self.record(height, position, wire, results)
            if not self.visible(reader, record):
                return None
            event = document_event(record)
            if record.signed is not None and withheld_details(record.signed, reader):
                event["document"] = document_json_for(record.signed, reader)  # issue 13: parties only
            return event
        return make

    def record(self, height: int, position: int, wire: bytes, results: list[Result]) -> DocumentRecord:
        """What the read rule sees of one document of the chain."""
        try:
            signed: SignedDocument | None = decode_signed(wire)
        except DecodeError:
            signed = None
        result = results[position] if position < len(results) else Result(Reason.MALFORMED)
        if signed is None:
            return DocumentRecord(height, position, b"", None, result, (), ())
        parties, states = self._involved(height, position, signed, result)
        return DocumentRecord(height, position, signed.id, signed, result, parties, states)

    def _involved(
        self, height: int, position: int, signed: SignedDocument, result: Result
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Whom a document named and the member states it touched: stored for a
        suspension or release (the holders of the moment), worked out again from the
        document for any other (ledger/_inbox.py says why that gives the same)."""
        store = self.store
        signer = store.participant_record(signed.document.signer)
        own = (signer.state,) if signer is not None else ()
        stored = store.involved(height, position)
        if stored is not None:
            return tuple(stored[0]), tuple(dict.fromkeys((*own, *stored[1])))
        if not result.applied or signer is None:
            return (), own
        found = store.involvement(signed, signer, height, position)
        if found is None:
            return (), own
        states = [*found.states]
        for party in found.parties:
            record = store.participant_record(party)
            if record is not None:
                states.append(record.state)
        return found.parties, tuple(dict.fromkeys(states))

    # -- the inbox --------------------------------------------------------------------

    def inbox(self, reader: str, pending: bool, after: Place | None, limit: int) -> dict[str, Any]:
        entries = self.store.inbox(reader, pending=pending, after=after, limit=limit)
        items = [self._inbox_item(e) for e in entries]
        nxt = entries[-1].cursor if len(entries) == limit else None
        return {"participant": reader, "status": "pending" if pending else "all", "items": items,
                "next": nxt, "now_ms": int(time.time() * 1000)}

    def _inbox_item(self, entry: InboxEntry) -> dict[str, Any]:
        header = self.store.header(entry.height)
        item: dict[str, Any] = {
            "cursor": entry.cursor, "height": entry.height, "position": entry.position, "kind": entry.kind,
            "document_id": entry.document_id.hex(), "time_ms": header.time_ms if header is not None else None,
        }
        shipment_id = entry.document_id if entry.kind == INCOMING_SHIPMENT else self._shipment_of(entry)
        if shipment_id is not None:
            shipment = self.store.shipment(shipment_id)
            if shipment is not None:
                item["shipment"] = {
                    "id": shipment["id"], "shipper": shipment["shipper"], "receiver": shipment["receiver"],
                    "items": len(shipment["items"]), "status": shipment["status"],
                    "from_state": shipment["from_state"], "to_state": shipment["to_state"],
                    "accepted": len(shipment["accepted"]),
                }
        return item

    def _shipment_of(self, entry: InboxEntry) -> bytes | None:
        if not entry.kind.startswith("shipment_"):
            return None
        found = self.store.document(entry.document_id)
        if found is None or found["wire"] is None:
            return None
        try:
            document = decode_signed(found["wire"]).document
        except DecodeError:
            return None
        if document.type in (DocType.ACCEPT, DocType.REJECT, DocType.CANCEL_SHIPMENT):
            shipment: bytes = document.payload[0]
            return shipment
        return None


def document_event(record: DocumentRecord) -> dict[str, Any]:
    """One document of the chain as the feed shows it."""
    signed = record.signed
    out: dict[str, Any] = {
        "event": "document",
        "cursor": record.cursor,
        "height": record.height,
        "position": record.position,
        "document_id": record.document_id.hex() if signed is not None else None,
        "type": signed.document.type.value if signed is not None else None,
        "signer": record.signer,
        **record.result.to_json(),
    }
    if signed is not None:
        out["document"] = signed.document.to_json()
    return out


# -- serving ---------------------------------------------------------------------------


def sse_frame(event: dict[str, Any]) -> bytes:
    """One server-sent event: its cursor as the id (what a reconnecting reader resumes
    after), its kind as the event name, the event as one line of JSON."""
    data = json.dumps(event, separators=(",", ":"))
    return f"id: {event['cursor']}\nevent: {event['event']}\ndata: {data}\n\n".encode()


async def long_poll(feed: Feed, reader: str, after: Place | None, limit: int, wait_ms: int) -> dict[str, Any]:
    """A page of events; when there is none yet, wait up to `wait_ms` for one."""
    deadline = time.monotonic() + wait_ms / 1000
    while True:
        page = feed.page(reader, after, limit)
        left = deadline - time.monotonic()
        if page.events or not page.at_head or left <= 0 or feed.closing:
            return {"events": page.events, "next": page.next, "head": feed.upto()}
        after = feed.check_cursor(_place(page.next))
        await feed.wait(left)


def _place(text: str) -> Place:
    height, position = text.split(".")
    return int(height), int(position)


async def stream(
    request: web.Request, feed: Feed, reader: str, after: Place | None, limit: int
) -> web.StreamResponse:
    """The feed as server-sent events, until the reader leaves, falls behind, or loses
    its entitlement; it then resumes from its last cursor."""
    if len(feed.streams) >= STREAMS_MAX or feed.streams.get(reader, 0) >= STREAMS_PER_READER_MAX:
        raise Refusal("feed_busy", f"too many event streams are open (at most {STREAMS_PER_READER_MAX} per "
                                   f"reader); use the long poll, or retry later")
    feed.streams[reader] = feed.streams.get(reader, 0) + 1
    try:
        response = web.StreamResponse(headers={"Content-Type": EVENT_STREAM, "Cache-Control": "no-cache",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        if request.transport is not None:
            request.transport.set_write_buffer_limits(high=STREAM_BUFFER_BYTES_MAX)
        response.force_close()  # a stream ends its connection; the reader reconnects with its cursor
        if not await _pump(response, feed, reader, after, limit) and request.transport is not None:
            # The reader left or stalled: drop the connection and what it left unread,
            # rather than let the final write wait on it too.
            request.transport.abort()
        return response
    finally:
        left = feed.streams[reader] - 1
        if left:
            feed.streams[reader] = left
        else:
            del feed.streams[reader]


async def _pump(
    response: web.StreamResponse, feed: Feed, reader: str, after: Place | None, limit: int
) -> bool:
    """Write events until the reader loses its entitlement (True: told so) or a write
    fails or stalls (False)."""
    last_write = time.monotonic()
    while not feed.closing:
        if not _active(feed, reader):
            gone = {"event": "error", "cursor": cursor_text(after), "error": "revoked",
                    "message": f"participant {reader} is no longer active"}
            return await _write(response, sse_frame(gone))
        page = feed.page(reader, after, limit)
        for event in page.events:
            # Checked per event: a revocation applied while a page is written counts at once.
            if not _active(feed, reader):
                break
            if not await _write(response, sse_frame(event)):
                return False
            after, last_write = _place(event["cursor"]), time.monotonic()
        else:
            after = _place(page.next) if page.next != "0.0" else None
            if not page.at_head:
                await asyncio.sleep(0)  # let others run between pages
                continue
            idle = STREAM_HEARTBEAT_S - (time.monotonic() - last_write)
            if idle <= 0:
                if not await _write(response, b": keepalive\n\n"):
                    return False
                last_write, idle = time.monotonic(), STREAM_HEARTBEAT_S
            await feed.wait(idle)
    return True


def _active(feed: Feed, reader: str) -> bool:
    record = feed.store.participant_record(reader)
    return record is not None and record.active


async def _write(response: web.StreamResponse, frame: bytes) -> bool:
    """Write a frame; False when the reader is gone or has not drained its buffer in time."""
    try:
        async with asyncio.timeout(STREAM_STALL_S):
            await response.write(frame)
    except (TimeoutError, ConnectionResetError, ConnectionError, RuntimeError):
        return False
    return True
