"""Mutual TLS between member-state nodes, with every certificate pinned by genesis.

Each node has a self-signed certificate (not a CA: it cannot vouch for any other key).
Genesis names the SHA-256 fingerprint of each node's certificate. A node trusts as
peers exactly the certificates whose fingerprints genesis names: its server asks every
client for a certificate and accepts only those, and its client, dialing a peer, trusts
only that one peer's certificate. So a connection succeeds only between two nodes that
genesis names, and each side knows which member state the other is.

The client API has a certificate of its own per node, self-signed too, whose SHA-256
genesis pins as `api_cert_sha256`; clients check it by that fingerprint, not by a CA
(`api_ssl_context` serves it; node.client checks it).
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ledger import Genesis

from ._config import NodeConfig

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


@dataclass(frozen=True, slots=True)
class PeerTrust:
    """The pinned certificates of the other member-state nodes, by state code."""

    own_state: str
    certs_pem: dict[str, str]  # state -> certificate PEM, only those genesis pins
    by_fingerprint: dict[str, str]  # fingerprint -> state, from genesis

    def state_of(self, cert_der: bytes | None) -> str | None:
        if not cert_der:
            return None
        return self.by_fingerprint.get(fingerprint(cert_der))


def load_trust(genesis: Genesis, own_state: str, cert_path: Path, bundle_path: Path) -> PeerTrust:
    """Check our own certificate against genesis and pick the pinned peers' certificates
    out of a PEM bundle; certificates that genesis does not pin are ignored."""
    pinned = {s.tls_cert_sha256.lower(): s.code for s in genesis.states}
    try:
        own = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise TlsError(f"cannot read the TLS certificate {cert_path}: {exc}") from exc
    own_fp = fingerprint(own.public_bytes(serialization.Encoding.DER))
    if pinned.get(own_fp) != own_state:
        raise TlsError(
            f"the TLS certificate {cert_path} (sha256 {own_fp[:16]}...) "
            f"is not the one genesis pins for {own_state}"
        )
    try:
        certs = x509.load_pem_x509_certificates(bundle_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise TlsError(f"cannot read the peer certificates {bundle_path}: {exc}") from exc
    found: dict[str, str] = {}
    for cert in certs:
        state = pinned.get(fingerprint(cert.public_bytes(serialization.Encoding.DER)))
        if state is not None and state != own_state:
            found[state] = cert.public_bytes(serialization.Encoding.PEM).decode()
    return PeerTrust(own_state, found, pinned)


def server_context(cert: Path, key: Path, trust: PeerTrust) -> ssl.SSLContext:
    """Require a client certificate, and accept only the pinned peers' certificates."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    _load_chain(ctx, cert, key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    pems = "".join(trust.certs_pem.values())
    if pems:
        ctx.load_verify_locations(cadata=pems)
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
