"""Frames lost between the worker and a socket (a channel layer over capacity, a dropped
publish): the socket sees the jump in a reply's delta indexes and resyncs the client from the
reply's snapshot, so the widget ends with the whole text and never shows a silent gap."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from conversations.broadcast import broadcast_frame
from conversations.stream_state import snapshot_clear, snapshot_write
from tests.support.socket_stack import SocketStack, socket_stack
from tests.support.widget_async import ReplyView
from tests.support.widget_client import (
    final_assistant,
    open_socket,
    recv,
    say_hello,
)

pytestmark = pytest.mark.faults

CUSTOMER = "https://customer.example"
PIECES = [
    "Your ",
    "parcel ",
    "left ",
    "our ",
    "warehouse ",
    "this ",
    "morning ",
    "and ",
    "arrives ",
    "tomorrow.",
]


@pytest.fixture(scope="module")
def stack(django_db_setup: None, django_db_blocker: Any, llm_server: Any) -> Iterator[SocketStack]:
    with socket_stack(django_db_blocker, llm_server) as started:
        yield started


def stream_with_losses(conversation_id: str, message_id: str, lost: set[int]) -> None:
    """Publish a reply as the worker does (snapshot first, then the delta), losing the deltas
    whose index is in `lost` on the way (they never reach the channel layer)."""
    broadcast_frame(conversation_id, {"type": "reply.start", "message_id": message_id})
    text = ""
    for index, piece in enumerate(PIECES):
        text += piece
        snapshot_write(message_id, text=text, index=index)
        if index not in lost:
            broadcast_frame(
                conversation_id,
                {"type": "reply.delta", "message_id": message_id, "index": index, "text": piece},
            )
    broadcast_frame(
        conversation_id,
        {
            "type": "message",
            "message": {
                "id": message_id,
                "seq": 2,
                "role": "assistant",
                "text": text,
                "created_at": "2026-12-02T12:00:00Z",
                "client_id": None,
                "status": "complete",
                "sources": [],
            },
        },
    )


def received_reply(ws: Any) -> tuple[ReplyView, list[dict[str, Any]]]:
    view, frames = ReplyView(), []
    while True:
        frame = recv(ws, timeout=30)
        frames.append(frame)
        if frame["type"] in ("reply.start", "reply.delta"):
            view.take(frame)
        if final_assistant(frame):
            view.take(frame)
            return view, frames


@pytest.mark.parametrize(
    "lost", [{3, 4}, {0}, {1, 3, 5, 7}], ids=["middle", "first", "every-other"]
)
def test_lost_deltas_are_resynced_from_the_snapshot(stack: SocketStack, lost: set[int]) -> None:
    _, key = stack.create_tenant(allowed_origins=[CUSTOMER])
    message_id = str(uuid.uuid4())
    with open_socket(stack) as ws:
        welcome = say_hello(ws, key)
        stream_with_losses(welcome["conversation_id"], message_id, lost)
        view, frames = received_reply(ws)
    snapshot_clear(message_id)
    full = "".join(PIECES)
    assert view.gaps == 0, frames  # the client never saw an index jump
    assert view.text == full  # built from the deltas alone, before the final message
    assert view.final is not None
    assert view.final["text"] == full
    resyncs = [f for f in frames if f["type"] == "reply.start"]
    runs_lost = sum(1 for i in lost if i - 1 not in lost)
    # The reply's own start, then a resync at the first loss; a resync's snapshot may already
    # cover later losses (it holds the text up to the newest delta written).
    assert 2 <= len(resyncs) <= 1 + runs_lost


def test_a_lost_reply_start_is_resynced_too(stack: SocketStack) -> None:
    """A socket that missed `reply.start` and the first deltas still gets the whole text."""
    _, key = stack.create_tenant(allowed_origins=[CUSTOMER])
    message_id = str(uuid.uuid4())
    with open_socket(stack) as ws:
        welcome = say_hello(ws, key)
        conversation_id = welcome["conversation_id"]
        text = ""
        for index, piece in enumerate(PIECES[:4]):
            text += piece
            snapshot_write(message_id, text=text, index=index)
        for index, piece in enumerate(PIECES[4:], start=4):
            text += piece
            snapshot_write(message_id, text=text, index=index)
            broadcast_frame(
                conversation_id,
                {"type": "reply.delta", "message_id": message_id, "index": index, "text": piece},
            )
        frames = [recv(ws, timeout=30) for _ in range(2)]
    snapshot_clear(message_id)
    assert frames[0] == {"type": "reply.start", "message_id": message_id}
    assert frames[1]["type"] == "reply.delta"
    assert frames[1]["text"] == "".join(PIECES[: frames[1]["index"] + 1])
    assert frames[1]["index"] >= 4
