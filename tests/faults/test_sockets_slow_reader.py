"""A visitor's tab that stops reading while a 2,000-token reply streams: the other tab of the
conversation still gets every delta, and the stalled one, reading again, ends with the whole
reply."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.llm_server import Reply
from tests.support.socket_stack import SocketStack, socket_stack
from tests.support.widget_async import Visitor
from tests.support.widget_client import CUSTOMER

pytestmark = pytest.mark.faults

TOKENS = [f"w{n} " for n in range(2000)]


@pytest.fixture(scope="module")
def stack(django_db_setup: None, django_db_blocker: Any, llm_server: Any) -> Iterator[SocketStack]:
    with socket_stack(django_db_blocker, llm_server) as started:
        yield started


def ended(visitor: Visitor) -> bool:
    return any(final["status"] != "streaming" for final in visitor.finals())


async def stalled_tab(stack: SocketStack, key: str) -> tuple[Visitor, Visitor]:
    reader = Visitor(ws_url=stack.ws_url, key=key, forwarded_for="10.7.0.1")
    await reader.connect()
    # The same visitor's second tab, which stops reading after its welcome.
    stalled = Visitor(
        ws_url=stack.ws_url,
        key=key,
        forwarded_for="10.7.0.1",
        max_queue=1,
        visitor_token=reader.visitor_token,
        conversation_id=reader.conversation_id,
    )
    await stalled.connect()
    await reader.ask("Tell me everything.")
    await reader.recv_until(lambda _: ended(reader), timeout=300)
    await stalled.recv_until(lambda _: ended(stalled), timeout=300)
    await asyncio.gather(reader.close(), stalled.close())
    return reader, stalled


def test_a_tab_that_stops_reading_slows_no_one_and_catches_up(stack: SocketStack) -> None:
    _, key = stack.create_tenant(allowed_origins=[CUSTOMER])
    stack.llm.enqueue(Reply(tokens=TOKENS))
    reader, stalled = asyncio.run(stalled_tab(stack, key))
    text = "".join(TOKENS)
    (reader_view,) = reader.replies.values()
    assert reader_view.gaps == 0
    assert reader_view.text == text  # every delta reached the tab that kept reading
    assert reader_view.final is not None
    assert reader_view.final["text"] == text
    (stalled_view,) = stalled.replies.values()
    assert stalled_view.final is not None
    assert stalled_view.final["text"] == text
    assert stalled_view.gaps == 0
    assert stack.web.alive()
