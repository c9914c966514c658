"""Chain time no leader can move, expiry windows and block limits: genesis rules at apply."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from ledger import TIME_MS_MAX, Auditor, ChainParams, DecodeError, DocType, Genesis, Reason, SignedDocument

from .world import World, make_genesis, seeded_key

STEP_MS = ChainParams().block_time_step_max_ms


def _world(tmp_path: Path, **params: int) -> World:
    genesis = replace(make_genesis(), params=replace(ChainParams(), **params))
    return World(tmp_path / "db", genesis)


def _shop(world: World, name: str, expires_ms: int = 3_600_000) -> SignedDocument:
    """A document registering a new shop: valid whenever its time is right."""
    return world.doc(world.regulator("RU"), DocType.REGISTER_PARTICIPANT, expires_ms=expires_ms,
                     public_key=seeded_key(name).public_key, state="RU", roles=["retailer"], name=name)


def _apply_at(world: World, time_ms: int, *docs: SignedDocument) -> list[Reason]:
    wires = [d.wire() for d in docs]
    return [r.reason for r in world.store.apply_block(wires, time_ms, "RU").results]


# (case, proposed, previous, effective)
BLOCK_TIMES = [
    ("as proposed", 1_000 + STEP_MS // 2, 1_000, 1_000 + STEP_MS // 2),
    ("one whole step", 1_000 + STEP_MS, 1_000, 1_000 + STEP_MS),
    ("beyond one step", 1_000 + STEP_MS + 1, 1_000, 1_000 + STEP_MS),
    ("the end of time", 2**64 - 1, 1_000, 1_000 + STEP_MS),
    ("back in time", 0, 1_000, 1_000),
    ("negative", -(2**63), 1_000, 1_000),
    ("at the top of the range", TIME_MS_MAX, TIME_MS_MAX - 5, TIME_MS_MAX),
]


@pytest.mark.parametrize(("case", "proposed", "previous", "effective"), BLOCK_TIMES, ids=[c[0] for c in BLOCK_TIMES])
def test_block_time_is_the_proposal_clamped_to_one_step(case: str, proposed: int, previous: int,
                                                         effective: int) -> None:
    """Block time never goes back, moves at most one step, and stays within 0..2^63-1."""
    assert ChainParams().block_time(proposed, previous) == effective


def test_a_block_at_the_end_of_time_does_not_expire_later_documents(tmp_path: Path) -> None:
    """Finding 2: a block proposed at 2^64-1 moves chain time one step only, so the
    documents of the next block are applied, not `expired` (before the fix: expired)."""
    world = _world(tmp_path)
    before = world.store.head.time_ms
    assert _apply_at(world, 2**64 - 1) == []
    assert world.store.head.time_ms == before + STEP_MS
    world.time_ms = world.store.head.time_ms
    doc = _shop(world, "Shop", expires_ms=600_000)
    assert _apply_at(world, world.time_ms + 1_000, doc) == [Reason.APPLIED]


def test_two_stores_clamp_alike_and_the_auditor_agrees(tmp_path: Path) -> None:
    """Every node applies the same clamp, so hostile times give identical chains, which
    the auditor's replay accepts."""
    worlds = [_world(tmp_path / name) for name in ("a", "b")]
    for world in worlds:
        for proposed in (2**64 - 1, 0, world.genesis.time_ms + 10 * STEP_MS, -5):
            _apply_at(world, proposed)
    assert worlds[0].store.head == worlds[1].store.head
    worlds[0].store.close()
    with Auditor(worlds[0].genesis, tmp_path / "replica") as auditor:
        report = auditor.verify_data_dir(tmp_path / "a" / "db")
    assert report.ok, report.to_json()


def test_documents_expiring_beyond_the_window_are_refused_at_apply(tmp_path: Path) -> None:
    """A document that would stay valid for longer than genesis allows is refused, not
    recorded, and is applied once the block time brings it within the window."""
    world = _world(tmp_path, document_expiry_window_max_ms=30_000)
    doc = _shop(world, "Shop", expires_ms=60_000)
    assert _apply_at(world, world.time_ms) == []  # chain time reaches the document's creation
    assert _apply_at(world, world.time_ms + 1_000, doc) == [Reason.EXPIRY_TOO_FAR]
    assert not world.store.is_recorded(doc.id)
    assert _apply_at(world, world.time_ms + 40_000, doc) == [Reason.APPLIED]


def test_documents_beyond_the_block_limits_are_refused_unrecorded(tmp_path: Path) -> None:
    """Finding 6: genesis `block_documents_max` and `block_bytes_max` hold at apply: the
    documents from the first one over a limit are `block_full`, leave no trace and may be
    ordered again (before the fix all were applied)."""
    world = _world(tmp_path, block_documents_max=2)
    docs = [_shop(world, f"Shop {s}") for s in "ABC"]
    assert _apply_at(world, world.time_ms + 1_000, *docs) == [Reason.APPLIED, Reason.APPLIED, Reason.BLOCK_FULL]
    assert not world.store.is_recorded(docs[2].id)
    assert _apply_at(world, world.time_ms + 2_000, docs[2]) == [Reason.APPLIED]

    sized = _world(tmp_path / "bytes")
    docs = [_shop(sized, f"Shop {s}") for s in "ABC"]
    first_two = len(docs[0].wire()) + len(docs[1].wire())
    sized.store.close()
    sized = _world(tmp_path / "bytes2", block_bytes_max=first_two)
    assert _apply_at(sized, sized.time_ms + 1_000, *docs) == [Reason.APPLIED, Reason.APPLIED, Reason.BLOCK_FULL]


def test_chain_params_are_hashed_bounded_and_default_for_old_genesis_files(tmp_path: Path) -> None:
    """A genesis file without the new limits loads with their defaults; each limit is
    part of the genesis hash; a limit out of range is refused."""
    genesis = make_genesis()
    obj = genesis.to_json()
    obj["params"] = {"block_documents_max": 10_000, "block_bytes_max": 16 << 20}
    (tmp_path / "old.json").write_text(json.dumps(obj))
    assert Genesis.load(tmp_path / "old.json") == genesis
    for name in ChainParams.__slots__:
        changed = replace(genesis, params=replace(ChainParams(), **{name: getattr(genesis.params, name) + 1}))
        assert changed.hash != genesis.hash, name
        assert Genesis.from_json(changed.to_json()) == changed
    for bad in (0, -1, 2**63, True, "60000"):
        with pytest.raises(DecodeError):
            ChainParams(block_time_step_max_ms=bad)  # type: ignore[arg-type]
    with pytest.raises(DecodeError):
        replace(genesis, time_ms=2**63)
    obj["params"]["surprise_ms"] = 1
    with pytest.raises(DecodeError):
        Genesis.from_json(obj)
