"""A node's configuration: one TOML file, checked completely before anything starts.

Every path in the file is relative to the folder of the file itself, so a testnet
directory can be moved or copied as a whole. A bad file gives one `ConfigError` that
names the key and says what is wrong, never a traceback from deep inside a library.

    state = "RU"                      # this node's member state, as in genesis
    genesis = "../genesis.json"
    node_key = "node.key"             # Ed25519 key whose public half genesis names
    data_dir = "data"                 # ledger store and Raft log live under here

    [tls]
    cert = "tls.crt"                  # this node's certificate (genesis pins its SHA-256)
    key = "tls.key"
    peer_certs = "../peers.pem"       # the member nodes' certificates; only pinned ones count

    [api]                             # the client API (HTTPS)
    host = "127.0.0.1"
    port = 8101
    body_bytes_max = 16777216
    cert = "api.crt"                  # its certificate (genesis pins its SHA-256) and key;
    key = "api.key"                   # or tls = false: plain HTTP, on a loopback host only

    [peer]                            # the peer API (mutual TLS); defaults from genesis
    host = "127.0.0.1"
    port = 7101

    [raft]
    tick_ms = 100
    election_ticks = 10
    heartbeat_ticks = 1
    snapshot_every_entries = 1000

    [block]
    documents_max = 2000
    bytes_max = 4194304
    wait_max_ms = 5
    proposals_in_flight_max = 16

    [mempool]
    documents_max = 100000
    bytes_max = 134217728

    [log]
    level = "INFO"
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .client import is_loopback


class ConfigError(Exception):
    """The configuration file cannot be used; the message says which key and why."""


@dataclass(frozen=True, slots=True)
class ApiConfig:
    host: str = "127.0.0.1"
    port: int = 8100
    # The largest legitimate request is a batch of documents: a few 30,000-code
    # documents at about 1.2 MB each. 16 MiB admits that and bounds what one client
    # can make the node buffer.
    body_bytes_max: int = 16 << 20
    # HTTPS unless the file says `tls = false`: documents and signed reads carry
    # commercial data, so plain HTTP is an explicit choice, and only on loopback.
    tls: bool = True
    cert: str = ""  # resolved against the config file's folder once parsed
    key: str = ""
    # Need-to-know reads (ledger/_access.py). `false` serves every signed reader
    # everything, as nodes did before the rule: only benchmarks set it, to measure the
    # rule's cost, and only on a loopback host.
    access_rule: bool = True

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"


@dataclass(frozen=True, slots=True)
class PeerConfig:
    host: str = ""  # empty: the host of this state's peer_address in genesis
    port: int = 0  # 0: the port of this state's peer_address in genesis


@dataclass(frozen=True, slots=True)
class RaftConfig:
    # 100 ms ticks with an election timeout of 10 to 20 ticks replace a dead leader in
    # one to two seconds, and leave room for a block apply of a few hundred ms between
    # two heartbeats without a spurious election.
    tick_ms: int = 100
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    # Compact the Raft log every this many entries: the ledger keeps every block, so
    # the log only has to cover what a briefly absent follower may still need.
    snapshot_every_entries: int = 1000


@dataclass(frozen=True, slots=True)
class BlockConfig:
    # A block is applied in one go on every node; 2,000 documents keep one apply
    # around a few hundred milliseconds, well inside the election timeout.
    documents_max: int = 2000
    bytes_max: int = 4 << 20
    # How long the leader waits for more documents before it proposes a partial block.
    wait_max_ms: int = 5
    # Proposals committed concurrently: several in flight share fsyncs and keep the
    # followers busy while the leader applies.
    proposals_in_flight_max: int = 16


@dataclass(frozen=True, slots=True)
class MempoolConfig:
    # Admitted documents not yet in a block. Beyond these bounds the node answers 503
    # and clients back off, instead of the node growing until it falls over.
    documents_max: int = 100_000
    bytes_max: int = 128 << 20


@dataclass(frozen=True, slots=True)
class NodeConfig:
    path: Path  # the configuration file itself
    state: str
    genesis: Path
    node_key: Path
    data_dir: Path
    tls_cert: Path
    tls_key: Path
    peer_certs: Path
    api: ApiConfig = field(default_factory=ApiConfig)
    peer: PeerConfig = field(default_factory=PeerConfig)
    raft: RaftConfig = field(default_factory=RaftConfig)
    block: BlockConfig = field(default_factory=BlockConfig)
    mempool: MempoolConfig = field(default_factory=MempoolConfig)
    log_level: str = "INFO"

    @property
    def ledger_dir(self) -> Path:
        return self.data_dir / "ledger"

    @property
    def raft_dir(self) -> Path:
        return self.data_dir / "raft"

    def make_data_dirs(self) -> None:
        """The data directory and the ledger and Raft directories in it, entered by the
        node's own user only: they hold every state's commercial data. Directories that
        exist already are restricted too (an older node made them world-readable)."""
        for path in (self.data_dir, self.ledger_dir, self.raft_dir):
            path.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
            path.chmod(DATA_DIR_MODE)


# Data directories: owner only (read, write, enter).
DATA_DIR_MODE = 0o700

_TOP_KEYS = {"state", "genesis", "node_key", "data_dir", "tls", "api", "peer", "raft", "block",
             "mempool", "log"}
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def load_config(path: Path | str) -> NodeConfig:
    """Read and check a node's TOML configuration."""
    path = Path(path).resolve()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    return parse_config(raw, path)


def parse_config(raw: dict[str, Any], path: Path) -> NodeConfig:
    """Check a parsed configuration; relative paths resolve against `path`'s folder."""
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
    base = path.parent
    state = _required_str(raw, "state", path)
    if len(state) != 2 or not state.isupper():
        raise ConfigError(f"{path}: state must be a two-letter member state code such as RU")
    tls = _table(raw, "tls", path)
    unknown_tls = set(tls) - {"cert", "key", "peer_certs"}
    if unknown_tls:
        raise ConfigError(f"{path}: unknown key(s) in [tls]: {', '.join(sorted(unknown_tls))}")
    log = _table(raw, "log", path)
    level = str(log.get("level", "INFO")).upper()
    if level not in _LOG_LEVELS or set(log) - {"level"}:
        raise ConfigError(f"{path}: [log] takes only level, one of {', '.join(_LOG_LEVELS)}")
    config = NodeConfig(
        path=path,
        state=state,
        genesis=_path(raw, "genesis", base, path),
        node_key=_path(raw, "node_key", base, path),
        data_dir=_path(raw, "data_dir", base, path),
        tls_cert=_path(tls, "cert", base, path, "tls.cert"),
        tls_key=_path(tls, "key", base, path, "tls.key"),
        peer_certs=_path(tls, "peer_certs", base, path, "tls.peer_certs"),
        api=_api_section(raw, base, path),
        peer=_section(PeerConfig, raw, "peer", path),
        raft=_section(RaftConfig, raw, "raft", path),
        block=_section(BlockConfig, raw, "block", path),
        mempool=_section(MempoolConfig, raw, "mempool", path),
        log_level=level,
    )
    _check_limits(config)
    _check_api_tls(config)
    return config


def _check_limits(c: NodeConfig) -> None:
    checks = [
        (0 < c.api.port < 65536, "api.port must be a TCP port (1 to 65535)"),
        (0 <= c.peer.port < 65536, "peer.port must be a TCP port (1 to 65535), or 0 for genesis"),
        (c.api.body_bytes_max >= 64 << 10, "api.body_bytes_max must be at least 65536"),
        (10 <= c.raft.tick_ms <= 10_000, "raft.tick_ms must be between 10 and 10000"),
        (0 < c.raft.heartbeat_ticks < c.raft.election_ticks,
         "raft.heartbeat_ticks must be positive and below raft.election_ticks"),
        (c.raft.snapshot_every_entries >= 0, "raft.snapshot_every_entries must be 0 (never) or more"),
        (1 <= c.block.documents_max <= 100_000, "block.documents_max must be between 1 and 100000"),
        (64 << 10 <= c.block.bytes_max <= 32 << 20,
         "block.bytes_max must be between 65536 and 33554432"),
        (0 <= c.block.wait_max_ms <= 10_000, "block.wait_max_ms must be between 0 and 10000"),
        (1 <= c.block.proposals_in_flight_max <= 64,
         "block.proposals_in_flight_max must be between 1 and 64"),
        (c.mempool.documents_max >= c.block.documents_max,
         "mempool.documents_max must be at least block.documents_max"),
        (c.mempool.bytes_max >= c.block.bytes_max, "mempool.bytes_max must be at least block.bytes_max"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"{c.path}: {message}")


def _api_section(raw: dict[str, Any], base: Path, path: Path) -> ApiConfig:
    api: ApiConfig = _section(ApiConfig, raw, "api", path)
    cert, key = ((str((base / p).resolve()) if p else "") for p in (api.cert, api.key))
    return replace(api, cert=cert, key=key)


def _check_api_tls(c: NodeConfig) -> None:
    api = c.api
    if not api.tls and not is_loopback(api.host):
        raise ConfigError(f"{c.path}: [api] tls = false serves plain HTTP, which is allowed only on a "
                          f"loopback host (127.0.0.1, ::1, localhost), not {api.host!r}")
    if not api.access_rule and not is_loopback(api.host):
        raise ConfigError(f"{c.path}: [api] access_rule = false (every reader reads everything) is for "
                          f"benchmarks on a loopback host only, not {api.host!r}")
    if api.tls and (not api.cert or not api.key):
        raise ConfigError(f"{c.path}: [api] needs cert and key (the API certificate genesis pins) to serve "
                          "HTTPS, or tls = false for plain HTTP on a loopback host")


def _table(raw: dict[str, Any], name: str, path: Path) -> dict[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: [{name}] must be a table")
    return value


def _required_str(raw: dict[str, Any], key: str, path: Path, label: str = "") -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{path}: {label or key} is required and must be a string")
    return value


def _path(raw: dict[str, Any], key: str, base: Path, path: Path, label: str = "") -> Path:
    return (base / _required_str(raw, key, path, label)).resolve()


def _section(cls: Any, raw: dict[str, Any], name: str, path: Path) -> Any:
    table = _table(raw, name, path)
    known = {f.name: f for f in fields(cls)}
    unknown = set(table) - set(known)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) in [{name}]: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for key, value in table.items():
        expected = type(getattr(cls(), key))
        if expected is bool and not isinstance(value, bool):
            raise ConfigError(f"{path}: {name}.{key} must be true or false")
        if expected is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"{path}: {name}.{key} must be an integer")
        if expected is str and not isinstance(value, str):
            raise ConfigError(f"{path}: {name}.{key} must be a string")
        values[key] = value
    return cls(**values)


def render_config(values: dict[str, Any]) -> str:
    """TOML text for a configuration given as nested dicts (testnet init writes these)."""
    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    for key, value in values.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for name, table in tables:
        lines.append("")
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    raise TypeError(f"cannot write {type(value).__name__} to TOML")
