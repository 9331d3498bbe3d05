"""The widget in Chromium at the edges: no localStorage before the visitor's first message, a
capped catch-up said in words, and a bounded outbox while the socket is down."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from .standin import ScriptedReply, StandinBackend
from .test_widget_protocol import KEY, _page, _setup
from .widget import bubbles, chat_frame, open_widget, send

pytestmark = pytest.mark.browser

STORAGE_ENTRY = f"supportbot.widget.v1.{KEY}"


def _storage_keys(page: Any) -> list[str]:
    return chat_frame(page).evaluate("() => Object.keys(localStorage)")


def test_nothing_is_written_to_local_storage_before_the_first_message(
    standin: StandinBackend, customer_site: Any, context_factory: Any
) -> None:
    url = _setup(standin, customer_site)
    standin.replies.append(ScriptedReply(chunks=["Hi", " there."], interval=0.05))
    page, _ = _page(context_factory)
    page.goto(url)
    chat = open_widget(page)
    standin.wait_for(lambda: standin.frames_received("hello"), what="the hello")
    chat_frame(page).wait_for_function("() => window.supportbotWidget.connection.state === 'open'")
    assert _storage_keys(page) == []

    send(chat, "My first message")
    expect(bubbles(chat, "assistant")).to_have_attribute("data-status", "complete")
    assert _storage_keys(page) == [STORAGE_ENTRY]
    saved = chat_frame(page).evaluate(f"() => JSON.parse(localStorage.getItem('{STORAGE_ENTRY}'))")
    assert saved["visitor_token"]
    assert [m["role"] for m in saved["messages"]] == ["user", "assistant"]


def test_a_capped_catch_up_says_that_earlier_messages_are_not_shown(
    standin: StandinBackend, customer_site: Any, context_factory: Any
) -> None:
    url = _setup(standin, customer_site)
    standin.replies.append(ScriptedReply(chunks=["First answer."], interval=0.05))
    context = context_factory()
    page = context.new_page()
    page.goto(url)
    chat = open_widget(page)
    send(chat, "First question")
    expect(bubbles(chat, "assistant")).to_have_attribute("data-status", "complete")
    page.close()

    # While the visitor is away the conversation goes on; the next catch-up holds only the
    # newest two of the five messages they missed.
    conversation_id = next(iter(standin.conversations))
    for n in range(3, 8):
        standin.call(standin.post_message, conversation_id, "agent", f"Agent message {n}")
    standin.catch_up_max = 2
    page = context.new_page()
    page.goto(url)
    chat = open_widget(page)
    expect(bubbles(chat, "agent")).to_have_count(2)
    welcome = standin.connections[-1].sent[0]
    assert (welcome["truncated"], welcome["first_seq"]) == (True, 6)
    rows = chat.locator(".sb-msg")
    texts = [row.inner_text() for row in rows.all()]
    gap = next(i for i, text in enumerate(texts) if "Earlier messages are not shown here." in text)
    assert "First answer." in " ".join(texts[:gap])
    assert "Agent message 6" in texts[gap + 1]
    assert not any("Agent message 3" in text for text in texts)


def test_the_outbox_is_bounded_while_the_socket_is_down(
    standin: StandinBackend, customer_site: Any, context_factory: Any
) -> None:
    url = _setup(standin, customer_site)
    # The service is busy: the first hellos are refused, the widget waits longer each time.
    standin.hello_close_codes.extend([4429, 4429, 4429])
    page, _ = _page(context_factory)
    page.goto(url)
    chat = open_widget(page)
    standin.wait_for(lambda: standin.connections, what="the first connection")
    limit = chat_frame(page).evaluate(
        "async () => (await import('/static/widget/protocol.js')).MAX_OUTBOX"
    )
    assert limit == 10
    for n in range(limit):
        send(chat, f"Queued {n}")
    expect(bubbles(chat, "user")).to_have_count(limit)
    send(chat, "One too many")
    notice = chat.locator(".sb-msg--notice")
    expect(notice).to_contain_text("10 messages are still waiting to be sent.")
    expect(bubbles(chat, "user")).to_have_count(limit)
    box = chat.get_by_role("textbox", name="Your message")
    expect(box).to_have_value("One too many")  # the draft is kept
    outbox = chat_frame(page).evaluate(
        "() => window.supportbotWidget.connection.pendingOutbox().map((m) => m.text)"
    )
    assert outbox == [f"Queued {n}" for n in range(limit)]
    assert not standin.frames_received("message")
