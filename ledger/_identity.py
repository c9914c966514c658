"""Identities: Ed25519 keys, participant ids and domain-separated signatures.

Every signature covers a domain tag and the chain id before the message, so a
signature made for one purpose (a document, an attestation, a read request) or for one
chain can never be replayed as another.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import OrderedDict
from pathlib import Path
from typing import NewType

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from ._errors import LedgerError

ParticipantId = NewType("ParticipantId", str)

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
PARTICIPANT_ID_HEX = 40

# Domain tags: one per kind of signed statement.
DOMAIN_DOCUMENT = b"tamga/document/v1"
DOMAIN_ATTESTATION = b"tamga/attestation/v1"
DOMAIN_REQUEST = b"tamga/request/v1"


class KeyFileError(LedgerError):
    """A key file or key bytes cannot be used (missing, malformed, wrong passphrase)."""


def participant_id(public_key: bytes) -> ParticipantId:
    """The participant id of a public key: 20 bytes of a tagged SHA-256, in hex."""
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise KeyFileError(f"an Ed25519 public key has {PUBLIC_KEY_BYTES} bytes, not {len(public_key)}")
    digest = hashlib.sha256(b"tamga/participant/v1" + public_key).hexdigest()
    return ParticipantId(digest[:PARTICIPANT_ID_HEX])


_PARTICIPANT_ID = re.compile(f"[0-9a-f]{{{PARTICIPANT_ID_HEX}}}")


def is_participant_id(value: object) -> bool:
    return isinstance(value, str) and _PARTICIPANT_ID.fullmatch(value) is not None


def signing_bytes(domain: bytes, chain_id: str, message: bytes) -> bytes:
    """The exact bytes a signature covers: domain, chain id, message, each length-framed."""
    chain = chain_id.encode("utf-8")
    return b"".join(
        (
            len(domain).to_bytes(1, "big"),
            domain,
            len(chain).to_bytes(1, "big"),
            chain,
            message,
        )
    )


# Private keys: created readable and writable by the owner only.
PRIVATE_FILE_MODE = 0o600


def write_private_file(path: Path, data: bytes) -> None:
    """Create `path` with mode 0600 and write `data`; KeyFileError if it exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE_MODE)
    except FileExistsError:
        raise KeyFileError(f"{path} exists; a key file is never overwritten") from None
    except OSError as exc:
        raise KeyFileError(f"cannot create key file {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


class KeyPair:
    """An Ed25519 signing key with its public half and participant id."""

    __slots__ = ("_private", "public_key", "participant_id")

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public_key: bytes = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.participant_id: ParticipantId = participant_id(self.public_key)

    @classmethod
    def generate(cls) -> KeyPair:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> KeyPair:
        """A key from 32 seed bytes: for tests and golden vectors only."""
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    def sign(self, domain: bytes, chain_id: str, message: bytes) -> bytes:
        return self._private.sign(signing_bytes(domain, chain_id, message))

    def private_pem(self, passphrase: bytes | None = None) -> bytes:
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase)
            if passphrase
            else serialization.NoEncryption()
        )
        return self._private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )

    def public_pem(self) -> bytes:
        return public_key_pem(self.public_key)

    def save(self, path: Path, passphrase: bytes | None = None) -> None:
        """Write the private key as PKCS#8 PEM into a new file readable by the owner only.

        The file is created with mode 0600 in the same call that creates it (never
        written first and restricted after, which leaves a moment when others may open
        it), and an existing file is never overwritten: a key lost that way is lost for
        good. KeyFileError if the file exists or cannot be created."""
        write_private_file(path, self.private_pem(passphrase))

    @classmethod
    def load(cls, path: Path, passphrase: bytes | None = None) -> KeyPair:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from exc
        return cls.from_pem(data, passphrase, source=str(path))

    @classmethod
    def from_pem(cls, data: bytes, passphrase: bytes | None = None, source: str = "key") -> KeyPair:
        try:
            key = serialization.load_pem_private_key(data, password=passphrase)
        except TypeError as exc:
            raise KeyFileError(f"{source}: {exc}") from exc
        except ValueError as exc:
            raise KeyFileError(
                f"{source} is not a readable PKCS#8 PEM private key (or the passphrase is wrong)"
            ) from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"{source} holds a {type(key).__name__}, not an Ed25519 key")
        return cls(key)


def public_key_pem(public_key: bytes) -> bytes:
    key = Ed25519PublicKey.from_public_bytes(public_key)
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def parse_public_key(text: str | bytes) -> bytes:
    """Raw 32 public key bytes from PEM, or from 64 hex characters."""
    raw = text.encode() if isinstance(text, str) else text
    stripped = raw.strip()
    if stripped.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(stripped)
        except ValueError as exc:
            raise KeyFileError("not a readable PEM public key") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFileError(f"the PEM holds a {type(key).__name__}, not an Ed25519 key")
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    try:
        value = bytes.fromhex(stripped.decode("ascii"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise KeyFileError("a public key is PEM or 64 hex characters") from exc
    if len(value) != PUBLIC_KEY_BYTES:
        raise KeyFileError(f"a public key has {PUBLIC_KEY_BYTES} bytes, got {len(value)}")
    return value


class Verifier:
    """Signature checks with a bounded cache of parsed public keys.

    Parsing a public key costs about as much as a third of a verification, and the same
    few thousand participants sign again and again, so parsed keys are kept, up to a bound.
    """

    CACHE_KEYS_MAX = 65_536

    def __init__(self) -> None:
        self._keys: OrderedDict[bytes, Ed25519PublicKey] = OrderedDict()

    def _key(self, public_key: bytes) -> Ed25519PublicKey | None:
        key = self._keys.get(public_key)
        if key is not None:
            return key
        try:
            key = Ed25519PublicKey.from_public_bytes(public_key)
        except ValueError:
            return None
        self._keys[public_key] = key
        if len(self._keys) > self.CACHE_KEYS_MAX:
            self._keys.popitem(last=False)
        return key

    def verify(
        self, public_key: bytes, signature: bytes, domain: bytes, chain_id: str, message: bytes
    ) -> bool:
        key = self._key(public_key)
        if key is None or len(signature) != SIGNATURE_BYTES:
            return False
        try:
            key.verify(signature, signing_bytes(domain, chain_id, message))
        except InvalidSignature:
            return False
        return True


# Signed read requests: commercial data is read only by registered participants.
REQUEST_HEADER_PARTICIPANT = "X-Tamga-Participant"
REQUEST_HEADER_TIME = "X-Tamga-Time"
REQUEST_HEADER_NODE = "X-Tamga-Node"
REQUEST_HEADER_NONCE = "X-Tamga-Nonce"
REQUEST_HEADER_SIGNATURE = "X-Tamga-Signature"
# A signed request is good for 30 seconds either side of the node's clock: NTP keeps
# an ERP's clock and a node's within a second or two, and every second of the window is
# a second in which the node must remember the request's nonce to refuse a replay.
REQUEST_SKEW_MS = 30_000
# A nonce is 16 to 64 random bytes in lower-case hex: 16 bytes make a collision between
# two honest requests of one participant within a window impossible in practice; the
# upper bound keeps what the node remembers per request small.
REQUEST_NONCE_BYTES_MIN = 16
REQUEST_NONCE_BYTES_MAX = 64


def request_message(method: str, path_qs: str, time_ms: int, node: str, nonce: str) -> bytes:
    """What a signed read request's signature covers: method, path with query, time, the
    member state whose node it is for, and a nonce. Naming the node keeps one node (or
    anyone who saw the request) from replaying it at another; the nonce lets the node
    refuse a second copy within the time window. No field can hold a newline (the path
    is ASCII from a request line; the others are tokens), so the joining is unambiguous."""
    fields = (method.upper(), path_qs, str(time_ms), node, nonce)
    return b"\n".join(field.encode() for field in fields)


def request_headers(
    key: KeyPair, chain_id: str, method: str, path_qs: str, time_ms: int, node: str, nonce: str
) -> dict[str, str]:
    """The headers of a signed read of `path_qs` at the node of member state `node`; the
    caller draws `nonce` (REQUEST_NONCE_BYTES_MIN or more random bytes, hex): the ledger
    itself draws nothing at random."""
    signature = key.sign(DOMAIN_REQUEST, chain_id, request_message(method, path_qs, time_ms, node, nonce))
    return {
        REQUEST_HEADER_PARTICIPANT: key.participant_id,
        REQUEST_HEADER_TIME: str(time_ms),
        REQUEST_HEADER_NODE: node,
        REQUEST_HEADER_NONCE: nonce,
        REQUEST_HEADER_SIGNATURE: signature.hex(),
    }
