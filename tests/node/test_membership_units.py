"""The node's transport follows the member table: pins, links and the follower that
moves them when governance changes membership (no sockets: fake sessions)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ledger import Member, Membership
from node import make_certificate
from node._membership import MembershipFollower
from node._tls import PeerTrust, cert_fingerprint_pem
from node._transport import PeerLinks

pytestmark = pytest.mark.unit


def _cert(tmp: Path, name: str) -> tuple[str, str]:
    """(PEM, fingerprint) of a new certificate; its key is written beside it."""
    cert, key = make_certificate(name)
    (tmp / f"{name}.crt").write_bytes(cert)
    (tmp / f"{name}.key").write_bytes(key)
    return cert.decode(), cert_fingerprint_pem(cert)


def _der(pem: str) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem)


def test_pins_follow_the_table_and_new_certificates_are_trusted(tmp_path: Path) -> None:
    """Replacing KZ's pin: the old certificate maps to no state, the new one to KZ, and
    the server context trusts it from then on; removing KZ unpins it."""
    ru_pem, ru_fp = _cert(tmp_path, "ru")
    kz_pem, kz_fp = _cert(tmp_path, "kz")
    kz2_pem, kz2_fp = _cert(tmp_path, "kz2")
    bundle = tmp_path / "peers.pem"
    bundle.write_text(ru_pem + kz_pem + kz2_pem)
    trust = PeerTrust("RU", bundle, {"RU": ru_fp, "KZ": kz_fp})
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trust.attach(ctx)
    assert trust.state_of(_der(kz_pem)) == "KZ" and trust.state_of(_der(kz2_pem)) is None
    assert ctx.cert_store_stats()["x509"] == 1

    assert trust.set_pins({"RU": ru_fp, "KZ": kz2_fp}) == {"KZ"}
    assert trust.state_of(_der(kz_pem)) is None and trust.state_of(_der(kz2_pem)) == "KZ"
    assert trust.holds("KZ", kz2_fp) and not trust.holds("KZ", kz_fp)
    assert trust.certs_pem["KZ"].strip() == kz2_pem.strip()
    assert ctx.cert_store_stats()["x509"] == 2  # the old one stays: the peer API refuses it by its pin

    assert trust.set_pins({"RU": ru_fp}) == {"KZ"}
    assert trust.state_of(_der(kz2_pem)) is None and "KZ" not in trust.certs_pem


class _FakeSession:
    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True

    def ws_connect(self, *args: Any, **kwargs: Any) -> Any:
        raise aiohttp.ClientConnectionError("no network in a unit test")


async def test_links_close_for_a_removed_node_and_open_for_an_added_one() -> None:
    """set_peers: a removed peer's links stop and its session closes; a replaced one is
    relinked with a new session; an added one is linked."""
    made: list[str] = []
    sessions: dict[str, Any] = {"KZ": _FakeSession(), "BY": _FakeSession()}
    first = dict(sessions)

    def make(peer: str) -> Any:
        made.append(peer)
        return _FakeSession()

    links = PeerLinks(sessions, {"KZ": "127.0.0.1:1", "BY": "127.0.0.1:2"}, lambda p: None, lambda p: None,
                      make_session=make)
    links.start()
    links.set_peers({"BY": "127.0.0.1:2", "AM": "127.0.0.1:3"}, changed={"KZ", "AM"})
    assert sorted(links.raft) == ["AM", "BY"] and made == ["AM"]
    links.set_peers({"BY": "127.0.0.1:9", "AM": "127.0.0.1:3"}, changed=set())  # BY moved
    assert made == ["AM", "BY"] and links.raft["BY"].url == "wss://127.0.0.1:9/peer/raft"
    assert not links.connected("KZ")
    with pytest.raises(aiohttp.ClientError):
        await links.get("KZ", "/peer/status")
    await links.stop()
    assert first["KZ"].closed and first["BY"].closed and sorted(sessions) == ["AM", "BY"]


def _table(epoch: int, kz_active: bool, kz_cert: str = "aa" * 32) -> Membership:
    def member(code: str, node_id: int, cert: str, active: bool = True) -> Member:
        return Member(code, node_id, active, bytes([node_id]) * 32, cert, f"127.0.0.1:{node_id}", "http://x")

    return Membership("c", epoch, (member("BY", 1, "bb" * 32), member("KZ", 2, kz_cert, kz_active),
                                   member("RU", 3, "cc" * 32)))


def test_the_follower_acts_once_per_epoch() -> None:
    """The follower pins and relinks when the epoch moves, and does nothing otherwise."""
    tables = [_table(0, True)]
    pinned: list[dict[str, str]] = []
    peers: list[tuple[dict[str, str], set[str]]] = []

    def pin(pins: Any) -> set[str]:
        pinned.append(dict(pins))
        return {"KZ"}

    follower = MembershipFollower("RU", bytes([3]) * 32, lambda: tables[-1], pin,
                                  lambda a, c: peers.append((a, c)))
    follower.follow()
    assert pinned == [] and peers == []
    tables.append(_table(1, True, "dd" * 32))
    follower.follow()
    follower.follow()
    assert pinned == [{"BY": "bb" * 32, "KZ": "dd" * 32, "RU": "cc" * 32}]
    assert peers == [({"BY": "127.0.0.1:1", "KZ": "127.0.0.1:2"}, {"KZ"})]
    tables.append(_table(2, False))
    follower.follow()
    assert peers[-1] == ({"BY": "127.0.0.1:1"}, {"KZ"}) and "KZ" not in pinned[-1]
