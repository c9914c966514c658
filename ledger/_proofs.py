"""Proofs that check offline against nothing but the genesis file.

An `InclusionProof` shows that a document, with its result, is in a *final* block:
the header, every attestation carried (all must verify, and a Byzantine quorum of
distinct member states must attest it, ledger._finality), and RFC 6962 audit paths for
the document and for its result. A block attested by a mere majority is not final (a
hostile leader can gather a majority on each of two blocks at one height), and a
bundle holding one does not verify.

A `ProvenanceBundle` is a code's whole story: an inclusion proof for every document
that touched the code or an aggregate it travelled in, and for the registration of
every participant who signed one, so each signature can be checked too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._chain import Attestation, BlockHeader, encode_result
from ._documents import PAYLOADS, DocType, SignedDocument, decode_signed
from ._encoding import pack, unpack, unpack_trusted
from ._errors import DecodeError
from ._finality import final_states, finality_verdict
from ._genesis import Genesis
from ._identity import DOMAIN_DOCUMENT, ParticipantId, Verifier, participant_id
from ._merkle import MerkleTree, ProofError, leaf_hash, verify_inclusion
from ._records import P_BLOCK_DOC, P_DOC, P_PARTICIPANT, P_RESULTS, REPLACES, ParticipantRecord, u32, u64
from ._state import Reason, Result
from ._store import LedgerStore

# Version 2: the attestations carried name their round (version 1 bundles do not decode).
BUNDLE_VERSION = 2


@dataclass(frozen=True, slots=True)
class InclusionProof:
    header: BlockHeader
    attestations: list[Attestation]
    position: int
    document: bytes  # the signed document's wire bytes
    document_path: list[bytes]
    result: Result
    result_path: list[bytes]

    def to_list(self) -> list[Any]:
        return [
            self.header.encode(),
            [a.to_list() for a in self.attestations],
            self.position,
            self.document,
            self.document_path,
            self.result.to_list(),
            self.result_path,
        ]

    @classmethod
    def from_list(cls, value: Any) -> InclusionProof:
        if not isinstance(value, list) or len(value) != 7:
            raise DecodeError("an inclusion proof has 7 fields")
        header, atts, position, document, doc_path, result, result_path = value
        if not isinstance(header, bytes) or not isinstance(atts, list) or not isinstance(document, bytes):
            raise DecodeError("inclusion proof fields have the wrong types")
        if isinstance(position, bool) or not isinstance(position, int):
            raise DecodeError("inclusion proof position must be an integer")
        for path in (doc_path, result_path):
            if not isinstance(path, list) or not all(isinstance(h, bytes) for h in path):
                raise DecodeError("an audit path is a list of hashes")
        if not isinstance(result, list) or len(result) != 2:
            raise DecodeError("a result is [reason, message]")
        try:
            decoded_result = Result.from_list(result)
        except (ValueError, TypeError) as exc:
            raise DecodeError(f"unknown result {result!r}") from exc
        return cls(
            BlockHeader.decode(header),
            [Attestation.from_list(a) for a in atts],
            position,
            document,
            doc_path,
            decoded_result,
            result_path,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "header": self.header.to_json(),
            "header_bytes": self.header.encode().hex(),
            "attestations": [a.to_json() for a in self.attestations],
            "position": self.position,
            "document": self.document.hex(),
            "document_path": [h.hex() for h in self.document_path],
            "result": self.result.to_json(),
            "result_bytes": encode_result(self.result).hex(),
            "result_path": [h.hex() for h in self.result_path],
        }

    @classmethod
    def from_json(cls, obj: Any) -> InclusionProof:
        try:
            return cls.from_list(
                [
                    bytes.fromhex(obj["header_bytes"]),
                    [Attestation.from_json(a).to_list() for a in obj["attestations"]],
                    obj["position"],
                    bytes.fromhex(obj["document"]),
                    [bytes.fromhex(h) for h in obj["document_path"]],
                    unpack(bytes.fromhex(obj["result_bytes"])),
                    [bytes.fromhex(h) for h in obj["result_path"]],
                ]
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, DecodeError):
                raise
            raise DecodeError(f"malformed inclusion proof: {exc!r}") from exc


def check_attested(
    header: BlockHeader, attestations: list[Attestation], genesis: Genesis, verifier: Verifier
) -> None:
    """Every attestation carried must verify, and the block must be final: a Byzantine
    quorum of distinct member states must attest it (ledger._finality)."""
    if header.chain_id != genesis.chain_id:
        raise ProofError(f"block {header.height} belongs to chain {header.chain_id!r}")
    verdict = finality_verdict(genesis, header.height, header.raft_term, header.hash, attestations, verifier)
    if verdict.problem is not None:
        raise ProofError(verdict.message(header.height))
    if not verdict.final:
        raise ProofError(
            f"block {header.height} is not final: attested by {len(verdict.states)} member states, "
            f"a Byzantine quorum of {verdict.needed} is needed"
        )


def verify_inclusion_proof(proof: InclusionProof, genesis: Genesis, verifier: Verifier | None = None) -> None:
    """Raise ProofError unless the document and its result are in an attested block."""
    verifier = verifier or Verifier()
    check_attested(proof.header, proof.attestations, genesis, verifier)
    size = proof.header.documents
    verify_inclusion(
        leaf_hash(proof.document), proof.position, size, proof.document_path, proof.header.documents_root
    )
    verify_inclusion(
        leaf_hash(encode_result(proof.result)),
        proof.position,
        size,
        proof.result_path,
        proof.header.results_root,
    )


def _block_trees(store: LedgerStore, height: int) -> tuple[list[bytes], MerkleTree, list[Result], MerkleTree]:
    documents = store.block_documents(height)
    results = store.results(height)
    doc_tree = MerkleTree([leaf_hash(d) for d in documents])
    result_tree = MerkleTree([leaf_hash(encode_result(r)) for r in results])
    return documents, doc_tree, results, result_tree


class _ProofBuilder:
    """Builds inclusion proofs, reusing each block's trees across documents."""

    def __init__(self, store: LedgerStore) -> None:
        self.store = store
        self._cache: dict[int, tuple[list[bytes], MerkleTree, list[Result], MerkleTree]] = {}

    def at(self, height: int, position: int) -> InclusionProof:
        if height not in self._cache:
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[height] = _block_trees(self.store, height)
        documents, doc_tree, results, result_tree = self._cache[height]
        header = self.store.header(height)
        if header is None:
            raise ProofError(f"block {height} is missing")
        return InclusionProof(
            header,
            self.store.attestations(height),
            position,
            documents[position],
            doc_tree.inclusion_proof(position),
            results[position],
            result_tree.inclusion_proof(position),
        )


def inclusion_proof(store: LedgerStore, doc_id: bytes) -> InclusionProof | None:
    raw = store.db.get(P_DOC + doc_id)
    if raw is None:
        return None
    height, position, _ = unpack_trusted(raw)
    return _ProofBuilder(store).at(height, position)


@dataclass(frozen=True, slots=True)
class ProvenanceBundle:
    code: str
    genesis_hash: bytes
    entries: list[InclusionProof]
    registrations: list[InclusionProof]

    def encode(self) -> bytes:
        return pack(
            [
                BUNDLE_VERSION,
                self.code,
                self.genesis_hash,
                [e.to_list() for e in self.entries],
                [r.to_list() for r in self.registrations],
            ]
        )

    @classmethod
    def decode(cls, data: bytes) -> ProvenanceBundle:
        value = unpack(data)
        if not isinstance(value, list) or len(value) != 5 or value[0] != BUNDLE_VERSION:
            raise DecodeError("not a version 1 provenance bundle")
        _, code, genesis_hash, entries, registrations = value
        if not isinstance(code, str) or not isinstance(genesis_hash, bytes):
            raise DecodeError("bundle code or genesis hash has the wrong type")
        if not isinstance(entries, list) or not isinstance(registrations, list):
            raise DecodeError("bundle entries must be lists")
        return cls(
            code,
            genesis_hash,
            [InclusionProof.from_list(e) for e in entries],
            [InclusionProof.from_list(r) for r in registrations],
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "version": BUNDLE_VERSION,
            "code": self.code,
            "genesis_hash": self.genesis_hash.hex(),
            "entries": [e.to_json() for e in self.entries],
            "registrations": [r.to_json() for r in self.registrations],
        }

    @classmethod
    def from_json(cls, obj: Any) -> ProvenanceBundle:
        try:
            if obj["version"] != BUNDLE_VERSION:
                raise DecodeError("not a version 1 provenance bundle")
            return cls(
                str(obj["code"]),
                bytes.fromhex(obj["genesis_hash"]),
                [InclusionProof.from_json(e) for e in obj["entries"]],
                [InclusionProof.from_json(r) for r in obj["registrations"]],
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, DecodeError):
                raise
            raise DecodeError(f"malformed provenance bundle: {exc!r}") from exc


def _registration_position(store: LedgerStore, pid: str) -> tuple[int, int] | None:
    raw = store.db.get(P_PARTICIPANT + pid.encode())
    if raw is None:
        return None
    record = ParticipantRecord.unpack(raw)
    if record.registered_height == 0:
        return None  # a regulator, named by genesis
    prefix = P_BLOCK_DOC + u64(record.registered_height)
    results = unpack_trusted(store.db.get(P_RESULTS + u64(record.registered_height)) or b"\x90")
    for position, result in enumerate(results):
        if result[0] != Reason.APPLIED.value:
            continue
        wire = store.db.get(prefix + u32(position))
        if wire is None:
            continue
        signed = decode_signed(wire)
        doc = signed.document
        if doc.type is DocType.REGISTER_PARTICIPANT and participant_id(doc.payload[0]) == pid:
            return record.registered_height, position
    return None


def provenance(
    store: LedgerStore, key: str, until: tuple[int, int] | None = None
) -> ProvenanceBundle | None:
    """A code's provenance bundle, or None for a code never emitted; with `until`, only
    the history up to that (height, position), inclusive (what a past holder may see)."""
    if store.code_record(key) is None:
        return None
    builder = _ProofBuilder(store)
    history = store.whole_history(key)
    link = store.link(key)
    if link is not None and link[0] == REPLACES:
        # A code that replaced a damaged one (issue 13): the goods' story before the
        # remark is the old code's, up to the remark, which the new code's history holds.
        older = [e for e in store.whole_history(link[1]) if (e.height, e.position) < (link[2], link[3])]
        # One document may name both codes (one emit issues many): each place once.
        places = {(e.height, e.position): e for e in [*older, *history]}
        history = [places[place] for place in sorted(places)]
    if until is not None:
        history = [e for e in history if (e.height, e.position) <= until]
    entries = [builder.at(e.height, e.position) for e in history]
    signers: list[ParticipantId] = []
    for proof in entries:
        signer = decode_signed(proof.document).document.signer
        if signer not in signers:
            signers.append(signer)
    registrations = []
    for signer in signers:
        where = _registration_position(store, signer)
        if where is not None:
            registrations.append(builder.at(*where))
    return ProvenanceBundle(key, store.genesis.hash, entries, registrations)


def not_final_heights(bundle: ProvenanceBundle, genesis: Genesis) -> list[int]:
    """Heights of the bundle's blocks that its attestations do not make final (counting
    distinct states that attest the block's height, round and hash; signatures are checked by
    `verify_provenance`). A node builds a bundle from what it holds; while a block is
    still short of a Byzantine quorum, the bundle would not verify: wait, or say so."""
    out: set[int] = set()
    for proof in (*bundle.entries, *bundle.registrations):
        header = proof.header
        agreeing = (a.state for a in proof.attestations if a.names(header))
        if not final_states(genesis, agreeing):
            out.add(header.height)
    return sorted(out)


@dataclass(frozen=True, slots=True)
class ProvenanceEvent:
    height: int
    position: int
    time_ms: int
    type: str
    signer: str
    document_id: bytes
    document: SignedDocument

    def to_json(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "position": self.position,
            "time_ms": self.time_ms,
            "type": self.type,
            "signer": self.signer,
            "document_id": self.document_id.hex(),
            "document": self.document.document.to_json(),
        }


def _touches(doc: SignedDocument, names: set[str], shipments: set[bytes]) -> bool:
    """Whether a document names one of `names` (the code or an enclosing aggregate),
    directly or through a shipment that carried one of them."""
    d = doc.document
    if d.type in (DocType.ACCEPT, DocType.REJECT, DocType.CANCEL_SHIPMENT):
        return bool(d.payload[0] in shipments)
    if d.type is DocType.EMIT:
        gtin, serials = d.payload[1], d.payload[2]
        return any("01" + gtin + "21" + s in names for s in serials)
    if d.type in (DocType.AGGREGATE, DocType.DISAGGREGATE) and d.payload[0] in names:
        return True
    if d.type is DocType.REMARK:
        return bool(d.payload[0] in names or d.payload[1] in names)
    if d.type is DocType.REAGGREGATE:
        sscc, add, remove = d.payload[:3]
        return sscc in names or any(c in names for c in add) or any(c in names for c in remove)
    if not any(name == "codes" for name, _ in PAYLOADS[d.type]):
        return False
    return any(c in names for c in d.field("codes"))


def verify_provenance(
    bundle: ProvenanceBundle, genesis: Genesis, verifier: Verifier | None = None
) -> list[ProvenanceEvent]:
    """Check a bundle offline; return the code's events in chain order, or raise ProofError."""
    verifier = verifier or Verifier()
    if bundle.genesis_hash != genesis.hash:
        raise ProofError("the bundle was made for another genesis")
    if not bundle.entries:
        raise ProofError("the bundle holds no documents")
    keys = {s.regulator_id: s.regulator_public_key for s in genesis.states}
    for proof in bundle.registrations:
        verify_inclusion_proof(proof, genesis, verifier)
        signed = _decode(proof)
        if signed.document.type is not DocType.REGISTER_PARTICIPANT or not proof.result.applied:
            raise ProofError("a registration in the bundle is not an applied registration")
        public_key = signed.document.payload[0]
        keys[participant_id(public_key)] = public_key
    events: list[ProvenanceEvent] = []
    names = {bundle.code}
    # A code that replaced another (a remark, issue 13) carries the old code's story.
    for proof in bundle.entries:
        replaced = _remark_of(proof, bundle.code)
        if replaced is not None:
            names.add(replaced)
    shipments: set[bytes] = set()
    last = (0, -1)
    for proof in bundle.entries:
        verify_inclusion_proof(proof, genesis, verifier)
        where = (proof.header.height, proof.position)
        if where <= last:
            raise ProofError(f"entries are out of chain order at height {where[0]}")
        last = where
        if not proof.result.applied:
            raise ProofError(f"the document at {where[0]}/{where[1]} was not applied")
        signed = _decode(proof)
        doc = signed.document
        key = keys.get(doc.signer)
        if key is None:
            raise ProofError(f"no registration for signer {doc.signer} in the bundle")
        if not verifier.verify(key, signed.signature, DOMAIN_DOCUMENT, genesis.chain_id, signed.body):
            raise ProofError(f"the signature of the document at {where[0]}/{where[1]} does not verify")
        if not _touches(signed, names, shipments):
            raise ProofError(f"the document at {where[0]}/{where[1]} does not concern {bundle.code}")
        if doc.type is DocType.AGGREGATE:
            names.add(doc.payload[0])
        if doc.type is DocType.REAGGREGATE and any(c in names for c in doc.payload[1]):
            names.add(doc.payload[0])
        if doc.type is DocType.SHIP:
            shipments.add(signed.id)
        events.append(
            ProvenanceEvent(
                where[0], where[1], proof.header.time_ms, doc.type.value, doc.signer, signed.id, signed
            )
        )
    return events


def _remark_of(proof: InclusionProof, code: str) -> str | None:
    """The code a remark in the bundle replaced with `code`, if the entry is one."""
    try:
        doc = decode_signed(proof.document).document
    except DecodeError:
        return None  # the loop below refuses it
    if doc.type is DocType.REMARK and doc.payload[1] == code:
        return str(doc.payload[0])
    return None


def _decode(proof: InclusionProof) -> SignedDocument:
    try:
        return decode_signed(proof.document)
    except DecodeError as exc:
        raise ProofError(f"a document in the bundle does not decode: {exc}") from exc
