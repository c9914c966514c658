"""The faces that run plans: the shared base, and the synchronous urllib face for the CLI."""

from __future__ import annotations

import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import ledger

from ._events import events_plan, inbox_plan
from ._plans import (
    _list,
    _object,
    _one,
    all_pages_plan,
    document_plan,
    flows_plan,
    history_path,
    holdings_path,
    page_plan,
    signing_plan,
    status_plan,
    submit_plan,
    wait_for_plan,
    wait_height_plan,
)
from ._wire import (
    COMMIT_TIMEOUT_S,
    ERROR_BODY_BYTES_MAX,
    MSGPACK,
    PAGE_ITEMS_MAX,
    REQUEST_TIMEOUT_S,
    STREAM_CHUNK_BYTES,
    BlockFrames,
    NodeError,
    NodeIdentity,
    NodeUnreachable,
    Pause,
    Plan,
    Request,
    Submitted,
    T,
    _PinnedHTTPSHandler,
    _why,
    blocks_request,
    decode_answer,
    error_from_body,
    node_identity,
    normalise_url,
    quote_code,
    with_query,
)

# -- the two faces -------------------------------------------------------------------------


class _Face:
    """What both faces hold: the node and who genesis says it is, the signing key, the
    chain id and the node's state once known."""

    def __init__(
        self, url: str, key: ledger.KeyPair | None, chain_id: str | None, timeout_s: float,
        genesis: ledger.Genesis | None,
    ) -> None:
        self.genesis = genesis
        self.key = key
        self._chain_id = (genesis.chain_id if genesis is not None else chain_id) or None
        self.timeout_s = timeout_s
        self.url = ""
        self.identity = NodeIdentity(None, None)
        self._learnt_state: str | None = None
        self._set_url(url)

    def _set_url(self, url: str) -> None:
        self.url = normalise_url(url)
        self.identity = node_identity(self.url, self.genesis)
        self._learnt_state = None

    @property
    def base_url(self) -> str:
        """The node's URL (the older name of `url`); set it to talk to another node."""
        return self.url

    @base_url.setter
    def base_url(self, url: str) -> None:
        self._set_url(url)

    @property
    def node_state(self) -> str | None:
        """The member state whose node this client talks to: from genesis, else learnt."""
        return self.identity.state or self._learnt_state

    def _needs_signing_facts(self, request: Request) -> bool:
        return request.signed and self.key is not None and (self._chain_id is None or self.node_state is None)

    def _learnt(self, facts: tuple[str, str]) -> None:
        chain, state = facts
        self._chain_id = self._chain_id or chain
        self._learnt_state = state

    def _headers(self, request: Request) -> dict[str, str]:
        headers = {"Accept": request.accept}
        if request.content_type:
            headers["Content-Type"] = request.content_type
        state = self.node_state
        if request.signed and self.key is not None and self._chain_id is not None and state is not None:
            now_ms = int(time.time() * 1000)
            headers.update(ledger.request_headers(
                self.key, self._chain_id, request.method, request.path_qs, now_ms, state,
                secrets.token_hex(ledger.REQUEST_NONCE_BYTES_MIN),
            ))
        return headers

    def _timeout_s(self, request: Request) -> float:
        return max(self.timeout_s, request.timeout_s or 0.0)


class SyncNodeClient(_Face):
    """The client API of one node over urllib, optionally signing reads with a key."""

    def __init__(
        self,
        url: str,
        key: ledger.KeyPair | None = None,
        chain_id: str | None = None,
        timeout_s: float = REQUEST_TIMEOUT_S,
        *,
        genesis: ledger.Genesis | None = None,
    ) -> None:
        super().__init__(url, key, chain_id, timeout_s, genesis)

    def _set_url(self, url: str) -> None:
        super()._set_url(url)
        handlers = [_PinnedHTTPSHandler(self.url, self.identity)] if self.identity.cert_sha256 else []
        self._opener = urllib.request.build_opener(*handlers)

    # Running plans.

    def run(self, plan: Plan[T]) -> T:
        """Send what `plan` asks for, one request at a time; its result."""
        try:
            step = next(plan)
            while True:
                if isinstance(step, Pause):
                    time.sleep(step.seconds)
                    step = plan.send(None)
                else:
                    step = plan.send(self._send(step))
        except StopIteration as done:
            result: T = done.value
            return result

    def _send(self, request: Request) -> Any:
        with self._open(request) as response:
            try:
                body: bytes = response.read()
            except (OSError, TimeoutError) as exc:
                raise NodeUnreachable(f"the answer from {self.url} broke off: {_why(exc)}") from None
            if request.answer == "bytes":
                return body
            return decode_answer(self.url, response.status, response.headers.get_content_type(), body)

    def _open(self, request: Request) -> Any:
        if self._needs_signing_facts(request):
            self._learnt(self.run(signing_plan(self.url)))
        http = urllib.request.Request(
            self.url + request.path_qs, data=request.body, method=request.method,
            headers=self._headers(request),
        )
        try:
            return self._opener.open(http, timeout=self._timeout_s(request))
        except urllib.error.HTTPError as exc:
            raise _http_error(exc) from None
        except urllib.error.URLError as exc:
            raise NodeUnreachable(f"cannot reach node at {self.url}: {_why(exc.reason)}") from None
        except TimeoutError:
            raise NodeUnreachable(f"node at {self.url} did not answer in time") from None
        except (ConnectionError, OSError) as exc:
            raise NodeUnreachable(f"cannot reach node at {self.url}: {_why(exc)}") from None

    # The API.

    def chain_id(self) -> str:
        """The chain id signatures must cover: given, or learnt from the node once."""
        if self._chain_id is None:
            self._learnt(self.run(signing_plan(self.url)))
        return self._chain_id or ""

    def status(self) -> dict[str, Any]:
        return self.run(status_plan())

    def wait_height(self, height: int, timeout_s: float = 10.0) -> dict[str, Any]:
        return self.run(wait_height_plan(self.url, height, timeout_s))

    def evidence(self) -> list[dict[str, Any]]:
        """Equivocation evidence the node holds (public: it names states, not businesses)."""
        answer = self.run(_object(Request("GET", "/v1/evidence", signed=False)))
        return list(answer.get("evidence") or [])

    def evidence_piece(self, evidence_id: str) -> dict[str, Any]:
        return self.run(_object(Request("GET", f"/v1/evidence/{evidence_id}", signed=False)))

    def check(self, code: str | bytes) -> dict[str, Any]:
        return self.run(_object(Request("GET", f"/v1/check/{quote_code(code)}", signed=False)))

    def submit(
        self, signed_doc: ledger.SignedDocument, wait: bool | str = True, timeout_s: float = COMMIT_TIMEOUT_S
    ) -> Submitted:
        return self.run(submit_plan(signed_doc, wait, timeout_s))

    def wait_for(self, doc_id: str, timeout_s: float, final: bool = False) -> Submitted:
        return self.run(wait_for_plan(doc_id, timeout_s, final))

    def document(self, doc_id: str) -> dict[str, Any]:
        return self.run(document_plan(doc_id))

    def code(self, code: str | bytes) -> dict[str, Any]:
        return self.run(_object(Request("GET", f"/v1/codes/{quote_code(code)}")))

    def history_page(
        self, code: str, after: str | None = None, limit: int = PAGE_ITEMS_MAX
    ) -> dict[str, Any]:
        return self.run(page_plan(history_path(code), after, limit))

    def history(self, code: str, limit: int | None = None) -> list[dict[str, Any]]:
        """A code's whole history (or its first `limit` entries), following pages."""
        return self.run(all_pages_plan(history_path(code), "entries", limit))

    def participant(self, pid: str) -> dict[str, Any]:
        return self.run(_object(Request("GET", f"/v1/participants/{urllib.parse.quote(pid, safe='')}")))

    def holdings_page(
        self, pid: str, after: str | None = None, limit: int = PAGE_ITEMS_MAX
    ) -> dict[str, Any]:
        return self.run(page_plan(holdings_path(pid), after, limit))

    def holdings(self, pid: str, limit: int | None = None) -> list[str]:
        return self.run(all_pages_plan(holdings_path(pid), "codes", limit))

    def product(self, gtin: str) -> dict[str, Any]:
        """A registered product (public: no signature needed)."""
        return self.run(_object(Request("GET", f"/v1/products/{urllib.parse.quote(gtin, safe='')}",
                                        signed=False)))

    def product_groups(self) -> dict[str, Any]:
        """The product-group table in force (public)."""
        return self.run(_object(Request("GET", "/v1/product-groups", signed=False)))

    def products_page(
        self, group: str | None = None, after: str | None = None, limit: int = PAGE_ITEMS_MAX
    ) -> dict[str, Any]:
        query = {"limit": str(limit)}
        if group:
            query["group"] = group
        if after:
            query["after"] = after
        return self.run(_object(Request("GET", with_query("/v1/products", query), signed=False)))

    def shipment(self, shipment_id: str) -> dict[str, Any]:
        return self.run(_object(Request("GET", f"/v1/shipments/{shipment_id}")))

    def flows(
        self, from_state: str, to_state: str, since: int = 0, until: int | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        return self.run(flows_plan(from_state, to_state, since, until, limit))

    # Recalls, customs imports and trade records (issue 13).

    def trade(self, state: str, direction: str, since: int = 0, until: int | None = None,
              limit: int = 100) -> dict[str, Any]:
        query = {"state": state, "direction": direction, "since": str(since), "limit": str(limit)}
        if until is not None:
            query["until"] = str(until)
        return self.run(_object(Request("GET", with_query("/v1/trade", query))))

    def recalls_page(self, status: str = "all", after: str | None = None, limit: int = 100) -> dict[str, Any]:
        query = {"status": status, "limit": str(limit)}
        if after:
            query["after"] = after
        return self.run(_object(Request("GET", with_query("/v1/recalls", query))))

    def recall(self, recall_id: str) -> dict[str, Any]:
        return self.run(_object(Request("GET", f"/v1/recalls/{recall_id}")))

    def customs_import(self, import_id: str) -> dict[str, Any]:
        return self.run(_object(Request("GET", f"/v1/imports/{import_id}")))

    def block(self, height: int) -> dict[str, Any]:
        return self.run(_object(Request("GET", f"/v1/blocks/{height}")))

    def headers(self, first: int, last: int) -> list[dict[str, Any]]:
        return self.run(_list(Request("GET", f"/v1/blocks?from={first}&to={last}")))

    def attestations(self, height: int) -> list[dict[str, Any]]:
        return self.run(_list(Request("GET", f"/v1/attestations/{height}")))

    def inclusion_proof(self, doc_id: str) -> dict[str, Any]:
        return self.run(_object(Request("GET", f"/v1/proofs/documents/{doc_id}")))

    def provenance(self, code: str) -> bytes:
        """A code's provenance bundle, as the msgpack bytes `ProvenanceBundle.decode` reads."""
        request = Request("GET", f"/v1/proofs/codes/{quote_code(code)}", accept=MSGPACK, answer="bytes")
        data: bytes = self.run(_one(request))
        return data

    def inbox_page(self, pending: bool = True, after: str | None = None,
                   limit: int = PAGE_ITEMS_MAX) -> dict[str, Any]:
        """A page of what is addressed to the signed-in participant, oldest first."""
        return self.run(inbox_plan(pending, after, limit))

    def inbox(self, pending: bool = True, limit: int | None = None) -> list[dict[str, Any]]:
        """The whole inbox (or its first `limit` items), following pages."""
        items: list[dict[str, Any]] = []
        after: str | None = None
        while limit is None or len(items) < limit:
            page = self.inbox_page(pending, after)
            items.extend(page.get("items", []))
            after = page.get("next")
            if not after:
                break
        return items[:limit] if limit is not None else items

    def events_page(self, after: str | None = None, limit: int = 100, wait_ms: int = 0) -> dict[str, Any]:
        """A page of the event feed after a cursor; waits up to `wait_ms` when there is none yet."""
        return self.run(events_plan(after, limit, wait_ms))

    def stream_blocks(self, first: int, last: int | None = None) -> Iterator[tuple[bytes, list[Any]]]:
        """Blocks `first..last` as `(block bytes, [attestation lists])`, in height order."""
        frames = BlockFrames(self.url)
        with self._open(blocks_request(first, last)) as response:
            while True:
                try:
                    chunk = response.read(STREAM_CHUNK_BYTES)
                except (OSError, TimeoutError) as exc:
                    raise NodeUnreachable(
                        f"the block stream from {self.url} broke: {_why(exc)}"
                    ) from None
                if not chunk:
                    return
                yield from frames.feed(chunk)


def _http_error(exc: urllib.error.HTTPError) -> NodeError:
    try:
        body = exc.read(ERROR_BODY_BYTES_MAX)
    except OSError:
        body = b""
    return error_from_body(exc.code, body, exc.reason if isinstance(exc.reason, str) else "")
