"""Mutual TLS between member-state nodes, with every certificate pinned by genesis.

Each node has a self-signed certificate (not a CA: it cannot vouch for any other key).
Genesis names the SHA-256 fingerprint of each node's certificate, and governance
documents replace or withdraw those pins (the member table, `LedgerStore.members()`).
A node trusts as peers exactly the certificates whose fingerprints the table pins: its server asks every
client for a certificate and accepts only those, and its client, dialing a peer, trusts
only that one peer's certificate. So a connection succeeds only between two nodes that
the table pins, and each side knows which member state the other is.

The client API has a certificate of its own per node, self-signed too, whose SHA-256
genesis pins as `api_cert_sha256`; clients check it by that fingerprint, not by a CA
(`api_ssl_context` serves it; node.client checks it).
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import logging
import ssl
from collections.abc import Mapping
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ledger import Genesis

from ._config import NodeConfig

log = logging.getLogger(__name__)

# Ten years: a testnet certificate should not expire under a running demo; a real
# deployment rotates certificates with a new genesis long before.
CERT_VALIDITY_DAYS = 3650


class TlsError(Exception):
    """Certificates or keys cannot be used as configured."""


def fingerprint(cert_der: bytes) -> str:
    """The hex SHA-256 of a certificate's DER bytes, as genesis pins it."""
    return hashlib.sha256(cert_der).hexdigest()


def make_certificate(common_name: str, hosts: tuple[str, ...] = ("127.0.0.1",)) -> tuple[bytes, bytes]:
    """A new P-256 key and a self-signed certificate for `hosts`: (cert PEM, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    alt_names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=CERT_VALIDITY_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def cert_fingerprint_pem(cert_pem: bytes) -> str:
    return fingerprint(x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER))


class PeerTrust:
    """The pinned certificates of the other member-state nodes, by state code.

    The pins are the member table's (genesis's nodes, as governance documents last
    added, removed or replaced them): `set_pins` moves them when a governance document
    applies. Certificates themselves come from the peer bundle file, re-read then: a
    certificate is trusted only while the member table pins its fingerprint. The TLS
    layer of a server context cannot forget a certificate once loaded, so it accepts a
    superset (every certificate pinned since start); the peer API's middleware and its
    per-frame check (`holds`) refuse one that is no longer pinned.
    """

    def __init__(self, own_state: str, bundle_path: Path, pins: Mapping[str, str]) -> None:
        self.own_state = own_state
        self.bundle_path = bundle_path
        self.pins: dict[str, str] = {}  # state -> fingerprint, active nodes only
        self.by_fingerprint: dict[str, str] = {}  # fingerprint -> state
        self.certs_pem: dict[str, str] = {}  # state -> PEM of its pinned certificate, peers only
        self._server_contexts: list[tuple[ssl.SSLContext, set[str]]] = []  # with what each trusts
        self.set_pins(pins)

    def state_of(self, cert_der: bytes | None) -> str | None:
        if not cert_der:
            return None
        return self.by_fingerprint.get(fingerprint(cert_der))

    def holds(self, state: str, cert_sha256: str) -> bool:
        """Whether `state`'s node is still pinned to this certificate."""
        return self.pins.get(state) == cert_sha256

    def set_pins(self, pins: Mapping[str, str]) -> set[str]:
        """Pin these certificates (state -> fingerprint of each active node); the states
        whose pin was added, replaced or removed. The bundle is read again for the
        certificates; an unreadable bundle keeps those already found for unchanged pins."""
        new = {state: fp.lower() for state, fp in pins.items()}
        changed = {s for s in set(new) | set(self.pins) if new.get(s) != self.pins.get(s)}
        self.pins = new
        self.by_fingerprint = {fp: state for state, fp in new.items()}
        try:
            found = _pinned_in_bundle(self.bundle_path, self.by_fingerprint, self.own_state)
        except TlsError as exc:
            log.error("%s; keeping the peer certificates read before", exc)
            found = {s: pem for s, pem in self.certs_pem.items() if s not in changed}
        self.certs_pem = found
        for ctx, trusted in self._server_contexts:
            _trust_in(ctx, trusted, found)
        return changed

    def attach(self, ctx: ssl.SSLContext) -> None:
        """A server context that trusts the pinned peers' certificates, now and later."""
        trusted: set[str] = set()
        self._server_contexts.append((ctx, trusted))
        _trust_in(ctx, trusted, self.certs_pem)


def _trust_in(ctx: ssl.SSLContext, trusted: set[str], certs_pem: Mapping[str, str]) -> None:
    for pem in certs_pem.values():
        fp = cert_fingerprint_pem(pem.encode())
        if fp not in trusted:
            ctx.load_verify_locations(cadata=pem)
            trusted.add(fp)


def _pinned_in_bundle(bundle_path: Path, pinned: Mapping[str, str], own_state: str) -> dict[str, str]:
    try:
        certs = x509.load_pem_x509_certificates(bundle_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise TlsError(f"cannot read the peer certificates {bundle_path}: {exc}") from exc
    found: dict[str, str] = {}
    for cert in certs:
        state = pinned.get(fingerprint(cert.public_bytes(serialization.Encoding.DER)))
        if state is not None and state != own_state:
            found[state] = cert.public_bytes(serialization.Encoding.PEM).decode()
    return found


def load_trust(
    genesis: Genesis,
    own_state: str,
    cert_path: Path,
    bundle_path: Path,
    pins: Mapping[str, str] | None = None,
    *,
    check_own: bool = True,
) -> PeerTrust:
    """Check our own certificate against the pins (genesis's unless given) and pick the
    pinned peers' certificates out of a PEM bundle; certificates not pinned are ignored.
    `check_own=False` leaves our certificate to be checked once the pins in force are
    known (the node reads them from its ledger)."""
    if pins is None:
        pins = {s.code: s.tls_cert_sha256 for s in genesis.states}
    if check_own:
        check_own_certificate(cert_path, own_state, pins)
    _pinned_in_bundle(bundle_path, {fp.lower(): s for s, fp in pins.items()}, own_state)  # readable at start
    return PeerTrust(own_state, bundle_path, pins)


def check_own_certificate(cert_path: Path, own_state: str, pins: Mapping[str, str]) -> None:
    try:
        own = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise TlsError(f"cannot read the TLS certificate {cert_path}: {exc}") from exc
    own_fp = fingerprint(own.public_bytes(serialization.Encoding.DER))
    if pins.get(own_state, "").lower() != own_fp:
        raise TlsError(
            f"the TLS certificate {cert_path} (sha256 {own_fp[:16]}...) "
            f"is not the one pinned for {own_state} (by genesis, as governance last changed it)"
        )


def server_context(cert: Path, key: Path, trust: PeerTrust) -> ssl.SSLContext:
    """Require a client certificate, and accept only the pinned peers' certificates
    (those pinned later too: `trust` adds them as the member table changes)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    _load_chain(ctx, cert, key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    trust.attach(ctx)
    return ctx


def client_context(cert: Path, key: Path, peer_cert_pem: str) -> ssl.SSLContext:
    """Present our certificate; trust exactly one peer's certificate, nothing else."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=peer_cert_pem)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    _load_chain(ctx, cert, key)
    return ctx


def _load_chain(ctx: ssl.SSLContext, cert: Path, key: Path) -> None:
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"cannot load the TLS certificate {cert} with key {key}: {exc}") from exc


# -- the client API --------------------------------------------------------------------


def api_ssl_context(config: NodeConfig, genesis: Genesis) -> ssl.SSLContext | None:
    """The client API's TLS context, or None for plain HTTP (configured, on loopback).

    Clients pin the certificate by the fingerprint genesis names for this state, so the
    node refuses to serve one genesis does not pin, and refuses plain HTTP where genesis
    pins a certificate (its clients would refuse it anyway). No client certificate is
    asked for: clients are authenticated by their signed documents and signed reads.
    """
    pin = genesis.state(config.state).api_cert_sha256.lower()
    if not config.api.tls:
        if pin:
            raise TlsError(f"genesis pins an API certificate for {config.state}: serve HTTPS with it "
                           "([api] cert and key), not plain HTTP")
        return None
    cert = Path(config.api.cert)
    try:
        own = cert_fingerprint_pem(cert.read_bytes())
    except (OSError, ValueError) as exc:
        raise TlsError(f"cannot read the API certificate {cert}: {exc}") from exc
    if own != pin:
        pinned = f"pins sha256 {pin[:16]}..." if pin else "pins none (plain HTTP on loopback only)"
        raise TlsError(f"the API certificate {cert} (sha256 {own[:16]}...) is not the one genesis pins for "
                       f"{config.state}: genesis {pinned}")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    # TLS 1.2 as well as 1.3: businesses' ERP systems reach this API, and some of their
    # TLS stacks stop at 1.2; the peer API between nodes needs only 1.3.
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(ctx, cert, Path(config.api.key))
    return ctx
