"""What the console learns by reading the chain block by block, as the reader's key may.

The node's API has no route that lists participants, suspensions or rejections; every
block holds them, and `GET /v1/blocks` streams blocks to a reader allowed to read them.
`ChainIndex` folds blocks in height order into small summaries that the views show.
It is pure (no I/O, no clock): `add_block` takes a decoded block, so tests feed it
blocks built by hand. Every collection has a bound, so a long chain costs the console
a fixed amount of memory; what falls past a bound is counted, never silently lost.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

import ledger

# A regulator's console lists each participant of its state; a union-wide registry
# with more than this many is shown partially (the count says how many more).
PARTICIPANTS_MAX = 100_000
# Codes currently suspended; a mass suspension of more is summarised by its count.
SUSPENDED_MAX = 100_000
# Recent rejections and recall documents kept in full for the tables (newest kept).
RECENT_MAX = 200
# Rejections are counted per signer; beyond this many distinct signers the rest are
# counted together under "(others)".
SIGNERS_MAX = 10_000
OTHERS = "(others)"


@dataclass
class ChainIndex:
    """Summaries of every block up to `height`."""

    height: int = 0
    documents: int = 0
    undecodable: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    blocks_by_day_ms: Counter[int] = field(default_factory=Counter)
    participants: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)
    participants_dropped: int = 0
    suspended: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)
    suspended_dropped: int = 0
    rejections_by_reason: Counter[str] = field(default_factory=Counter)
    rejections_by_signer: Counter[str] = field(default_factory=Counter)
    recent_rejections: list[dict[str, Any]] = field(default_factory=list)
    recalls: list[dict[str, Any]] = field(default_factory=list)

    def add_block(self, block: ledger.Block) -> None:
        """Fold one block in; blocks must come in height order, each once."""
        header = block.header
        if header.height != self.height + 1:
            raise ValueError(f"expected block {self.height + 1}, got {header.height}")
        self.blocks_by_day_ms[_day_ms(header.time_ms)] += 1
        for position, (wire, result) in enumerate(zip(block.documents, block.results)):
            self.documents += 1
            try:
                doc = ledger.decode_signed(wire)
            except ledger.DecodeError:
                self.undecodable += 1
                continue
            self._add_document(doc, result, header.height, position, header.time_ms)
        self.height = header.height

    def _add_document(
        self, doc: ledger.SignedDocument, result: ledger.Result, height: int, position: int, time_ms: int
    ) -> None:
        body = doc.document
        kind = body.type.value
        self.by_type[kind] += 1
        place = {"height": height, "position": position, "time_ms": time_ms, "document_id": doc.id.hex(),
                 "type": kind, "signer": body.signer}
        if not result.applied:
            self._add_rejection({**place, "reason": result.reason.value, "message": result.message})
            return
        if "recall" in kind:
            # Recall documents are not on every chain yet; when they are, they show here.
            _keep_recent(self.recalls, {**place, "document": body.to_json()})
        if body.type is ledger.DocType.REGISTER_PARTICIPANT:
            self._add_participant(body, height)
        elif body.type is ledger.DocType.SUSPEND:
            for code in body.field("codes"):
                self._suspend(code, {**place, "note": body.field("note")})
        elif body.type is ledger.DocType.RELEASE:
            for code in body.field("codes"):
                self.suspended.pop(code, None)

    def _add_participant(self, body: ledger.Document, height: int) -> None:
        pid = ledger.participant_id(body.field("public_key"))
        if pid not in self.participants and len(self.participants) >= PARTICIPANTS_MAX:
            self.participants_dropped += 1
            return
        self.participants[pid] = {"id": pid, "name": body.field("name"), "state": body.field("state"),
                                  "roles": list(body.field("roles")), "registered_height": height,
                                  "registered_by": body.signer}

    def _suspend(self, code: str, place: dict[str, Any]) -> None:
        if code not in self.suspended and len(self.suspended) >= SUSPENDED_MAX:
            self.suspended_dropped += 1
            return
        self.suspended[code] = {"code": code, **place}

    def _add_rejection(self, entry: dict[str, Any]) -> None:
        self.rejections_by_reason[entry["reason"]] += 1
        signer = entry["signer"]
        if signer in self.rejections_by_signer or len(self.rejections_by_signer) < SIGNERS_MAX:
            self.rejections_by_signer[signer] += 1
        else:
            self.rejections_by_signer[OTHERS] += 1
        _keep_recent(self.recent_rejections, entry)

    def to_json(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "documents": self.documents,
            "undecodable": self.undecodable,
            "by_type": dict(sorted(self.by_type.items())),
            "blocks_by_day": [{"day_ms": d, "blocks": n} for d, n in sorted(self.blocks_by_day_ms.items())],
            "participants": list(self.participants.values()),
            "participants_dropped": self.participants_dropped,
            "suspended": list(self.suspended.values()),
            "suspended_dropped": self.suspended_dropped,
            "rejections_by_reason": _ranked(self.rejections_by_reason),
            "rejections_by_signer": _ranked(self.rejections_by_signer),
            "recent_rejections": list(reversed(self.recent_rejections)),
            "recalls": list(reversed(self.recalls)),
        }


DAY_MS = 86_400_000


def _day_ms(time_ms: int) -> int:
    """The UTC midnight that starts the day of `time_ms`."""
    return time_ms - time_ms % DAY_MS


def _keep_recent(items: list[dict[str, Any]], entry: dict[str, Any]) -> None:
    items.append(entry)
    if len(items) > RECENT_MAX:
        del items[: len(items) - RECENT_MAX]


def _ranked(counts: Counter[str]) -> list[dict[str, Any]]:
    return [{"key": k, "count": n} for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
