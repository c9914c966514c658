"""HTTPS on the client API with the certificate genesis pins, and signed reads that name
their node, carry a nonce, last 30 s and are served once (issue 10, finding 10)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from ledger import REQUEST_SKEW_MS, Genesis, KeyPair, request_headers
from node import ConfigError, StartError, TlsError, api_ssl_context, create_app, load_config, serve
from node._errors import Refusal
from node._keys import GENESIS, NODE
from node._signed_reads import ReplayCache
from node.client import (
    CertificateMismatch,
    ClientError,
    NodeClient,
    SyncNodeClient,
    node_identity,
)
from testnet import Testnet, init_testnet, poll_until_async

from .helpers import FAST, InProcessNode, in_process_node

# -- the signed-read check ---------------------------------------------------------------


@pytest.fixture
async def ru(tmp_path: Path) -> AsyncIterator[InProcessNode]:
    async with in_process_node(tmp_path) as n:
        await poll_until_async(lambda: n.node.proposer.can_propose(), 10, "the node to lead")
        yield n


async def _reader(ru: InProcessNode) -> KeyPair:
    reader = KeyPair.generate()
    await ru.submit_ok(ru.docs.register(ru.regulator(), reader, "RU", ["producer"], "Reader"))
    return reader


async def _status_and_error(ru: InProcessNode, path: str, headers: dict[str, str]) -> tuple[int, str | None]:
    response = await ru.client.get(path, headers=headers)
    body = await response.json()
    return response.status, body.get("error") if isinstance(body, dict) else None


async def test_a_signed_read_is_served_once_at_its_node_within_30_s(ru: InProcessNode) -> None:
    """A copy of a served request is refused (replayed_request), one signed for another
    node is refused (wrong_node), and times 290 s ahead or 31 s behind are stale, while
    29 s either way is accepted: before, all of these were served."""
    reader = await _reader(ru)
    path = f"/v1/participants/{reader.participant_id}"
    headers = ru.signed(reader, path)
    assert await _status_and_error(ru, path, headers) == (200, None)
    assert await _status_and_error(ru, path, headers) == (401, "replayed_request")
    assert await _status_and_error(ru, path, ru.signed(reader, path, node="KZ")) == (401, "wrong_node")
    now_ms = int(time.time() * 1000)
    for offset_ms, expected in [(290_000, (401, "stale_request")), (-31_000, (401, "stale_request")),
                                (29_000, (200, None)), (-29_000, (200, None))]:
        assert await _status_and_error(ru, path, ru.signed(reader, path, time_ms=now_ms + offset_ms)) == expected


async def test_signed_read_headers_are_all_required_and_well_formed(ru: InProcessNode) -> None:
    """Without the node or the nonce a read is unsigned; a short or upper-case nonce, or a
    signature in the old scheme (method, path, time only), does not verify."""
    reader = await _reader(ru)
    path = f"/v1/participants/{reader.participant_id}"
    for header in ("X-Tamga-Node", "X-Tamga-Nonce"):
        headers = {k: v for k, v in ru.signed(reader, path).items() if k != header}
        assert await _status_and_error(ru, path, headers) == (401, "unsigned")
    for nonce in ("ab" * 15, "AB" * 16, "zz" * 16, "ab" * 65):
        headers = {**ru.signed(reader, path), "X-Tamga-Nonce": nonce}
        assert await _status_and_error(ru, path, headers) == (401, "bad_request_signature")
    now_ms = int(time.time() * 1000)
    old_signature = reader.sign(b"tamga/request/v1", ru.net.chain_id,
                                b"\n".join((b"GET", path.encode(), str(now_ms).encode())))
    headers = {**ru.signed(reader, path, time_ms=now_ms), "X-Tamga-Signature": old_signature.hex()}
    assert await _status_and_error(ru, path, headers) == (401, "bad_request_signature")


def test_the_skew_is_30_s() -> None:
    """Signed requests are good for 30 s either side of the node's clock (it was 300 s)."""
    assert REQUEST_SKEW_MS == 30_000


def test_the_replay_cache_forgets_only_what_is_stale_and_refuses_when_full() -> None:
    """Entries live until their request is stale; a full cache (per participant or in
    all) refuses with signed_reads_busy rather than forget an entry early."""
    cache = ReplayCache(per_participant_max=2, entries_max=3)
    t = 1_000_000
    cache.admit("a", "n1", t, t)
    with pytest.raises(Refusal) as caught:
        cache.admit("a", "n1", t, t + REQUEST_SKEW_MS)  # still within the window: remembered
    assert caught.value.reason == "replayed_request"
    cache.admit("a", "n2", t, t)
    with pytest.raises(Refusal) as caught:
        cache.admit("a", "n3", t, t)
    assert caught.value.reason == "signed_reads_busy"
    cache.admit("b", "n1", t, t)  # another participant is not held up by a's flood
    with pytest.raises(Refusal) as caught:
        cache.admit("c", "n1", t, t)
    assert caught.value.reason == "signed_reads_busy"
    cache.admit("c", "n1", t + 10, t + REQUEST_SKEW_MS + 1)  # the others are stale now: forgotten
    assert len(cache) == 1


# -- configuration and the node's refusals -----------------------------------------------


def _config_with_api(net: Testnet, api: dict[str, Any]) -> Path:
    path = net.node("RU").config
    text = path.read_text()
    head, _, rest = text.partition("[api]\n")
    _, _, tail = rest.partition("\n\n")
    lines = "".join(f"{k} = {v!r}\n".replace("'", '"').replace("False", "false") for k, v in api.items())
    path.write_text(f"{head}[api]\n{lines}\n{tail}")
    return path


def test_plain_http_only_when_configured_and_only_on_loopback(tmp_path: Path) -> None:
    """No cert and no `tls = false`: refused; `tls = false` off loopback: refused."""
    net = init_testnet(tmp_path / "net", ("RU",))
    port = int(net.node("RU").api_url.rsplit(":", 1)[1])
    with pytest.raises(ConfigError, match=r"\[api\] needs cert and key"):
        load_config(_config_with_api(net, {"host": "127.0.0.1", "port": port}))
    with pytest.raises(ConfigError, match="only on a loopback host"):
        load_config(_config_with_api(net, {"host": "0.0.0.0", "port": port, "tls": False}))
    assert not load_config(_config_with_api(net, {"host": "::1", "port": port, "tls": False})).api.tls


def test_the_node_refuses_to_serve_what_genesis_does_not_pin(tmp_path: Path) -> None:
    """serve() stops with one line: another certificate than the pinned one, or plain
    HTTP where genesis pins a certificate."""
    net = init_testnet(tmp_path / "net", ("RU",))
    config = load_config(net.node("RU").config)
    genesis = net.genesis
    assert api_ssl_context(config, genesis) is not None
    other = dataclasses.replace(config.api, cert=str(net.node("RU").dir / "tls.crt"),
                                key=str(net.node("RU").dir / "tls.key"))
    with pytest.raises(StartError, match="is not the one genesis pins for RU"):
        asyncio.run(serve(dataclasses.replace(config, api=other)))
    plain = dataclasses.replace(config, api=dataclasses.replace(config.api, tls=False))
    with pytest.raises(TlsError, match="genesis pins an API certificate for RU"):
        api_ssl_context(plain, genesis)


def test_an_old_genesis_loads_unpinned_with_its_hash_unchanged(tmp_path: Path) -> None:
    """A genesis without api_cert_sha256 loads (no pin) and hashes as before; a pin is hashed."""
    net = init_testnet(tmp_path / "net", ("RU", "KZ"))
    pinned = net.genesis
    obj = pinned.to_json()
    for s in obj["states"]:
        del s["api_cert_sha256"]
    old = Genesis.from_json(obj)
    assert all(s.api_cert_sha256 == "" for s in old.states)
    assert old.hash != pinned.hash
    legacy = [[s.code, s.name, s.node_id, s.node_public_key, s.regulator_public_key, s.tls_cert_sha256,
               s.peer_address, s.api_url] for s in old.states]
    assert [s.to_list() for s in old.states] == legacy


# -- the clients check the pin -------------------------------------------------------------


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Testnet]:
    """A one-state network's node serving its API over HTTPS, as serve() does."""
    net = init_testnet(tmp_path / "net", ("RU",), config=FAST)
    config = load_config(net.node("RU").config)
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, config.api.host, config.api.port,
                          ssl_context=api_ssl_context(config, app[GENESIS])).start()
        await poll_until_async(lambda: app[NODE].proposer.can_propose(), 10, "the node to lead")
        yield net
    finally:
        await runner.cleanup()


def _repinned(genesis: Genesis) -> Genesis:
    states = tuple(dataclasses.replace(s, api_cert_sha256="ab" * 32) for s in genesis.states)
    return dataclasses.replace(genesis, states=states)


async def test_both_clients_talk_https_and_refuse_another_certificate(served: Testnet) -> None:
    """With the genesis pin both faces read and sign over HTTPS; with another pin they
    refuse before sending anything, with a CertificateMismatch that says so."""
    url, genesis = served.node("RU").api_url, served.genesis
    assert url.startswith("https://127.0.0.1:")
    regulator = served.regulator("RU")
    pid = regulator.participant_id
    sync = SyncNodeClient(url, regulator, genesis=genesis)
    assert (await asyncio.to_thread(sync.status))["state"] == "RU"
    for _ in range(2):  # a fresh nonce each time: never a replay
        assert (await asyncio.to_thread(sync.participant, pid))["id"] == pid
    async with NodeClient(url, regulator, genesis=genesis) as client:
        assert (await client.status())["state"] == "RU"
        for _ in range(2):
            assert (await client.get(f"/v1/participants/{pid}"))["id"] == pid
    with pytest.raises(CertificateMismatch, match="not the one genesis pins for RU"):
        await asyncio.to_thread(SyncNodeClient(url, genesis=_repinned(genesis)).status)
    async with NodeClient(url, genesis=_repinned(genesis)) as client:
        with pytest.raises(CertificateMismatch, match="not the one genesis pins for RU"):
            await client.status()


def test_clients_refuse_urls_they_cannot_check(tmp_path: Path) -> None:
    """HTTPS needs the genesis pin; plain HTTP only to loopback and only where genesis pins nothing."""
    net = init_testnet(tmp_path / "net", ("RU",))
    url, genesis = net.node("RU").api_url, net.genesis
    assert node_identity(url, genesis).cert_sha256 == genesis.state("RU").api_cert_sha256
    with pytest.raises(ClientError, match="without the genesis file"):
        SyncNodeClient(url)
    with pytest.raises(ClientError, match="use https://"):
        SyncNodeClient(url.replace("https://", "http://"), genesis=genesis)
    with pytest.raises(ClientError, match="genesis names no member node"):
        SyncNodeClient("https://127.0.0.1:1", genesis=genesis)
    with pytest.raises(ClientError, match="only to a node on this machine"):
        SyncNodeClient("http://192.0.2.1:8000")
    assert node_identity("http://127.0.0.1:9", None).cert_sha256 is None


async def test_a_plain_http_testnet_still_signs_reads(tmp_path: Path) -> None:
    """api_tls=False: no pin, http:// on loopback; signed reads name the node from its status."""
    net = init_testnet(tmp_path / "net", ("RU",), config=FAST, api_tls=False)
    assert net.node("RU").api_url.startswith("http://") and net.genesis.state("RU").api_cert_sha256 == ""
    config = load_config(net.node("RU").config)
    app = create_app(config)
    assert api_ssl_context(config, net.genesis) is None
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, config.api.host, config.api.port).start()
        await poll_until_async(lambda: app[NODE].proposer.can_propose(), 10, "the node to lead")
        regulator = net.regulator("RU")
        async with NodeClient(net.node("RU").api_url, regulator) as client:
            got = await client.get(f"/v1/participants/{regulator.participant_id}")
            assert got["id"] == regulator.participant_id and client.node_state == "RU"
    finally:
        await runner.cleanup()


def test_request_headers_sign_the_node_and_nonce() -> None:
    """The headers carry what the signature covers; changing the node or nonce breaks it."""
    key = KeyPair.from_seed(bytes(32))
    a = request_headers(key, "c", "GET", "/v1/x?y=1", 5, "RU", "00" * 16)
    assert a["X-Tamga-Node"] == "RU" and a["X-Tamga-Nonce"] == "00" * 16
    assert a["X-Tamga-Signature"] != request_headers(key, "c", "GET", "/v1/x?y=1", 5, "KZ", "00" * 16)[
        "X-Tamga-Signature"]
    assert a["X-Tamga-Signature"] != request_headers(key, "c", "GET", "/v1/x?y=1", 5, "RU", "01" * 16)[
        "X-Tamga-Signature"]
