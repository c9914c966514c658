"""The HTTP edge: the route table, typed parameters, and malformed input answered with a 4xx."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger import KeyPair, Reason
from node._errors import Refusal
from node._http import HTTP_REASONS, HTTP_STATUS, SIGNED_REASONS, Choice, Integer, Text
from node._peer import PEER_ROUTES
from node._routes import CODE, HEX_ID, ROUTES, route_list_markdown
from testnet import poll_until_async

from .helpers import InProcessNode, in_process_node

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def ru(tmp_path: Path) -> AsyncIterator[InProcessNode]:
    async with in_process_node(tmp_path) as n:
        await poll_until_async(lambda: n.node.proposer.can_propose(), 10, "the node to lead")
        yield n


async def expect_error(response: Any, status: int, reason: str) -> None:
    assert response.status == status, await response.text()
    body = await response.json()
    assert set(body) == {"error", "message"} and body["error"] == reason, body


# -- parameters (pure) -----------------------------------------------------------------


@pytest.mark.parametrize("raw", ["+1", " 1", "1 ", "1_0", "\u0661", "0x1", "1.0", "", "-", "1e3",
                                 "9" * 21, "-" + "9" * 21, "9" * 5000])
def test_integers_are_plain_decimal_within_bounds(raw: str) -> None:
    """Only ASCII decimal digits are integers, and huge ones are refused before int() reads them."""
    with pytest.raises(Refusal) as caught:
        Integer(0, 2**63 - 1).parse("height", raw)
    assert caught.value.reason == "malformed"


def test_integer_bounds_and_values() -> None:
    """Bounds are inclusive; values come back as int."""
    kind = Integer(1, 1000)
    assert kind.parse("limit", "1") == 1 and kind.parse("limit", "1000") == 1000
    for raw in ("0", "1001", "-1", "99999999999999999999"):
        with pytest.raises(Refusal):
            kind.parse("limit", raw)


def test_text_matches_the_whole_value() -> None:
    """A pattern matches the whole value: no trailing newline, no prefix match."""
    good = "ab" * 32
    assert HEX_ID.parse("id", good) == bytes.fromhex(good)
    for raw in (good + "\n", good + "00", good[:-1], "zz" * 32, " " + good[1:]):
        with pytest.raises(Refusal):
            HEX_ID.parse("id", raw)
    with pytest.raises(Refusal) as caught:
        CODE.parse("code", "..")
    assert caught.value.reason == "invalid_code"
    assert Choice(("none", "commit")).parse("wait", "commit") == "commit"


def test_parameter_schemas_state_the_same_bounds() -> None:
    """The description of a parameter says what the parser accepts."""
    assert Integer(1, 1000).schema() == {"type": "integer", "minimum": 1, "maximum": 1000}
    assert isinstance(HEX_ID, Text) and HEX_ID.schema()["pattern"] == "^[0-9a-fA-F]{64}$"


# -- the table -------------------------------------------------------------------------


def _raised_reasons() -> Iterator[tuple[str, str]]:
    """(file, reason) for every literal reason raised in node/ (`Refusal("x", ...)`), and
    every reason the ledger's admission rule can give (the node raises those as they come)."""
    for path in sorted((ROOT / "node").glob("*.py")):
        for call in ast.walk(ast.parse(path.read_text())):
            if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
                continue
            if call.func.id == "Refusal" and call.args and isinstance(call.args[0], ast.Constant):
                yield path.name, call.args[0].value
    for reason in (Reason.WRONG_CHAIN, Reason.NOT_REGISTERED, Reason.BAD_SIGNATURE, Reason.DUPLICATE,
                   Reason.EXPIRED, Reason.EXPIRY_TOO_FAR, Reason.REVOKED):
        yield "ledger admission", reason.value


def test_every_reason_raised_has_a_status() -> None:
    """Every reason raised anywhere in node/ has an HTTP status in the one table."""
    raised = list(_raised_reasons())
    assert len(raised) > 20
    missing = [(f, r) for f, r in raised if r not in HTTP_STATUS]
    assert not missing


def test_every_status_entry_is_used_or_documented() -> None:
    """No reason sits in the table unused: each is raised, declared by a route, answered
    by aiohttp itself, or documented in docs/API.md."""
    used = {r for _, r in _raised_reasons()} | set(HTTP_REASONS.values()) | set(SIGNED_REASONS)
    for route in (*ROUTES, *PEER_ROUTES):
        used |= set(route.all_reasons())
    docs = (ROOT / "docs" / "API.md").read_text()
    documented = set(re.findall(r"`([a-z_]+)`", docs))
    assert set(HTTP_STATUS) - used - documented == set()
    assert all(HTTP_STATUS[reason] == status for status, reason in HTTP_REASONS.items())


def test_every_declared_reason_has_a_status() -> None:
    """A route declares only reasons the table maps (the description groups them by status)."""
    for route in (*ROUTES, *PEER_ROUTES):
        assert set(route.all_reasons()) <= set(HTTP_STATUS), route.path


def test_docs_route_list_is_the_table() -> None:
    """docs/API.md's client route list is generated from the route table."""
    docs = (ROOT / "docs" / "API.md").read_text()
    assert route_list_markdown() in docs, "paste node._routes.route_list_markdown() into docs/API.md"


# -- malformed input over HTTP ---------------------------------------------------------


async def test_malformed_paths_and_queries_answer_400(ru: InProcessNode) -> None:
    """Negative and huge heights, huge integers in queries, bad ids: each a 400 JSON error."""
    reader = ru.regulator()
    get = ru.client.get

    async def signed(path: str) -> Any:
        return await get(path, headers=ru.signed(reader, path))

    await expect_error(await get("/v1/attestations/-1"), 400, "malformed")
    await expect_error(await get("/v1/attestations/99999999999999999999"), 400, "malformed")
    await expect_error(await get("/v1/attestations/1.5"), 400, "malformed")
    await expect_error(await signed("/v1/blocks/-1"), 400, "malformed")
    await expect_error(await signed("/v1/blocks/18446744073709551616"), 400, "malformed")
    await expect_error(await signed("/v1/blocks?from=" + "9" * 40), 400, "malformed")
    await expect_error(await signed("/v1/blocks?from=1&from=2"), 400, "malformed")
    await expect_error(await signed("/v1/flows?from_state=RU&to_state=RU&limit=99999999999999999999"),
                       400, "malformed")
    await expect_error(await signed("/v1/flows?from_state=RU&to_state=RU&until=" + "9" * 30), 400, "malformed")
    await expect_error(await signed("/v1/flows?from_state=RU"), 400, "malformed")
    await expect_error(await signed("/v1/flows?from_state=RU&to_state=KZ"), 400, "malformed")
    await expect_error(await signed("/v1/codes/0104680029460908219/history?after=1.99999999999"),
                       400, "malformed")
    await expect_error(await signed("/v1/documents/" + "0" * 63), 400, "malformed")
    await expect_error(await signed("/v1/participants/NOT-AN-ID"), 400, "malformed")
    await expect_error(await signed("/v1/codes/.x"), 400, "invalid_code")
    await expect_error(await signed("/v1/status?x=1"), 400, "unknown_field")
    await expect_error(await get("/v1/attestations/1?x=1"), 400, "unknown_field")
    await expect_error(await ru.client.post("/v1/documents?timeout_ms=" + "9" * 30, json={}), 400, "malformed")
    await expect_error(await ru.client.post("/v1/documents?wait=final", json={}), 400, "malformed")


async def test_signed_reads_are_checked_before_parameters(ru: InProcessNode) -> None:
    """A signed route refuses an unsigned request whatever its parameters; the reader is known."""
    await expect_error(await ru.client.get("/v1/blocks/-1"), 401, "unsigned")
    await expect_error(await ru.client.get("/v1/blocks/1", headers={
        "X-Tamga-Participant": "0" * 40, "X-Tamga-Time": "+1", "X-Tamga-Node": "RU", "X-Tamga-Nonce": "0" * 32,
        "X-Tamga-Signature": "00"}),
        401, "bad_request_signature")
    revoked_reader = KeyPair.generate()
    path = "/v1/blocks/1"
    await expect_error(await ru.client.get(path, headers=ru.signed(revoked_reader, path)), 403, "not_registered")


async def test_deep_nesting_and_surrogates_in_bodies_answer_400(ru: InProcessNode) -> None:
    """100,000 nested arrays, and an unpaired surrogate in any string of a document: 400 malformed."""
    post = ru.client.post
    headers = {"Content-Type": "application/json"}
    await expect_error(await post("/v1/documents", data=b"[" * 100_000, headers=headers), 400, "malformed")
    await expect_error(await post("/v1/documents", data=b"[" * 100_000 + b"]" * 100_000, headers=headers),
                       400, "malformed")
    doc = ru.docs.register(ru.regulator(), KeyPair.generate(), "RU", ["producer"], "P").to_json()
    for where in _string_leaves(doc):
        bad = _replaced(doc, where, "x\ud800y")
        body = json.dumps(bad).encode()  # ensure_ascii: the surrogate travels as \ud800
        await expect_error(await post("/v1/documents", data=body, headers=headers), 400, "malformed")
        # In a batch too: a body whose strings are not Unicode is not a JSON text we read.
        batch = json.dumps([bad]).encode()
        await expect_error(await post("/v1/documents", data=batch, headers=headers), 400, "malformed")


def _string_leaves(value: Any, where: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, str):
        yield where
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _string_leaves(v, (*where, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _string_leaves(v, (*where, i))


def _replaced(value: Any, where: tuple[Any, ...], new: str) -> Any:
    if not where:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[where[0]] = _replaced(value[where[0]], where[1:], new)
    return copy


# -- methods ---------------------------------------------------------------------------


async def test_wrong_methods_answer_405_with_allow_head_and_options_work(ru: InProcessNode) -> None:
    """405 keeps its Allow header in the JSON answer; HEAD reads like GET without a body;
    OPTIONS says what a path allows; unknown paths are a JSON 404."""
    response = await ru.client.delete("/v1/documents")
    await expect_error(response, 405, "method_not_allowed")
    assert response.headers["Allow"] == "OPTIONS,POST" or set(response.headers["Allow"].split(",")) == {
        "POST", "OPTIONS"}
    response = await ru.client.post("/v1/status", data=b"x")
    await expect_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]
    head = await ru.client.head("/v1/status")
    assert head.status == 200 and await head.read() == b""
    options = await ru.client.options("/v1/codes/x")
    assert options.status == 204 and options.headers["Allow"] == "GET, HEAD, OPTIONS"
    options = await ru.client.options("/v1/documents")
    assert options.headers["Allow"] == "POST, OPTIONS"
    await expect_error(await ru.client.get("/v1/nothing/here"), 404, "not_found")
    await expect_error(await ru.client.options("/v1/nothing/here"), 404, "not_found")
