"""`tamga governance`: build, co-sign, submit and show governance proposals.

A proposal travels between regulators as a JSON file: the proposal's canonical bytes
(what every regulator signs, authoritative), the same proposal in words for people, and
the co-signatures gathered so far. Any regulator submits it once a Byzantine quorum of
member states' regulators has signed; the ledger checks every signature again.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

import click

import ledger

from ._cmd_participant import read_public_key
from ._options import (
    genesis_option,
    json_option,
    key_option,
    kv_lines,
    load_genesis,
    load_key,
    make_client,
    make_session,
    node_option,
    print_json,
    report,
    wait_mode,
    wait_options,
)

FILE_FORMAT = 1
# Regulators sign one after another, often across days; three days is the default
# window, and a week the most a proposal may stay valid, so old ones cannot linger.
EXPIRES_IN_HOURS_DEFAULT = 72
EXPIRES_IN_HOURS_MAX = 24 * 7
# A proposal file is a few KiB; anything much larger is not one.
PROPOSAL_FILE_BYTES_MAX = 1 << 20


class GovernanceFileError(ledger.LedgerError):
    """A proposal file that cannot be used (unreadable, malformed, or inconsistent)."""


@click.group()
def governance() -> None:
    """Membership, chain parameters and the product-group table, changed only by a quorum of regulators.

    \b
    propose  write a proposal file (add, remove or replace a state's node, set parameters,
             set or retire a product group)
    sign     add your regulator's co-signature to the file
    submit   file the co-signed proposal as a governance document
    show     print a proposal (file or on the chain), its signatures and whether a quorum signed
    """


# -- the proposal file -------------------------------------------------------------------


def file_json(proposal_bytes: bytes, signatures: list[list[Any]]) -> dict[str, Any]:
    proposal = ledger.decode_proposal(proposal_bytes)
    return {
        "tamga_governance": FILE_FORMAT,
        "id": proposal.id.hex(),
        "proposal": proposal.to_json(),
        "proposal_bytes": proposal_bytes.hex(),
        "signatures": [{"regulator": r, "signature": s.hex()} for r, s in signatures],
    }


def read_file(path: Path) -> tuple[bytes, list[list[Any]]]:
    """The proposal bytes and the co-signatures of a proposal file, checked."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise GovernanceFileError(f"cannot read {path}: {exc.strerror}") from None
    if len(raw) > PROPOSAL_FILE_BYTES_MAX:
        raise GovernanceFileError(f"{path} is too large for a proposal file")
    try:
        obj = json.loads(raw)
        if not isinstance(obj, dict) or obj.get("tamga_governance") != FILE_FORMAT:
            raise ValueError("not a Tamga governance proposal file")
        proposal_bytes = bytes.fromhex(obj["proposal_bytes"])
        signatures = [[s["regulator"], bytes.fromhex(s["signature"])] for s in obj["signatures"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise GovernanceFileError(f"{path}: {exc}") from None
    ledger.decode_proposal(proposal_bytes)  # DecodeError says what is wrong
    if signatures:
        ledger.check_cosignatures_shape(signatures)
    return proposal_bytes, signatures


def write_file(path: Path, proposal_bytes: bytes, signatures: list[list[Any]]) -> None:
    text = json.dumps(file_json(proposal_bytes, signatures), indent=2) + "\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)  # a half-written file never replaces a good one


def verdict_json(
    genesis: ledger.Genesis, proposal_bytes: bytes, signatures: list[list[Any]]
) -> dict[str, Any]:
    proposal = ledger.decode_proposal(proposal_bytes)
    verdict = ledger.quorum_verdict(genesis, proposal_bytes, proposal.chain_id, signatures, ledger.Verifier())
    return {
        "signed_by": list(verdict.signers),
        "needed": verdict.needed,
        "of": len(genesis.states),
        "problem": verdict.problem,
        "quorum_met": verdict.met and proposal.chain_id == genesis.chain_id,
    }


# -- commands ------------------------------------------------------------------------------


def _group(action: str, group_file: Path | None, group_name: str | None) -> ledger.ProductGroup | None:
    """The group a set_product_group proposal carries, read from its JSON file."""
    if (group_file is not None) != (action == ledger.Action.SET_PRODUCT_GROUP):
        raise click.UsageError("set_product_group needs --group-file; other actions take none")
    if bool(group_name) != (action == ledger.Action.RETIRE_PRODUCT_GROUP):
        raise click.UsageError("retire_product_group needs --group; other actions take none")
    if group_file is None:
        return None
    try:
        obj = json.loads(group_file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise GovernanceFileError(f"cannot read {group_file}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise GovernanceFileError(f"{group_file} is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise GovernanceFileError(f"{group_file}: a product group is a JSON object")
    obj.pop("status", None)  # a group as `tamga product groups --json` prints it
    try:
        return ledger.ProductGroup.from_json(obj)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise GovernanceFileError(f"{group_file}: not a product group ({exc!r})") from None


def _params(values: tuple[str, ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in values:
        name, sep, number = item.partition("=")
        if not sep or not number.strip().isdigit():
            raise click.BadParameter(f"{item!r}: give NAME=INTEGER", param_hint="--param")
        out[name.strip()] = int(number)
    return out


@governance.command("propose")
@click.option("--action", required=True, type=click.Choice([a.value for a in ledger.Action]),
              help="What to change.")
@click.option("--state", metavar="XX", required=True, help="The member state whose node (or evidence) it is.")
@click.option("--node-key", metavar="KEY", help="add/replace: the node's public key (hex, PEM or file).")
@click.option("--tls-cert-sha256", metavar="HEX",
              help="add/replace: SHA-256 of the node's TLS certificate (DER).")
@click.option("--peer-address", metavar="HOST:PORT", help="add/replace: the node's peer API address.")
@click.option("--api-url", metavar="URL", help="add/replace: the node's client API URL.")
@click.option("--param", "params", metavar="NAME=VALUE", multiple=True,
              help=f"set_params: a chain parameter ({', '.join(ledger.param_names())}); repeat for several.")
@click.option("--group-file", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path),
              help="set_product_group: the group as JSON, as genesis's product_groups write one (name, "
                   "title, layouts, required, withdrawal_reasons, reasons_needing_document, documents); "
                   "`tamga product groups --json` prints the table in force.")
@click.option("--group", "group_name", metavar="NAME", help="retire_product_group: the group's name.")
@click.option("--epoch", metavar="N", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True,
              help="add/remove/replace: the membership epoch the change is made for (`membership.epoch` "
                   "in a node's status); the certificate applies only at that epoch, so it cannot be "
                   "replayed later.")
@click.option("--expires-in", metavar="HOURS", type=click.IntRange(1, EXPIRES_IN_HOURS_MAX),
              default=EXPIRES_IN_HOURS_DEFAULT, show_default=True, help="How long the proposal stays valid.")
@click.option("--chain-id", metavar="ID", help="The chain (default: from --genesis).")
@genesis_option(help="Genesis file; gives the chain id.")
@click.option("--out", metavar="FILE", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the proposal file.")
@json_option
def propose(action: str, state: str, node_key: str | None, tls_cert_sha256: str | None,
            peer_address: str | None, api_url: str | None, params: tuple[str, ...], group_file: Path | None,
            group_name: str | None, epoch: int, expires_in: int, chain_id: str | None, genesis: Path | None,
            out: Path, as_json: bool) -> None:
    """Write a new proposal file, with no signature yet.

    For a product group, --state names the proposing regulator's state."""
    if chain_id is None:
        if genesis is None:
            raise click.UsageError("give --chain-id or --genesis (TAMGA_GENESIS)")
        chain_id = load_genesis(genesis).chain_id
    node_fields = (node_key, tls_cert_sha256, peer_address, api_url)
    node = None
    if action in (ledger.Action.ADD_NODE, ledger.Action.REPLACE_NODE):
        if None in node_fields:
            raise click.UsageError(
                f"{action} needs --node-key, --tls-cert-sha256, --peer-address and --api-url"
            )
        node = ledger.NodeSpec(read_public_key(str(node_key)), str(tls_cert_sha256).lower(),
                               str(peer_address), str(api_url))
    elif any(f is not None for f in node_fields):
        raise click.UsageError(f"{action} takes no node options")
    if params and action != ledger.Action.SET_PARAMS:
        raise click.UsageError(f"{action} takes no --param")
    if epoch and action not in ledger.MEMBERSHIP_ACTIONS:
        raise click.UsageError(f"{action} takes no --epoch: only membership changes name one")
    group = _group(action, group_file, group_name)
    # A random nonce keeps two proposals of the same change distinct documents.
    expires = int(time.time() * 1000) + expires_in * 3_600_000
    proposal = ledger.make_proposal(chain_id, action, state.upper(), secrets.randbits(63), expires, node=node,
                                    params=_params(params), epoch=epoch, group=group,
                                    group_name=group_name or "")
    write_file(out, proposal.canonical_bytes(), [])
    if as_json:
        print_json(file_json(proposal.canonical_bytes(), []))
        return
    click.echo(proposal.id.hex())
    click.echo(f"wrote {out}: {action} {proposal.state}; regulators sign it with `tamga governance sign`",
               err=True)


@governance.command("sign")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@key_option(required=True)
@json_option
def sign(file: Path, key: Path, as_json: bool) -> None:
    """Add your regulator's co-signature to a proposal file (in place)."""
    proposal_bytes, signatures = read_file(file)
    proposal = ledger.decode_proposal(proposal_bytes)
    regulator = load_key(key)
    signature = regulator.sign(ledger.DOMAIN_GOVERNANCE, proposal.chain_id, proposal_bytes)
    # Signing again replaces one's own earlier signature: never two entries by one key.
    kept = [s for s in signatures if s[0] != regulator.participant_id]
    kept.append([regulator.participant_id, signature])
    write_file(file, proposal_bytes, kept)
    if as_json:
        print_json(file_json(proposal_bytes, kept))
        return
    click.echo(regulator.participant_id)
    click.echo(f"signed {file}: {len(kept)} signature(s)", err=True)


@governance.command("submit")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@node_option
@key_option(required=True)
@genesis_option()
@wait_options
@json_option
def submit(file: Path, node: str, key: Path, genesis: Path | None, wait: bool, final: bool, timeout: float,
           as_json: bool) -> None:
    """File a co-signed proposal as a governance document (any regulator may)."""
    proposal_bytes, signatures = read_file(file)
    if not signatures:
        raise click.ClickException(
            f"{file} has no signature yet: regulators sign it with `tamga governance sign`"
        )
    session = make_session(node, key, genesis, wait_mode(wait, final), timeout)
    chain_id = session.client.chain_id()
    proposal = ledger.decode_proposal(proposal_bytes)
    if proposal.chain_id != chain_id:
        raise click.ClickException(
            f"the proposal is for chain {proposal.chain_id!r}, the node serves {chain_id!r}"
        )
    outcome = session.submit(ledger.DocType.GOVERNANCE, extra={"proposal": proposal.id.hex()},
                             proposal=proposal_bytes, signatures=signatures)
    report(outcome, as_json)


@governance.command("show")
@click.argument("source", metavar="FILE|ID")
@click.option("--node", metavar="URL", envvar="TAMGA_NODE", show_envvar=True,
              help="Read the governance document ID from this node instead of a file.")
@key_option(required=False)
@genesis_option(help="Genesis file: says who the regulators are, to check the quorum.")
@json_option
def show(source: str, node: str | None, key: Path | None, genesis: Path | None, as_json: bool) -> None:
    """Print a proposal with its signatures and whether a Byzantine quorum signed it."""
    view: dict[str, Any]
    if node is not None:
        record = make_client(node, key, genesis).document(_document_id(source))
        document = (record.get("document") or {}).get("document") or {}
        if document.get("type") != ledger.DocType.GOVERNANCE.value:
            raise click.ClickException(f"document {source} is not a governance document")
        proposal_bytes = bytes.fromhex(document["proposal"])
        signatures = [[r, bytes.fromhex(s)] for r, s in document["signatures"]]
        view = file_json(proposal_bytes, signatures)
        view["status"] = record.get("status")
        view["reason"] = record.get("reason")
        view["height"] = record.get("height")
    else:
        proposal_bytes, signatures = read_file(Path(source))
        view = file_json(proposal_bytes, signatures)
    if genesis is not None:
        view["quorum"] = verdict_json(load_genesis(genesis), proposal_bytes, signatures)
    if as_json:
        print_json(view)
        return
    click.echo("\n".join(kv_lines(_lines(view))))


def _lines(view: dict[str, Any]) -> list[tuple[str, Any]]:
    p = view["proposal"]
    lines: list[tuple[str, Any]] = [("id", view["id"]), ("action", p["action"]), ("state", p["state"]),
                                    ("chain", p["chain_id"]), ("expires at ms", p["expires_at_ms"]),
                                    ("membership epoch", p.get("epoch", 0))]
    for name, value in (p.get("node") or {}).items():
        lines.append((name.replace("_", " "), value))
    for name, value in (p.get("params") or {}).items():
        lines.append((name, value))
    group = p.get("product_group")
    if group is not None:
        lines.append(("product group", f"{group['name']}: {group.get('title', '')}"))
        for name in ("layouts", "required", "withdrawal_reasons", "reasons_needing_document", "documents"):
            if name in group:
                lines.append((f"  {name.replace('_', ' ')}", group[name]))
    if p.get("retire_product_group"):
        lines.append(("retire product group", p["retire_product_group"]))
    lines.append(("signed by", [s["regulator"] for s in view["signatures"]]))
    quorum = view.get("quorum")
    if quorum is None:
        lines.append(("quorum", "unknown: give --genesis to check"))
    else:
        states = ", ".join(quorum["signed_by"]) or "none"
        met = "met" if quorum["quorum_met"] else "NOT met"
        problem = f"; {quorum['problem']}" if quorum["problem"] else ""
        count = f"{len(quorum['signed_by'])} of {quorum['of']}, {quorum['needed']} needed"
        lines.append(("quorum", f"{met}: {states} ({count}){problem}"))
    if "status" in view:
        lines.append(("on chain", f"{view['status']} at height {view['height']}"
                                  + (f" ({view['reason']})" if view.get("reason") else "")))
    return lines


def _document_id(value: str) -> str:
    try:
        if len(bytes.fromhex(value)) == 32:
            return value.lower()
    except ValueError:
        pass
    raise click.BadParameter(f"{value!r} is not a document id (64 hex digits)", param_hint="ID")
