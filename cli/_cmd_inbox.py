"""`tamga inbox` and `tamga events follow|forward`: a business's work list and its feed.

Thin over node.client: `SyncNodeClient.inbox`, `node.client.follow` (the cursor file,
retries) and `node.client.deliver` (signed POSTs with capped backoff).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from node.client import Backoff, CursorFile, deliver, follow

from ._options import json_option, key_option, kv_lines, make_client, node_option, print_json

_KIND_WORDS = {
    "incoming_shipment": "incoming shipment",
    "shipment_accepted": "your shipment was accepted",
    "shipment_partially_accepted": "your shipment was partly accepted; the rest returned to you",
    "shipment_rejected": "your shipment was rejected; the goods returned to you",
    "shipment_cancelled": "a shipment to you was cancelled by its shipper",
    "codes_emitted": "codes were emitted to you",
    "codes_suspended": "a regulator suspended codes you hold",
    "codes_released": "a regulator released codes you hold",
    "registered": "you were registered",
    "revoked": "you were revoked",
}


def age_words(ms: int) -> str:
    """A duration as a person says it: 40 s, 12 min, 3 h, 2 d."""
    seconds = max(0, ms // 1000)
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def item_lines(item: dict[str, Any], now_ms: int) -> list[str]:
    """One inbox item in words; an incoming shipment says how to take it on."""
    when = item.get("time_ms")
    age = f"{age_words(now_ms - when)} ago" if isinstance(when, int) else "at an unknown time"
    head = f"{_KIND_WORDS.get(item['kind'], item['kind'])} ({age}, block {item['cursor']})"
    shipment = item.get("shipment")
    if not shipment:
        return [head, f"  document {item['document_id']}"]
    lines = [head, *("  " + line for line in kv_lines([
        ("shipment", shipment["id"]),
        ("from", f"{shipment['shipper']} ({shipment['from_state']})"),
        ("to", f"{shipment['receiver']} ({shipment['to_state']})"),
        ("items", shipment["items"]),
        ("status", shipment["status"]),
    ]))]
    if item["kind"] == "incoming_shipment" and shipment["status"] == "pending":
        lines.append(f"  take it with: tamga code accept {shipment['id']}   "
                     f"(or: tamga code reject {shipment['id']})")
    return lines


@click.command("inbox")
@click.option("--all", "everything", is_flag=True,
              help="Everything addressed to you, not only shipments awaiting your acceptance.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=None, help="At most this many items.")
@node_option
@key_option(required=True)
@json_option
def inbox(everything: bool, limit: int | None, node: str, key: Path, genesis: Path | None,
          as_json: bool) -> None:
    """What is addressed to you, oldest first: incoming shipments awaiting your
    acceptance (with --all also answers to your shipments, suspensions of codes you
    hold, your registration and revocation)."""
    client = make_client(node, key, genesis)
    items = client.inbox(pending=not everything, limit=limit)
    if as_json:
        print_json({"items": items})
        return
    if not items:
        click.echo("nothing awaits you" if not everything else "your inbox is empty", err=True)
        return
    now_ms = int(time.time() * 1000)
    for item in items:
        for line in item_lines(item, now_ms):
            click.echo(line)


def event_words(event: dict[str, Any]) -> str:
    """One event as a line: cursor, what, outcome, document id."""
    if event.get("event") == "final":
        return f"{event['cursor']:<10} block {event['height']} is final"
    outcome = event.get("status") or "-"
    if event.get("reason"):
        outcome += f" ({event['reason']})"
    what = event.get("type") or "undecodable"
    return f"{event['cursor']:<10} {what:<20} {outcome:<10} {event.get('document_id')}"


@click.group("events")
def events() -> None:
    """Your event feed: every document you may see, in chain order, resumable from a cursor."""


def _warn(message: str) -> None:
    click.echo(f"tamga events: {message}", err=True)


@events.command("follow")
@click.option("--after", metavar="CURSOR",
              help="Start after this cursor (HEIGHT.POSITION); default: the start.")
@click.option("--cursor-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Resume from the cursor in FILE, and write each handled event's cursor there.")
@node_option
@key_option(required=True)
@json_option
def events_follow(after: str | None, cursor_file: Path | None, node: str, key: Path, genesis: Path | None,
                  as_json: bool) -> None:
    """Print each event as the chain grows (until interrupted): one JSON line each with
    --json, else one line of words; a killed follower resumes from its cursor file, on
    this node or any other."""
    client = make_client(node, key, genesis)

    def show(event: dict[str, Any]) -> None:
        if as_json:
            click.echo(json.dumps(event, separators=(",", ":"), ensure_ascii=False))
        else:
            click.echo(event_words(event))

    follow(client, CursorFile(cursor_file), show, after=after, warn=_warn)


@events.command("forward")
@click.option("--to", "url", required=True, metavar="URL",
              help="Your system's endpoint: each event is POSTed there as JSON.")
@click.option("--secret-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Shared secret: the X-Tamga-Signature header is sha256=HMAC-SHA256(secret, body).")
@click.option("--after", metavar="CURSOR", help="Start after this cursor when the cursor file has none.")
@click.option("--cursor-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Resume from the cursor in FILE; written after each event your system took (2xx).")
@node_option
@key_option(required=True)
def events_forward(url: str, secret_file: Path | None, after: str | None, cursor_file: Path | None, node: str,
                   key: Path, genesis: Path | None) -> None:
    """Deliver each event to your own system, in order and at least once, retrying a
    failing endpoint with capped exponential backoff. Runs here, on your side: nodes
    make no calls to addresses a client chose."""
    if not url.startswith(("http://", "https://")):
        raise click.UsageError("--to must be an http:// or https:// URL")
    secret = secret_file.read_bytes().strip() if secret_file is not None else b""
    if secret_file is not None and not secret:
        raise click.UsageError(f"{secret_file} is empty")
    client = make_client(node, key, genesis)
    backoff = Backoff()

    def send(event: dict[str, Any]) -> None:
        deliver(url, secret, event, backoff, _warn)

    follow(client, CursorFile(cursor_file), send, after=after, warn=_warn)
