"""`make testnet`: start a five-state network and tell a cross-border journey on it.

    python -m testnet.demo [--dir testnet-data] [--stop]

It initialises a testnet in ./testnet-data (unless one is there), starts its nodes,
and walks one batch of cigarettes from a factory in Russia through a wholesaler in
Kazakhstan to a shop in Kyrgyzstan, printing each step and what the ledger answered.
Every step goes through the same library calls as the `tamga` commands. The network
keeps running afterwards so that you can look around; the last lines say how, and
how to stop it. Run it again to tell the story once more on the same network.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ledger
import testnet
from cli.actions import Outcome, Session
from cli.audit import fetch_bundle, verify_node
from cli.documents import make_sscc, reason_words
from cli.epcis import bundle_events, epcis_document
from node.client import ClientError, NodeError, SyncNodeClient

GTIN = "04680029460908"  # a GTIN from Russia's GS1 range (46)
PRICE_KOPECKS = 15_000  # the packs' maximum retail price, as AI 8005 carries it
CODES = 6
HEADS_AGREE_TIMEOUT_S = 20.0


def say(text: str = "") -> None:
    print(text, flush=True)


class DemoFailed(Exception):
    """A step did not turn out as the story needs (the network misbehaved)."""


@dataclass
class Actor:
    """A participant of the story: a name, a key file, a session with its state's node."""

    name: str
    state: str
    key_path: Path
    session: Session
    # The business's tax id as its state writes it (ledger/_tax_ids.py): invented numbers
    # of the right shape; a business registers with one on a chain with the catalogue.
    tax_id: str = ""

    @property
    def id(self) -> str:
        return self.session.participant_id


def short(hex_id: str) -> str:
    return hex_id[:12] + "..."


class Story:
    def __init__(self, net: testnet.Testnet, work: Path) -> None:
        self.net = net
        self.work = work
        self.genesis = net.genesis
        self.step = 0

    def client(self, state: str, key: ledger.KeyPair | None) -> SyncNodeClient:
        # HTTPS, checked against the certificate genesis pins for that state's node.
        return SyncNodeClient(self.net.node(state).api_url, key, genesis=self.genesis)

    def regulator(self, state: str) -> Actor:
        key_path = self.net.node(state).regulator_key
        key = ledger.KeyPair.load(key_path)
        name = f"the regulator of {ledger.MEMBER_STATES[state]}"
        return Actor(name, state, key_path, Session(self.client(state, key), key))

    def business(self, name: str, state: str, file: str, tax_id: str = "") -> Actor:
        key = ledger.KeyPair.generate()
        key_path = self.work / file
        key_path.unlink(missing_ok=True)  # a rerun in the same folder makes a new business
        key.save(key_path)
        return Actor(name, state, key_path, Session(self.client(state, key), key), tax_id)

    def tell(self, text: str) -> None:
        self.step += 1
        say(f"{self.step:>2}. {text}")

    def register(self, regulator: Actor, who: Actor, role: str) -> None:
        public_key = who.session.signer.key.public_key
        outcome = regulator.session.register(public_key, [role], who.name, who.state, who.tax_id or None)
        tax = f", tax id {who.tax_id}" if who.tax_id else ""
        self.expect_applied(outcome, f"participant {who.id}{tax}")

    def find_in_inbox(self, who: Actor, shipment_id: str) -> None:
        """The shipment among `who`'s pending inbox items (its node applies the block a
        moment after the commit, so this polls with a deadline)."""
        found: list[dict[str, Any]] = []

        def arrived() -> bool:
            items = who.session.client.inbox(pending=True)
            found[:] = [i for i in items if i.get("document_id") == shipment_id]
            return bool(found)

        testnet.poll_until(arrived, HEADS_AGREE_TIMEOUT_S, "the shipment in the wholesaler's inbox")
        shipment = found[0]["shipment"]
        say(f"    -> incoming shipment {short(shipment_id)} from {short(shipment['shipper'])} "
            f"({shipment['from_state']}): {shipment['items']} item(s), {shipment['status']}")
        say(f"       `tamga inbox` shows it; `tamga code accept {short(shipment_id)}` takes it on")

    def register_product(self, regulator: Actor, producer: Actor) -> None:
        """The catalogue entry emit needs; a demonstration run again on the same testnet
        finds it there already."""
        try:
            regulator.session.client.product(GTIN)
            say("    -> already in the catalogue")
            return
        except NodeError as exc:
            if exc.code != "unknown_product":  # only "not registered yet" means register it
                raise
        self.expect_applied(regulator.session.submit(
            ledger.DocType.REGISTER_PRODUCT, gtin=GTIN, group="tobacco",
            name="Tula filter cigarettes, 20 pcs", tnved="2402209000", producer=producer.id,
        ))

    def expect_applied(self, outcome: Outcome, detail: str = "") -> Outcome:
        r = outcome.result
        if not outcome.applied:
            raise DemoFailed(f"expected the document to apply, got {outcome.words()}")
        say(f"    -> applied in block {r.height}" + (f"; {detail}" if detail else ""))
        return outcome

    # The journey.

    def run(self) -> dict[str, Any]:
        ru, kz, kg = self.regulator("RU"), self.regulator("KZ"), self.regulator("KG")
        # Invented tax ids of each state's shape: a Russian INN of 10 digits, a Kazakh BIN of
        # 12, a Kyrgyz INN of 14; the auditor trades nothing and registers without one.
        factory = self.business("Tula Tobacco Factory", "RU", "producer.key", "7107000017")
        wholesaler = self.business("Almaty Distribution", "KZ", "wholesaler.key", "050140000027")
        shop = self.business("Bishkek Corner Shop", "KG", "retailer.key", "01234200000037")
        auditor = self.business("Eurasian Audit", "RU", "auditor.key")

        self.tell(f'The Russian regulator registers "{factory.name}" as a producer.')
        self.register(ru, factory, "producer")
        self.tell(f'The Kazakh regulator registers "{wholesaler.name}" as a wholesaler,')
        self.register(kz, wholesaler, "wholesaler")
        say(f'    and the Kyrgyz regulator registers "{shop.name}" as a retailer.')
        self.register(kg, shop, "retailer")
        say(f'    The Russian regulator also registers "{auditor.name}" as an auditor.')
        self.register(ru, auditor, "auditor")
        say("    and lets it audit Russia: a grant on the chain (reads follow need to know, docs/ACCESS.md).")
        self.expect_applied(ru.session.grant_audit(auditor.id))

        self.tell(f"The Russian regulator enters the factory's cigarettes, GTIN {GTIN}, in the product "
                  "catalogue (group tobacco, TN VED 2402209000).")
        self.register_product(ru, factory)

        self.tell(f"The Russian regulator issues {CODES} marking codes for GTIN {GTIN} to the factory.")
        emitted = self.expect_applied(ru.session.emit(GTIN, CODES, factory.id))
        codes: list[str] = emitted.extra["codes"]
        for c in codes:
            say(f"       {ledger.parse_key(c).digital_link()}")

        self.tell("The factory prints them on packs and introduces the packs into circulation, with the "
                  f"maximum retail price tobacco requires ({PRICE_KOPECKS // 100} roubles, AI 8005).")
        self.expect_applied(factory.session.introduce(codes, [["8005", f"{PRICE_KOPECKS:06d}"]]))

        pallet = make_sscc("4600000")
        self.tell(f"The factory packs the {CODES} packs on a pallet, SSCC {pallet[2:]}.")
        self.expect_applied(factory.session.aggregate(pallet, codes))

        self.tell(f"The pallet ships from Russia to {wholesaler.name} in Kazakhstan.")
        first = self.expect_applied(factory.session.ship(wholesaler.id, [pallet]))
        say(f"       shipment {first.id}")

        self.tell("The wholesaler opens its inbox on the Kazakh node and finds the pallet waiting.")
        self.find_in_inbox(wholesaler, first.id)

        self.tell("The wholesaler accepts the pallet on the Kazakh node, and unpacks it.")
        self.expect_applied(wholesaler.session.accept(first.id), "the pallet is the wholesaler's now")
        self.expect_applied(wholesaler.session.disaggregate(pallet), f"{CODES} loose packs")

        to_shop = codes[:2]
        self.tell(f"The wholesaler ships {len(to_shop)} packs on to {shop.name} in Kyrgyzstan.")
        second = self.expect_applied(wholesaler.session.ship(shop.id, to_shop))
        say(f"       shipment {second.id}")

        self.tell("The shop accepts them on the Kyrgyz node and sells one pack at the till.")
        self.expect_applied(shop.session.accept(second.id))
        sold = to_shop[0]
        sale = self.expect_applied(shop.session.retire("retail_sale", [sold]), f"{sold} is sold")
        armenia = self.client("AM", None)
        armenia.wait_height(sale.result.height or 0)
        check = armenia.check(sold)
        say(f"    A customer in Armenia scans the pack: GTIN {check.get('gtin')}, {check['status']}: "
            "it was sold already.")

        self.tell("A counterfeiter puts a copy of the sold code on a fake pack and tries to pass it on.")
        attempt = shop.session.ship(wholesaler.id, [sold])
        if not attempt.rejected:
            raise DemoFailed(f"the counterfeit shipment was not refused: {attempt.words()}")
        say(f"    -> refused in block {attempt.result.height} ({reason_words(attempt.result.reason)}): "
            f"{attempt.result.message}")

        self.tell("The Russian regulator looks at goods that left Russia for Kazakhstan.")
        flows = ru.session.client.flows("RU", "KZ")
        for f in flows[-3:]:
            items = len(f["items"])
            say(f"    block {f['height']}: shipment {short(f['id'])} of {items} item(s), {f['status']}")
        for record in ru.session.client.trade("RU", "export").get("records", [])[-1:]:
            exporter, importer = record["exporter"], record["importer"]
            units = ", ".join(f"{p['units']} of {p['gtin']}" for p in record["products"])
            say(f"    export record, block {record['height']}: {exporter['name']} (INN {exporter['tax_id']})"
                f" to {importer['name']} (BIN {importer['tax_id']}), {units}")

        self.tell("The shop asks its node for the wholesaler's holdings: not its business.")
        try:
            shop.session.client.holdings(wholesaler.id)
        except NodeError as exc:
            if exc.code != "not_entitled":
                raise
            say(f"    -> refused: {exc.status} {exc.code}")
        else:
            raise DemoFailed("a stranger read the wholesaler's holdings")

        # Committed means durable on a majority; the Armenian node applies it a moment later.
        self.client("AM", None).wait_height(attempt.result.height or 0)
        self.audit(auditor, sold)
        self.same_heads()
        return {"factory": factory, "wholesaler": wholesaler, "shop": shop, "auditor": auditor, "sold": sold,
                "codes": codes, "pallet": pallet}

    def audit(self, auditor: Actor, sold: str) -> None:
        self.tell("The auditor replays the whole chain from genesis on the Armenian node's copy.")
        client = self.client("AM", auditor.session.signer.key)
        with tempfile.TemporaryDirectory(prefix="tamga-demo-audit-") as replica:
            report = verify_node(client, self.genesis, Path(replica))
        if not report.ok:
            raise DemoFailed(f"the audit failed: {report.failure}")
        say(f"    -> verified blocks 1..{report.height}: {report.documents} documents "
            f"({report.applied} applied, {report.rejected} refused), every signature, permission and state "
            f"hash; {report.attestations} attestations")
        states = len(self.genesis.states)
        quorum = ledger.finality_quorum(states)
        say(f"       every block up to {report.final_height} is final: {quorum} of the {states} "
            "member states attest it (a Byzantine quorum: a majority would let one hostile state make two)")

        self.tell("The auditor takes the sold pack's provenance and checks it offline against genesis.")
        data, bundle = fetch_bundle(client, sold)
        events = ledger.verify_provenance(bundle, self.genesis)
        proof_path = self.work / "provenance.bin"
        proof_path.write_bytes(data)
        say(f"    -> {len(events)} documents, each signed and in an attested block: "
            + ", ".join(e.type for e in events))
        epcis = epcis_document(sold, bundle_events(bundle, self.genesis), int(time.time() * 1000))
        epcis_path = self.work / "provenance-epcis.json"
        epcis_path.write_text(json.dumps(epcis, indent=2) + "\n", encoding="utf-8")
        say(f"       saved as {proof_path} and as GS1 EPCIS 2.0 in {epcis_path}")

    def same_heads(self) -> None:
        self.tell("Every member state's node holds the same chain:")
        heads = wait_for_same_heads(self.net)
        for state, (height, head, role) in heads.items():
            say(f"    {state} {ledger.MEMBER_STATES[state]:<10} height {height}  head {head[:16]}  {role}")


def wait_for_same_heads(net: testnet.Testnet, timeout_s: float = HEADS_AGREE_TIMEOUT_S) -> dict[str, Any]:
    """Poll every node's status until all report the same height and head hash."""
    seen: dict[str, Any] = {}

    def same_heads() -> dict[str, Any] | None:
        for state in net.nodes:
            status = testnet.fetch_status(net.node(state)) or {}
            seen[state] = (status.get("height"), status.get("head_hash") or "", status.get("role", "?"))
        return dict(seen) if len({(h, head) for h, head, _ in seen.values()}) == 1 else None

    try:
        return testnet.poll_until(same_heads, timeout_s, "the nodes to agree on a head")
    except testnet.PollTimeout as exc:
        raise DemoFailed(f"{exc}: {seen}") from None


def start_network(directory: Path) -> testnet.Testnet:
    if (directory / "testnet.json").exists():
        say(f"Using the testnet in {directory}.")
    else:
        testnet.init_testnet(directory)
        say(f"Initialised a five-state testnet in {directory}: genesis, keys, TLS certificates, configs.")
    net = testnet.load_testnet(directory)
    rows = testnet.up(directory)
    leader = next((r.get("leader") for r in rows if r.get("leader")), "?")
    say(f"Started the nodes ({', '.join(net.nodes)}); the {leader} node leads. Each checks every document.")
    for r in rows:
        name = ledger.MEMBER_STATES[r["state"]]
        say(f"    {r['state']} {name:<10} {r['url']}  pid {r['pid']}  {r['role']}")
    return net


def look_around(net: testnet.Testnet, work: Path, cast: dict[str, Any]) -> None:
    directory = net.dir
    tamga_cmd = tamga_command()
    shop, wholesaler = cast["shop"], cast["wholesaler"]
    say()
    say("Look around (the network keeps running):")
    say(f"    export TAMGA_NODE={net.node('KZ').api_url}")
    say(f"    export TAMGA_KEY={wholesaler.key_path}        # the Kazakh wholesaler")
    say(f"    export TAMGA_GENESIS={net.genesis_path}      # pins every node's certificate")
    say(f"    {tamga_cmd} inbox --all")
    say(f"    {tamga_cmd} events follow --cursor-file {work}/wholesaler.cursor")
    say(f"    {tamga_cmd} participant holdings {wholesaler.id}")
    say(f"    {tamga_cmd} code history {cast['sold']}")
    say(f"    {tamga_cmd} code check {ledger.parse_key(cast['sold']).digital_link()}")
    say(f"    {tamga_cmd} export epcis {cast['sold']}")
    say(f"    {tamga_cmd} audit verify --node $TAMGA_NODE --key {cast['auditor'].key_path}")
    say(f"    {tamga_cmd} testnet status --dir {directory}")
    say(f"The keys of the story are in {work} (the shop's: {shop.key_path.name});")
    say(f"each state's regulator key is {directory}/<STATE>/regulator.key.")
    say(f"Stop the network: {tamga_cmd} testnet down --dir {directory}")


def tamga_command() -> str:
    """How to call `tamga` from here: the virtualenv's, relative when that is shorter."""
    tamga = Path(sys.executable).parent / "tamga"
    if not tamga.exists():
        return "tamga"
    relative = os.path.relpath(tamga)
    return relative if not relative.startswith("..") else str(tamga)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testnet.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="testnet-data", help="testnet directory (default: ./testnet-data)")
    parser.add_argument("--stop", action="store_true", help="stop the network at the end")
    args = parser.parse_args(argv)
    directory = Path(args.dir).resolve()
    say("Tamga: a cross-border journey on a five-state testnet")
    say("=" * 54)
    try:
        net = start_network(directory)
        work = directory / "demo"
        work.mkdir(exist_ok=True)
        say()
        cast = Story(net, work).run()
        if args.stop:
            testnet.down(directory)
            say(f"Stopped the network in {directory}.")
        else:
            look_around(net, work, cast)
    except (DemoFailed, ClientError, testnet.TestnetError, ledger.LedgerError, OSError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        print(f"node logs: {directory}/<STATE>/node.log; stop with: tamga testnet down --dir {directory}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
