"""The client side of the feed without a node: SSE parsing, the cursor file, signatures,
backoff, and the follower loop's retries and cursor saving."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from node.client import (
    Backoff,
    CursorFile,
    NodeError,
    NodeUnreachable,
    SseParser,
    _events,
    follow,
    sign_body,
    verify_body,
)


def test_sse_parser_reassembles_events_across_chunks() -> None:
    """Events split anywhere across chunks come out whole; comments and ids are skipped."""
    stream = (b": keepalive\n\nid: 1.0\nevent: document\ndata: {\"cursor\": \"1.0\"}\n\n"
              b"id: 2.0\r\ndata: {\"cursor\":\r\ndata: \"2.0\"}\r\n\r\n")
    parser, events = SseParser(), []
    for i in range(0, len(stream), 7):
        events += parser.feed(stream[i:i + 7])
    assert events == [{"cursor": "1.0"}, {"cursor": "2.0"}]


def test_cursor_file_is_replaced_whole(tmp_path: Path) -> None:
    """The cursor file holds the last saved cursor; no temporary file is left behind."""
    cursor = CursorFile(tmp_path / "cursor")
    assert cursor.load() is None
    cursor.save("3.1")
    cursor.save("4.0")
    assert cursor.load() == "4.0" and sorted(p.name for p in tmp_path.iterdir()) == ["cursor"]
    assert CursorFile(None).load() is None


def test_signatures_cover_the_exact_body() -> None:
    """The HMAC header verifies for the body it was made for and for no other."""
    header = sign_body(b"secret", b'{"a":1}')
    assert header.startswith("sha256=") and verify_body(b"secret", b'{"a":1}', header)
    assert not verify_body(b"secret", b'{"a":2}', header) and not verify_body(b"other", b'{"a":1}', header)


def test_backoff_doubles_to_its_cap_and_resets() -> None:
    """Pauses double from the first to the cap, and start again after a success."""
    slept: list[float] = []
    backoff = Backoff(0.5, 4.0, slept.append)
    for _ in range(6):
        backoff.pause()
    backoff.reset()
    backoff.pause()
    assert slept == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 0.5]


class FakeClient:
    """Answers from a script: a page, or an error to raise."""

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.asked: list[str | None] = []

    def events_page(self, after: str | None, limit: int, wait_ms: int) -> dict[str, Any]:
        self.asked.append(after)
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return dict(step)


def page(*cursors: str, nxt: str | None = None) -> dict[str, Any]:
    return {"events": [{"event": "document", "cursor": c} for c in cursors], "next": nxt or cursors[-1]}


def test_follow_retries_what_passes_and_saves_each_cursor(tmp_path: Path) -> None:
    """An unreachable node and a node behind are waited out; each handled event's cursor is saved."""
    cursor = CursorFile(tmp_path / "cursor")
    cursor.save("1.0")
    script: list[Any] = [NodeUnreachable("down"), NodeError(400, "cursor_ahead", "behind"), page("1.1", "2.0"),
                         page("3.0", nxt="5.2"), NodeError(403, "revoked", "revoked")]
    client = FakeClient(script)
    handled: list[str] = []
    with pytest.raises(NodeError):
        follow(client, cursor, lambda e: handled.append(e["cursor"]),  # type: ignore[arg-type]
               backoff=Backoff(0, 0, lambda _s: None))
    assert handled == ["1.1", "2.0", "3.0"]
    assert client.asked == ["1.0", "1.0", "1.0", "2.0", "5.2"] and cursor.load() == "5.2"


def test_a_cursor_ahead_for_too_long_ends_the_follower(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cursor no node reaches (another chain's) is not retried forever."""
    monkeypatch.setattr(_events, "CURSOR_AHEAD_WAIT_S", 0.0)
    client = FakeClient([NodeError(400, "cursor_ahead", "behind")] * 3)
    with pytest.raises(NodeError):
        follow(client, CursorFile(None), lambda e: None, after="99.0",  # type: ignore[arg-type]
               backoff=Backoff(0.01, 0.01))
