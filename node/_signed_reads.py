"""The signed-read check: who asks, proven by a signature over the request, once.

A read of commercial data names its reader in headers and signs the method, the path
and query as sent, the time, the member state whose node it is for, and a nonce
(ledger/_identity.py `request_message`). `check_signed` checks all of it against the
reader's registered key and remembers the nonce (`ReplayCache`), so a copied request
is refused. The table middleware (node/_http.py) runs it for every route declared
signed, so no handler can forget it.
"""

from __future__ import annotations

import heapq
import re
import time

from aiohttp import web

from ledger import (
    DOMAIN_REQUEST,
    REQUEST_HEADER_NODE,
    REQUEST_HEADER_NONCE,
    REQUEST_HEADER_PARTICIPANT,
    REQUEST_HEADER_SIGNATURE,
    REQUEST_HEADER_TIME,
    REQUEST_NONCE_BYTES_MAX,
    REQUEST_NONCE_BYTES_MIN,
    REQUEST_SKEW_MS,
    is_participant_id,
    request_message,
)

from ._errors import Refusal, shown
from ._keys import NODE

# Decimal integers only (int() would also read "+1", " 1", "1_0"), and no more digits
# than any time needs: refused before int() does quadratic work.
_INTEGER = re.compile(r"-?[0-9]+")
_INTEGER_DIGITS_MAX = 20


class ReplayCache:
    """The (participant, nonce) pairs of the signed reads accepted within the time window,
    so that a copy of one is refused.

    An entry lives until its request's time plus REQUEST_SKEW_MS by the node's clock:
    after that the request is stale and refused anyway. Only requests whose signature
    verified are entered, so only registered participants can fill the cache, and each
    is bounded on its own. When a bound is reached the node refuses further signed reads
    (429, for the participant or for everyone) rather than forget an entry early: an
    entry forgotten early would let its request be replayed, so the cache fails closed.
    """

    # A reader's signed reads within one window (at most 2 * REQUEST_SKEW_MS = 60 s):
    # 10,000 is about 170 reads a second for a whole minute, far above what an ERP or
    # the CLI sends (a page of history or holdings is one read), so only a flood meets it.
    PER_PARTICIPANT_MAX = 10_000
    # All readers together: about 300 bytes an entry make 100,000 entries some 30 MB,
    # and 100,000 in a minute is more signed reads than a node answers in one.
    ENTRIES_MAX = 100_000

    def __init__(
        self, per_participant_max: int = PER_PARTICIPANT_MAX, entries_max: int = ENTRIES_MAX
    ) -> None:
        self.per_participant_max = per_participant_max
        self.entries_max = entries_max
        self._expiry: list[tuple[int, str, str]] = []  # a heap of (expires_ms, participant, nonce)
        self._seen: set[tuple[str, str]] = set()
        self._per_participant: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def admit(self, participant: str, nonce: str, time_ms: int, now_ms: int) -> None:
        """Remember a verified request, or refuse it as a replay or for want of room."""
        self._expire(now_ms)
        if (participant, nonce) in self._seen:
            raise Refusal("replayed_request", "this signed request was already served (same nonce); "
                                              "sign each request anew")
        if self._per_participant.get(participant, 0) >= self.per_participant_max:
            raise Refusal("signed_reads_busy", f"participant {participant} sent more than "
                                               f"{self.per_participant_max} signed reads within "
                                               f"{REQUEST_SKEW_MS // 1000} s; retry later")
        if len(self._seen) >= self.entries_max:
            raise Refusal("signed_reads_busy", "the node is serving too many signed reads; retry later")
        self._seen.add((participant, nonce))
        self._per_participant[participant] = self._per_participant.get(participant, 0) + 1
        heapq.heappush(self._expiry, (time_ms + REQUEST_SKEW_MS, participant, nonce))

    def _expire(self, now_ms: int) -> None:
        while self._expiry and self._expiry[0][0] < now_ms:
            _, participant, nonce = heapq.heappop(self._expiry)
            self._seen.discard((participant, nonce))
            left = self._per_participant[participant] - 1
            if left:
                self._per_participant[participant] = left
            else:
                del self._per_participant[participant]


REPLAY = web.AppKey("replay_cache", ReplayCache)
_NONCE = re.compile(f"[0-9a-f]{{{2 * REQUEST_NONCE_BYTES_MIN},{2 * REQUEST_NONCE_BYTES_MAX}}}")
_SIGNED_HEADERS = (REQUEST_HEADER_PARTICIPANT, REQUEST_HEADER_TIME, REQUEST_HEADER_NODE, REQUEST_HEADER_NONCE,
                   REQUEST_HEADER_SIGNATURE)


def check_signed(request: web.Request) -> str:
    """Check a signed read request; the participant id of who asked.

    The signature covers the method, the path and query as sent, the time, the member
    state whose node the request is for, and a nonce; a request is good for
    REQUEST_SKEW_MS either side of the node's clock, at this node only, and once.
    """
    node = request.app[NODE]
    h = request.headers
    pid, stamp, target, nonce, signature = (h.get(name) for name in _SIGNED_HEADERS)
    if not pid or not stamp or not target or not nonce or not signature:
        names = ", ".join(_SIGNED_HEADERS)
        raise Refusal("unsigned", f"this read needs a signed request (headers {names})")
    if not _INTEGER.fullmatch(stamp) or len(stamp) > _INTEGER_DIGITS_MAX:
        raise Refusal("bad_request_signature", "X-Tamga-Time must be an integer (ms since the epoch)")
    if not _NONCE.fullmatch(nonce):
        raise Refusal("bad_request_signature", f"X-Tamga-Nonce must be {REQUEST_NONCE_BYTES_MIN} to "
                                               f"{REQUEST_NONCE_BYTES_MAX} random bytes in lower-case hex")
    try:
        sig = bytes.fromhex(signature)
    except ValueError:
        raise Refusal("bad_request_signature", "X-Tamga-Signature must be hex") from None
    time_ms, now_ms = int(stamp), int(time.time() * 1000)
    if abs(now_ms - time_ms) > REQUEST_SKEW_MS:
        raise Refusal("stale_request", f"the request time is more than {REQUEST_SKEW_MS // 1000} s from the "
                                       "node's clock")
    own = node.state
    if target != own:
        raise Refusal("wrong_node", f"this request is signed for the node of {shown(target)}; this is the "
                                    f"node of {own}")
    if not is_participant_id(pid):
        raise Refusal("bad_request_signature", "X-Tamga-Participant is not a participant id")
    record = node.store.participant_record(pid)
    if record is None:
        raise Refusal("not_registered", f"participant {pid} is not registered")
    if not record.active:
        raise Refusal("revoked", f"participant {pid} is revoked")
    message = request_message(request.method, request.raw_path, time_ms, own, nonce)
    if not node.verifier.verify(record.public_key, sig, DOMAIN_REQUEST, node.genesis.chain_id, message):
        raise Refusal("bad_request_signature", "the request signature does not verify")
    request.app[REPLAY].admit(pid, nonce, time_ms, now_ms)
    return pid
