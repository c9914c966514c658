"""The access rule on every read route: each role and relationship to one journey, asked
of an in-process node, gets exactly the answer docs/ACCESS.md gives."""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ledger import Attestation, DocType, Genesis, KeyPair, SignedDocument, request_headers
from node import create_app, load_config
from node._keys import NODE
from testnet import DocFactory, init_testnet

from .helpers import FAST

MSGPACK = "application/msgpack"
STATES = ("KZ", "RU", "AM")
SSCC = "00046800000000000017"


@dataclasses.dataclass
class Journey:
    """One node of a KZ-RU-AM chain (the others absent: reads need no consensus) whose
    store holds a journey applied block by block, and the keys of everyone in it."""

    client: TestClient[web.Request, web.Application]
    chain_id: str
    keys: dict[str, KeyPair | None]
    ids: dict[str, str]

    def headers(self, who: str, path: str) -> dict[str, str]:
        key = self.keys[who]
        if key is None:
            return {}
        return request_headers(key, self.chain_id, "GET", path, int(time.time() * 1000), "RU",
                               secrets.token_hex(16))


@asynccontextmanager
async def journey_node(tmp: Path) -> AsyncIterator[Journey]:
    """A pallet made in KZ goes to a KZ wholesaler, who sends two of its units to a
    retailer in RU; the retailer accepts one and sells it."""
    net = init_testnet(tmp / "net", STATES, config=FAST)
    union = KeyPair.generate()
    genesis = Genesis.load(net.genesis_path)
    dataclasses.replace(genesis, auditors=(union.public_key,)).save(net.genesis_path)
    app = create_app(load_config(net.node("RU").config))
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
    await client.start_server()
    try:
        store = app[NODE].store
        docs = DocFactory(net.chain_id)
        clock = [store.head.time_ms]
        node_keys = {state: KeyPair.load(net.node(state).node_key) for state in STATES}

        def apply(*signed: SignedDocument) -> None:
            clock[0] += 1000
            applied = store.apply_block([d.wire() for d in signed], clock[0], "RU")
            assert all(r.applied for r in applied.results), applied.results
            # Attested by every state, so that provenance bundles verify offline.
            for state in STATES:
                att = Attestation.make(node_keys[state], net.chain_id, state, applied.header)
                assert store.add_attestation(att, app[NODE].verifier)

        keys: dict[str, KeyPair | None] = {
            name: KeyPair.generate() for name in ("maker", "wholesaler", "retailer", "stranger",
                                                  "state_auditor", "revoked")}
        keys.update({f"regulator-{s}": net.regulator(s) for s in STATES})
        keys["union_auditor"], keys["anonymous"] = union, None
        k = {name: key for name, key in keys.items() if key is not None}
        for name, state, role in (("maker", "KZ", "producer"), ("wholesaler", "KZ", "wholesaler"),
                                  ("retailer", "RU", "retailer"), ("stranger", "AM", "retailer"),
                                  ("state_auditor", "AM", "auditor"), ("revoked", "KZ", "wholesaler")):
            apply(docs.register(net.regulator(state), k[name], state, [role], name))
        apply(docs.doc(net.regulator("KZ"), DocType.GRANT_AUDIT, participant=k["state_auditor"].participant_id),
              docs.doc(net.regulator("KZ"), DocType.REVOKE_PARTICIPANT, participant=k["revoked"].participant_id))
        # The catalogue entry emit needs (the testnet's genesis has product groups).
        apply(docs.register_product(net.regulator("KZ"), k["maker"]))
        emit = docs.emit(net.regulator("KZ"), k["maker"], docs.serials(3))
        apply(emit)
        units = ["01" + emit.document.payload[1] + "21" + s for s in emit.document.payload[2]]
        apply(docs.introduce(k["maker"], units))
        apply(docs.doc(k["maker"], DocType.AGGREGATE, sscc=SSCC, codes=units))
        ship1 = docs.ship(k["maker"], k["wholesaler"], [SSCC])
        apply(ship1)
        apply(docs.accept(k["wholesaler"], ship1.id))
        apply(docs.doc(k["wholesaler"], DocType.DISAGGREGATE, sscc=SSCC))
        ship2 = docs.ship(k["wholesaler"], k["retailer"], units[:2])
        apply(ship2)
        apply(docs.doc(k["retailer"], DocType.ACCEPT, shipment=ship2.id, codes=units[:1]))
        apply(docs.doc(k["retailer"], DocType.RETIRE, reason="retail_sale", codes=units[:1]))
        ids = {"unit": units[0], "ship2": ship2.id.hex(), "ship1": ship1.id.hex(),
               "retailer": k["retailer"].participant_id}
        yield Journey(client, net.chain_id, keys, ids)
    finally:
        await client.close()


READERS = ("maker", "wholesaler", "retailer", "stranger", "regulator-KZ", "regulator-RU", "regulator-AM",
           "union_auditor", "state_auditor", "revoked", "anonymous")
# The readers' relationships to the journey, as the issue names them.
ROLE_OF = {
    "maker": "past holder (first)", "wholesaler": "signer of ship2, past holder",
    "retailer": "receiver of ship2, current holder", "stranger": "stranger (AM business)",
    "regulator-KZ": "regulator of the origin", "regulator-RU": "regulator of the destination",
    "regulator-AM": "another state's regulator", "union_auditor": "union auditor (genesis)",
    "state_auditor": "state auditor (KZ grant)", "revoked": "revoked participant", "anonymous": "unsigned",
}
OVERSEERS = {"regulator-KZ", "regulator-RU", "union_auditor", "state_auditor"}
BLOCK_READERS = OVERSEERS | {"regulator-AM"}
SIGNED = set(READERS) - {"revoked", "anonymous"}


@dataclasses.dataclass(frozen=True)
class Row:
    """A read route with the readers it answers 200; every other signed, active reader
    gets 403 not_entitled, a revoked one 403 revoked, an unsigned one 401."""

    name: str
    path: Callable[[dict[str, str]], str]
    allowed: frozenset[str]
    signed: bool = True
    accept: str = "application/json"


TABLE = (
    Row("document (ship2)", lambda i: f"/v1/documents/{i['ship2']}",
        frozenset({"wholesaler", "retailer"} | OVERSEERS)),
    # The maker's shipment is part of the provenance the retailer bought.
    Row("document (ship1)", lambda i: f"/v1/documents/{i['ship1']}",
        frozenset({"maker", "wholesaler", "retailer"} | OVERSEERS)),
    Row("code state", lambda i: f"/v1/codes/{i['unit']}", frozenset({"retailer"} | OVERSEERS)),
    Row("code history", lambda i: f"/v1/codes/{i['unit']}/history",
        frozenset({"maker", "wholesaler", "retailer"} | OVERSEERS)),
    Row("public check", lambda i: f"/v1/check/{i['unit']}", frozenset(READERS), signed=False),
    Row("participant", lambda i: f"/v1/participants/{i['retailer']}", frozenset(SIGNED)),
    Row("holdings", lambda i: f"/v1/participants/{i['retailer']}/holdings",
        frozenset({"retailer", "regulator-RU", "union_auditor"})),
    Row("shipment (ship2)", lambda i: f"/v1/shipments/{i['ship2']}", frozenset({"wholesaler", "retailer"} | OVERSEERS)),
    Row("flows KZ->RU", lambda i: "/v1/flows?from_state=KZ&to_state=RU", frozenset(OVERSEERS)),
    Row("flows AM->AM", lambda i: "/v1/flows?from_state=AM&to_state=AM", frozenset({"regulator-AM", "union_auditor"})),
    # The union's trade records (issue 13): the overseers of the state listed.
    Row("trade KZ exports", lambda i: "/v1/trade?state=KZ&direction=export",
        frozenset({"regulator-KZ", "union_auditor", "state_auditor"})),
    Row("trade RU imports", lambda i: "/v1/trade?state=RU&direction=import",
        frozenset({"regulator-RU", "union_auditor"})),
    Row("recalls", lambda i: "/v1/recalls", frozenset(SIGNED)),
    Row("block headers", lambda i: "/v1/blocks?from=1", frozenset(SIGNED)),
    Row("block stream", lambda i: "/v1/blocks?from=1&to=2", frozenset(BLOCK_READERS), accept=MSGPACK),
    Row("block", lambda i: "/v1/blocks/1", frozenset(BLOCK_READERS)),
    Row("attestations", lambda i: "/v1/attestations/1", frozenset(READERS), signed=False),
    Row("document proof (ship2)", lambda i: f"/v1/proofs/documents/{i['ship2']}",
        frozenset({"wholesaler", "retailer"} | OVERSEERS)),
    Row("provenance bundle", lambda i: f"/v1/proofs/codes/{i['unit']}",
        frozenset({"maker", "wholesaler", "retailer"} | OVERSEERS)),
)


def expected(row: Row, who: str) -> tuple[int, str | None]:
    if who in row.allowed:
        return 200, None
    if not row.signed:
        return 200, None
    if who == "anonymous":
        return 401, "unsigned"
    if who == "revoked":
        return 403, "revoked"
    return 403, "not_entitled"


async def ask(j: Journey, row: Row, who: str) -> tuple[int, Any]:
    path = row.path(j.ids)
    headers = {"Accept": row.accept, **(j.headers(who, path) if row.signed else {})}
    response = await j.client.get(path, headers=headers)
    body = await response.read()
    if response.content_type == "application/json":
        return response.status, json.loads(body)
    return response.status, body


async def test_every_read_route_answers_each_reader_as_the_table_says(tmp_path: Path) -> None:
    """Every role x relationship x read route gets the answer of the table (200, 403
    not_entitled, 403 revoked, 401 unsigned); the public check never names a holder."""
    async with journey_node(tmp_path) as j:
        wrong = []
        for row in TABLE:
            for who in READERS:
                status, body = await ask(j, row, who)
                want_status, want_error = expected(row, who)
                error = body.get("error") if isinstance(body, dict) else None
                if status != want_status or error != want_error:
                    wrong.append(f"{row.name} by {who} ({ROLE_OF[who]}): {status} {error}, "
                                 f"expected {want_status} {want_error}")
                if row.name == "public check" and status == 200:
                    assert set(body) == {"code", "gtin", "status", "suspended"}, body
        assert not wrong, "\n".join(wrong)


async def test_past_holders_see_history_up_to_their_hand_off(tmp_path: Path) -> None:
    """The wholesaler's history ends at the retailer's accept, the maker's at the
    wholesaler's; their provenance bundles end there too and still verify offline."""
    from ledger import ProvenanceBundle, verify_provenance

    async with journey_node(tmp_path) as j:
        unit = j.ids["unit"]
        seen: dict[str, list[str]] = {}
        for who in ("maker", "wholesaler", "retailer", "regulator-AM"):
            path = f"/v1/codes/{unit}/history"
            response = await j.client.get(path, headers=j.headers(who, path))
            if who == "regulator-AM":
                assert response.status == 403
                continue
            seen[who] = [e["type"] for e in (await response.json())["entries"]]
        assert seen["retailer"] == ["emit", "introduce", "aggregate", "ship", "accept", "disaggregate", "ship",
                                    "accept", "retire"]
        assert seen["wholesaler"] == seen["retailer"][:-1]
        assert seen["maker"] == seen["retailer"][:5]
        genesis = j.client.app[NODE].genesis
        for who, n in (("maker", 5), ("retailer", 9)):
            path = f"/v1/proofs/codes/{unit}"
            response = await j.client.get(path, headers={**j.headers(who, path), "Accept": MSGPACK})
            bundle = ProvenanceBundle.decode(await response.read())
            assert [e.type for e in verify_provenance(bundle, genesis)] == seen["retailer"][:n]


def test_the_rule_is_switched_off_only_on_loopback(tmp_path: Path) -> None:
    """`[api] access_rule = false` (benchmarks only) is refused on a host that is not loopback."""
    import pytest

    from node import ConfigError, parse_config

    raw = {"state": "RU", "genesis": "g.json", "node_key": "n.key", "data_dir": "data",
           "tls": {"cert": "c.pem", "key": "k.pem", "peer_certs": "p.pem"},
           "api": {"tls": False, "access_rule": False}}
    assert parse_config(raw, tmp_path / "node.toml").api.access_rule is False
    raw["api"] = {"tls": True, "cert": "a.pem", "key": "a.key", "host": "0.0.0.0", "access_rule": False}
    with pytest.raises(ConfigError, match="access_rule = false"):
        parse_config(raw, tmp_path / "node.toml")
