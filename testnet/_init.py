"""`init_testnet`: everything a local network of member-state nodes needs, in one folder.

    DIR/genesis.json        the chain's root of trust (keys, pinned TLS fingerprints, addresses)
    DIR/peers.pem           every node's TLS certificate (nodes trust only those genesis pins)
    DIR/testnet.json        what this module wrote, for the process control in _procs.py
    DIR/RU/node.toml        one folder per state: node config, node key, peer TLS key and
    DIR/RU/node.key         certificate, client API TLS key and certificate, the state
    DIR/RU/tls.crt, tls.key regulator's key, the data dir, and (once running) node.log
    DIR/RU/api.crt, api.key and node.pid
    DIR/RU/regulator.key
    DIR/RU/data/

The client API is HTTPS (https://127.0.0.1:PORT) with a certificate genesis pins
(`api_cert_sha256`); clients given the genesis file check it. `api_tls=False` writes a
plain-HTTP testnet instead (no pin; loopback only), to measure what TLS costs.

Ports are free loopback ports, each checked by binding it, picked below Linux's
ephemeral range so that outgoing connections do not take them between init and up.
"""

from __future__ import annotations

import functools
import json
import os
import random
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger import MEMBER_STATES, Genesis, KeyPair, MemberState
from node import cert_fingerprint_pem, make_certificate, render_config
from node.client import REQUEST_TIMEOUT_S, SyncNodeClient

from ._groups import product_groups

DEFAULT_STATES = ("AM", "BY", "KZ", "KG", "RU")
HOST = "127.0.0.1"
MANIFEST = "testnet.json"
# Below the default Linux ephemeral range (32768-60999), above well-known services.
PORT_RANGE = (20_000, 32_000)


class TestnetError(Exception):
    """The testnet directory cannot be created or used (one-line reason)."""


@dataclass(frozen=True, slots=True)
class NodeLayout:
    state: str
    dir: Path
    api_url: str
    peer_address: str

    @property
    def config(self) -> Path:
        return self.dir / "node.toml"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def regulator_key(self) -> Path:
        return self.dir / "regulator.key"

    @property
    def node_key(self) -> Path:
        return self.dir / "node.key"

    @property
    def log(self) -> Path:
        return self.dir / "node.log"

    @property
    def pid_file(self) -> Path:
        return self.dir / "node.pid"

    @property
    def genesis_path(self) -> Path:
        return self.dir.parent / "genesis.json"

    def client(self, key: KeyPair | None = None, timeout_s: float = REQUEST_TIMEOUT_S) -> SyncNodeClient:
        """A client of this node that checks its pinned certificate (and signs with `key`)."""
        return SyncNodeClient(self.api_url, key, timeout_s=timeout_s, genesis=load_genesis(self.genesis_path))


@dataclass(frozen=True, slots=True)
class Testnet:
    __test__ = False  # not a pytest class, whatever its name

    dir: Path
    chain_id: str
    nodes: dict[str, NodeLayout]

    @property
    def genesis_path(self) -> Path:
        return self.dir / "genesis.json"

    @property
    def genesis(self) -> Genesis:
        return Genesis.load(self.genesis_path)

    def node(self, state: str) -> NodeLayout:
        try:
            return self.nodes[state]
        except KeyError:
            raise TestnetError(f"{state} is not a state of the testnet in {self.dir}") from None

    def regulator(self, state: str) -> KeyPair:
        return KeyPair.load(self.node(state).regulator_key)


def load_genesis(path: Path) -> Genesis:
    """Genesis from `path`, parsed once per version of the file (status polls call this
    many times a second)."""
    return _load_genesis(path.resolve(), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _load_genesis(path: Path, _mtime_ns: int) -> Genesis:
    return Genesis.load(path)


def free_ports(count: int, host: str = HOST) -> list[int]:
    """`count` distinct ports that could be bound on `host` just now."""
    rng = random.Random()
    ports: list[int] = []
    held: list[socket.socket] = []
    try:
        while len(ports) < count:
            port = rng.randrange(*PORT_RANGE)
            if port in ports:
                continue
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((host, port))
            except OSError:
                s.close()
                continue
            held.append(s)
            ports.append(port)
    finally:
        for s in held:
            s.close()
    return ports


# What a state's folder holds that only its operator may read.
KEY_FILES = ("node.key", "regulator.key", "tls.key")
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def _private_dir(path: Path) -> None:
    """A directory only its owner may enter (an existing one is restricted too)."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    path.chmod(PRIVATE_DIR_MODE)


def _write_private(path: Path, data: bytes) -> None:
    """A new file created with mode 0600 (never written first and restricted after)."""
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def init_testnet(
    directory: Path | str,
    states: tuple[str, ...] | list[str] = DEFAULT_STATES,
    *,
    chain_id: str = "tamga-testnet",
    config: Mapping[str, Any] | None = None,
    force: bool = False,
    api_tls: bool = True,
) -> Testnet:
    """Write a testnet for `states` into `directory`; `config` overrides node settings
    (e.g. {"raft": {"snapshot_every_entries": 50}}); `api_tls=False` serves the client
    API over plain HTTP (loopback) instead of HTTPS."""
    root = Path(directory).resolve()
    states = tuple(s.strip().upper() for s in states)
    bad = [s for s in states if s not in MEMBER_STATES]
    if bad or not states or len(set(states)) != len(states):
        raise TestnetError(f"states must be distinct member states of the Union ({', '.join(MEMBER_STATES)})")
    if (root / MANIFEST).exists() and not force:
        raise TestnetError(f"{root} already holds a testnet; remove it first")
    # New folders are private; a folder the caller already had keeps its mode (the
    # state folders inside, which hold the keys, are private in any case).
    root.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    ports = free_ports(2 * len(states))
    members: list[MemberState] = []
    certs: list[bytes] = []
    layouts: dict[str, NodeLayout] = {}
    for i, state in enumerate(states):
        folder = root / state
        _private_dir(folder)
        _private_dir(folder / "data")
        for name in KEY_FILES:
            # Only with `force`, over an old testnet: key files are never overwritten.
            (folder / name).unlink(missing_ok=True)
        node_key, regulator = KeyPair.generate(), KeyPair.generate()
        node_key.save(folder / "node.key")
        regulator.save(folder / "regulator.key")
        cert_pem, key_pem = make_certificate(f"tamga-{state.lower()}", (HOST,))
        (folder / "tls.crt").write_bytes(cert_pem)
        _write_private(folder / "tls.key", key_pem)
        certs.append(cert_pem)
        api_port, peer_port = ports[2 * i], ports[2 * i + 1]
        api_pin = ""
        api: dict[str, Any] = {"host": HOST, "port": api_port}
        if api_tls:
            api_cert, api_key = make_certificate(f"tamga-{state.lower()}-api", (HOST, "localhost"))
            _write_key_and_cert(folder, "api", api_cert, api_key)
            api_pin = cert_fingerprint_pem(api_cert)
            api.update(cert="api.crt", key="api.key")
        else:
            api["tls"] = False
        scheme = "https" if api_tls else "http"
        layout = NodeLayout(state, folder, f"{scheme}://{HOST}:{api_port}", f"{HOST}:{peer_port}")
        layouts[state] = layout
        members.append(MemberState(
            code=state, name=MEMBER_STATES[state], node_id=i + 1,
            node_public_key=node_key.public_key, regulator_public_key=regulator.public_key,
            tls_cert_sha256=cert_fingerprint_pem(cert_pem), peer_address=layout.peer_address,
            api_url=layout.api_url, api_cert_sha256=api_pin,
        ))
        values: dict[str, Any] = {
            "state": state,
            "genesis": "../genesis.json",
            "node_key": "node.key",
            "data_dir": "data",
            "tls": {"cert": "tls.crt", "key": "tls.key", "peer_certs": "../peers.pem"},
            "api": api,
            "peer": {"host": HOST, "port": peer_port},
        }
        (folder / "node.toml").write_text(render_config(_merge(values, config or {})), encoding="utf-8")
    genesis = Genesis(chain_id, int(time.time() * 1000), tuple(members), product_groups=product_groups())
    genesis.save(root / "genesis.json")
    (root / "peers.pem").write_bytes(b"".join(certs))
    manifest = {
        "chain_id": chain_id,
        "states": {s: {"api_url": n.api_url, "peer_address": n.peer_address} for s, n in layouts.items()},
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return Testnet(root, chain_id, layouts)


def _write_key_and_cert(folder: Path, name: str, cert_pem: bytes, key_pem: bytes) -> None:
    (folder / f"{name}.crt").write_bytes(cert_pem)
    (folder / f"{name}.key").write_bytes(key_pem)
    (folder / f"{name}.key").chmod(0o600)


def load_testnet(directory: Path | str) -> Testnet:
    root = Path(directory).resolve()
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        nodes = {
            state: NodeLayout(state, root / state, entry["api_url"], entry["peer_address"])
            for state, entry in manifest["states"].items()
        }
        return Testnet(root, manifest["chain_id"], nodes)
    except FileNotFoundError:
        raise TestnetError(f"{root} holds no testnet (run `tamga testnet init --dir {directory}`)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise TestnetError(f"{root / MANIFEST} is damaged: {exc!r}") from None
