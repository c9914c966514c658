"""Censorship is visible: documents a follower sent to its leader that the leader leaves
unordered while it orders others.

A follower sends every document it admits to the leader (and again every few seconds,
housekeeping). An honest leader orders it within a block or two. A leader that orders
other documents meanwhile but not this one for `bound_s` is censoring it (or is so slow
that it should not lead): the document is counted against that leader
(`tamga_censored_documents_total{leader=...}`), logged at ERROR, and shown in the node's
status. Once a leader has censored `campaign_after` documents, this follower campaigns
(a pre-vote election, through the Raft driver's public `receive` of a local HUP): it
wins only where a majority of voters also stopped following the leader, because Raft's
leader lease (check-quorum) makes voters that still hear from the leader refuse; so the
alarm is the guarantee and the campaign a best effort (docs/THREATS.md).

Each document is counted once per leader; the set of documents watched is bounded.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter

log = logging.getLogger(__name__)

# An honest leader orders a document within a few blocks (milliseconds to a second under
# load, plus one 3 s resend if the first forward was lost); ten seconds is far beyond
# that and short enough that a censored client hears of it while it still waits.
CENSORSHIP_BOUND_S = 10.0
# Documents censored by one leader before this follower campaigns against it: more than
# one, so that one unlucky document (lost twice in transit) does not start an election.
CAMPAIGN_AFTER_DOCUMENTS = 3
# Documents watched at once (the mempool's own bound is larger; the oldest go first).
WATCHED_DOCUMENTS_MAX = 100_000


@dataclass(slots=True)
class _Watched:
    forwarded_s: float
    expires_at_ms: int
    counted_against: str | None = None  # the leader it was last counted against


class CensorshipWatch:
    """Counts, per leader, the documents it left unordered beyond the bound."""

    def __init__(
        self,
        registry: CollectorRegistry,
        state: str,
        campaign: Callable[[], None],
        bound_s: float = CENSORSHIP_BOUND_S,
        campaign_after: int = CAMPAIGN_AFTER_DOCUMENTS,
        watched_max: int = WATCHED_DOCUMENTS_MAX,
    ) -> None:
        self._counter = Counter(
            "tamga_censored_documents_total",
            "Documents this node sent to a leader that it left unordered beyond the bound "
            "while it ordered others, by leader",
            ["state", "leader"], registry=registry,
        )
        self._state = state
        self._campaign = campaign
        self.bound_s = bound_s
        self.campaign_after = campaign_after
        self._watched_max = watched_max
        self._watched: collections.OrderedDict[bytes, _Watched] = collections.OrderedDict()
        self.censored: dict[str, int] = {}
        self._leader: str | None = None
        self._leader_since_s = 0.0
        self._last_ordered_s = float("-inf")
        self._last_campaign_s = float("-inf")
        self.alarm: str | None = None

    def forwarded(self, doc_id: bytes, expires_at_ms: int, now_s: float) -> None:
        """This follower admitted a document and sent it to the leader."""
        if doc_id in self._watched:
            return
        self._watched[doc_id] = _Watched(now_s, expires_at_ms)
        while len(self._watched) > self._watched_max:
            self._watched.popitem(last=False)

    def ordered(self, doc_ids: Iterable[bytes | None], now_s: float) -> None:
        """A block was applied: its documents are ordered; if it held any, the leader
        orders documents at this time."""
        any_document = False
        for doc_id in doc_ids:
            if doc_id is None:
                continue
            any_document = True
            self._watched.pop(doc_id, None)
        if any_document:
            self._last_ordered_s = now_s

    def check(self, now_s: float, now_ms: int, leader: str | None, is_leader: bool) -> None:
        """Housekeeping: count what the current leader left unordered too long."""
        if leader != self._leader:
            self._leader = leader
            self._leader_since_s = now_s
        if is_leader or leader is None:
            return
        for doc_id in [d for d, w in self._watched.items() if w.expires_at_ms < now_ms]:
            del self._watched[doc_id]
        newly = 0
        for watched in self._watched.values():
            start = max(watched.forwarded_s, self._leader_since_s)
            if now_s - start <= self.bound_s:
                break  # forwarding order: every later document is younger
            if watched.counted_against == leader or self._last_ordered_s <= start:
                continue  # counted already, or the leader orders nothing at all (not censorship)
            watched.counted_against = leader
            newly += 1
        if newly:
            self._count(leader, newly)
        if (self.censored.get(leader, 0) >= self.campaign_after
                and now_s - self._last_campaign_s > self.bound_s):
            self._last_campaign_s = now_s
            log.error("the leader %s censors documents (%d so far): campaigning to replace it",
                      leader, self.censored[leader])
            self._campaign()

    def _count(self, leader: str, newly: int) -> None:
        self.censored[leader] = self.censored.get(leader, 0) + newly
        self._counter.labels(state=self._state, leader=leader).inc(newly)
        self.alarm = (f"the leader {leader} left {self.censored[leader]} documents this node sent it "
                      f"unordered for more than {self.bound_s:g} s while it ordered others")
        log.error("%s", self.alarm)

    def view(self) -> dict[str, Any]:
        return {"bound_s": self.bound_s, "censored_by_leader": dict(self.censored), "alarm": self.alarm,
                "watched": len(self._watched)}
