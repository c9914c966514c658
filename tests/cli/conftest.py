"""Fixtures for CLI tests: an in-process three-state network, registered actors, a runner."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import ledger
import testnet
from cli.main import cli
from testnet import DEMO_GROUP, DEMO_TNVED
from tests.shared_data import SHARED_DATA

from .netfixture import InProcessNetwork

GTIN = "04680029460908"
SCHEMA_PATH = SHARED_DATA / "epcis" / "EPCIS-JSON-Schema.json"


def run(args: Sequence[str], *, input: bytes | str | None = None, env: dict[str, str] | None = None) -> Result:
    """Invoke `tamga ARGS` in-process; TAMGA_* from the real environment never leak in."""
    clean = {k: None for k in ("TAMGA_NODE", "TAMGA_KEY", "TAMGA_GENESIS", "TAMGA_DEBUG", "TAMGA_KEY_PASSPHRASE")}
    clean.update(env or {})
    return CliRunner().invoke(cli, list(args), input=input, env=clean, catch_exceptions=True)


def ok(args: Sequence[str], **kw: Any) -> Result:
    result = run(args, **kw)
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result


def fails(args: Sequence[str], code: int = 1, *, progress_lines: int = 0, **kw: Any) -> Result:
    """Run a command that must fail with `code`, one line on stderr and no traceback.

    A long-running command may say what it is doing first (`progress_lines`); the error
    is still one line, the last.
    """
    result = run(args, **kw)
    assert result.exit_code == code, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    if code == 1:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 + progress_lines, result.stderr
    return result


def as_json(result: Result) -> Any:
    return json.loads(result.stdout)


@dataclass
class Actor:
    name: str
    state: str
    key: Path
    id: str
    node: str
    genesis: Path  # pins the nodes' API certificates

    def args(self, node: str | None = None) -> list[str]:
        return [*node_args(node or self.node, self.genesis), "--key", str(self.key)]


def node_args(url: str, genesis: Path | str) -> list[str]:
    """`--node URL --genesis FILE`: the CLI checks the node's certificate against genesis."""
    return ["--node", url, "--genesis", str(genesis)]


@dataclass
class World:
    net: InProcessNetwork
    regulators: dict[str, Actor]
    producer: Actor
    wholesaler: Actor
    retailer: Actor
    auditor: Actor

    @property
    def genesis(self) -> str:
        return str(self.net.genesis_path)

    def node_args(self, url: str) -> list[str]:
        return node_args(url, self.genesis)

    def fresh_codes(self, count: int = 3) -> list[str]:
        """Codes emitted to the producer and introduced by it."""
        ru = self.regulators["RU"]
        codes = ok(["code", "emit", "--gtin", GTIN, "--count", str(count), "--to", self.producer.id, *ru.args()])
        keys = codes.stdout.split()
        ok(["code", "introduce", *keys, *self.producer.args()])
        return keys


_TAX_IDS = itertools.count(1)


def tax_id_of(state: str) -> str:
    """A fresh invented tax id of `state`'s shape."""
    return testnet.demo_tax_id(state, next(_TAX_IDS))


def make_actor(tmp: Path, net: InProcessNetwork, name: str, state: str, role: str) -> Actor:
    key_path = tmp / f"{name}.pem"
    key = ledger.KeyPair.generate()
    key.save(key_path)
    regulator = net.regulator_key(state)
    # A business registers with a tax id of its state's shape (ledger/_tax_ids.py).
    tax_id = ["--tax-id", tax_id_of(state)] if role in ledger.TAXPAYING_ROLES else []
    ok(["participant", "register", key.public_key.hex(), "--role", role, "--name", name, *tax_id,
        *node_args(net.url(state), net.genesis_path), "--key", str(regulator)])
    return Actor(name, state, key_path, key.participant_id, net.url(state), net.genesis_path)


@pytest.fixture(scope="session")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessNetwork]:
    net = InProcessNetwork(tmp_path_factory.mktemp("net") / "testnet").start()
    try:
        yield net
    finally:
        net.stop()


@pytest.fixture(scope="session")
def world(network: InProcessNetwork, tmp_path_factory: pytest.TempPathFactory) -> World:
    tmp = tmp_path_factory.mktemp("keys")
    regulators = {}
    for state in network.net.nodes:
        key = ledger.KeyPair.load(network.regulator_key(state))
        regulators[state] = Actor(f"regulator-{state}", state, network.regulator_key(state), key.participant_id,
                                  network.url(state), network.genesis_path)
    auditor = make_actor(tmp, network, "auditor", "RU", "auditor")
    # Reads follow need to know (docs/ACCESS.md): every state lets the auditor audit it.
    for regulator in regulators.values():
        ok(["participant", "grant-audit", auditor.id, *regulator.args()])
    world = World(
        network,
        regulators,
        make_actor(tmp, network, "producer", "RU", "producer"),
        make_actor(tmp, network, "wholesaler", "KZ", "wholesaler"),
        make_actor(tmp, network, "retailer", "KG", "retailer"),
        auditor,
    )
    # The catalogue entry every emission of GTIN needs (packaged water: no attributes).
    ok(["product", "register", "--gtin", GTIN, "--group", DEMO_GROUP, "--name", "Water 0.5 l",
        "--tnved", DEMO_TNVED, "--producer", world.producer.id, *regulators["RU"].args()])
    return world


@pytest.fixture(scope="session")
def epcis_schema() -> dict[str, Any]:
    if not SCHEMA_PATH.exists():  # pragma: no cover - shared/ sits beside the repository
        pytest.skip(f"{SCHEMA_PATH} is not there")
    return json.loads(SCHEMA_PATH.read_text())
