"""Parquet export and `tamga sql`: tables round-trip to what the ledger says, incremental
exports equal a full one, and misuse gets a clear error and exit code."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from cli import analytics
from cli import sql as engine
from cli.main import cli
from ledger import DocType, LedgerStore
from ledger._codes import gs1_check_digit
from tests.ledger.world import GTIN, GTIN_2, World


def sscc(n: int) -> str:
    payload = f"0{4600000000000000 + n:016d}"[:17]
    return "00" + payload + str(gs1_check_digit(payload))


def build_chain(world: World) -> dict[str, list[str]]:
    """A small chain with every kind of move: emit, introduce, boxes in a pallet shipped
    RU->KZ and accepted, unpacked and sold, a sale and a shipment tried twice, a pending
    cross-border shipment, a rejected shipment, a cancelled one."""
    maker = world.register("RU", ["producer"], "Maker")
    trader = world.register("KZ", ["wholesaler"], "Trader")
    shop = world.register("KZ", ["retailer"], "Shop")
    units = world.introduced("RU", maker, 12)
    other = world.emit("RU", maker, 3, GTIN_2)
    world.apply_ok(world.doc(maker, DocType.INTRODUCE, codes=other))
    box_a, box_b, pallet = sscc(1), sscc(2), sscc(3)
    world.apply_ok(world.doc(maker, DocType.AGGREGATE, sscc=box_a, codes=units[:4]))
    world.apply_ok(world.doc(maker, DocType.AGGREGATE, sscc=box_b, codes=units[4:8]))
    world.apply_ok(world.doc(maker, DocType.AGGREGATE, sscc=pallet, codes=[box_a, box_b]))
    ship = world.doc(maker, DocType.SHIP, receiver=trader.participant_id, codes=[pallet, units[8], other[0]])
    world.apply_ok(ship)
    # The same pallet shipped again while in transit: refused.
    again = world.doc(maker, DocType.SHIP, receiver=trader.participant_id, codes=[pallet])
    assert not world.apply(again)[0].applied
    world.apply_ok(world.doc(trader, DocType.ACCEPT, shipment=ship.id, codes=[]))
    world.apply_ok(world.doc(trader, DocType.DISAGGREGATE, sscc=pallet))
    world.apply_ok(world.doc(trader, DocType.DISAGGREGATE, sscc=box_a))
    to_shop = world.doc(trader, DocType.SHIP, receiver=shop.participant_id, codes=units[:4])
    world.apply_ok(to_shop)
    world.apply_ok(world.doc(shop, DocType.ACCEPT, shipment=to_shop.id, codes=units[:3]))
    world.apply_ok(world.doc(shop, DocType.RETIRE, reason="retail_sale", codes=units[:2]))
    for _ in range(6):  # a sale tried again, six times: a refusal spike
        assert not world.apply(world.doc(shop, DocType.RETIRE, reason="retail_sale", codes=[units[0]]))[0].applied
    # An unknown code someone tried to sell.
    unknown = "01" + GTIN + "21" + "NEVER-EMITTED"
    assert not world.apply(world.doc(shop, DocType.RETIRE, reason="retail_sale", codes=[unknown]))[0].applied
    # Rejected and cancelled shipments, and one left pending for days.
    rejected = world.doc(maker, DocType.SHIP, receiver=trader.participant_id, codes=[units[9]])
    world.apply_ok(rejected)
    world.apply_ok(world.doc(trader, DocType.REJECT, shipment=rejected.id))
    cancelled = world.doc(maker, DocType.SHIP, receiver=trader.participant_id, codes=[units[9]])
    world.apply_ok(cancelled)
    world.apply_ok(world.doc(maker, DocType.CANCEL_SHIPMENT, shipment=cancelled.id))
    # One block packs a box, ships it and the receiver accepts it: each document sees
    # what the ones before it in the block did.
    box_c = sscc(4)
    quick = world.doc(maker, DocType.SHIP, receiver=trader.participant_id, codes=[box_c])
    world.apply_ok(world.doc(maker, DocType.AGGREGATE, sscc=box_c, codes=[units[10]]), quick,
                   world.doc(trader, DocType.ACCEPT, shipment=quick.id, codes=[]))
    pending = world.doc(trader, DocType.SHIP, receiver=maker.participant_id, codes=[box_b])
    world.apply_ok(pending)
    world.apply_ok(world.doc(world.regulator("RU"), DocType.SUSPEND, codes=[units[11]], note="check"))
    return {"units": units, "other": other, "boxes": [box_a, box_b, pallet, box_c], "unknown": [unknown],
            "pending": [pending.id.hex()]}


@pytest.fixture
def chain(tmp_path: Path) -> tuple[World, dict[str, list[str]]]:
    world = World(tmp_path / "ledger")
    codes = build_chain(world)
    return world, codes


def export_store(store: LedgerStore, out: Path, since: int | None = None, **kw: int) -> analytics.ExportReport:
    source = analytics.StoreSource(store)
    return analytics.export(source, out, since, analytics.genesis_regulators(store.genesis),
                            store.genesis.time_ms, **kw)


class Partial(analytics.StoreSource):
    """The store as it was at `height`: what a nightly export saw that night."""

    def __init__(self, store: LedgerStore, height: int) -> None:
        super().__init__(store)
        self.height = height

    def head(self) -> int:
        return self.height


def table_rows(out: Path, table: str) -> list[tuple[object, ...]]:
    rows = ds.dataset(out / table, format="parquet").to_table().to_pylist()
    return sorted(tuple(json.dumps(v, default=str) for v in r.values()) for r in rows)


def test_counts_and_histories_round_trip(chain: tuple[World, dict[str, list[str]]], tmp_path: Path) -> None:
    """Counts in DuckDB equal the chain's, and each sampled code's history (through
    nested aggregates) equals the ledger's history of it, entry for entry."""
    world, codes = chain
    store = world.store
    out = tmp_path / "export"
    report = export_store(store, out)
    assert report.blocks == store.head.height
    con = engine.connect(out)
    documents = sum(len(store.block_documents(h)) for h in range(1, store.head.height + 1))
    assert con.execute("SELECT count(*) FROM documents").fetchone() == (documents,)
    assert con.execute("SELECT count(*), max(height) FROM blocks").fetchone() == (store.head.height,) * 2
    participants = con.execute("SELECT count(*) FROM participants").fetchone()
    assert participants == (5 + 3,)  # five regulators and three businesses
    sample = codes["units"] + codes["other"] + codes["boxes"]
    for code in sample:
        expected = [(e.height, e.position, e.document_id.hex(), e.type, e.sscc or None, e.via or None)
                    for e in store.whole_history(code)]
        got = con.execute(
            "SELECT height, position, document_id, type, sscc, via FROM code_history WHERE code = ? "
            "ORDER BY height, position", [code]).fetchall()
        assert got == expected, code
        record = store.code(code)
        assert record is not None
    # The shipment's flow: 8 units in the pallet, one loose unit of each GTIN.
    flows = con.execute("SELECT gtin, units FROM flows ORDER BY height, gtin LIMIT 2").fetchall()
    assert flows == [(GTIN_2, 1), (GTIN, 9)]
    statuses = dict(con.execute("SELECT status, count(*) FROM shipments GROUP BY ALL").fetchall())
    assert statuses == {"accepted": 2, "partially_accepted": 1, "rejected": 1, "cancelled": 1, "pending": 1}


def test_reports_find_the_anomalies_built_into_the_chain(chain: tuple[World, dict[str, list[str]]],
                                                          tmp_path: Path) -> None:
    """Each shipped report finds what the chain holds: the sale tried again, the unknown
    code, the pending cross-border shipment, the refusal spike."""
    world, codes = chain
    out = tmp_path / "export"
    export_store(world.store, out)
    con = engine.connect(out)

    def report(name: str) -> list[tuple[object, ...]]:
        return engine.run(con, engine.report_query(con, name))[1]

    moves = {(r[2], r[3]): r[4] for r in report("double_moves")}
    assert moves[("retire", "wrong_status")] == 6 and moves[("ship", "in_transit")] == 1
    assert [r[0] for r in report("double_move_codes")][:1] == [codes["units"][0]]
    assert [r[0] for r in report("never_introduced")] == codes["unknown"]
    # The chain spans minutes: nothing is days old until the limit says so.
    assert report("unaccepted_cross_border") == []
    engine.set_param(con, "unaccepted_days_max", "0")
    assert [r[0] for r in report("unaccepted_cross_border")] == codes["pending"]
    assert len(report("refusal_spikes")) == 1
    assert report("long_in_circulation") == []
    engine.set_param(con, "circulation_days_max", "-1")
    assert len(report("long_in_circulation")) > 0
    # RU->KZ: the pallet's 8 units and 2 loose ones, then one unit rejected and one
    # cancelled (a flow is the shipment, whatever its outcome), box C's one; KZ->RU: box B's 4.
    assert sum(r[5] for r in report("flows_by_month")) == 10 + 1 + 1 + 1 + 4


def test_nightly_exports_equal_one_full_export(chain: tuple[World, dict[str, list[str]]], tmp_path: Path) -> None:
    """Exports that stop at three heights and resume equal one full export, table by
    table; re-running from a height replaces its parts instead of adding rows."""
    world, _ = chain
    store = world.store
    full, nightly = tmp_path / "full", tmp_path / "nightly"
    export_store(store, full)
    head = store.head.height
    for height in (5, 13, 20, head):
        analytics.export(Partial(store, height), nightly, None, analytics.genesis_regulators(store.genesis),
                         store.genesis.time_ms)
    assert json.loads((nightly / analytics.MANIFEST).read_text())["parts"] == [
        [1, 5], [6, 13], [14, 20], [21, head]]
    for table in analytics.TABLES:
        assert table_rows(nightly, table) == table_rows(full, table), table
    export_store(store, nightly, since=14)
    parts = [[1, 5], [6, 13], [14, head]]
    assert json.loads((nightly / analytics.MANIFEST).read_text())["parts"] == parts
    files = {p.relative_to(nightly).as_posix(): p.read_bytes() for p in nightly.rglob("*.parquet")}
    assert sorted(files) == sorted(f"{t}/{analytics.part_name(a, b)}" for t in analytics.TABLES for a, b in parts)
    export_store(store, nightly, since=14)
    assert {p.relative_to(nightly).as_posix(): p.read_bytes() for p in nightly.rglob("*.parquet")} == files
    for table in analytics.TABLES:
        assert table_rows(nightly, table) == table_rows(full, table), table
    # Parts split by size give the same rows too.
    small = tmp_path / "small"
    export_store(store, small, part_code_events_max=10)
    assert len(json.loads((small / analytics.MANIFEST).read_text())["parts"]) > 3
    for table in analytics.TABLES:
        assert table_rows(small, table) == table_rows(full, table), table


def test_an_export_from_a_height_replays_earlier_blocks_for_context(
        chain: tuple[World, dict[str, list[str]]], tmp_path: Path) -> None:
    """An export that starts at a height into an empty directory writes exactly the full
    export's rows from that height (states, shipment items, pallet contents known)."""
    world, _ = chain
    store = world.store
    full, late = tmp_path / "full", tmp_path / "late"
    export_store(store, full)
    export_store(store, late, since=17)
    con = duckdb.connect()
    for table in ("documents", "code_events", "flows", "shipments"):
        query = f"SELECT * FROM read_parquet('{{}}/{table}/*.parquet') WHERE height >= 17 ORDER BY ALL"
        assert con.execute(query.format(late)).fetchall() == con.execute(query.format(full)).fetchall()


def run_cli(*args: str) -> tuple[int, str]:
    """`tamga ARGS` in-process, with no TAMGA_* setting from the real environment."""
    clean: dict[str, str | None] = {k: None for k in ("TAMGA_NODE", "TAMGA_KEY", "TAMGA_GENESIS", "TAMGA_DATA")}
    result = CliRunner().invoke(cli, list(args), env=clean)
    return result.exit_code, result.output


def test_the_commands_export_query_and_report(chain: tuple[World, dict[str, list[str]]], tmp_path: Path) -> None:
    """`tamga export parquet --data-dir` then `tamga sql` as text, JSON lines and a report."""
    world, _ = chain
    genesis = tmp_path / "genesis.json"
    world.genesis.save(genesis)
    world.store.close()
    out = tmp_path / "export"
    code, text = run_cli("export", "parquet", "--data-dir", str(tmp_path / "ledger"), "--genesis", str(genesis),
                         "--out", str(out), "--json")
    assert code == 0, text
    assert json.loads(text)["rows"]["blocks"] > 20
    code, text = run_cli("export", "parquet", "--data-dir", str(tmp_path / "ledger"), "--genesis", str(genesis),
                         "--out", str(out))
    assert code == 0 and "up to date" in text
    code, text = run_cli("sql", "--data", str(out), "--json", "SELECT type, count(*) AS n FROM documents "
                         "WHERE type = 'ship' GROUP BY type")
    assert code == 0 and json.loads(text.splitlines()[0]) == {"type": "ship", "n": 7}
    code, text = run_cli("sql", "--data", str(out), "--report", "unaccepted_cross_border",
                         "--param", "unaccepted_days_max=0")
    assert code == 0 and "KZ" in text
    code, text = run_cli("sql", "--data", str(out), "--report", "list")
    assert code == 0 and "refusal_spikes" in text


@pytest.mark.parametrize(("args", "exit_code", "words"), [
    (["export", "parquet", "--out", "{out}"], 2, "give either --node URL or --data-dir DIR"),
    (["export", "parquet", "--node", "http://127.0.0.1:1", "--data-dir", "{tmp}", "--out", "{out}"], 2,
     "give either"),
    (["export", "parquet", "--data-dir", "{tmp}", "--out", "{out}"], 2, "--data-dir needs --genesis"),
    (["export", "parquet", "--data-dir", "{tmp}", "--out", "{out}", "--since", "0"], 2, "--since"),
    (["export", "parquet", "--data-dir", "{tmp}/nothing", "--genesis", "{genesis}", "--out", "{out}"], 1,
     "not a node's data directory"),
    (["export", "parquet", "--node", "http://127.0.0.1:1", "--out", "{out}"], 1, "connection refused"),
    (["sql", "--data", "{tmp}/nowhere", "SELECT 1"], 1, "holds no export"),
    (["sql", "--data", "{out}"], 2, "give a QUERY or --report NAME"),
    (["sql", "--data", "{out}", "SELECT * FROM no_such_table"], 1, "no_such_table"),
    (["sql", "--data", "{out}", "--report", "nonsense"], 1, "no report 'nonsense'"),
    (["sql", "--data", "{out}", "--param", "oops", "SELECT 1"], 2, "NAME=VALUE"),
    (["sql", "--data", "{out}", "--param", "Bad-Name=1", "SELECT 1"], 1, "not a plain lower-case name"),
])
def test_misuse_gets_one_clear_line_and_an_exit_code(tmp_path: Path, args: list[str], exit_code: int,
                                                     words: str) -> None:
    """Bad arguments: exit 2 with usage, operating errors: exit 1, never a traceback."""
    world = World(tmp_path / "ledger")
    world.register("RU", ["producer"], "Maker")
    genesis = tmp_path / "genesis.json"
    world.genesis.save(genesis)
    out = tmp_path / "out"
    export_store(world.store, out)
    world.store.close()
    filled = [a.format(out=out, tmp=tmp_path, genesis=genesis) for a in args]
    code, text = run_cli(*filled)
    assert code == exit_code, text
    assert words in text
    assert "Traceback" not in text


def test_an_export_refuses_gaps_split_parts_and_another_chain(chain: tuple[World, dict[str, list[str]]],
                                                              tmp_path: Path) -> None:
    """--since past the export's end, inside a part, or into another chain's export: a clear error."""
    world, _ = chain
    store = world.store
    out = tmp_path / "export"
    analytics.export(Partial(store, 10), out, None)
    with pytest.raises(analytics.ExportError, match="would leave a gap"):
        export_store(store, out, since=12)
    with pytest.raises(analytics.ExportError, match="falls inside the exported part 1..10"):
        export_store(store, out, since=4)
    (out / analytics.MANIFEST).write_text(json.dumps({"format": 1, "chain_id": "other", "height": 1,
                                                      "parts": [[1, 1]]}))
    with pytest.raises(analytics.ExportError, match="chain 'other'"):
        export_store(store, out)
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(analytics.ExportError, match="not empty"):
        export_store(store, stranger)


def test_a_participant_the_blocks_did_not_register_is_looked_up_once() -> None:
    """The tracker asks its source once per unknown participant, also when the answer
    is "unknown"."""
    asked: list[str] = []

    def lookup(pid: str) -> str | None:
        asked.append(pid)
        return "RU" if pid == "regulator" else None

    tracker = analytics.Tracker(lookup)
    assert [tracker.state_of(p) for p in ("regulator", "stranger", "regulator", "stranger")] == [
        "RU", None, "RU", None]
    assert asked == ["regulator", "stranger"]


def test_the_console_shows_every_sql_report_over_an_export(chain: tuple[World, dict[str, list[str]]],
                                                             tmp_path: Path) -> None:
    """The console's Anomalies view (`tamga console --data DIR`) carries every report view
    of analytics.sql, each with its description, and the refusals the chain holds; without
    an export it says how to make one."""
    from cli import sql
    from cli.console._anomalies import sql_reports

    world, _ = chain
    out = tmp_path / "export"
    export_store(world.store, out)
    answer = sql_reports(out)
    assert answer["available"], answer
    con = sql.connect(out)
    expected = sql.reports(con)
    con.close()
    assert [r["title"] for r in answer["reports"]] == [name.replace("_", " ") for name in expected]
    assert all(r["description"] for r in answer["reports"])
    double = next(r for r in answer["reports"] if r["title"] == "double moves")
    assert double["rows"] and "reason" in double["columns"], double
    assert not sql_reports(None)["available"] and "--data" in sql_reports(None)["how"]
    missing = sql_reports(tmp_path / "nothing-here")
    assert not missing["available"] and "export" in missing["how"]


def test_sales_after_expiry_are_reported(tmp_path: Path) -> None:
    """Issue 14: a unit sold at retail after the expiry date (AI 17) it entered circulation
    with is reported; one sold before its expiry is not."""
    world = World(tmp_path / "ledger")  # block times in September 2026
    maker = world.register("RU", ["producer"], "Dairy")
    shop = world.register("RU", ["retailer"], "Shop")
    stale, fresh = world.emit("RU", maker, 1), world.emit("RU", maker, 1)
    world.apply_ok(world.doc(maker, DocType.INTRODUCE, codes=stale, attributes=[["17", "260600"]]))
    world.apply_ok(world.doc(maker, DocType.INTRODUCE, codes=fresh, attributes=[["17", "271231"]]))
    shipped = world.doc(maker, DocType.SHIP, receiver=shop.participant_id, codes=stale + fresh)
    world.apply_ok(shipped)
    world.apply_ok(world.doc(shop, DocType.ACCEPT, shipment=shipped.id, codes=[]))
    world.apply_ok(world.doc(shop, DocType.RETIRE, reason="retail_sale", codes=stale + fresh))
    out = tmp_path / "export"
    export_store(world.store, out)
    con = engine.connect(out)
    columns, rows = engine.run(con, engine.report_query(con, "sales_after_expiry"))
    con.close()
    found = [dict(zip(columns, row)) for row in rows]
    assert [r["code"] for r in found] == stale, found
    # Day 00 is the month's last day: June 30th, 2026.
    assert str(found[0]["expiry"]) == "2026-06-30" and found[0]["days_after_expiry"] > 0


def test_participants_carry_their_tax_ids_and_older_parts_still_read(tmp_path: Path) -> None:
    """Each business's tax id as its registration gave it, NULL for the regulators and
    for a business registered without one; an export whose earlier parts were written
    before the column existed still reads (the column is NULL there)."""
    world = World(tmp_path / "chain")
    world.register("RU", ["producer"], "Maker", tax_id="7707083893")
    world.register("KZ", ["wholesaler"], "Trader", tax_id="")
    out = tmp_path / "export"
    export_store(world.store, out)
    con = engine.connect(out)
    rows = con.execute("SELECT name, roles, tax_id FROM participants").fetchall()
    by_name = {name: tax_id for name, _, tax_id in rows}
    assert by_name["Maker"] == "7707083893" and by_name["Trader"] is None
    assert [tax_id for _, roles, tax_id in rows if roles == ["regulator"]] == [None] * 5
    con.close()
    # An older part: the same rows without the column, beside a newer part.
    (part,) = (out / "participants").glob("*.parquet")
    table = pq.read_table(part)
    pq.write_table(table.drop(["tax_id"]), part)
    maker = table.filter(pc.equal(table["name"], "Maker"))
    pq.write_table(maker, out / "participants" / "part-999999999998-999999999999.parquet")
    con = engine.connect(out)
    got = con.execute("SELECT count(*), count(tax_id), max(tax_id) FROM participants_files").fetchone()
    assert got == (len(rows) + 1, 1, "7707083893")
