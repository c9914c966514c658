"""`tamga`: the command line of regulators, businesses and auditors.

A thin click layer: each command parses its options, calls the library (`actions`,
`node.client`, `audit`, `epcis`) and prints. Errors from the library become one line on
stderr with exit 1; misuse exits 2; a traceback only with `tamga --debug`.
"""

from __future__ import annotations

import os
from typing import Any

import click

import ledger
from node.client import ClientError, NodeError

from ._options import explain_node_error
from .documents import InputError, TooManyCodes
from .epcis import EpcisError


class TamgaGroup(click.Group):
    """The root group: turns every known failure into one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if _debug(ctx):
                raise
            raise _as_click_error(exc) from None


def _debug(ctx: click.Context) -> bool:
    return bool((ctx.obj or {}).get("debug")) or os.environ.get("TAMGA_DEBUG") == "1"


def _as_click_error(exc: Exception) -> click.ClickException:
    if isinstance(exc, TooManyCodes):
        return click.UsageError(str(exc))
    if isinstance(exc, NodeError):
        return click.ClickException(explain_node_error(exc))
    if isinstance(exc, ClientError | InputError | EpcisError | ledger.LedgerError):
        return click.ClickException(_one_line(str(exc)))
    if isinstance(exc, OSError):
        where = f" {exc.filename}" if exc.filename else ""
        return click.ClickException(f"cannot use{where}: {exc.strerror or exc}")
    return click.ClickException(
        f"internal error: {type(exc).__name__}: {_one_line(str(exc))} "
        "(run `tamga --debug ...` for a traceback)"
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())


@click.group(
    cls=TamgaGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.option("--debug", is_flag=True, envvar="TAMGA_DEBUG", help="Show a traceback when a command fails.")
@click.version_option(package_name="tamga", prog_name="tamga")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Tamga: a permissioned ledger for marked goods in the Eurasian Economic Union.

    \b
    Regulators:  participant register|revoke, product register, code emit|suspend|release, flows,
                 governance propose|sign|submit|show, trade, recall file|release|list|show,
                 import confirm|show
    Businesses:  code introduce|aggregate|disaggregate|ship|accept|reject|retire|return,
                 code apply|write-off|remark|reaggregate
                 inbox, events follow|forward, recall file (producers), import declare
    Everyone:    code parse|check|show|history, doc show, participant show|holdings,
                 product show|list
    Auditors:    audit verify|follow|prove|check, export epcis, evidence list|show
    Analysts:    export parquet, sql, console
    Operators:   testnet init|up|down|status|kill|stop|start, node run, bench

    Most commands read TAMGA_NODE (a node's URL) and TAMGA_KEY (your key file).
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _register_commands() -> None:
    from . import (
        _cmd_audit,
        _cmd_code,
        _cmd_console,
        _cmd_evidence,
        _cmd_export,
        _cmd_governance,
        _cmd_inbox,
        _cmd_misc,
        _cmd_ops,
        _cmd_participant,
        _cmd_product,
        _cmd_recall,
    )

    _cmd_misc.export.add_command(_cmd_export.parquet)
    from . import _cmd_lifecycle  # noqa: F401  (issue 13: adds its commands to `code`)

    for command in (
        _cmd_misc.keys,
        _cmd_participant.participant,
        _cmd_governance.governance,
        _cmd_code.code,
        _cmd_misc.doc,
        _cmd_misc.flows,
        _cmd_audit.audit,
        _cmd_misc.export,
        _cmd_ops.testnet,
        _cmd_ops.node,
        _cmd_ops.bench,
        _cmd_export.sql,
        _cmd_inbox.inbox,
        _cmd_inbox.events,
        _cmd_product.product,
        _cmd_console.console,
        _cmd_evidence.evidence,
        _cmd_recall.recall,
        _cmd_recall.customs_import,
        _cmd_recall.trade,
    ):
        cli.add_command(command)


_register_commands()


def main() -> None:
    """The console script: `tamga ...`."""
    cli.main(prog_name="tamga", windows_expand_args=False)


if __name__ == "__main__":  # pragma: no cover
    main()
