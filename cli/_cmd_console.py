"""`tamga console`: the console in the browser, served on this machine only."""

from __future__ import annotations

from pathlib import Path

import click

from ._options import genesis_option, key_option, load_genesis, load_key


@click.command()
@click.option("--node", metavar="URL", envvar="TAMGA_NODE", required=True, show_envvar=True,
              help="Client API of a node, e.g. https://127.0.0.1:8001; signed reads go to it.")
@key_option(required=False)
@genesis_option(help="Genesis file: pins every node's certificate and names the member states' nodes "
                     "for the Network view.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port on 127.0.0.1 (0: any free port).")
@click.option("--open", "open_browser", is_flag=True, help="Open the console in the default browser.")
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A `tamga export parquet` directory: the Anomalies view shows its SQL reports.")
def console(node: str, key: Path | None, genesis: Path | None, port: int, open_browser: bool,
            data: Path | None) -> None:
    """Serve the console (network, flows, codes, participants, suspensions, anomalies).

    It listens on 127.0.0.1 only and prints a link with a token for this start; open it
    in a browser on this machine. Reads are signed here with --key: the key never
    enters the browser, and the console never submits anything.
    """
    from .console import ConsoleSource, charts_installed, serve

    source = ConsoleSource(node, load_key(key) if key is not None else None,
                           load_genesis(genesis) if genesis is not None else None, data)
    if not charts_installed():
        click.echo("charts are off (the chart library is not installed: `make console-deps`); "
                   "views show tables", err=True)
    click.echo("Tamga console; stop it with Ctrl-C. Open:", err=True)
    try:
        serve(source, port, open_browser, lambda line: click.echo(line))
    except OSError as exc:
        raise click.ClickException(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}") from None
