"""Censorship is visible: a leader that orders others' documents but not ours, past the
bound, is counted, alarmed and campaigned against; an honest or idle leader is not."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from node._censorship import CensorshipWatch

pytestmark = pytest.mark.unit

FAR_MS = 10**15  # documents that do not expire during a test


class Clock:
    def __init__(self) -> None:
        self.s = 1000.0


def make(campaign_after: int = 3) -> tuple[CensorshipWatch, CollectorRegistry, list[float]]:
    registry = CollectorRegistry()
    campaigns: list[float] = []
    watch = CensorshipWatch(registry, "RU", campaign=lambda: campaigns.append(1.0), bound_s=10.0,
                            campaign_after=campaign_after)
    return watch, registry, campaigns


def censored(registry: CollectorRegistry, leader: str) -> float:
    value = registry.get_sample_value("tamga_censored_documents_total", {"state": "RU", "leader": leader})
    return value or 0.0


def test_a_document_left_unordered_while_others_are_ordered_is_counted() -> None:
    """Ours waits 11 s while the leader orders someone else's: counted once against KZ,
    alarmed in the view, and counted again only against a new leader."""
    watch, registry, campaigns = make()
    watch.check(0.0, 0, "KZ", False)
    watch.forwarded(b"ours", FAR_MS, 1.0)
    watch.ordered([b"theirs"], 5.0)
    watch.check(10.0, 0, "KZ", False)
    assert censored(registry, "KZ") == 0  # within the bound
    watch.check(11.5, 0, "KZ", False)
    watch.check(12.0, 0, "KZ", False)
    assert censored(registry, "KZ") == 1
    assert watch.view()["censored_by_leader"] == {"KZ": 1}
    assert "KZ" in (watch.view()["alarm"] or "")
    assert campaigns == []  # one document is not enough to campaign


def test_an_ordered_document_is_never_counted() -> None:
    """Ordered within the bound: nothing counted, no alarm."""
    watch, registry, _ = make()
    watch.check(0.0, 0, "KZ", False)
    watch.forwarded(b"ours", FAR_MS, 1.0)
    watch.ordered([b"ours", b"theirs"], 2.0)
    watch.check(30.0, 0, "KZ", False)
    assert censored(registry, "KZ") == 0 and watch.view()["alarm"] is None


def test_a_leader_that_orders_nothing_is_not_called_a_censor() -> None:
    """No block with documents since ours was sent: an idle or stuck leader, not censorship."""
    watch, registry, _ = make()
    watch.check(0.0, 0, "KZ", False)
    watch.forwarded(b"ours", FAR_MS, 1.0)
    watch.ordered([None], 5.0)  # a block of nothing but refusals has no document id
    watch.check(30.0, 0, "KZ", False)
    assert censored(registry, "KZ") == 0


def test_the_bound_runs_from_when_the_leader_took_over() -> None:
    """A document older than the current leader is judged from that leader's start."""
    watch, registry, _ = make()
    watch.check(0.0, 0, "BY", False)
    watch.forwarded(b"ours", FAR_MS, 1.0)
    watch.check(20.0, 0, "KZ", False)  # KZ leads from 20 s on
    watch.ordered([b"theirs"], 25.0)
    watch.check(29.0, 0, "KZ", False)
    assert censored(registry, "KZ") == 0
    watch.check(31.0, 0, "KZ", False)
    assert censored(registry, "KZ") == 1 and censored(registry, "BY") == 0


def test_past_the_threshold_the_follower_campaigns_at_most_once_per_bound() -> None:
    """Three censored documents: a campaign; not again until another bound has passed."""
    watch, _, campaigns = make(campaign_after=3)
    watch.check(0.0, 0, "KZ", False)
    for i in range(3):
        watch.forwarded(bytes([i]), FAR_MS, 1.0)
    watch.ordered([b"theirs"], 2.0)
    watch.check(12.0, 0, "KZ", False)
    assert len(campaigns) == 1
    watch.check(13.0, 0, "KZ", False)
    assert len(campaigns) == 1
    watch.check(23.0, 0, "KZ", False)
    assert len(campaigns) == 2


def test_the_leader_itself_and_expired_documents_count_nothing() -> None:
    """On the leader nothing is judged; a document past its expiry is forgotten."""
    watch, registry, _ = make()
    watch.check(0.0, 0, "RU", True)
    watch.forwarded(b"ours", FAR_MS, 1.0)
    watch.ordered([b"theirs"], 2.0)
    watch.check(30.0, 0, "RU", True)
    assert censored(registry, "RU") == 0
    watch.forwarded(b"short", 5_000, 31.0)
    watch.check(31.0, 0, "KZ", False)
    watch.ordered([b"theirs"], 32.0)
    watch.check(50.0, 6_000, "KZ", False)
    assert watch.view()["watched"] == 1  # "ours" only; "short" expired


def test_the_watched_set_is_bounded() -> None:
    """The oldest documents leave the watch at its bound."""
    registry = CollectorRegistry()
    watch = CensorshipWatch(registry, "RU", campaign=lambda: None, watched_max=100)
    for i in range(1000):
        watch.forwarded(i.to_bytes(4, "big"), FAR_MS, float(i))
    assert watch.view()["watched"] == 100
