"""End to end: a customer's page embeds the widget; a visitor chats with the real stack.

Daphne and a Celery worker run as child processes (`live_stack`), the LLM is the scripted
OpenAI-compatible server, and the customer's page is served from another origin.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.support.llm_server import Reply

from .conftest import customer_page
from .widget import FRAME, ConsoleLog, bubble_text, bubbles, chat_frame, launcher, open_widget, send

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

ANSWER = (
    "To change your password, open **Settings**, choose *Security* and click "
    "`Change password`. You will get an email to confirm the change."
)
ANSWER_TEXT = (
    "To change your password, open Settings, choose Security and click Change password. "
    "You will get an email to confirm the change."
)


def _customer_url(live_stack: Any, customer_site: Any, key: str) -> str:
    return customer_site.page(
        "/", customer_page(f"{live_stack.base_url}/static/widget/loader.js", key)
    )


def test_visitor_chats_from_a_customer_page(
    live_stack: Any, customer_site: Any, context_factory: Any, screenshots_dir: Any
) -> None:
    _slug, key = live_stack.create_tenant(allowed_origins=[customer_site.origin])
    live_stack.llm.enqueue(Reply(text=ANSWER, token_interval=0.05))
    page = context_factory().new_page()
    console = ConsoleLog(page)
    page.goto(_customer_url(live_stack, customer_site, key))

    with page.expect_response(lambda r: "/widget/frame/" in r.url) as frame_response:
        chat = open_widget(page)
    response = frame_response.value
    assert response.status == 200
    csp = response.headers.get("content-security-policy", "")
    ancestors = next(d for d in csp.split(";") if d.strip().startswith("frame-ancestors")).split()
    assert customer_site.origin in ancestors, csp
    assert "script-src 'self'" in csp
    assert "style-src 'self'" in csp

    send(chat, "How do I change my password?")
    user = bubbles(chat, "user")
    expect(user).to_have_count(1, timeout=10_000)
    expect(user).to_have_attribute("data-status", "complete", timeout=10_000)  # acknowledged
    expect(user.locator(".sb-plain")).to_have_text("How do I change my password?")

    # The reply streams: some of the text, not all of it yet...
    partial = (
        chat_frame(page)
        .wait_for_function(
            """(full) => {
            const el = document.querySelector('.sb-msg--assistant[data-phase="streaming"] .sb-md');
            const text = el && el.textContent;
            return text && text.length > 0 && text.length < full.length ? text : null;
        }""",
            arg=ANSWER_TEXT,
            timeout=30_000,
        )
        .json_value()
    )
    assert ANSWER_TEXT.startswith(partial.strip()[:8])

    # ...then the final message replaces it.
    assistant = bubbles(chat, "assistant")
    expect(assistant).to_have_attribute("data-status", "complete", timeout=30_000)
    expect(assistant).to_have_count(1)
    assert bubble_text(assistant) == ANSWER_TEXT
    expect(assistant.locator(".sb-md strong")).to_have_text("Settings")
    expect(assistant.locator(".sb-md code")).to_have_text("Change password")
    expect(chat.locator(".sb-status")).to_be_hidden()

    page.screenshot(path=str(screenshots_dir / "widget-chat.png"))
    page.set_viewport_size({"width": 375, "height": 740})
    expect(page.locator(FRAME)).to_have_js_property("offsetWidth", 375)
    page.screenshot(path=str(screenshots_dir / "widget-chat-375.png"))

    assert console.csp_violations() == []
    assert console.errors() == []


def test_customer_page_on_an_origin_not_allowed_cannot_chat(
    live_stack: Any, customer_site: Any, context_factory: Any, screenshots_dir: Any
) -> None:
    _slug, key = live_stack.create_tenant(allowed_origins=["https://shop.example.com"])
    page = context_factory().new_page()
    page.goto(_customer_url(live_stack, customer_site, key))

    # The chat page refuses to be framed here: the loader says so in plain words.
    launcher(page).click()
    alert = page.locator("[data-supportbot-widget] .panel").get_by_role("alert")
    expect(alert).to_have_text(
        "This chat is not available on this website. Please contact the company another way.",
        timeout=15_000,
    )
    page.screenshot(path=str(screenshots_dir / "widget-refused.png"))

    # A client of its own on that origin is refused by the socket too.
    code = page.evaluate(
        """([url, key]) => new Promise((resolve) => {
            const ws = new WebSocket(url);
            ws.onopen = () => ws.send(JSON.stringify({
                type: "hello", key, visitor_token: null, conversation_id: null, last_seq: 0,
                locale: "en"}));
            ws.onclose = (event) => resolve(event.code);
            setTimeout(() => resolve(-1), 10000);
        })""",
        [live_stack.ws_url, key],
    )
    assert code == 4403
