"""Screenshots of every console view, drawn by a real headless Chromium against a live testnet.

    python -m cli.console.screenshots [--out docs/console] [--dir DIR]

It starts a three-state testnet (Russia, Kazakhstan, Kyrgyzstan), files the
demonstration's documents (a pallet from a Russian factory to a Kazakh wholesaler, two
packs on to a Kyrgyz shop, one sold, a counterfeit copy refused, a code suspended, a
shipment left pending), starts `tamga console` with the Russian regulator's key, and
saves one PNG per view. The browser tests (tests/console/) use the same pieces.

Chromium is Debian's (`apt-get install chromium`, or `make console-deps`), driven by
Playwright over the DevTools protocol; Playwright's own browser downloads are never used.
TAMGA_CHROMIUM names another Chromium binary.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ledger
import testnet
from node.client import SyncNodeClient

from ..actions import Outcome, Session
from ..documents import make_sscc

STATES = ("RU", "KZ", "KG")
GTIN = "04680029460908"
PRICE = [["8005", "015000"]]  # 150 roubles in kopecks, as tobacco codes carry it
# Short Raft ticks elect a leader and commit in a fraction of a second on loopback.
FAST = {"raft": {"tick_ms": 20, "election_ticks": 10}, "log": {"level": "WARNING"}}
CHROMIUM_DEFAULT = "/usr/bin/chromium"
# What the browser is told: no sandbox (containers run as root), no GPU, and nothing
# that talks to the internet (updates, sync, QUIC probes): the console loads nothing
# from outside, and a test must not wait on a network it does not have.
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync")
# The console prints its link once it listens; an interpreter start and imports take
# well under this on two busy cores.
CONSOLE_START_TIMEOUT_S = 30.0
CONSOLE_STOP_TIMEOUT_S = 10.0
VIEWS = ("network", "flows", "code", "participants", "recalls", "anomalies")
REPO_ROOT = Path(__file__).resolve().parents[2]


def chromium_path() -> str | None:
    """Debian's Chromium (or TAMGA_CHROMIUM), if it is installed."""
    named = os.environ.get("TAMGA_CHROMIUM")
    for candidate in ([named] if named else [CHROMIUM_DEFAULT, shutil.which("chromium")]):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


# -- the demonstration's documents ------------------------------------------------------


@dataclass
class World:
    """A running testnet with the demonstration's documents filed."""

    net: testnet.Testnet
    keys: dict[str, Path]  # who -> key file: factory, wholesaler, shop, stranger, RU, KZ, KG
    ids: dict[str, str]
    codes: list[str]
    pallet: str
    sold: str
    suspended: str
    first_shipment: str
    pending_shipment: str
    stranger_codes: list[str]
    extra: dict[str, Any] = field(default_factory=dict)

    def url(self, state: str) -> str:
        return self.net.node(state).api_url

    def client(self, state: str, who: str | None) -> SyncNodeClient:
        key = ledger.KeyPair.load(self.keys[who]) if who else None
        return SyncNodeClient(self.url(state), key, genesis=self.net.genesis)


def _applied(outcome: Outcome) -> Outcome:
    if not outcome.applied:
        raise RuntimeError(f"the demonstration expected the document to apply: {outcome.words()}")
    return outcome


def file_demo(net: testnet.Testnet, work: Path) -> World:
    """File the demonstration's documents on `net` (states RU, KZ, KG)."""
    keys: dict[str, Path] = {s: net.node(s).regulator_key for s in STATES}
    sessions: dict[str, Session] = {}

    def session(who: str, state: str) -> Session:
        key = ledger.KeyPair.load(keys[who])
        sessions[who] = Session(SyncNodeClient(net.node(state).api_url, key, genesis=net.genesis), key)
        return sessions[who]

    for s in STATES:
        session(s, s)
    cast = (("factory", "RU", "producer", "Tula Tobacco Factory"),
            ("wholesaler", "KZ", "wholesaler", "Almaty Distribution"),
            ("shop", "KG", "retailer", "Bishkek Corner Shop"),
            ("stranger", "KZ", "importer", "Astana Imports"))
    for who, state, role, name in cast:
        key = ledger.KeyPair.generate()
        keys[who] = work / f"{who}.key"
        keys[who].unlink(missing_ok=True)
        key.save(keys[who])
        # Invented tax ids of each state's shape: businesses register with one (ledger/_tax_ids.py).
        tax_id = testnet.demo_tax_id(state, len(sessions))
        _applied(sessions[state].register(key.public_key, [role], name, state, tax_id))
        session(who, state)
    ids = {who: s.participant_id for who, s in sessions.items()}
    ru, kz, factory, wholesaler, shop = (sessions[w] for w in ("RU", "KZ", "factory", "wholesaler", "shop"))

    # The catalogue entry emit needs; tobacco carries its maximum retail price (AI 8005).
    _applied(ru.submit(ledger.DocType.REGISTER_PRODUCT, gtin=GTIN, group="tobacco",
                       name="Tula filter cigarettes, 20 pcs", tnved="2402209000", producer=ids["factory"]))
    codes: list[str] = _applied(ru.emit(GTIN, 6, ids["factory"])).extra["codes"]
    _applied(factory.introduce(codes, PRICE))
    pallet = make_sscc("4600000")
    _applied(factory.aggregate(pallet, codes))
    first = _applied(factory.ship(ids["wholesaler"], [pallet]))
    _applied(wholesaler.accept(first.id))
    _applied(wholesaler.disaggregate(pallet))
    second = _applied(wholesaler.ship(ids["shop"], codes[:2]))
    _applied(shop.accept(second.id))
    sold = codes[0]
    _applied(shop.retire("retail_sale", [sold]))
    if not shop.ship(ids["wholesaler"], [sold]).rejected:  # a counterfeit copy of a sold code
        raise RuntimeError("the counterfeit shipment was not refused")
    pending = _applied(wholesaler.ship(ids["shop"], [codes[2]]))  # left unaccepted
    _applied(kz.suspend([codes[5]], "laboratory test of the batch"))
    stranger_codes: list[str] = _applied(kz.emit(GTIN, 2, ids["stranger"])).extra["codes"]
    last = _applied(sessions["stranger"].introduce(stranger_codes, PRICE))
    for s in STATES:  # every node has applied everything before anyone looks
        SyncNodeClient(net.node(s).api_url, None, genesis=net.genesis).wait_height(last.result.height or 0)
    return World(net, keys, ids, codes, pallet, sold, codes[5], first.id, pending.id, stranger_codes)


@contextlib.contextmanager
def demo_network(directory: Path) -> Iterator[World]:
    """A fresh three-state testnet with the demonstration filed; stopped on leaving."""
    net = testnet.init_testnet(directory, STATES, config=FAST)
    try:
        testnet.up(directory)
        work = directory / "keys"
        work.mkdir(exist_ok=True)
        yield file_demo(net, work)
    finally:
        testnet.down(directory)


# -- the console as a process -----------------------------------------------------------


class ConsoleProcess:
    """`tamga console` in a child process, as a user starts it; `url` is its printed link.

    `start=False` only spawns it, so that several start side by side; `wait()` then
    reads the link.
    """

    def __init__(self, world: World, who: str | None, state: str = "RU", start: bool = True) -> None:
        args = [sys.executable, "-m", "cli.main", "console", "--node", world.url(state),
                "--genesis", str(world.net.genesis_path)]
        if who is not None:
            args += ["--key", str(world.keys[who])]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TAMGA_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                     cwd=REPO_ROOT)
        self.url = ""
        if start:
            self.wait()

    def wait(self) -> ConsoleProcess:
        if not self.url:
            self.url = self._read_url()
        return self

    def _read_url(self) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + CONSOLE_START_TIMEOUT_S
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline().decode().strip()
                if line.startswith("http://127.0.0.1:"):
                    return line
                if not line and self.proc.poll() is not None:
                    break
        self.stop()
        raise RuntimeError(f"tamga console printed no link within {CONSOLE_START_TIMEOUT_S:g} s")

    @property
    def base(self) -> str:
        return self.url.split("/?", 1)[0]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(CONSOLE_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def launch_chromium(playwright: Any, user_data: Path, executable: str) -> Any:
    """A headless Chromium with a fresh profile in `user_data` (a persistent context)."""
    return playwright.chromium.launch_persistent_context(
        str(user_data), executable_path=executable, headless=True, args=list(CHROMIUM_ARGS),
        viewport={"width": 1280, "height": 900}, accept_downloads=True,
    )


def open_view(page: Any, base: str, view: str, arg: str = "") -> None:
    """Go to a view and wait until its content is drawn."""
    page.goto(f"{base}/#{view}" + (f"/{arg}" if arg else ""))
    page.wait_for_selector(f'#view-{view} .content[data-loaded="true"]', timeout=20_000)


def view_arg(world: World, view: str) -> str:
    import urllib.parse

    return urllib.parse.quote(world.sold, safe="") if view == "code" else ""


def take_screenshots(world: World, out: Path, executable: str, work: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    console = ConsoleProcess(world, "RU")
    saved: list[Path] = []
    try:
        with sync_playwright() as p:
            context = launch_chromium(p, work / "profile", executable)
            try:
                page = context.new_page()
                page.goto(console.url)
                for view in VIEWS:
                    open_view(page, console.base, view, view_arg(world, view))
                    if view == "flows":
                        page.click('button[data-pair="RU-KZ"]')
                        page.wait_for_selector('[data-table="flows-shipments"]')
                    if view == "participants":
                        # The RU regulator reads the holdings of participants of its own
                        # state (need to know, docs/ACCESS.md): the Russian factory's.
                        factory = world.ids["factory"]
                        page.click(f'button[data-holdings="{factory}"]')
                        page.wait_for_selector(f'[data-table="holdings-{factory}"]')
                    path = out / f"{view}.png"
                    page.screenshot(path=str(path), full_page=True)
                    saved.append(path)
            finally:
                context.close()
    finally:
        console.stop()
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.console.screenshots",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO_ROOT / "docs" / "console"), help="where the PNGs go")
    args = parser.parse_args(argv)
    executable = chromium_path()
    if executable is None:
        print("Chromium not found: install Debian's chromium (apt-get install chromium, or "
              "`make console-deps`) or set TAMGA_CHROMIUM", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="tamga-console-shots-") as tmp, \
            demo_network(Path(tmp) / "testnet") as world:
        for path in take_screenshots(world, Path(args.out), executable, Path(tmp)):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
