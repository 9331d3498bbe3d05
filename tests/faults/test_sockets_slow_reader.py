"""A visitor's tab that stops reading while a reply streams: the other tab of the conversation
still gets every delta, the stalled one, reading again (or reconnecting, if Daphne dropped it for
an unanswered ping), ends with the whole reply, and Daphne's memory stays bounded meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from tests.support.llm_server import Reply
from tests.support.socket_stack import SocketStack, socket_stack
from tests.support.widget_async import Visitor
from tests.support.widget_client import CUSTOMER

pytestmark = pytest.mark.faults

TOKENS = [f"w{n} " for n in range(2000)]
SLOW_READER_TOKENS = 3_000  # ~300 KB of text, ~500 KB of delta frames


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


def resident_bytes(pid: int) -> int:
    """A process's resident memory (VmRSS in /proc/<pid>/status), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


LONG_TOKENS = [f"{n:06d}{'x' * 94} " for n in range(SLOW_READER_TOKENS)]


async def catch_up(visitor: Visitor) -> None:
    """Read again until the reply has ended; a socket the server dropped meanwhile (its ping
    went unanswered) is reopened, and the session resumes from its last `seq`."""
    try:
        await visitor.recv_until(lambda _: ended(visitor), timeout=300)
    except websockets.ConnectionClosed:
        await visitor.connect()


async def really_stalled_tab(
    stack: SocketStack, key: str, pid: int
) -> tuple[Visitor, Visitor, int]:
    reader = Visitor(ws_url=stack.ws_url, key=key, forwarded_for="10.7.0.2")
    await reader.connect()
    stalled = Visitor(
        ws_url=stack.ws_url,
        key=key,
        forwarded_for="10.7.0.2",
        max_queue=1,
        receive_buffer=4096,
        visitor_token=reader.visitor_token,
        conversation_id=reader.conversation_id,
    )
    await stalled.connect()
    before = peak = resident_bytes(pid)

    def reader_done(_: dict[str, Any]) -> bool:
        nonlocal peak
        peak = max(peak, resident_bytes(pid))  # while the stalled tab reads nothing
        return ended(reader)

    await reader.ask("Tell me everything, at length.")
    await reader.recv_until(reader_done, timeout=280)
    await catch_up(stalled)
    await asyncio.gather(reader.close(), stalled.close())
    return reader, stalled, peak - before


def test_a_tab_that_really_stops_reading_leaves_daphne_memory_bounded(stack: SocketStack) -> None:
    _, key = stack.create_tenant(allowed_origins=[CUSTOMER])
    stack.llm.enqueue(Reply(tokens=LONG_TOKENS))
    assert stack.web.process is not None
    reader, stalled, growth = asyncio.run(really_stalled_tab(stack, key, stack.web.process.pid))
    text = "".join(LONG_TOKENS)
    (reader_view,) = reader.replies.values()
    assert reader_view.gaps == 0
    assert reader_view.final is not None
    assert reader_view.final["text"] == text
    # Daphne's memory while the stalled tab read nothing: what it could not send waits in the
    # kernel's send buffer of the connection and Daphne's write buffer, both bounded here.
    assert growth < 50 * 2**20, growth
    (stalled_view,) = stalled.replies.values()
    assert stalled_view.final is not None
    assert stalled_view.final["text"] == text
    assert stalled_view.gaps == 0
    assert stack.web.alive()
