"""A budget of refused signatures per client address and per signer.

Checking a signature is the one costly thing an anonymous client can make a node do
for free: a batch of 10,000 documents with bad signatures under a public regulator id
was 10,000 verifications (issue 10, finding 8). Each refusal for a bad signature
spends a token of the client's address and of the signer the documents name; a
client or signer with no token left is answered 429 (`too_many_refusals`) before
anything is verified, until its bucket refills. Honest clients sign correctly and
never notice.

The signer's bucket stops an attacker that spreads over many addresses; its cost is
that such an attacker can make one signer's submissions to this node wait for a
refill (other nodes keep their own budgets, and 429 says "try again later"). Both
tables are bounded and forget the least recently seen first.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

# A client address may have this many signatures refused at once, then one more
# every 1/rate seconds. A client that signs with the wrong key by mistake sees its
# first few dozen refusals as 422; an attacker gets 64 verifications, then 4 a second.
CLIENT_REFUSALS_BURST = 64
CLIENT_REFUSALS_PER_S = 4.0
# A signer's bucket is larger: several honest clients may sign for one participant.
SIGNER_REFUSALS_BURST = 256
SIGNER_REFUSALS_PER_S = 16.0
# Addresses and signers remembered. A forgotten one starts again with a full bucket,
# so the bound caps memory (about 150 bytes an entry) and not the protection.
BUDGET_KEYS_MAX = 10_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at_s: float


class TokenBuckets:
    """Token buckets by key, bounded, least recently used forgotten first."""

    def __init__(self, burst: int, per_s: float, keys_max: int, clock: Callable[[], float]) -> None:
        self._burst = float(burst)
        self._per_s = per_s
        self._keys_max = keys_max
        self.clock = clock  # tests may stop it
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def _bucket(self, key: str) -> _Bucket:
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self._burst, now)
            if len(self._buckets) > self._keys_max:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.at_s) * self._per_s)
            bucket.at_s = now
        return bucket

    def has_tokens(self, key: str) -> bool:
        return self._bucket(key).tokens >= 1.0

    def spend(self, key: str) -> None:
        bucket = self._bucket(key)
        bucket.tokens = max(0.0, bucket.tokens - 1.0)

    def __len__(self) -> int:
        return len(self._buckets)


class RefusalBudget:
    """Refused signatures per client address and per signer."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clients = TokenBuckets(CLIENT_REFUSALS_BURST, CLIENT_REFUSALS_PER_S, BUDGET_KEYS_MAX, clock)
        self.signers = TokenBuckets(SIGNER_REFUSALS_BURST, SIGNER_REFUSALS_PER_S, BUDGET_KEYS_MAX, clock)

    def allows(self, client: str, signer: str) -> bool:
        return self.clients.has_tokens(client) and self.signers.has_tokens(signer)

    def refused(self, client: str, signer: str) -> None:
        self.clients.spend(client)
        self.signers.spend(signer)
