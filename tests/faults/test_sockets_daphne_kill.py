"""Daphne SIGKILLed while 50 visitors stream replies: each visitor's widget reconnects to a
second Daphne (same database, same Redis: the one behind the load balancer) with `hello`
(visitor_token, conversation_id, last_seq) and resumes without a gap: the reply's snapshot and
the deltas after it, then exactly one final message with the whole text."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from conversations.models import Message
from tests.support.llm_server import Reply
from tests.support.socket_stack import SocketStack, socket_stack
from tests.support.widget_async import Visitor
from tests.support.widget_client import CUSTOMER

pytestmark = pytest.mark.faults

VISITORS = 50
ANSWER = " ".join(f"step{n}" for n in range(100)) + "."


@pytest.fixture(scope="module")
def stack(django_db_setup: None, django_db_blocker: Any, llm_server: Any) -> Iterator[SocketStack]:
    # Every model request answers ANSWER slowly (a redelivered job asks again), and no job is
    # redelivered while it is still running on this busy machine.
    default, llm_server.default = llm_server.default, Reply(text=ANSWER, token_interval=0.2)
    try:
        with socket_stack(
            django_db_blocker,
            llm_server,
            webs=2,
            worker_concurrency=VISITORS,
            CELERY_VISIBILITY_TIMEOUT="600",
        ) as started:
            yield started
    finally:
        llm_server.default = default


def streaming(frame: dict[str, Any]) -> bool:
    return frame["type"] == "reply.delta"


def finished(visitor: Visitor) -> bool:
    return any(final["status"] != "streaming" for final in visitor.finals())


async def until_finished(visitor: Visitor) -> None:
    if not finished(visitor):
        await visitor.recv_until(lambda _: finished(visitor), timeout=180)


async def ask_and_start(visitor: Visitor) -> None:
    await visitor.connect()
    await visitor.ask("Walk me through the whole setup, please.")
    await visitor.recv_until(streaming, timeout=180)


async def resume(visitor: Visitor, ws_url: str) -> bool:
    """Reconnect and read until the reply ends; True when it was still streaming (the second
    Daphne sent its snapshot), False when it had ended meanwhile (the welcome held it)."""
    seen = len(visitor.frames)
    await visitor.connect(ws_url)
    await until_finished(visitor)
    return any(frame["type"] == "reply.start" for frame in visitor.frames[seen:])


async def failover(stack: SocketStack, key: str) -> list[tuple[Visitor, bool]]:
    visitors = [
        Visitor(ws_url=stack.ws_url_of(0), key=key, forwarded_for=f"10.8.0.{n + 1}")
        for n in range(VISITORS)
    ]
    await asyncio.gather(*(ask_and_start(v) for v in visitors))
    # Every visitor is watching a reply stream when the first Daphne dies.
    await asyncio.to_thread(stack.webs[0].kill)
    mid_stream = await asyncio.gather(*(resume(v, stack.ws_url_of(1)) for v in visitors))
    await asyncio.gather(*(v.close() for v in visitors), return_exceptions=True)
    return list(zip(visitors, mid_stream, strict=True))


def test_visitors_resume_on_a_second_daphne_without_a_gap(stack: SocketStack) -> None:
    _, key = stack.create_tenant(allowed_origins=[CUSTOMER])

    results = asyncio.run(failover(stack, key))

    for visitor, mid_stream in results:
        (view,) = visitor.replies.values()  # one reply per question, as the widget saw it
        assert view.final is not None
        assert view.final["status"] == "complete"
        assert view.final["text"] == ANSWER
        assert view.gaps == 0  # no index jump in what either Daphne sent
        if mid_stream:  # the snapshot and the deltas after it hold all the text
            assert view.text == ANSWER
    assert any(mid_stream for _, mid_stream in results)
    assert stack.webs[1].alive()

    with stack.orm():
        for visitor, _ in results:
            rows = Message.objects.filter(conversation_id=visitor.conversation_id)
            assert [(m.role, m.status) for m in rows.order_by("seq")] == [
                ("user", "complete"),
                ("assistant", "complete"),
            ]
            assert rows.get(role="assistant").text == ANSWER
