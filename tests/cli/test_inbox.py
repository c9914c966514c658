"""`tamga inbox`: a buyer finds a shipment addressed to it and is told how to take it on."""

from __future__ import annotations

from pathlib import Path

from cli._cmd_inbox import age_words

from .conftest import World, as_json, make_actor, ok


def test_a_buyer_finds_its_incoming_shipment_and_accepts_it(world: World, tmp_path: Path) -> None:
    """The inbox lists sender, item count and age, names `tamga code accept`; accepted, it is gone."""
    buyer = make_actor(tmp_path, world.net, "inbox-buyer", "KZ", "wholesaler")
    codes = world.fresh_codes(2)
    shipment = ok(["code", "ship", "--to", buyer.id, *codes, *world.producer.args()]).stdout.strip()
    text = ok(["inbox", *buyer.args()]).stdout
    assert "incoming shipment" in text and shipment in text and world.producer.id in text
    assert "items:" in text and " 2\n" in text and "ago" in text
    assert f"tamga code accept {shipment}" in text
    items = as_json(ok(["inbox", *buyer.args(), "--json"]))["items"]
    assert [(i["kind"], i["shipment"]["items"]) for i in items] == [("incoming_shipment", 2)]
    ok(["code", "accept", shipment, *buyer.args()])
    empty = ok(["inbox", *buyer.args()])
    assert empty.stdout == "" and "nothing awaits you" in empty.stderr
    everything = as_json(ok(["inbox", "--all", *buyer.args(), "--json"]))["items"]
    assert [i["kind"] for i in everything] == ["registered", "incoming_shipment"]
    assert everything[1]["shipment"]["status"] == "accepted"
    told = as_json(ok(["inbox", "--all", *world.producer.args(), "--json"]))["items"]
    assert told[-1]["kind"] == "shipment_accepted" and told[-1]["shipment"]["id"] == shipment


def test_ages_read_as_people_say_them() -> None:
    """Ages print in the largest whole unit."""
    assert [age_words(ms) for ms in (0, 59_000, 61_000, 7_200_000, 2 * 86_400_000)] == [
        "0 s", "59 s", "1 min", "2 h", "2 d"]


def test_event_lines_in_words() -> None:
    """Without --json, follow prints cursor, type, outcome and id on one line."""
    from cli._cmd_inbox import event_words
    line = event_words({"event": "document", "cursor": "12.3", "type": "ship", "status": "rejected",
                        "reason": "not_owner", "document_id": "ab" * 32})
    assert line.split() == ["12.3", "ship", "rejected", "(not_owner)", "ab" * 32]
    assert event_words({"event": "final", "cursor": "12.4", "height": 12}) == "12.4       block 12 is final"
