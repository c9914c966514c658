"""`tamga product`: the product catalogue (register a GTIN, show one, list them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
from .documents import check_gtin


@click.group()
def product() -> None:
    """The product catalogue: each GTIN with its product group, name and tariff code."""


@product.command("register")
@click.option("--gtin", required=True, help="The product's GTIN (8 to 14 digits, check digit included).")
@click.option("--group", "group", required=True, help="Its product group as genesis names it (dairy, ...).")
@click.option("--name", required=True, help="The product's name, for people.")
@click.option("--tnved", required=True, help="Its customs tariff (TN VED) code: 4, 6, 8 or 10 digits.")
@click.option("--producer", required=True, metavar="ID", help="The producer or importer (participant id).")
@node_option
@key_option(required=True)
@genesis_option()
@wait_options
@json_option
def register(gtin: str, group: str, name: str, tnved: str, producer: str, node: str, key: Path,
             genesis: Path | None, wait: bool, final: bool, timeout: float, as_json: bool) -> None:
    """Register a product (the regulator of the producer's state); print its GTIN.

    The regulator signs: the group decides which rules the goods follow and the tariff
    code their duties, which is what a regulator vouches for (docs/CATALOGUE.md).
    """
    if not ledger.is_participant_id(producer):
        raise click.BadParameter(f"{producer!r} is not a participant id", param_hint="--producer")
    gtin14 = check_gtin(gtin)
    session = make_session(node, key, genesis, wait_mode(wait, final), timeout)
    outcome = session.submit(
        ledger.DocType.REGISTER_PRODUCT, {"gtin": gtin14},
        gtin=gtin14, group=group, name=name, tnved=tnved, producer=producer,
    )
    report(outcome, as_json, [gtin14])


@product.command("show")
@click.argument("gtin")
@node_option
@key_option(required=False)
@json_option
def show(gtin: str, node: str, genesis: Path | None, key: Path | None, as_json: bool) -> None:
    """A registered product and the rules of its group (layouts, required attributes)."""
    record = make_client(node, key, genesis).product(check_gtin(gtin))
    if as_json:
        print_json(record)
        return
    order = ("gtin", "name", "group", "tnved", "producer", "state", "registered_height", "required")
    lines = [(k.replace("_", " "), record.get(k)) for k in order if k in record]
    lines += [("layout", _layout_text(layout)) for layout in record.get("layouts", [])]
    click.echo("\n".join(kv_lines(lines)))


def _layout_text(layout: dict[str, Any]) -> str:
    ais = ", ".join(layout.get("ais", [])) or "no AIs after the serial"
    return f"{layout.get('form')}: serial of {layout.get('serial_chars')}, {ais}"


@product.command("list")
@click.option("--group", default=None, help="Only products of this group.")
@click.option("--after", default=None, metavar="GTIN", help="Start after this GTIN (a previous `next`).")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True,
              help="At most this many products.")
@node_option
@key_option(required=False)
@json_option
def list_products(group: str | None, after: str | None, limit: int, node: str, genesis: Path | None,
                  key: Path | None, as_json: bool) -> None:
    """Registered products in GTIN order; prints the cursor of the next page on stderr."""
    page = make_client(node, key, genesis).products_page(group, after, limit)
    if as_json:
        print_json(page)
        return
    for item in page.get("products", []):
        click.echo(f"{item['gtin']}  {item['group']:<14} {item['tnved']:<10} {item['state']}  {item['name']}")
    if page.get("next"):
        click.echo(f"more after {page['next']} (--after {page['next']})", err=True)


@product.command("groups")
@node_option
@key_option(required=False)
@json_option
def groups(node: str, genesis: Path | None, key: Path | None, as_json: bool) -> None:
    """The product-group table in force: genesis's, as governance documents last set it."""
    table = make_client(node, key, genesis).product_groups()
    if as_json:
        print_json(table)
        return
    for group in table.get("groups", []):
        layouts = "; ".join(_layout_text(layout) for layout in group.get("layouts", []))
        click.echo(f"{group['name']:<16} {group.get('status', 'active'):<8} {group.get('title', '')}")
        lines = [
            ("layouts", layouts),
            ("required", ", ".join(group.get("required", [])) or "-"),
            ("withdrawal reasons", ", ".join(group.get("withdrawal_reasons", [])) or "-"),
            ("needing a document", ", ".join(group.get("reasons_needing_document", [])) or "-"),
            ("documents", ", ".join(group.get("documents", [])) or "-"),
        ]
        click.echo("\n".join("  " + line for line in kv_lines(lines)))

