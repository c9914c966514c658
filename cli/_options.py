"""Options shared by many commands, as decorators, and the few helpers behind them.

`--node` (TAMGA_NODE), `--key` (TAMGA_KEY), `--genesis` (TAMGA_GENESIS), `--json`, the
wait options of commands that submit, and the three ways to give codes.

Every command that talks to a node takes `--genesis`: the genesis file pins each
node's API certificate, and the client refuses an https node whose certificate is not
the pinned one (a testnet's is DIR/genesis.json; `tamga testnet up` says so). Without
it only a plain-HTTP node on this machine can be reached.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

import click

import ledger
from node.client import NodeError, SyncNodeClient

from .actions import Outcome, Session
from .documents import ScannedLine, parse_codes, split_lines

F = TypeVar("F", bound=Callable[..., Any])

PASSPHRASE_ENV = "TAMGA_KEY_PASSPHRASE"


def node_option(f: F) -> F:
    """`--node URL`, and `--genesis FILE` unless the command declares its own."""
    if not _declares(f, "genesis"):
        f = genesis_option()(f)
    return click.option(
        "--node", metavar="URL", envvar="TAMGA_NODE", required=True, show_envvar=True,
        help="Client API of a node, e.g. https://127.0.0.1:8001.",
    )(f)


def _declares(f: Callable[..., Any], name: str) -> bool:
    return any(p.name == name for p in getattr(f, "__click_params__", []))


def key_option(required: bool) -> Callable[[F], F]:
    def decorate(f: F) -> F:
        return click.option(
            "--key", metavar="FILE", envvar="TAMGA_KEY", required=required, show_envvar=True,
            type=click.Path(dir_okay=False, path_type=Path),
            help="Your private key (PEM); a passphrase comes from TAMGA_KEY_PASSPHRASE."
            + ("" if required else " Signs reads of commercial data."),
        )(f)

    return decorate


def genesis_option(required: bool = False, help: str | None = None) -> Callable[[F], F]:
    def decorate(f: F) -> F:
        return click.option(
            "--genesis", metavar="FILE", envvar="TAMGA_GENESIS", required=required, show_envvar=True,
            type=click.Path(dir_okay=False, path_type=Path),
            help=help or "Genesis file: pins the node's certificate and gives the chain id.",
        )(f)

    return decorate


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON value instead of text.")(f)


def wait_options(f: F, final_default: bool = False) -> F:
    """--wait/--no-wait, --final/--no-final and --timeout. `final_default`: the command
    waits for finality unless told not to (documents a business acts on at once)."""
    f = click.option(
        "--timeout", metavar="SECONDS", type=click.FloatRange(0.1, 3600), default=60.0, show_default=True,
        help="How long to wait for commit (and finality).",
    )(f)
    f = click.option(
        "--final/--no-final", default=final_default, show_default=True,
        help="With --wait: wait also until the document's block is final (attested by a Byzantine quorum "
             "of member states, 4 of 5), so no hostile leader can ever replace it.",
    )(f)
    return click.option(
        "--wait/--no-wait", default=True, show_default=True,
        help="Wait until the document is committed and print its result, or print its id at once.",
    )(f)


def wait_mode(wait: bool, final: bool) -> str:
    """The client's wait mode from the --wait and --final flags."""
    return ("final" if final else "commit") if wait else "none"


def codes_input(required: bool = True) -> Callable[[F], F]:
    def decorate(f: F) -> F:
        f = click.option(
            "--file", "-f", "codes_file", metavar="FILE", type=click.File("rb"),
            help="Codes, one per line exactly as scanned (GS bytes kept); '-' reads standard input.",
        )(f)
        return click.argument("codes", nargs=-1, metavar="[CODES]..." if not required else "CODES...")(f)

    return decorate


# Helpers.


def load_key(path: Path) -> ledger.KeyPair:
    passphrase = os.environ.get(PASSPHRASE_ENV)
    return ledger.KeyPair.load(path, passphrase.encode() if passphrase else None)


def load_genesis(path: Path) -> ledger.Genesis:
    return ledger.Genesis.load(path)


def make_client(
    node: str, key: Path | None = None, genesis: Path | ledger.Genesis | None = None
) -> SyncNodeClient:
    """A client of `node` that checks its certificate against the genesis pin."""
    key_pair = load_key(key) if key is not None else None
    trusted = load_genesis(genesis) if isinstance(genesis, Path) else genesis
    return SyncNodeClient(node, key_pair, genesis=trusted)


def make_session(
    node: str, key: Path | None, genesis: Path | None = None, wait: bool | str = True, timeout: float = 60.0
) -> Session:
    client = make_client(node, key, genesis)
    return Session(client, client.key, wait=wait, timeout_s=timeout)


def gather_codes(codes: Sequence[str], codes_file: IO[bytes] | None, required: bool = True) -> list[str]:
    """Codes from arguments ('-' for standard input) and --file, as canonical keys."""
    lines: list[ScannedLine] = []
    for number, raw in enumerate(codes, start=1):
        if raw == "-":
            lines.extend(split_lines(stdin_bytes(), "standard input"))
        else:
            # Arguments reach Python as text; fsencode gives back the bytes as typed.
            lines.append(ScannedLine(f"argument {number}", os.fsencode(raw)))
    if codes_file is not None:
        name = "standard input" if codes_file.name in ("<stdin>", "-") else str(codes_file.name)
        lines.extend(split_lines(codes_file.read(), name))
    if required and not lines:
        raise click.UsageError("give codes as arguments, with --file FILE, or '-' for standard input")
    return parse_codes(lines)


def stdin_bytes() -> bytes:
    with click.open_file("-", "rb") as stream:
        data: bytes = stream.read()
    return data


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


class Rejected(click.ClickException):
    """A document the ledger refused: its reason on stderr, exit 1."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(self.message, err=True)


def report(outcome: Outcome, as_json: bool, payload: Sequence[str] = ()) -> None:
    """Print a submission's result: data on stdout, the verdict on stderr; rejected exits 1.

    Data (the document id, issued codes, a shipment or participant id) goes to stdout
    so that scripts can capture it; the one-line verdict goes to stderr.
    """
    if as_json:
        print_json(outcome.to_json())
    elif outcome.applied:
        for line in payload or [outcome.id]:
            click.echo(line)
        click.echo(outcome.words(), err=True)
    elif not outcome.rejected:
        click.echo(outcome.id)
        click.echo(f"{outcome.words()}; `tamga doc show {outcome.id}` tells its result", err=True)
    if outcome.rejected:
        raise Rejected(outcome.words())


def explain_node_error(exc: NodeError) -> str:
    if exc.status == 401 and exc.code == "unsigned":
        return "reading this needs a registered participant's key: give --key FILE or set TAMGA_KEY"
    if exc.status == 403 and exc.code == "not_entitled":
        return ("not entitled: this key may not read that (a business reads what it took part in and "
                "holds; flows and whole blocks are for regulators and auditors; docs/ACCESS.md); read "
                "with a key that is entitled, such as your state's regulator's")
    return str(exc)


def kv_lines(pairs: Sequence[tuple[str, Any]]) -> list[str]:
    width = max((len(k) for k, _ in pairs), default=0)
    return [f"{k + ':':<{width + 1}} {_text(v)}" for k, v in pairs]


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) if value else "-"
    return str(value)
