"""The console's parts without a network: the chain index, the guard, the read proxy's
path rule, the static pages (nothing loaded from elsewhere) and the screenshots."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiohttp.test_utils import make_mocked_request
from click.testing import CliRunner

import ledger
from cli.console import ChainIndex, ConsoleConfig, ConsoleSource, guard_refusal, static_dir
from cli.console import _app as console_app
from cli.console._data import _holder_after, _node_row
from cli.console._index import RECENT_MAX
from cli.console.screenshots import VIEWS
from cli.main import cli
from node.client import ClientError
from testnet import DocFactory

REPO = Path(__file__).resolve().parents[2]
DAY_MS = 86_400_000


def block(height: int, docs: list[tuple[ledger.SignedDocument, ledger.Result]], time_ms: int) -> ledger.Block:
    header = ledger.BlockHeader("c", height, bytes(32), bytes(32), bytes(32), bytes(32), time_ms, "RU", 1, height,
                                len(docs))
    return ledger.Block(header, [d.wire() for d, _ in docs], [r for _, r in docs])


APPLIED = ledger.Result(ledger.Reason.APPLIED)


def test_the_chain_index_lists_participants_suspensions_and_refusals() -> None:
    """Registrations, suspensions (less releases) and refusals by reason and signer are folded in."""
    f = DocFactory("c")
    regulator, shop = ledger.KeyPair.generate(), ledger.KeyPair.generate()
    code_a, code_b = "01046800294609082100000001", "01046800294609082100000002"
    refused = ledger.Result(ledger.Reason.WRONG_STATUS, "retired")
    index = ChainIndex()
    index.add_block(block(1, [(f.register(regulator, shop, "KG", ["retailer"], "Shop"), APPLIED)], DAY_MS + 5))
    index.add_block(block(2, [
        (f.doc(regulator, ledger.DocType.SUSPEND, codes=[code_a, code_b], note="lab"), APPLIED),
        (f.doc(regulator, ledger.DocType.RELEASE, codes=[code_b]), APPLIED),
        (f.ship(shop, regulator, [code_a]), refused),
    ], 2 * DAY_MS + 1))
    out = index.to_json()
    assert [p["name"] for p in out["participants"]] == ["Shop"]
    assert out["participants"][0]["id"] == shop.participant_id
    assert [s["code"] for s in out["suspended"]] == [code_a]
    assert out["suspended"][0]["note"] == "lab"
    assert out["rejections_by_reason"] == [{"key": "wrong_status", "count": 1}]
    assert out["rejections_by_signer"] == [{"key": shop.participant_id, "count": 1}]
    assert out["recent_rejections"][0]["message"] == "retired"
    assert [d["blocks"] for d in out["blocks_by_day"]] == [1, 1]
    assert out["height"] == 2 and out["documents"] == 4


def test_the_chain_index_takes_blocks_in_order_and_keeps_bounded_lists() -> None:
    """A gap in heights is refused; recent refusals keep only the newest RECENT_MAX."""
    f = DocFactory("c")
    key = ledger.KeyPair.generate()
    index = ChainIndex()
    with pytest.raises(ValueError):
        index.add_block(block(2, [], 0))
    refused = ledger.Result(ledger.Reason.NOT_OWNER, "")
    index.add_block(block(1, [(f.introduce(key, ["01046800294609082100000001"]), refused)
                              for _ in range(RECENT_MAX + 5)], 0))
    out = index.to_json()
    assert len(out["recent_rejections"]) == RECENT_MAX
    assert out["rejections_by_reason"] == [{"key": "not_owner", "count": RECENT_MAX + 5}]


CONFIG = ConsoleConfig(8123, "secret-token")
OWN = {"Host": "127.0.0.1:8123", "Cookie": "tamga_console_8123=secret-token"}


@pytest.mark.parametrize(("method", "headers", "status"), [
    ("GET", OWN, None),
    ("GET", {**OWN, "Host": "localhost:8123"}, None),
    ("GET", {**OWN, "Origin": "http://127.0.0.1:8123"}, None),
    ("GET", {"Host": "127.0.0.1:8123"}, 403),  # no token
    ("GET", {**OWN, "Cookie": "tamga_console_8123=guess"}, 403),
    ("GET", {**OWN, "Cookie": "tamga_console_9999=secret-token"}, 403),  # another console's cookie
    ("GET", {**OWN, "Host": "attacker.example:8123"}, 403),  # DNS rebinding
    ("GET", {**OWN, "Host": "127.0.0.1:8124"}, 403),
    ("GET", {**OWN, "Origin": "http://attacker.example"}, 403),  # CSRF
    ("GET", {**OWN, "Origin": "null"}, 403),
    ("GET", {**OWN, "Sec-Fetch-Site": "cross-site"}, 403),
    ("POST", OWN, 405),
    ("PUT", OWN, 405),
    ("DELETE", OWN, 405),
])
def test_the_guard_lets_through_only_this_consoles_own_page(method: str, headers: dict[str, str],
                                                            status: int | None) -> None:
    """Only GET from the console's own address with this start's token reaches a handler."""
    request = make_mocked_request(method, "/api/session", headers=headers)
    refusal = guard_refusal(request, CONFIG)
    assert (refusal.status if refusal is not None else None) == status


@pytest.mark.parametrize("path", ["/v1/../metrics", "/v1/./status", "/metrics", "/peer/raft", "/v1/st atus",
                                  "/v1/codes/\u00e9"])
async def test_the_read_proxy_passes_on_only_v1_paths(path: str) -> None:
    """Paths outside /v1, with dot segments or outside printable ASCII are refused before any read."""
    source = ConsoleSource("http://127.0.0.1:1", None, None)
    with pytest.raises(ClientError):
        await source.proxy(path)


def test_the_pages_load_nothing_from_elsewhere() -> None:
    """No page, script or style names another site: everything is served by the console itself."""
    for name in ("index.html", "app.js", "style.css"):
        text = (static_dir() / name).read_text(encoding="utf-8")
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), name
        assert "<script>" not in text and "onclick" not in text.lower(), name  # CSP: no inline script


def test_docs_console_holds_a_screenshot_of_each_view() -> None:
    """The README's screenshots exist, one per view (`python -m cli.console.screenshots` makes them)."""
    folder = REPO / "docs" / "console"
    assert sorted(p.stem for p in folder.glob("*.png")) == sorted(VIEWS)
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "python -m cli.console.screenshots" in readme
    for view in VIEWS:
        assert f"docs/console/{view}.png" in readme


def test_a_node_row_shows_finality_and_evidence_once_a_node_reports_them() -> None:
    """Fields a node does not report yet are None (a dash on the page); once reported they pass through."""
    today = {"state": "RU", "height": 7, "role": "leader", "term": 2, "peers": {"KZ": {"height": 6}}}
    row = _node_row("RU", "https://x", today, None)
    assert row["final_height"] is None and row["evidence"] is None and row["height"] == 7
    assert row["peers"]["KZ"] == {"height": 6, "seen_ms_ago": None, "connected": None}
    later = {**today, "final_height": 6, "evidence": [{"state": "KZ", "kind": "double_attestation"}]}
    row = _node_row("RU", "https://x", later, None)
    assert row["final_height"] == 6 and row["evidence"] == later["evidence"]
    assert _node_row("KG", "https://y", None, "cannot reach")["reachable"] is False


def test_the_timeline_follows_who_holds_a_code() -> None:
    """Emit gives a code to its owner, accept takes it over, other documents leave the holder."""
    holder = _holder_after({"type": "emit", "owner": "a"}, None)
    holder = _holder_after({"type": "ship", "signer": "a", "receiver": "b"}, holder)
    assert holder == "a"
    assert _holder_after({"type": "accept", "signer": "b"}, holder) == "b"


def test_console_refuses_a_node_it_cannot_pin_before_listening() -> None:
    """An https node without the genesis that pins it is one line and exit 1, nothing served."""
    result = CliRunner().invoke(cli, ["console", "--node", "https://127.0.0.1:1"], env={"TAMGA_GENESIS": None})
    assert result.exit_code == 1
    assert "--genesis" in result.output and "Traceback" not in result.output
    assert "http://127.0.0.1:" not in result.output


@pytest.mark.parametrize("installed", [True, False])
async def test_the_page_loads_the_chart_library_only_when_it_is_installed(
    installed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the library the page names no script that would fail to load, and says tables only."""
    monkeypatch.setattr(console_app, "charts_installed", lambda: installed)
    response = await console_app.index(make_mocked_request("GET", "/", headers=OWN))
    page = response.text or ""
    assert ('src="/static/vendor/chart.umd.js"' in page) is installed
    assert f'data-charts="{"on" if installed else "off"}"' in page
