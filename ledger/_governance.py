"""Governance by the states: membership, chain parameters and the product-group table
change only by a quorum.

A governance *proposal* says what to change: add a state's node, remove it, replace its
key and certificate, set chain parameters, clear evidence against a state (reserved
for the Byzantine-finality work), or set or retire a product group of the catalogue
(ledger/_group_table.py; `state` then names the proposing regulator's state). Its
canonical bytes are signed by each member state's regulator (domain-separated, chain
id included); a *certificate* is the proposal with those co-signatures. It takes effect
only with valid signatures of at least `byzantine_quorum(n)` distinct regulators of the
n member states, so that any two certificates share more than f states, at least one
of them honest.

The certificate travels in two places:

- in a `governance` document, which any regulator submits; the state machine applies it
  (`governance_writes`) and records the membership and parameters it sets in the ledger
  state, where every node reads the same values (`governed_member`, `governed_params`);
- in the context of the Raft configuration change that carries a membership change out.
  A node counts a configuration change from the moment it is in its log, before the
  blocks before it are applied, so the check there (`conf_change_authorization`) is a
  pure function of the certificate and genesis: every honest node decides alike.

Membership changes are queued, not refused, while Raft has not yet carried out an
earlier one: the ledger holds the membership the states decided, and the leader moves
Raft towards it one change at a time (Raft allows one pending change), in genesis order.
Refusing instead would need the ledger to observe Raft, which it cannot do
deterministically, and would make regulators race each other.

The regulators are genesis's: a state whose node is removed is still a member state,
and its regulator still counts towards the quorum.

Every membership proposal (add, remove, replace) names the *membership epoch* it was
made for: how many membership changes the ledger had applied. It applies only at that
epoch, and applying it moves the epoch on, so a certificate can never be used again
once membership moved past it: not as a document (however it is re-wrapped), and not
in Raft, whose judge accepts a change only when its epoch is above that of the change
before it (`conf_change_follows`). The member table every node derives from genesis
and these documents (`governed_membership`) is what the node's peer links, TLS pins,
sender checks and attestation checks follow.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ._catalogue import ProductGroup
from ._encoding import pack, pack_trusted, unpack, unpack_trusted
from ._errors import DecodeError
from ._genesis import ChainParams, Genesis, MemberState
from ._group_table import K_GROUP_TABLE, governed_groups
from ._identity import (
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    KeyPair,
    ParticipantId,
    Verifier,
    is_participant_id,
)
from ._reasons import Reason

DOMAIN_GOVERNANCE = b"tamga/governance/v1"
# Format 2 added the membership epoch (format 1 certificates could be replayed).
PROPOSAL_FORMAT = 2
# Format 3: a product-group proposal, format 2's fields and the group (or the name of the
# group retired). Only group actions use it, so every other proposal keeps its bytes.
GROUP_PROPOSAL_FORMAT = 3
# A proposal is a few hundred bytes; 16 KiB leaves room for many parameters and bounds
# what a document (and a Raft configuration change) can make every node decode.
PROPOSAL_BYTES_MAX = 16 << 10
# One co-signature per member state; the Union has five, genesis may name a few more.
COSIGNATURES_MAX = 64
# Addresses and URLs are for machines; 255 characters is the DNS name limit.
ADDRESS_CHARS_MAX = 255
PARAMS_MAX = 64
_U64_MAX = (1 << 64) - 1
_PARAM_VALUE_MAX = (1 << 63) - 1
_SHA256_HEX = re.compile("[0-9a-f]{64}")

# Ledger state keys: one prefix byte that no other record uses (see _records.py).
P_GOVERNANCE = b"g"
_K_PROPOSAL = P_GOVERNANCE + b"p"  # proposal id -> [height, position, action, state]
_K_MEMBER = P_GOVERNANCE + b"m"  # state code -> MemberRecord as a list
_K_PARAMS = P_GOVERNANCE + b"c"  # -> [[name, value], ...]: the parameters in force
_K_EPOCH = P_GOVERNANCE + b"e"  # -> the membership epoch (absent: 0, genesis's membership)
_K_CLEARED = P_GOVERNANCE + b"x"  # state code -> height of the block that last cleared its evidence

ACTIVE = "active"
REMOVED = "removed"


class Action(enum.StrEnum):
    ADD_NODE = "add_node"
    REMOVE_NODE = "remove_node"
    REPLACE_NODE = "replace_node"
    SET_PARAMS = "set_params"
    # Clears the equivocation evidence held against a state (ledger.Evidence) about
    # heights below the block that applies it: its node may lead again.
    CLEAR_EVIDENCE = "clear_evidence"
    # The catalogue's product-group table (ledger/_group_table.py): add or replace one
    # group, or retire one (no new products, no new codes).
    SET_PRODUCT_GROUP = "set_product_group"
    RETIRE_PRODUCT_GROUP = "retire_product_group"


GROUP_ACTIONS = frozenset((Action.SET_PRODUCT_GROUP, Action.RETIRE_PRODUCT_GROUP))
_WITH_NODE = frozenset((Action.ADD_NODE, Action.REPLACE_NODE))
MEMBERSHIP_ACTIONS = frozenset((Action.ADD_NODE, Action.REMOVE_NODE, Action.REPLACE_NODE))


class GovernanceRefused(Exception):
    """A governance document the state machine refuses, with the reason it records."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def faults_tolerated(n: int) -> int:
    """f: how many of n member states may be hostile, floor((n - 1) / 3)."""
    if n < 1:
        raise ValueError("a chain has at least one member state")
    return (n - 1) // 3


def byzantine_quorum(n: int) -> int:
    """ceil((n + f + 1) / 2) of n states: two such quorums share at least f + 1 states,
    so at least one honest state is in both (4 of 5, 2 of 3, 1 of 1)."""
    f = faults_tolerated(n)
    return (n + f + 2) // 2


def param_names() -> tuple[str, ...]:
    """The chain parameters a proposal may set: ChainParams' integer fields."""
    defaults = ChainParams()
    return tuple(
        f.name for f in dataclasses.fields(ChainParams) if type(getattr(defaults, f.name)) is int
    )


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """A state's node as governance names it (what genesis names, but for one state)."""

    public_key: bytes
    tls_cert_sha256: str
    peer_address: str
    api_url: str

    def to_list(self) -> list[Any]:
        return [self.public_key, self.tls_cert_sha256, self.peer_address, self.api_url]

    @classmethod
    def from_list(cls, value: Any) -> NodeSpec:
        if not isinstance(value, list) or len(value) != 4:
            raise DecodeError("a node is [public key, certificate sha256, peer address, api url]")
        public_key, cert, peer, api = value
        if not isinstance(public_key, bytes) or len(public_key) != PUBLIC_KEY_BYTES:
            raise DecodeError(f"a node public key has {PUBLIC_KEY_BYTES} bytes")
        if not isinstance(cert, str) or _SHA256_HEX.fullmatch(cert) is None:
            raise DecodeError("a certificate fingerprint is 64 lowercase hex digits")
        for name, text in (("peer address", peer), ("api url", api)):
            if not isinstance(text, str) or not 0 < len(text) <= ADDRESS_CHARS_MAX or not text.isprintable():
                raise DecodeError(f"the {name} is text of 1 to {ADDRESS_CHARS_MAX} printable characters")
        return cls(public_key, cert, peer, api)

    def to_json(self) -> dict[str, Any]:
        return {
            "node_public_key": self.public_key.hex(),
            "tls_cert_sha256": self.tls_cert_sha256,
            "peer_address": self.peer_address,
            "api_url": self.api_url,
        }


@dataclass(frozen=True, slots=True)
class Proposal:
    """What the regulators sign. `node` for add and replace, `params` for set_params."""

    chain_id: str
    action: Action
    state: str
    nonce: int
    expires_at_ms: int
    node: NodeSpec | None = None
    params: tuple[tuple[str, int], ...] = ()
    # The membership epoch a membership proposal is made for (0: genesis's membership);
    # other actions carry 0 and ignore it.
    epoch: int = 0
    # set_product_group: the group; retire_product_group: the name of the group.
    group: ProductGroup | None = None
    group_name: str = ""

    def canonical_bytes(self) -> bytes:
        subject: list[Any] = []
        if self.action is Action.SET_PRODUCT_GROUP:
            subject = [self.group.to_list() if self.group is not None else None]
        elif self.action is Action.RETIRE_PRODUCT_GROUP:
            subject = [self.group_name]
        return pack(
            [
                GROUP_PROPOSAL_FORMAT if self.action in GROUP_ACTIONS else PROPOSAL_FORMAT,
                self.chain_id,
                self.action.value,
                self.state,
                self.nonce,
                self.expires_at_ms,
                self.node.to_list() if self.node is not None else None,
                [[name, value] for name, value in self.params],
                self.epoch,
                *subject,
            ]
        )

    @property
    def id(self) -> bytes:
        return proposal_id(self.canonical_bytes())

    def sign(self, key: KeyPair) -> CoSignature:
        signature = key.sign(DOMAIN_GOVERNANCE, self.chain_id, self.canonical_bytes())
        return CoSignature(key.participant_id, signature)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "chain_id": self.chain_id,
            "action": self.action.value,
            "state": self.state,
            "nonce": self.nonce,
            "expires_at_ms": self.expires_at_ms,
            "epoch": self.epoch,
        }
        if self.node is not None:
            out["node"] = self.node.to_json()
        if self.params:
            out["params"] = dict(self.params)
        if self.group is not None:
            out["product_group"] = self.group.to_json()
        if self.group_name:
            out["retire_product_group"] = self.group_name
        return out


def proposal_id(proposal_bytes: bytes) -> bytes:
    return hashlib.sha256(proposal_bytes).digest()


def make_proposal(
    chain_id: str,
    action: Action | str,
    state: str,
    nonce: int,
    expires_at_ms: int,
    node: NodeSpec | None = None,
    params: Mapping[str, int] | None = None,
    epoch: int = 0,
    group: ProductGroup | None = None,
    group_name: str = "",
) -> Proposal:
    """A proposal with every structural check (the bytes are decoded back to be sure)."""
    try:
        kind = Action(action)
    except ValueError:
        raise DecodeError(f"unknown governance action {action!r}") from None
    ordered = tuple(sorted((params or {}).items()))
    if (group is not None) != (kind is Action.SET_PRODUCT_GROUP):
        raise DecodeError(f"{kind.value} {'needs' if kind is Action.SET_PRODUCT_GROUP else 'takes no'} group")
    if bool(group_name) != (kind is Action.RETIRE_PRODUCT_GROUP):
        raise DecodeError(
            f"{kind.value} {'needs' if kind is Action.RETIRE_PRODUCT_GROUP else 'takes no'} group name"
        )
    proposal = Proposal(chain_id, kind, state, nonce, expires_at_ms, node, ordered, epoch, group, group_name)
    try:
        raw = proposal.canonical_bytes()
    except (TypeError, ValueError, OverflowError) as exc:
        raise DecodeError(f"the proposal cannot be encoded: {exc}") from exc
    return decode_proposal(raw)


def decode_proposal(raw: bytes) -> Proposal:
    """Canonical proposal bytes back to a proposal; anything else raises DecodeError."""
    if not isinstance(raw, bytes) or len(raw) > PROPOSAL_BYTES_MAX:
        raise DecodeError(f"a proposal is at most {PROPOSAL_BYTES_MAX} bytes")
    value = unpack(raw)
    if not isinstance(value, list) or len(value) not in (9, 10):
        raise DecodeError("a proposal is an array of 9 fields (10 for a product group)")
    version, chain_id, action, state, nonce, expires, node, params, epoch, *subject = value
    expected = GROUP_PROPOSAL_FORMAT if subject else PROPOSAL_FORMAT
    if version != expected or type(version) is not int:
        raise DecodeError(f"unsupported proposal format {version!r}")
    if not isinstance(chain_id, str) or not 0 < len(chain_id) <= 64:
        raise DecodeError("chain_id must be text of 1 to 64 characters")
    try:
        kind = Action(action)
    except ValueError:
        raise DecodeError(f"unknown governance action {action!r}") from None
    if not isinstance(state, str) or len(state) != 2 or not state.isascii() or not state.isupper():
        raise DecodeError("state must be a two-letter member state code such as RU")
    for name, number in (("nonce", nonce), ("expires_at_ms", expires), ("epoch", epoch)):
        if type(number) is not int or not 0 <= number <= _U64_MAX:
            raise DecodeError(f"{name} must be an unsigned 64-bit integer")
    if (node is not None) != (kind in _WITH_NODE):
        raise DecodeError(f"{kind.value} {'needs' if kind in _WITH_NODE else 'takes no'} node")
    spec = NodeSpec.from_list(node) if node is not None else None
    checked = _check_params(params, kind)
    if epoch and kind not in MEMBERSHIP_ACTIONS:
        raise DecodeError(f"{kind.value} carries epoch 0: only membership changes name an epoch")
    if bool(subject) != (kind in GROUP_ACTIONS):
        raise DecodeError(f"{kind.value} {'needs' if kind in GROUP_ACTIONS else 'takes no'} product group")
    group, group_name = _check_subject(kind, subject[0] if subject else None)
    proposal = Proposal(chain_id, kind, state, nonce, expires, spec, checked, epoch, group, group_name)
    if proposal.canonical_bytes() != raw:
        raise DecodeError("the proposal's encoding is not canonical")
    return proposal


def _check_subject(kind: Action, subject: Any) -> tuple[ProductGroup | None, str]:
    if kind is Action.SET_PRODUCT_GROUP:
        return ProductGroup.from_list(subject), ""
    if kind is Action.RETIRE_PRODUCT_GROUP:
        if not isinstance(subject, str) or not 0 < len(subject) <= 32:
            raise DecodeError("retire_product_group names the group (text of 1 to 32 characters)")
        return None, subject
    return None, ""


def _check_params(params: Any, kind: Action) -> tuple[tuple[str, int], ...]:
    if not isinstance(params, list) or len(params) > PARAMS_MAX:
        raise DecodeError(f"params is a list of at most {PARAMS_MAX} [name, value] pairs")
    if (kind is Action.SET_PARAMS) != bool(params):
        raise DecodeError("set_params needs parameters; other actions take none")
    allowed = param_names()
    out: list[tuple[str, int]] = []
    for item in params:
        if not isinstance(item, list) or len(item) != 2:
            raise DecodeError("a parameter is [name, value]")
        name, value = item
        if name not in allowed:
            raise DecodeError(f"unknown chain parameter {name!r}; known: {', '.join(allowed)}")
        if type(value) is not int or not 0 < value <= _PARAM_VALUE_MAX:
            raise DecodeError(f"{name} must be a positive 63-bit integer")
        out.append((name, value))
    if [n for n, _ in out] != sorted({n for n, _ in out}):
        raise DecodeError("parameters are sorted by name, each named once")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class CoSignature:
    regulator: ParticipantId
    signature: bytes

    def to_list(self) -> list[Any]:
        return [self.regulator, self.signature]


def check_cosignatures_shape(value: Any) -> list[Any]:
    """Structure only: a list of [regulator id, 64-byte signature], bounded."""
    if not isinstance(value, list) or not 0 < len(value) <= COSIGNATURES_MAX:
        raise DecodeError(f"signatures is a list of 1 to {COSIGNATURES_MAX} [regulator, signature] pairs")
    for item in value:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or not is_participant_id(item[0])
            or not isinstance(item[1], bytes)
            or len(item[1]) != SIGNATURE_BYTES
        ):
            raise DecodeError(f"a co-signature is [regulator id, {SIGNATURE_BYTES}-byte signature]")
    return value


@dataclass(frozen=True, slots=True)
class QuorumVerdict:
    signers: tuple[str, ...]  # member-state codes with a valid signature, genesis order
    needed: int
    problem: str | None  # a duplicate, a non-regulator, a forged signature

    @property
    def met(self) -> bool:
        return self.problem is None and len(self.signers) >= self.needed


def quorum_verdict(
    genesis: Genesis,
    proposal_bytes: bytes,
    chain_id: str,
    signatures: Sequence[Sequence[Any]],
    verifier: Verifier,
) -> QuorumVerdict:
    """Which member states' regulators validly signed; any bad entry is a problem.

    A certificate with a bad entry is refused as a whole, though the rest may be a
    quorum: whoever assembled it added a signature that is not what it claims."""
    regulators = {s.regulator_id: s for s in genesis.states}
    needed = byzantine_quorum(len(genesis.states))
    seen: set[str] = set()
    for regulator, signature in signatures:
        state = regulators.get(regulator)
        if state is None:
            return QuorumVerdict((), needed, f"{regulator} is not the regulator of a member state")
        if regulator in seen:
            return QuorumVerdict((), needed, f"the regulator of {state.code} signed twice")
        seen.add(regulator)
        key = state.regulator_public_key
        if not verifier.verify(key, signature, DOMAIN_GOVERNANCE, chain_id, proposal_bytes):
            return QuorumVerdict((), needed, f"the signature of {state.code}'s regulator does not verify")
    signers = tuple(s.code for s in genesis.states if s.regulator_id in seen)
    return QuorumVerdict(signers, needed, None)


# -- certificates: a proposal with its co-signatures --------------------------------------


def certificate_bytes(proposal_bytes: bytes, signatures: Sequence[Sequence[Any]]) -> bytes:
    """What a Raft configuration change carries as its context."""
    return pack([proposal_bytes, [list(s) for s in signatures]])


def conf_change_authorization(genesis: Genesis, verifier: Verifier, context: bytes) -> tuple[str, int] | None:
    """("add" | "remove", Raft node id) when `context` is a certificate with a quorum
    for adding or removing a state's node on this chain; None for anything else.

    Pure: the same bytes give the same answer on every node, whatever it applied."""
    try:
        value = unpack(context)
        if not isinstance(value, list) or len(value) != 2:
            return None
        proposal_bytes, signatures = value
        proposal = decode_proposal(proposal_bytes)
        check_cosignatures_shape(signatures)
    except DecodeError:
        return None
    if proposal.chain_id != genesis.chain_id or proposal.action not in (Action.ADD_NODE, Action.REMOVE_NODE):
        return None
    member = _member_state(genesis, proposal.state)
    if member is None:
        return None
    if not quorum_verdict(genesis, proposal_bytes, genesis.chain_id, signatures, verifier).met:
        return None
    return ("add" if proposal.action is Action.ADD_NODE else "remove"), member.node_id


def certificate_epoch(context: bytes) -> int | None:
    """The membership epoch a certificate's proposal names; None when `context` is not a
    certificate of a membership proposal (structure only: no signature is checked)."""
    try:
        value = unpack(context)
        if not isinstance(value, list) or len(value) != 2:
            return None
        proposal = decode_proposal(value[0])
    except DecodeError:
        return None
    return proposal.epoch if proposal.action in MEMBERSHIP_ACTIONS else None


def conf_change_follows(prior_context: bytes, context: bytes) -> bool:
    """Whether a Raft change carrying certificate `context` may follow the change that
    carried `prior_context` (b"": none since genesis): its epoch must be above the
    prior one. The ledger applies membership certificates at strictly increasing epochs
    and the leader carries them out in that order (`next_conf_change`), so an honest
    change always follows; a certificate Raft already carried out, or one older than
    it, never does again (a replayed removal after the node was added back)."""
    epoch = certificate_epoch(context)
    if epoch is None:
        return False
    prior = certificate_epoch(prior_context) if prior_context else -1
    return prior is not None and epoch > prior


def _member_state(genesis: Genesis, code: str) -> MemberState | None:
    for s in genesis.states:
        if s.code == code:
            return s
    return None


# -- the ledger state governance keeps -------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """A state's node as the states last decided (genesis's until governance acts)."""

    status: str  # ACTIVE or REMOVED
    node: NodeSpec
    proposal: bytes  # id of the proposal that set this; b"" for genesis
    certificate: bytes  # that proposal's certificate (for the Raft change); b"" for genesis

    def pack(self) -> bytes:
        return pack_trusted([self.status, self.node.to_list(), self.proposal, self.certificate])

    @classmethod
    def unpack(cls, raw: bytes) -> MemberRecord:
        status, node, proposal, certificate = unpack_trusted(raw)
        return cls(status, NodeSpec(*node), proposal, certificate)

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, **self.node.to_json(), "proposal": self.proposal.hex() or None}


class Reader(Protocol):
    def get(self, key: bytes) -> bytes | None: ...


def governed_member(reader: Reader, genesis: Genesis, state: str) -> MemberRecord:
    """A member state's node as of the state `reader` reads (genesis's by default)."""
    raw = reader.get(_K_MEMBER + state.encode())
    if raw is not None:
        return MemberRecord.unpack(raw)
    s = genesis.state(state)
    node = NodeSpec(s.node_public_key, s.tls_cert_sha256, s.peer_address, s.api_url)
    return MemberRecord(ACTIVE, node, b"", b"")


def membership_epoch(reader: Reader) -> int:
    """How many membership changes (add, remove, replace) the ledger has applied."""
    raw = reader.get(_K_EPOCH)
    return 0 if raw is None else int(unpack_trusted(raw))


def membership_changed(writes: Mapping[bytes, object]) -> bool:
    """Whether a block's writes change the member table (every change moves the epoch)."""
    return _K_EPOCH in writes


def governed_params(reader: Reader, genesis: Genesis) -> ChainParams:
    """The chain parameters in force: genesis's, as governance last set them."""
    raw = reader.get(_K_PARAMS)
    if raw is None:
        return genesis.params
    known = set(param_names())
    return dataclasses.replace(genesis.params, **{n: v for n, v in unpack_trusted(raw) if n in known})


def governance_applied(reader: Reader, proposal_id_: bytes) -> list[Any] | None:
    """[height, position, action, state] of the block that applied a proposal, if any."""
    raw = reader.get(_K_PROPOSAL + proposal_id_)
    return unpack_trusted(raw) if raw is not None else None


def governance_writes(
    genesis: Genesis,
    verifier: Verifier,
    reader: Reader,
    proposal_bytes: bytes,
    signatures: Sequence[Sequence[Any]],
    *,
    time_ms: int,
    height: int,
    position: int,
) -> dict[bytes, bytes]:
    """The writes a governance document makes, or GovernanceRefused with the reason."""
    try:
        proposal = decode_proposal(proposal_bytes)
    except DecodeError as exc:
        raise GovernanceRefused(Reason.MALFORMED, f"the proposal: {exc}") from None
    if proposal.chain_id != genesis.chain_id:
        raise GovernanceRefused(Reason.WRONG_CHAIN, f"the proposal is for chain {proposal.chain_id!r}")
    if proposal.expires_at_ms < time_ms:
        raise GovernanceRefused(Reason.EXPIRED, "the proposal expired before it was ordered")
    pid = proposal_id(proposal_bytes)
    if reader.get(_K_PROPOSAL + pid) is not None:
        # Not `duplicate`: that reason means a second copy of one document, whose client
        # waited for the first; a replayed proposal is a new document, and its submitter
        # waits for this very answer.
        raise GovernanceRefused(Reason.ALREADY_EXISTS, f"proposal {pid.hex()} was already carried")
    verdict = quorum_verdict(genesis, proposal_bytes, genesis.chain_id, signatures, verifier)
    if verdict.problem is not None:
        raise GovernanceRefused(Reason.BAD_SIGNATURE, verdict.problem)
    if not verdict.met:
        raise GovernanceRefused(
            Reason.NO_QUORUM,
            f"{len(verdict.signers)} of {len(genesis.states)} regulators signed; {verdict.needed} are needed",
        )
    if _member_state(genesis, proposal.state) is None:
        raise GovernanceRefused(Reason.WRONG_STATE, f"{proposal.state} is not a member state of this chain")
    writes = _action_writes(genesis, reader, proposal, pid, certificate_bytes(proposal_bytes, signatures))
    if proposal.action in MEMBERSHIP_ACTIONS:
        # Checked after the action's own checks so that a refused change says why it
        # does not fit; either way nothing is written.
        epoch = membership_epoch(reader)
        if proposal.epoch != epoch:
            raise GovernanceRefused(
                Reason.STALE_EPOCH,
                f"the proposal was made for membership epoch {proposal.epoch}; the membership "
                f"is at epoch {epoch} (a certificate is good for one change, at one epoch)",
            )
        writes[_K_EPOCH] = pack_trusted(epoch + 1)
    if proposal.action is Action.CLEAR_EVIDENCE:
        writes[_K_CLEARED + proposal.state.encode()] = pack_trusted(height)
    writes[_K_PROPOSAL + pid] = pack_trusted([height, position, proposal.action.value, proposal.state])
    return writes


def _action_writes(
    genesis: Genesis, reader: Reader, proposal: Proposal, pid: bytes, certificate: bytes
) -> dict[bytes, bytes]:
    state = proposal.state
    key = _K_MEMBER + state.encode()
    current = governed_member(reader, genesis, state)
    action = proposal.action
    if action is Action.SET_PARAMS:
        params = dataclasses.replace(governed_params(reader, genesis), **dict(proposal.params))
        return {_K_PARAMS: pack_trusted([[n, getattr(params, n)] for n in param_names()])}
    if action is Action.CLEAR_EVIDENCE:
        return {}  # the height it applies at is written by governance_writes
    if action in GROUP_ACTIONS:
        return _group_writes(genesis, reader, proposal)
    if action is Action.ADD_NODE:
        if current.status == ACTIVE:
            raise GovernanceRefused(Reason.ALREADY_EXISTS, f"{state}'s node is a member already")
        if proposal.node is None:  # decode_proposal guarantees it
            raise GovernanceRefused(Reason.MALFORMED, "add_node names no node")
        return {key: MemberRecord(ACTIVE, proposal.node, pid, certificate).pack()}
    if current.status != ACTIVE:
        raise GovernanceRefused(Reason.WRONG_STATUS, f"{state}'s node is not a member")
    if action is Action.REPLACE_NODE:
        if proposal.node is None:
            raise GovernanceRefused(Reason.MALFORMED, "replace_node names no node")
        return {key: MemberRecord(ACTIVE, proposal.node, pid, certificate).pack()}
    # REMOVE_NODE: never the last node, or no one is left to order anything.
    active = [s.code for s in genesis.states if governed_member(reader, genesis, s.code).status == ACTIVE]
    if active == [state]:
        raise GovernanceRefused(Reason.WRONG_STATUS, f"{state}'s node is the last one and cannot be removed")
    return {key: MemberRecord(REMOVED, current.node, pid, certificate).pack()}


def _group_writes(genesis: Genesis, reader: Reader, proposal: Proposal) -> dict[bytes, bytes]:
    """The group table with one group set or retired, written whole (ledger/_group_table.py)."""
    table = governed_groups(reader, genesis.product_groups)
    if proposal.group is not None:
        try:
            changed = table.with_group(proposal.group)
        except DecodeError as exc:
            raise GovernanceRefused(Reason.WRONG_STATUS, str(exc)) from None
    else:
        name = proposal.group_name
        if name not in table.groups:
            raise GovernanceRefused(Reason.INVALID_PRODUCT,
                                    f"the table in force has no product group {name!r}")
        if name in table.retired:
            raise GovernanceRefused(Reason.WRONG_STATUS, f"product group {name} is retired already")
        changed = table.without(name)
    return {K_GROUP_TABLE: changed.pack()}


def evidence_cleared_below(reader: Reader, state: str) -> int:
    """The height of the block that last applied a CLEAR_EVIDENCE for `state` (0 if
    none): evidence about heights below it no longer holds against the state."""
    raw = reader.get(_K_CLEARED + state.encode())
    return int(unpack_trusted(raw)) if raw is not None else 0


def desired_voters(reader: Reader, genesis: Genesis) -> list[tuple[int, str, bytes]]:
    """(Raft node id, state, certificate) of each state's node the states want in Raft,
    with the certificate that last changed it (b"" for genesis's), in genesis order."""
    out = []
    for s in genesis.states:
        record = governed_member(reader, genesis, s.code)
        if record.status == ACTIVE:
            out.append((s.node_id, s.code, record.certificate))
    return out


def removed_members(reader: Reader, genesis: Genesis) -> list[tuple[int, str, bytes]]:
    """(Raft node id, state, certificate) of each state's node the states removed."""
    out = []
    for s in genesis.states:
        record = governed_member(reader, genesis, s.code)
        if record.status == REMOVED:
            out.append((s.node_id, s.code, record.certificate))
    return out


def next_conf_change(
    reader: Reader, genesis: Genesis, voters: Sequence[int]
) -> tuple[str, int, bytes] | None:
    """The next Raft change ("add" | "remove", node id, certificate) that brings the
    voters to the membership the states decided: of the differences, the one whose
    certificate has the lowest epoch (Raft's judge accepts changes only in increasing
    epochs); None when they agree or no certificate can justify the difference (a
    genesis node missing from Raft was not removed by governance, so nothing here
    re-adds it)."""
    current = set(voters)
    steps: list[tuple[int, str, int, bytes]] = []
    for node_id, _, certificate in removed_members(reader, genesis):
        if node_id in current:
            steps.append((certificate_epoch(certificate) or 0, "remove", node_id, certificate))
    for node_id, _, certificate in desired_voters(reader, genesis):
        if node_id not in current and certificate:
            steps.append((certificate_epoch(certificate) or 0, "add", node_id, certificate))
    if not steps:
        return None
    _, kind, node_id, certificate = min(steps)
    return kind, node_id, certificate


__all__ = [
    "ACTIVE",
    "GROUP_ACTIONS",
    "DOMAIN_GOVERNANCE",
    "REMOVED",
    "Action",
    "CoSignature",
    "GovernanceRefused",
    "MemberRecord",
    "NodeSpec",
    "Proposal",
    "QuorumVerdict",
    "byzantine_quorum",
    "certificate_bytes",
    "certificate_epoch",
    "conf_change_follows",
    "check_cosignatures_shape",
    "conf_change_authorization",
    "decode_proposal",
    "desired_voters",
    "faults_tolerated",
    "governance_applied",
    "governance_writes",
    "governed_member",
    "governed_params",
    "make_proposal",
    "membership_changed",
    "membership_epoch",
    "next_conf_change",
    "param_names",
    "proposal_id",
    "quorum_verdict",
    "evidence_cleared_below",
    "removed_members",
]
