"""Identities, canonical encoding and documents: formats pinned, bad input refused."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import (
    DOMAIN_DOCUMENT,
    DecodeError,
    DocType,
    KeyFileError,
    KeyPair,
    Verifier,
    decode_body,
    decode_signed,
    document_from_json,
    make_document,
    pack,
    parse_public_key,
    signed_from_json,
    unpack,
)

from .world import CHAIN_ID, GTIN, seeded_key

KEY = seeded_key("golden")


def golden_document() -> bytes:
    return make_document(
        CHAIN_ID, DocType.SHIP, KEY.participant_id, 7, 1_800_000_000_000,
        receiver="ab" * 20, codes=["01" + GTIN + "21" + "5jcmHzLmkdPML"],
    ).body_bytes()


def test_golden_vectors_pin_the_format() -> None:
    """Public key, participant id, body bytes, id and signature never change unnoticed."""
    body = golden_document()
    assert KEY.public_key.hex() == "66d1440bf47c23f83a97762da35aa5891d80734947dfbac2f7bc1694a4611690"
    assert KEY.participant_id == "30ea1151d9722443abab0e7c3eebcb3c1928b0e5"
    assert body.hex() == (
        "9701aa74616d67612d74657374a473686970d9283330656131313531643937323234343361626162"
        "306537633365656263623363313932386230653507cf000001a3185c500092d92861626162616261"
        "62616261626162616261626162616261626162616261626162616261626162616291bf3031303436"
        "38303032393436303930383231356a636d487a4c6d6b64504d4c"
    )
    assert hashlib.sha256(body).hexdigest() == (
        "7acfa3e1456a2d855f4a9ff066eb5fe0f717e52b45350e7a0d72e2854b87527d"
    )
    assert KEY.sign(DOMAIN_DOCUMENT, CHAIN_ID, body).hex() == (
        "1e594bfdc99657530be96e210f1d9dbc9fcfdf9df46453451d275b60ae54465c"
        "fe7be0b55c763519edffb8b3e6079d1363772c2ad22f9c8ba49bf2c7248a5803"
    )


def test_canonical_encoding_round_trips_and_refuses_non_canonical() -> None:
    """Canonical bytes decode and re-encode identically; padded ints, maps and floats are refused."""
    value = [1, "x", b"\x00", [2, 3], True, None]
    assert unpack(pack(value)) == value
    with pytest.raises(DecodeError):
        unpack(b"\xcd\x00\x01")  # 1 as uint16: not the shortest form
    with pytest.raises(DecodeError):
        unpack(b"\x81\xa1a\x01")  # a map
    with pytest.raises(DecodeError):
        decode_signed(pack([b"\x00", 1]) + b"")  # not bytes for the signature
    with pytest.raises(DecodeError):
        pack([1.5])
    with pytest.raises(DecodeError):
        unpack(pack([1]) + b"\x00")  # trailing bytes


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_random_bytes_never_crash_decoding(data: bytes) -> None:
    """Any bytes either decode to a signed document or raise DecodeError, nothing else."""
    try:
        signed = decode_signed(data)
    except DecodeError:
        return
    assert signed.wire() == data


serials = st.lists(st.text(alphabet="ABCxyz0189-_", min_size=1, max_size=20), min_size=1, max_size=5)


@given(nonce=st.integers(0, 2**64 - 1), expires=st.integers(0, 2**63), serials=serials)
@settings(max_examples=100, deadline=None)
def test_documents_round_trip_through_bytes_and_json(nonce: int, expires: int, serials: list[str]) -> None:
    """A document survives wire bytes and JSON unchanged, with the same id."""
    doc = make_document(CHAIN_ID, "emit", KEY.participant_id, nonce, expires,
                        owner="12" * 20, gtin=GTIN, serials=serials)
    signed = doc.sign(KEY)
    again = decode_signed(signed.wire())
    assert again == signed and again.id == signed.id
    assert decode_body(doc.body_bytes()) == doc
    assert document_from_json(doc.to_json()) == doc
    assert signed_from_json(signed.to_json()) == signed


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"receiver": "ab" * 20, "codes": ["x"], "extra": 1}, "unknown field"),
        ({"receiver": "ab" * 20}, "missing field"),
        ({"receiver": "nobody", "codes": ["x"]}, "participant id"),
        ({"receiver": "ab" * 20, "codes": []}, "1 to 30000"),
        ({"receiver": "ab" * 20, "codes": ["x"] * 30_001}, "1 to 30000"),
        ({"receiver": "ab" * 20, "codes": [7]}, "code of 1 to 40"),
    ],
)
def test_structural_errors_name_the_problem(fields: dict[str, object], message: str) -> None:
    """Unknown, missing and ill-typed fields are refused with a message naming them."""
    with pytest.raises(DecodeError, match=message):
        make_document(CHAIN_ID, "ship", KEY.participant_id, 1, 2, **fields)


def test_unknown_type_and_bad_json_are_refused() -> None:
    """An unknown type, a non-object and a bad hex signature are DecodeErrors."""
    with pytest.raises(DecodeError, match="unknown document type"):
        make_document(CHAIN_ID, "steal", KEY.participant_id, 1, 2)
    with pytest.raises(DecodeError):
        document_from_json([1, 2])
    with pytest.raises(DecodeError):
        signed_from_json({"document": {}, "signature": "zz"})


def test_signatures_are_domain_separated_and_bound_to_the_chain() -> None:
    """A signature verifies only for its own domain and chain id."""
    verifier = Verifier()
    sig = KEY.sign(DOMAIN_DOCUMENT, CHAIN_ID, b"m")
    assert verifier.verify(KEY.public_key, sig, DOMAIN_DOCUMENT, CHAIN_ID, b"m")
    assert not verifier.verify(KEY.public_key, sig, DOMAIN_DOCUMENT, "other", b"m")
    assert not verifier.verify(KEY.public_key, sig, b"tamga/attestation/v1", CHAIN_ID, b"m")
    assert not verifier.verify(KEY.public_key, bytes(64), DOMAIN_DOCUMENT, CHAIN_ID, b"m")
    assert not verifier.verify(b"\x00" * 31, sig, DOMAIN_DOCUMENT, CHAIN_ID, b"m")


def test_key_files_round_trip_with_and_without_passphrase(tmp_path: Path) -> None:
    """Keys save as PKCS#8 PEM, load back, and refuse a wrong passphrase or a bad file."""
    key = KeyPair.generate()
    key.save(tmp_path / "plain.pem")
    key.save(tmp_path / "locked.pem", passphrase=b"secret")
    assert KeyPair.load(tmp_path / "plain.pem").participant_id == key.participant_id
    assert KeyPair.load(tmp_path / "locked.pem", b"secret").participant_id == key.participant_id
    assert (tmp_path / "plain.pem").stat().st_mode & 0o777 == 0o600
    with pytest.raises(KeyFileError):
        KeyPair.load(tmp_path / "locked.pem", b"wrong")
    with pytest.raises(KeyFileError, match="cannot read"):
        KeyPair.load(tmp_path / "missing.pem")
    (tmp_path / "junk.pem").write_text("junk")
    with pytest.raises(KeyFileError):
        KeyPair.load(tmp_path / "junk.pem")
    assert parse_public_key(key.public_pem()) == key.public_key
    assert parse_public_key(key.public_key.hex()) == key.public_key
    with pytest.raises(KeyFileError):
        parse_public_key("abcd")
