"""`tamga participant`: register, revoke and look up participants."""

from __future__ import annotations

from pathlib import Path

import click

import ledger

from ._options import (
    genesis_option,
    json_option,
    key_option,
    kv_lines,
    make_client,
    make_session,
    node_option,
    print_json,
    report,
    wait_mode,
    wait_options,
)


@click.group()
def participant() -> None:
    """Participants: businesses and auditors registered by their state's regulator."""


def read_public_key(value: str) -> bytes:
    """A public key given as 64 hex digits, PEM text, or a file holding either."""
    path = Path(value)
    if len(value) < 256 and path.is_file():
        return ledger.parse_public_key(path.read_bytes())
    return ledger.parse_public_key(value)


@participant.command("register")
@click.argument("public_key")
@click.option("--role", "roles", multiple=True, required=True, type=click.Choice(ledger.ROLES),
              help="A role of the participant; repeat for several.")
@click.option("--name", required=True, help="The participant's name, for people.")
@click.option("--state", metavar="XX", help="Member state (default: the regulator's own).")
@click.option("--tax-id", metavar="DIGITS",
              help="The participant's tax id: RU INN (10 or 12 digits), KZ BIN (12), BY UNP (9), AM TIN (8), "
                   "KG INN (14). A business needs one on a chain with the product catalogue; a regulator or "
                   "an auditor may go without.")
@node_option
@key_option(required=True)
@genesis_option()
@wait_options
@json_option
def register(public_key: str, roles: tuple[str, ...], name: str, state: str | None, tax_id: str | None,
             node: str, key: Path, genesis: Path | None, wait: bool, final: bool, timeout: float,
             as_json: bool) -> None:
    """Register a participant (regulator only); print its participant id.

    PUBLIC_KEY is 64 hex digits, PEM, or a file such as the FILE.pub `tamga keys new` wrote.
    """
    raw = read_public_key(public_key)
    if tax_id is not None:
        tax_id = tax_id.strip()
        if not tax_id.isascii() or not tax_id.isdigit():
            raise click.BadParameter(f"{tax_id!r} is not a tax id (digits only)", param_hint="--tax-id")
    session = make_session(node, key, genesis, wait_mode(wait, final), timeout)
    outcome = session.register(raw, roles, name, state.upper() if state else None, tax_id)
    report(outcome, as_json, [outcome.extra["participant"]])


@participant.command("revoke")
@click.argument("participant_id", metavar="ID")
@node_option
@key_option(required=True)
@genesis_option()
@wait_options
@json_option
def revoke(participant_id: str, node: str, key: Path, genesis: Path | None, wait: bool, final: bool,
           timeout: float, as_json: bool) -> None:
    """Revoke a participant's registration (the regulator of its state)."""
    _check_id(participant_id)
    outcome = make_session(node, key, genesis, wait_mode(wait, final), timeout).revoke(participant_id)
    report(outcome, as_json, [participant_id])


@participant.command("grant-audit")
@click.argument("participant_id", metavar="ID")
@node_option
@key_option(required=True)
@genesis_option()
@wait_options
@json_option
def grant_audit(participant_id: str, node: str, key: Path, genesis: Path | None, wait: bool, final: bool,
                timeout: float, as_json: bool) -> None:
    """Let a registered auditor read what you read of your state (regulator only); see
    docs/ACCESS.md."""
    _check_id(participant_id)
    outcome = make_session(node, key, genesis, wait_mode(wait, final), timeout).grant_audit(participant_id)
    report(outcome, as_json, [participant_id])


@participant.command("revoke-audit")
@click.argument("participant_id", metavar="ID")
@node_option
@key_option(required=True)
@genesis_option()
@wait_options
@json_option
def revoke_audit(participant_id: str, node: str, key: Path, genesis: Path | None, wait: bool, final: bool,
                 timeout: float, as_json: bool) -> None:
    """Take back an auditor's grant for your state (regulator only)."""
    _check_id(participant_id)
    outcome = make_session(node, key, genesis, wait_mode(wait, final), timeout).revoke_audit(participant_id)
    report(outcome, as_json, [participant_id])


@participant.command("show")
@click.argument("participant_id", metavar="ID")
@node_option
@key_option(required=False)
@json_option
def show(participant_id: str, node: str, genesis: Path | None, key: Path | None, as_json: bool) -> None:
    """A participant's state, roles, name and status."""
    _check_id(participant_id)
    record = make_client(node, key, genesis).participant(participant_id)
    if as_json:
        print_json(record)
        return
    order = ("id", "name", "state", "tax_id", "roles", "status", "registered_height", "public_key")
    click.echo("\n".join(kv_lines([(k.replace("_", " "), record.get(k)) for k in order if k in record])))


@participant.command("holdings")
@click.argument("participant_id", metavar="ID")
@click.option("--limit", type=click.IntRange(1), default=None, help="At most this many codes.")
@node_option
@key_option(required=False)
@json_option
def holdings(participant_id: str, limit: int | None, node: str, genesis: Path | None, key: Path | None,
             as_json: bool) -> None:
    """Codes and aggregates a participant holds (loose codes and outermost aggregates)."""
    _check_id(participant_id)
    codes = make_client(node, key, genesis).holdings(participant_id, limit)
    if as_json:
        print_json({"participant": participant_id, "codes": codes})
        return
    for code in codes:
        click.echo(code)
    click.echo(f"{len(codes)} code(s)", err=True)


def _check_id(value: str) -> None:
    if not ledger.is_participant_id(value):
        raise click.BadParameter(
            f"{value!r} is not a participant id (40 hex digits, as `tamga keys new` prints)",
            param_hint="ID",
        )
