"""What leader-signed appends cost per entry (issue 11), one core, no network.

The leader wraps each append it sends (node/_appends.py `AppendSigner.wrap`): the first
send of an entry hashes and signs it, every later send (retransmissions, other
followers) hashes it and finds the signature kept. A follower checks each append
(`SignedAppends.check`): the first sight of an entry hashes it and verifies the
signature, a retransmission hashes it and finds the verification kept; a header its
peers gossip of an entry it took costs a dictionary look-up. Unwrapping the envelope
(`unwrap`) is beside decoding the bare message. Each figure is the mean
of `--entries` entries of each size (entries are blocks), beside encoding the same
message bare (what every send cost before).

    .venv/bin/python -m bench.appends_bench [--entries N]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

from consensus import (
    Entry,
    EntryType,
    LogIndex,
    Message,
    MessageType,
    NodeId,
    Term,
    decode_message,
    encode_message,
)
from ledger import KeyPair, Member, Membership, SignedAppend, Verifier
from node import AppendSigner, SignedAppends, entry_digest, unwrap

CHAIN_ID = "bench"
SIZES = (1 << 10, 64 << 10, 1 << 20)


def _message(index: int, data: bytes) -> Message:
    entry = Entry(Term(3), LogIndex(index), EntryType.NORMAL, data)
    return Message(MessageType.APP, to=NodeId(2), frm=NodeId(1), term=Term(3), index=LogIndex(index - 1),
                   log_term=Term(3), entries=(entry,))


def _per_call_us(calls: list[Callable[[], object]]) -> float:
    start = time.perf_counter()
    for call in calls:
        call()
    return (time.perf_counter() - start) / len(calls) * 1e6


def measure(size: int, entries: int) -> dict[str, float]:
    key = KeyPair.generate()
    table = Membership(CHAIN_ID, 0, (Member("KZ", 1, True, key.public_key, "", "", ""),))
    signer = AppendSigner(key, CHAIN_ID, "KZ")
    follower = SignedAppends("RU", CHAIN_ID, lambda: table, Verifier(), lambda s, a: None, lambda e: None)
    messages = [_message(i + 1, os.urandom(size)) for i in range(entries)]
    bare = _per_call_us([lambda m=m: encode_message(m) for m in messages])  # type: ignore[misc]
    first_sign = _per_call_us([lambda m=m: signer.wrap(m) for m in messages])  # type: ignore[misc]
    again_sign = _per_call_us([lambda m=m: signer.wrap(m) for m in messages])  # type: ignore[misc]
    items = [signer.wrap(m) for m in messages]
    raws = [encode_message(m) for m in messages]
    bare_decode = _per_call_us([lambda r=r: decode_message(r) for r in raws])  # type: ignore[misc]
    unwrapped = _per_call_us([lambda i=i: unwrap(i) for i in items])  # type: ignore[misc]
    wrapped = [unwrap(i) for i in items]
    first_check = _per_call_us([lambda w=w: follower.check("KZ", *w) for w in wrapped])  # type: ignore[misc]
    again_check = _per_call_us([lambda w=w: follower.check("KZ", *w) for w in wrapped])  # type: ignore[misc]
    headers = [SignedAppend("KZ", int(m.entries[0].term), int(m.entries[0].index), entry_digest(m.entries[0]),
                            w[1][0]) for m, w in zip(messages, wrapped, strict=True) if w[1]]
    gossiped = _per_call_us([lambda h=h: follower.receive("BY", h) for h in headers])  # type: ignore[misc]
    return {"bare_encode_us": bare, "sign_first_us": first_sign, "sign_again_us": again_sign,
            "bare_decode_us": bare_decode, "unwrap_us": unwrapped,
            "check_first_us": first_check, "check_again_us": again_check, "gossiped_header_us": gossiped}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=300)
    args = parser.parse_args()
    print(f"{'entry':>8} " + " ".join(f"{k:>18}" for k in measure(1024, 3)))
    for size in SIZES:
        row = measure(size, args.entries)
        print(f"{size >> 10:>6}KB " + " ".join(f"{v:>18.1f}" for v in row.values()))


if __name__ == "__main__":
    main()
