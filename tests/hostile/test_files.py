"""Finding 12: key files born private and never overwritten, private data directories, and
a format version that is an integer equal to 1 (msgpack `true` is not)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import msgpack
import pytest

from ledger import DecodeError, DocType, KeyFileError, KeyPair, make_document
from ledger._documents import decode_body
from node._config import load_config
from testnet import init_testnet

pytestmark = pytest.mark.unit


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_key_file_is_created_0600_in_one_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The key file is opened with O_CREAT|O_EXCL and mode 0600: there is no moment when a
    more open mode applies, whatever the umask (before: written 0644, then chmod-ed)."""
    calls: list[tuple[int, int]] = []
    real_open = os.open

    def spy(path: str | os.PathLike[str], flags: int, mode_: int = 0o777, *a: object) -> int:
        calls.append((flags, mode_))
        return real_open(path, flags, mode_)

    monkeypatch.setattr(os, "open", spy)
    old = os.umask(0)
    try:
        KeyPair.generate().save(tmp_path / "k.key")
    finally:
        os.umask(old)
    assert calls, "the key file was not created with os.open"
    flags, created = calls[-1]
    assert flags & os.O_CREAT and flags & os.O_EXCL and created == 0o600
    assert mode(tmp_path / "k.key") == 0o600


def test_an_existing_key_file_is_never_overwritten(tmp_path: Path) -> None:
    """Saving over an existing key refuses and leaves the old key intact."""
    path = tmp_path / "k.key"
    first = KeyPair.generate()
    first.save(path)
    with pytest.raises(KeyFileError, match="never overwritten"):
        KeyPair.generate().save(path)
    assert KeyPair.load(path).public_key == first.public_key


def test_testnet_folders_are_private_and_keys_0600(tmp_path: Path) -> None:
    """Each state's folder and data dir are 0700, its three key files 0600; init --force
    over an old testnet makes new keys (the old files are removed first)."""
    net = init_testnet(tmp_path / "net", ("KZ", "RU"))
    for state in ("KZ", "RU"):
        folder = net.node(state).dir
        assert mode(folder) == 0o700 and mode(folder / "data") == 0o700
        for name in ("node.key", "regulator.key", "tls.key"):
            assert mode(folder / name) == 0o600, name
    old = KeyPair.load(net.node("RU").node_key).public_key
    again = init_testnet(tmp_path / "net", ("KZ", "RU"), force=True)
    assert KeyPair.load(again.node("RU").node_key).public_key != old


def test_node_data_dirs_are_made_0700(tmp_path: Path) -> None:
    """The node's data, ledger and Raft directories are 0700, also when they existed open."""
    net = init_testnet(tmp_path / "net", ("RU",))
    config = load_config(net.node("RU").config)
    config.data_dir.chmod(0o755)
    config.make_data_dirs()
    for path in (config.data_dir, config.ledger_dir, config.raft_dir):
        assert mode(path) == 0o700, path


@pytest.mark.parametrize("version", [True, 1.0, "1", 2, 0, None, [1]])
def test_the_format_version_is_the_integer_1(version: object) -> None:
    """A body whose format version is anything but the integer 1 is refused; msgpack
    `true` (== 1 in Python) was accepted before."""
    key = KeyPair.generate()
    doc = make_document("c", DocType.REGISTER_PARTICIPANT, key.participant_id, 1, 10**13,
                        public_key=key.public_key, state="RU", roles=["wholesaler"], name="x")
    fields = msgpack.unpackb(doc.body_bytes(), raw=False)
    assert decode_body(doc.body_bytes()) is not None
    fields[0] = version
    with pytest.raises(DecodeError):
        decode_body(msgpack.packb(fields, use_bin_type=True))
