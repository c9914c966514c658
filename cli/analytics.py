"""The chain as Parquet tables, for DuckDB here and Spark or Trino elsewhere (docs/ANALYTICS.md).

An export reads blocks (from a node's data directory through `ledger.LedgerStore`, or
from a node's block stream through the client library) and derives every table from
the documents and their results alone, so what it writes is what every honest node
holds. Each table is a directory of part files, one per exported height range:

    OUT/_export.json                        chain id, exported height, the parts
    OUT/<table>/part-<first>-<last>.parquet heights first..last (12 digits each)

Every part covers the same heights in every table (an empty part still carries its
schema, so a table always has a file to read). A later export appends parts from the
next height; re-running an export from a height replaces the parts from there on,
so it is idempotent. Part files are written under a temporary name and renamed, and
the manifest is written last: a crash leaves the previous export as it was (files it
does not list are removed by the next run).

Some rows need what earlier blocks said (a participant's state, the items of a
shipment accepted now, the units inside a pallet): a `Tracker` keeps that, and an
export from height H replays blocks 1..H-1 through it without writing rows.
"""

from __future__ import annotations

import calendar
import datetime
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import ledger
from node.client import ClientError, SyncNodeClient

MANIFEST = "_export.json"
FORMAT_VERSION = 1
# A part is flushed once it holds this many code events: bounds the memory of an
# export (a row costs a few hundred bytes in Python lists) while keeping parts large
# enough for columnar reads (DuckDB and Spark like files of tens of megabytes).
PART_CODE_EVENTS_MAX = 2_000_000
# Parquet row groups of this many rows let readers skip by height statistics.
ROW_GROUP_ROWS = 256_000

TIME = pa.timestamp("ms", tz="UTC")

SCHEMAS: dict[str, pa.Schema] = {
    "blocks": pa.schema([
        ("height", pa.int64()), ("hash", pa.string()), ("prev_hash", pa.string()), ("time", TIME),
        ("proposer", pa.string()), ("raft_term", pa.int64()), ("raft_index", pa.int64()),
        ("documents", pa.int32()), ("applied", pa.int32()), ("rejected", pa.int32()),
        ("state_hash", pa.string()),
    ]),
    "documents": pa.schema([
        ("height", pa.int64()), ("position", pa.int32()), ("time", TIME), ("id", pa.string()),
        ("type", pa.string()), ("signer", pa.string()), ("signer_state", pa.string()),
        ("status", pa.string()), ("reason", pa.string()), ("message", pa.string()),
        ("codes", pa.int32()), ("named", pa.int32()), ("shipment", pa.string()), ("receiver", pa.string()),
        ("receiver_state", pa.string()), ("gtin", pa.string()), ("sscc", pa.string()),
        ("retire_reason", pa.string()), ("participant", pa.string()), ("bytes", pa.int32()),
        # The attributes a document printed or brought into circulation with its codes
        # (introduce, apply, import: AI 17 expiry, AI 10 batch), for the expiry reports.
        ("expiry", pa.date32()), ("batch", pa.string()),
    ]),
    "code_events": pa.schema([
        ("code", pa.string()), ("gtin", pa.string()), ("kind", pa.string()),
        ("height", pa.int64()), ("position", pa.int32()), ("time", TIME),
        ("document_id", pa.string()), ("type", pa.string()), ("status", pa.string()),
        ("reason", pa.string()), ("signer", pa.string()), ("signer_state", pa.string()),
        ("sscc", pa.string()), ("shipment", pa.string()), ("receiver", pa.string()),
    ]),
    "shipments": pa.schema([
        ("id", pa.string()), ("height", pa.int64()), ("position", pa.int32()), ("time", TIME),
        ("shipper", pa.string()), ("receiver", pa.string()), ("from_state", pa.string()),
        ("to_state", pa.string()), ("cross_border", pa.bool_()), ("items", pa.int32()),
        ("units", pa.int64()), ("item_codes", pa.list_(pa.string())),
    ]),
    "flows": pa.schema([
        ("shipment", pa.string()), ("height", pa.int64()), ("time", TIME),
        ("from_state", pa.string()), ("to_state", pa.string()), ("shipper", pa.string()),
        ("receiver", pa.string()), ("gtin", pa.string()), ("units", pa.int64()),
    ]),
    "participants": pa.schema([
        ("id", pa.string()), ("public_key", pa.string()), ("state", pa.string()),
        ("roles", pa.list_(pa.string())), ("name", pa.string()), ("registered_height", pa.int64()),
        ("time", TIME),
        # Added after the first exports: their parts lack it, and `tamga sql` reads the
        # parts by column name (NULL there).
        ("tax_id", pa.string()),
    ]),
}
TABLES = tuple(SCHEMAS)


class ExportError(Exception):
    """The export cannot go ahead: another chain's directory, a gap, a bad height."""


# Sources of blocks.


class BlockSource(Protocol):
    chain_id: str

    def head(self) -> int: ...

    def blocks(self, first: int, last: int) -> Iterator[ledger.Block]: ...

    def participant_state(self, pid: str) -> str | None:
        """The state of a participant the blocks did not register (genesis's regulators)."""
        ...


class StoreSource:
    """A node's data directory, read offline through the ledger's store."""

    def __init__(self, store: ledger.LedgerStore) -> None:
        self.store = store
        self.chain_id = store.genesis.chain_id

    def head(self) -> int:
        return self.store.head.height

    def blocks(self, first: int, last: int) -> Iterator[ledger.Block]:
        for height in range(first, last + 1):
            block = self.store.block(height)
            if block is None:
                raise ExportError(f"block {height} is missing from {self.store.path}")
            yield block

    def participant_state(self, pid: str) -> str | None:
        found = self.store.participant(pid)
        return str(found["state"]) if found else None


class NodeSource:
    """A node's API: the block stream and participant reads, signed with the reader's key."""

    def __init__(self, client: SyncNodeClient) -> None:
        self.client = client
        self.chain_id = client.chain_id()

    def head(self) -> int:
        return int(self.client.status()["height"])

    def blocks(self, first: int, last: int) -> Iterator[ledger.Block]:
        if first > last:
            return
        for block_bytes, _attestations in self.client.stream_blocks(first, last):
            yield ledger.Block.decode(block_bytes)

    def participant_state(self, pid: str) -> str | None:
        try:
            return str(self.client.participant(pid)["state"])
        except (ClientError, KeyError, TypeError):
            return None  # unknown, or not this reader's to see: the column stays empty


# What earlier blocks said, for the rows of later ones.


@dataclass(slots=True)
class OpenShipment:
    items: list[str]
    shipper: str
    receiver: str


@dataclass(slots=True)
class Tracker:
    """Participants' states, open shipments and packed aggregates, block after block."""

    participant_state: Callable[[str], str | None]
    states: dict[str, str | None] = field(default_factory=dict)
    shipments: dict[bytes, OpenShipment] = field(default_factory=dict)
    children: dict[str, list[str]] = field(default_factory=dict)
    imports: dict[bytes, list[str]] = field(default_factory=dict)  # customs imports awaiting confirmation

    def state_of(self, pid: str) -> str | None:
        if pid in self.states:
            return self.states[pid]
        # Asked once per participant the blocks did not register (a node answers over
        # HTTP); an unknown one, a refused document's signer, is remembered as unknown.
        state = self.participant_state(pid)
        self.states[pid] = state
        return state

    def units(self, items: Sequence[str]) -> Iterator[str]:
        """The unit codes among `items` and inside the aggregates among them."""
        stack = list(items)
        while stack:
            key = stack.pop()
            inside = self.children.get(key)
            if inside is None:
                if key.startswith("01"):
                    yield key
            else:
                stack.extend(inside)

    def apply(self, doc: ledger.Document, doc_id: bytes) -> None:
        """Follow one applied document."""
        kind = doc.type
        if kind is ledger.DocType.REGISTER_PARTICIPANT:
            public_key, state = doc.payload[:2]
            self.states[ledger.participant_id(public_key)] = state
        elif kind is ledger.DocType.SHIP:
            receiver, items = doc.payload[:2]
            self.shipments[doc_id] = OpenShipment(list(items), doc.signer, receiver)
        elif kind in (ledger.DocType.ACCEPT, ledger.DocType.REJECT, ledger.DocType.CANCEL_SHIPMENT):
            self.shipments.pop(doc.payload[0], None)
            if kind is ledger.DocType.ACCEPT:
                self._kept_children(doc.payload[1])
        elif kind is ledger.DocType.AGGREGATE:
            sscc, codes = doc.payload[:2]
            self.children[sscc] = list(codes)
        elif kind is ledger.DocType.DISAGGREGATE:
            self.children.pop(doc.payload[0], None)
        elif kind is ledger.DocType.REAGGREGATE:  # issue 13
            sscc, add, remove = doc.payload[:3]
            gone = set(remove)
            self.children[sscc] = [c for c in self.children.get(sscc, []) if c not in gone] + list(add)

        elif kind is ledger.DocType.IMPORT:
            self.imports[doc_id] = list(doc.payload[2])
        elif kind is ledger.DocType.CONFIRM_IMPORT:
            self.imports.pop(doc.payload[0], None)

    def _kept_children(self, chosen: list[str]) -> None:
        """An accept that lists an aggregate and some of its children keeps only those (issue 13)."""
        listed = set(chosen)
        for sscc in chosen:
            inside = self.children.get(sscc)
            if inside is not None:
                kept = [c for c in inside if c in listed]
                if kept:
                    self.children[sscc] = kept


# Rows.


# A document with at least this many codes becomes a record batch of its own: the values
# it shares (document id, signer, time...) are repeated by Arrow in C rather than copied
# into Python lists, which for a 10,000-code shipment costs more than everything else.
BULK_ROWS_MIN = 256


class Columns:
    """One table's rows: small additions as column lists, large ones as record batches,
    turned into one Arrow table at the end."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.data: dict[str, list[Any]] = {name: [] for name in schema.names}
        self.batches: list[pa.RecordBatch] = []
        self.rows = 0

    def add(self, **row: Any) -> None:
        for name, values in self.data.items():
            values.append(row.get(name))
        self.rows += 1

    def extend(self, n: int, varying: dict[str, Sequence[Any]], same: dict[str, Any]) -> None:
        """n rows: `varying` gives a value per row, `same` one value for all of them."""
        if n >= BULK_ROWS_MIN:
            self._seal()
            columns = [
                pa.array(varying[f.name], type=f.type) if f.name in varying
                else pa.repeat(pa.scalar(same.get(f.name), type=f.type), n)
                for f in self.schema
            ]
            self.batches.append(pa.RecordBatch.from_arrays(columns, schema=self.schema))
        else:
            for name, values in self.data.items():
                if name in varying:
                    values.extend(varying[name])
                else:
                    values.extend([same.get(name)] * n)
        self.rows += n

    def _seal(self) -> None:
        if not self.data[self.schema.names[0]]:
            return
        arrays = [pa.array(self.data[f.name], type=f.type) for f in self.schema]
        self.batches.append(pa.RecordBatch.from_arrays(arrays, schema=self.schema))
        self.data = {name: [] for name in self.schema.names}

    def __len__(self) -> int:
        return self.rows

    def table(self) -> pa.Table:
        self._seal()
        return pa.Table.from_batches(self.batches, schema=self.schema)


def with_gtin_and_kind(table: pa.Table) -> pa.Table:
    """Fill code_events' gtin and kind from the code, in Arrow: a unit key is "01" GTIN
    "21" serial, an aggregate's "00" SSCC."""
    code = table.column("code")
    unit = pc.starts_with(code, "01")
    aggregate = pc.starts_with(code, "00")
    gtin = pc.if_else(unit, pc.utf8_slice_codeunits(code, 2, 16), pa.scalar(None, pa.string()))
    kind = pc.if_else(unit, "unit", pc.if_else(aggregate, "aggregate", "other"))
    table = table.set_column(table.schema.get_field_index("gtin"), "gtin", gtin)
    return table.set_column(table.schema.get_field_index("kind"), "kind", kind)


def _hex(value: bytes | None) -> str | None:
    return value.hex() if value else None


@dataclass(slots=True)
class Touched:
    """The codes a document touched: each with the aggregate it packed into or unpacked from."""

    codes: list[str] = field(default_factory=list)
    ssccs: list[str | None] = field(default_factory=list)

    def add(self, codes: Sequence[str], sscc: str | None = None) -> None:
        self.codes.extend(codes)
        self.ssccs.extend([sscc] * len(codes))


def touched_codes(doc: ledger.Document, applied: bool, tracker: Tracker) -> Touched:
    """The codes whose history an applied document enters, exactly as the ledger's
    history index does; for a refused one, the codes it names."""
    kind, payload, out = doc.type, doc.payload, Touched()
    D = ledger.DocType
    if kind is D.EMIT:
        prefix = "01" + payload[1] + "21"
        out.add([prefix + s for s in payload[2]])
    elif kind in (D.INTRODUCE, D.RETURN, D.RELEASE):
        out.add(payload[0])
    elif kind in (D.SHIP, D.RETIRE):
        out.add(payload[1])
    elif kind is D.SUSPEND:
        out.add(payload[0])
    elif kind is D.IMPORT:  # issue 13
        out.add(payload[2])
    elif kind is D.CONFIRM_IMPORT and applied:
        out.add(tracker.imports.get(payload[0], []))
    elif kind is D.AGGREGATE:
        out.add(payload[1], payload[0])
        out.add([payload[0]])
    elif kind is D.DISAGGREGATE:
        if applied:
            out.add(tracker.children.get(payload[0], []), payload[0])
        out.add([payload[0]])
    elif kind in (D.ACCEPT, D.REJECT, D.CANCEL_SHIPMENT):
        shipment = tracker.shipments.get(payload[0])
        if applied and shipment is not None:
            out.add(shipment.items)
        elif kind is D.ACCEPT:
            out.add(payload[1])
    return out


class Rows:
    """Every table's rows for one part: what a range of blocks adds."""

    def __init__(self) -> None:
        self.tables = {name: Columns(schema) for name, schema in SCHEMAS.items()}

    def code_events(self) -> int:
        return len(self.tables["code_events"])

    def add_block(self, block: ledger.Block, tracker: Tracker) -> None:
        header = block.header
        applied = sum(1 for r in block.results if r.applied)
        self.tables["blocks"].add(
            height=header.height, hash=header.hash.hex(), prev_hash=header.prev_hash.hex(),
            time=header.time_ms, proposer=header.proposer, raft_term=header.raft_term,
            raft_index=header.raft_index, documents=len(block.documents), applied=applied,
            rejected=len(block.results) - applied, state_hash=header.state_hash.hex(),
        )
        for position, (wire, result) in enumerate(zip(block.documents, block.results)):
            self._document(header, position, wire, result, tracker)

    def _document(self, header: ledger.BlockHeader, position: int, wire: bytes, result: ledger.Result,
                  tracker: Tracker) -> None:
        where = {"height": header.height, "position": position, "time": header.time_ms}
        status = "applied" if result.applied else "rejected"
        reason = None if result.applied else result.reason.value
        try:
            signed = ledger.decode_signed(wire)
        except ledger.DecodeError:
            self.tables["documents"].add(**where, status=status, reason=reason, message=result.message,
                                         codes=0, bytes=len(wire))
            return
        doc, doc_id = signed.document, signed.id
        fields = dict(zip((name for name, _ in ledger.PAYLOADS[doc.type]), doc.payload))
        touched = touched_codes(doc, result.applied, tracker)
        shipment = doc_id if doc.type is ledger.DocType.SHIP else fields.get("shipment")
        receiver = fields.get("receiver")
        open_shipment = tracker.shipments.get(shipment) if shipment else None
        if receiver is None and open_shipment is not None:
            receiver = open_shipment.receiver
        common = {
            **where, "document_id": doc_id.hex(), "type": doc.type.value, "signer": doc.signer,
            "signer_state": tracker.state_of(doc.signer), "status": status, "reason": reason,
            "shipment": _hex(shipment), "receiver": receiver,
        }
        self.tables["documents"].add(
            **common, id=doc_id.hex(), message=result.message, codes=len(touched.codes),
            named=_named_codes(fields),
            receiver_state=tracker.state_of(receiver) if receiver else None,
            gtin=fields.get("gtin"), sscc=fields.get("sscc"), retire_reason=fields.get("reason"),
            participant=_participant_field(doc, fields), bytes=len(wire),
            expiry=_expiry(fields), batch=_attribute(fields, "10"),
        )
        self.tables["code_events"].extend(
            len(touched.codes), {"code": touched.codes, "sscc": touched.ssccs}, common,
        )
        if result.applied:
            self._applied(doc, doc_id, fields, common, tracker)
            # After the rows, before the next document: one block may pack, ship and
            # accept the same goods, each document seeing what the ones before it did.
            tracker.apply(doc, doc_id)

    def _applied(self, doc: ledger.Document, doc_id: bytes, fields: dict[str, Any], common: dict[str, Any],
                 tracker: Tracker) -> None:
        if doc.type is ledger.DocType.REGISTER_PARTICIPANT:
            self.tables["participants"].add(
                id=ledger.participant_id(fields["public_key"]), public_key=fields["public_key"].hex(),
                state=fields["state"], roles=list(fields["roles"]), name=fields["name"],
                registered_height=common["height"], time=common["time"], tax_id=fields.get("tax_id") or None,
            )
        elif doc.type is ledger.DocType.SHIP:
            self._shipment(doc, doc_id, fields, common, tracker)

    def _shipment(self, doc: ledger.Document, doc_id: bytes, fields: dict[str, Any], common: dict[str, Any],
                  tracker: Tracker) -> None:
        items: list[str] = list(fields["codes"])
        from_state, to_state = common["signer_state"], tracker.state_of(fields["receiver"])
        by_gtin: dict[str, int] = {}
        for unit in tracker.units(items):
            gtin = unit[2:16]
            by_gtin[gtin] = by_gtin.get(gtin, 0) + 1
        cross_border = from_state != to_state
        self.tables["shipments"].add(
            id=doc_id.hex(), height=common["height"], position=common["position"], time=common["time"],
            shipper=doc.signer, receiver=fields["receiver"], from_state=from_state, to_state=to_state,
            cross_border=cross_border, items=len(items), units=sum(by_gtin.values()), item_codes=items,
        )
        if not cross_border:
            return
        for gtin, units in sorted(by_gtin.items()):
            self.tables["flows"].add(
                shipment=doc_id.hex(), height=common["height"], time=common["time"], from_state=from_state,
                to_state=to_state, shipper=doc.signer, receiver=fields["receiver"], gtin=gtin, units=units,
            )

    def add_regulators(self, genesis_states: Sequence[tuple[str, str, str, str]], time_ms: int) -> None:
        """Genesis's regulators, registered at height 0: (id, public key hex, state, name)."""
        for pid, public_key, state, name in genesis_states:
            self.tables["participants"].add(id=pid, public_key=public_key, state=state, roles=["regulator"],
                                            name=name, registered_height=0, time=time_ms, tax_id=None)


def _attribute(fields: dict[str, Any], ai: str) -> str | None:
    for pair in fields.get("attributes") or ():
        if len(pair) == 2 and pair[0] == ai:
            return str(pair[1])
    return None


def _expiry(fields: dict[str, Any]) -> datetime.date | None:
    """AI 17 (YYMMDD) as a date: the century is 20 (as the ledger reads it, never from the
    clock), and day 00 is the month's last day (GS1 General Specifications 3.4.5)."""
    raw = _attribute(fields, "17")
    if raw is None or len(raw) != 6 or not raw.isdigit():
        return None
    year, month, day = 2000 + int(raw[:2]), int(raw[2:4]), int(raw[4:])
    if not 1 <= month <= 12:
        return None
    last = calendar.monthrange(year, month)[1]
    if day == 0:
        day = last
    return datetime.date(year, month, day) if day <= last else None


def _named_codes(fields: dict[str, Any]) -> int:
    named = fields.get("codes", fields.get("serials"))
    return len(named) if isinstance(named, list) else 0


def _participant_field(doc: ledger.Document, fields: dict[str, Any]) -> str | None:
    if doc.type is ledger.DocType.REGISTER_PARTICIPANT:
        return ledger.participant_id(fields["public_key"])
    if doc.type is ledger.DocType.EMIT:
        return str(fields["owner"])
    value = fields.get("participant")
    return str(value) if value is not None else None


# The export directory.


@dataclass(slots=True)
class Manifest:
    chain_id: str
    height: int = 0
    parts: list[tuple[int, int]] = field(default_factory=list)

    @classmethod
    def load(cls, out: Path, chain_id: str) -> Manifest:
        path = out / MANIFEST
        if not path.exists():
            # Table folders without a manifest are a first export that crashed: redone.
            mine = set(TABLES) | {MANIFEST + ".tmp"}
            if out.exists() and any(p.name not in mine for p in out.iterdir()):
                raise ExportError(f"{out} is not empty and holds no export ({MANIFEST} is missing)")
            return cls(chain_id)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            found = cls(str(raw["chain_id"]), int(raw["height"]), [(int(a), int(b)) for a, b in raw["parts"]])
        except (ValueError, KeyError, TypeError) as exc:
            raise ExportError(f"{path} is damaged: {exc}") from None
        if raw.get("format") != FORMAT_VERSION:
            raise ExportError(f"{path} has format {raw.get('format')!r}; this tamga writes {FORMAT_VERSION}")
        if found.chain_id != chain_id:
            raise ExportError(f"{out} holds an export of chain {found.chain_id!r}, not {chain_id!r}")
        return found

    def save(self, out: Path) -> None:
        body = {"format": FORMAT_VERSION, "chain_id": self.chain_id, "height": self.height,
                "parts": [list(p) for p in self.parts], "tables": list(TABLES)}
        _write_atomically(out / MANIFEST, json.dumps(body, indent=2).encode())


def part_name(first: int, last: int) -> str:
    return f"part-{first:012d}-{last:012d}.parquet"


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def _write_part(out: Path, rows: Rows, first: int, last: int) -> int:
    """Write one part of every table; the bytes written."""
    written = 0
    for name, columns in rows.tables.items():
        directory = out / name
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / part_name(first, last)
        temporary = path.with_name(path.name + ".tmp")
        table = columns.table()
        if name == "code_events":
            table = with_gtin_and_kind(table)
        pq.write_table(table, temporary, compression="zstd", row_group_size=ROW_GROUP_ROWS)
        os.replace(temporary, path)
        written += path.stat().st_size
    return written


def _remove_unlisted(out: Path, keep: set[str]) -> None:
    """Part files the manifest does not list: left by a crash or replaced by this run."""
    for name in TABLES:
        directory = out / name
        if not directory.is_dir():
            continue
        for path in directory.iterdir():
            if path.name not in keep and (path.suffix in (".parquet", ".tmp")):
                path.unlink()


@dataclass(frozen=True, slots=True)
class ExportReport:
    first: int
    last: int
    blocks: int
    rows: dict[str, int]
    parts: int
    bytes: int

    def to_json(self) -> dict[str, Any]:
        return {"first": self.first, "last": self.last, "blocks": self.blocks, "rows": self.rows,
                "parts": self.parts, "bytes": self.bytes}


def plan_since(manifest: Manifest, since: int | None) -> int:
    """The first height to export: after the manifest's by default; an earlier height
    replaces the parts from there on, which must start a part."""
    if since is None:
        return manifest.height + 1
    since = max(since, 1)
    if not manifest.parts:
        return since  # a new export may start anywhere: earlier blocks are replayed for context
    if since > manifest.height + 1:
        raise ExportError(
            f"the export ends at height {manifest.height}; --since {since} would leave a gap "
            f"(give --since {manifest.height + 1} or less)"
        )
    for first, last in manifest.parts:
        if first < since <= last:
            raise ExportError(
                f"height {since} falls inside the exported part {first}..{last}: give --since {first} "
                f"or --since {last + 1}"
            )
    return since


def export(
    source: BlockSource,
    out: Path,
    since: int | None = None,
    regulators: Sequence[tuple[str, str, str, str]] = (),
    genesis_time_ms: int = 0,
    progress: Callable[[int], None] | None = None,
    part_code_events_max: int = PART_CODE_EVENTS_MAX,
) -> ExportReport:
    """Export blocks `since`..head into `out` (see the module's docstring)."""
    manifest = Manifest.load(out, source.chain_id)
    first = plan_since(manifest, since)
    last = source.head()
    if last < first:
        return ExportReport(first, last, 0, dict.fromkeys(TABLES, 0), len(manifest.parts), 0)
    manifest.parts = [p for p in manifest.parts if p[0] < first]
    manifest.height = first - 1
    tracker = Tracker(source.participant_state)
    for block in source.blocks(1, first - 1):
        _track(block, tracker)
    out.mkdir(parents=True, exist_ok=True)
    rows, part_first, written, totals = Rows(), first, 0, dict.fromkeys(TABLES, 0)
    if first == 1:
        rows.add_regulators(regulators, genesis_time_ms)
    height = first - 1
    for block in source.blocks(first, last):
        height = block.header.height
        rows.add_block(block, tracker)
        if progress is not None:
            progress(height)
        if rows.code_events() >= part_code_events_max:
            written += _flush(out, rows, part_first, height, manifest, totals)
            rows, part_first = Rows(), height + 1
    if height >= part_first:
        written += _flush(out, rows, part_first, height, manifest, totals)
    keep = {part_name(a, b) for a, b in manifest.parts}
    manifest.save(out)
    _remove_unlisted(out, keep)
    return ExportReport(first, height, max(0, height - first + 1), totals, len(manifest.parts), written)


def _track(block: ledger.Block, tracker: Tracker) -> None:
    """Follow a block without writing rows (the blocks before an export's first)."""
    for wire, result in zip(block.documents, block.results):
        if result.applied:
            signed = ledger.decode_signed(wire)
            tracker.apply(signed.document, signed.id)


def _flush(out: Path, rows: Rows, first: int, last: int, manifest: Manifest, totals: dict[str, int]) -> int:
    written = _write_part(out, rows, first, last)
    for name, columns in rows.tables.items():
        totals[name] += len(columns)
    manifest.parts.append((first, last))
    manifest.height = last
    # The manifest after every part: a crash later keeps what is written.
    manifest.save(out)
    return written


def genesis_regulators(genesis: ledger.Genesis) -> list[tuple[str, str, str, str]]:
    return [
        (s.regulator_id, s.regulator_public_key.hex(), s.code, f"Regulator of {s.name}")
        for s in genesis.states
    ]
