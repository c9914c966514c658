"""Pure parts of the node: configuration checks, the mempool's bounds, entry encoding."""

from __future__ import annotations

from pathlib import Path

import pytest

from node import ConfigError, decode_entry, encode_entry, load_config, render_config
from node._mempool import Mempool, MempoolFull

BASE = {
    "state": "RU", "genesis": "../genesis.json", "node_key": "node.key", "data_dir": "data",
    "tls": {"cert": "tls.crt", "key": "tls.key", "peer_certs": "../peers.pem"},
    "api": {"port": 8100, "cert": "api.crt", "key": "api.key"},
}


def write(tmp_path: Path, values: dict[str, object]) -> Path:
    folder = tmp_path / "RU"
    folder.mkdir(exist_ok=True)
    path = folder / "node.toml"
    path.write_text(render_config(values))
    return path


def test_config_paths_resolve_against_the_file(tmp_path: Path) -> None:
    """Relative paths in the config are relative to its folder, not to the working directory."""
    config = load_config(write(tmp_path, BASE))
    assert config.genesis == (tmp_path / "genesis.json").resolve()
    assert config.ledger_dir == (tmp_path / "RU" / "data" / "ledger").resolve()
    assert config.block.documents_max == 2000 and config.raft.tick_ms == 100


@pytest.mark.parametrize(
    "change, words",
    [
        ({"colour": "red"}, "unknown key(s) colour"),
        ({"state": "Russia"}, "two-letter"),
        ({"state": None}, "state is required"),
        ({"api": {"port": 70000}}, "api.port"),
        ({"api": {"port": "80"}}, "api.port must be an integer"),
        ({"api": {"speed": 1}}, "unknown key(s) in [api]: speed"),
        ({"raft": {"heartbeat_ticks": 10, "election_ticks": 10}}, "heartbeat_ticks"),
        ({"block": {"documents_max": 0}}, "block.documents_max"),
        ({"mempool": {"documents_max": 10}}, "mempool.documents_max"),
        ({"tls": {"cert": "a"}}, "tls.key is required"),
        ({"log": {"level": "LOUD"}}, "[log]"),
    ],
)
def test_bad_configs_are_refused_with_the_key_named(tmp_path: Path, change: dict[str, object], words: str) -> None:
    """Each mistake gives one ConfigError that says which key is wrong."""
    values = {**BASE, **change}
    values = {k: v for k, v in values.items() if v is not None}
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, values))
    assert words in str(info.value)


def test_unreadable_config_files(tmp_path: Path) -> None:
    """A missing file or broken TOML is a ConfigError too."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("state = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_mempool_dedupes_bounds_and_returns_failed_proposals() -> None:
    """Duplicates are ignored, the bounds answer MempoolFull, failed proposals go back first."""
    pool = Mempool(documents_max=3, bytes_max=1000)
    assert pool.add(b"a", b"x" * 10, 10**15, 0.0)
    assert not pool.add(b"a", b"x" * 10, 10**15, 0.0)
    pool.add(b"b", b"y" * 10, 10**15, 0.0)
    pool.add(b"c", b"z" * 10, 10**15, 0.0)
    with pytest.raises(MempoolFull):
        pool.add(b"d", b"w", 10**15, 0.0)
    taken = pool.take(2, 1000)
    assert [i for i, _ in taken] == [b"a", b"b"] and pool.unproposed == 1
    pool.unmark([b"b"])
    assert [i for i, _ in pool.take(5, 1000)] == [b"b", b"c"]
    assert pool.remove([b"a", b"b", b"zz", None]) == 2 and len(pool) == 1 and pool.size_bytes == 10


def test_mempool_byte_bound_and_expiry() -> None:
    """A proposal is cut at its byte bound (one big document still goes alone); expired ones leave."""
    pool = Mempool(documents_max=10, bytes_max=100)
    pool.add(b"big", b"x" * 60, 10**15, 0.0)
    pool.add(b"old", b"y" * 30, 5, 0.0)
    with pytest.raises(MempoolFull):
        pool.add(b"more", b"z" * 20, 10**15, 0.0)
    assert [i for i, _ in pool.take(10, 50)] == [b"big"]
    assert pool.expire(now_ms=6) == 1 and len(pool) == 1


def test_entries_round_trip_and_refuse_garbage() -> None:
    """A block entry encodes and decodes; anything else is a ValueError."""
    assert decode_entry(encode_entry(5, "RU", [b"a", b"b"])) == (5, "RU", [b"a", b"b"])
    for bad in (b"\x93\x01\xa2RU\x91\x01", b"\x92\x01\x02"):
        with pytest.raises(ValueError):
            decode_entry(bad)


def test_verified_documents_are_remembered_with_their_signature() -> None:
    """A node's memory of checked signatures vouches for that signature only, and is bounded."""
    from ledger import KeyPair, SignedDocument, make_document
    from node._admission import Verified

    key = KeyPair.generate()
    docs = [
        make_document("c", "introduce", key.participant_id, n, 10, codes=["x"]).sign(key) for n in range(3)
    ]
    verified = Verified(2)
    for doc in docs:
        verified.add(doc)
    forged = SignedDocument(docs[2].body, bytes(64), docs[2].document)
    assert docs[2].verified_key in verified and docs[1].verified_key in verified
    assert forged.verified_key not in verified
    assert docs[0].verified_key not in verified  # the oldest was forgotten
    verified.discard(docs[2].id)
    assert docs[2].verified_key not in verified
