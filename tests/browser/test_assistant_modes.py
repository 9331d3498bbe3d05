"""The AI disclosure and "visitor decides" in Chromium, against the real stack (`live_stack`:
Daphne and a Celery worker as child processes, the scripted provider)."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from supportbot.tenants.disclosure import DEFAULT_AI_DISCLOSURES
from tests.support.llm_server import Reply

from .conftest import customer_page
from .widget import FRAME, ConsoleLog, bubble_text, bubbles, launcher, open_widget, send

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


def _open(live_stack: Any, customer_site: Any, context_factory: Any, key: str) -> tuple[Any, Any]:
    page = context_factory().new_page()
    url = customer_site.page(
        "/", customer_page(f"{live_stack.base_url}/static/widget/loader.js", key)
    )
    page.goto(url)
    return page, ConsoleLog(page)


def _conversation_statuses(live_stack: Any, slug: str) -> list[str]:
    from conversations.models import Conversation

    return live_stack.in_thread(
        lambda: list(
            Conversation.objects.filter(tenant__slug=slug)
            .order_by("created_at")
            .values_list("status", flat=True)
        )
    )


def test_the_widget_says_plainly_that_an_ai_answers(
    live_stack: Any, customer_site: Any, context_factory: Any, screenshots_dir: Any
) -> None:
    disclosure = "You're chatting with Acme's AI assistant <b>Ada</b>. It can make mistakes."
    _slug, key = live_stack.create_tenant(
        allowed_origins=[customer_site.origin], ai_disclosure={"en": disclosure}
    )
    page, console = _open(live_stack, customer_site, context_factory, key)
    chat = open_widget(page)

    line = chat.locator(".sb-disclosure")
    expect(line).to_be_visible()
    expect(line).to_have_text(disclosure)  # as text: no markup from the tenant's wording
    expect(line.locator("b")).to_have_count(0)
    box = chat.get_by_role("textbox", name="Your message")
    assert line.bounding_box()["y"] < box.bounding_box()["y"]  # above the input
    # Assistant first: no choice to make, "Talk to a person" where it always was.
    expect(chat.locator(".sb-choice")).to_be_hidden()
    expect(chat.get_by_role("button", name="Talk to a person")).to_be_visible()
    page.screenshot(path=str(screenshots_dir / "widget-disclosure.png"))
    assert console.csp_violations() == []
    assert console.errors() == []


def test_visitor_decides_offers_the_assistant_or_a_person_first(
    live_stack: Any, customer_site: Any, context_factory: Any, screenshots_dir: Any
) -> None:
    slug, key = live_stack.create_tenant(
        allowed_origins=[customer_site.origin],
        conversation_mode="visitor_decides",
        person_first_wait_minutes=7,
    )

    requests_before = len(live_stack.llm.chat_requests())
    # A visitor who wants a person: the message waits for one, and the assistant stays quiet.
    page, console = _open(live_stack, customer_site, context_factory, key)
    launcher(page).click()
    chat = page.frame_locator(FRAME)
    ask = chat.get_by_role("button", name="Ask the assistant")
    person = chat.get_by_role("button", name="Talk to a person")
    expect(ask).to_be_visible(timeout=15_000)
    expect(person).to_be_visible()
    expect(chat.get_by_text("How would you like to start?")).to_be_visible()
    box = chat.get_by_role("textbox", name="Your message")
    expect(box).to_be_hidden()  # nothing to write in before the choice
    expect(chat.locator(".sb-disclosure")).to_have_text(DEFAULT_AI_DISCLOSURES["en"])
    page.screenshot(path=str(screenshots_dir / "widget-visitor-decides.png"))

    person.click()
    expect(person).to_have_attribute("aria-pressed", "true")
    expect(chat.locator(".sb-choice__note")).to_contain_text("within 7 minutes")
    expect(box).to_be_visible()
    expect(box).to_be_focused()
    send(chat, "I need to change the address on my order.")
    expect(chat.locator(".sb-banner")).to_have_text(
        "A person from our team will join shortly.", timeout=15_000
    )
    notice = bubbles(chat, "system").last
    expect(notice).to_contain_text("If no one is free within 7 minutes", timeout=15_000)
    expect(chat.locator(".sb-choice")).to_be_hidden()
    assert _conversation_statuses(live_stack, slug) == ["waiting_for_agent"]
    assert len(live_stack.llm.chat_requests()) == requests_before
    page.screenshot(path=str(screenshots_dir / "widget-person-first-wait.png"))
    assert console.errors() == []

    # Another visitor asks the assistant, which answers at once.
    live_stack.llm.enqueue(Reply(text="Orders ship within two days."))
    page, console = _open(live_stack, customer_site, context_factory, key)
    launcher(page).click()
    chat = page.frame_locator(FRAME)
    chat.get_by_role("button", name="Ask the assistant").click()
    send(chat, "When will my order ship?")
    assistant = bubbles(chat, "assistant")
    expect(assistant).to_have_attribute("data-status", "complete", timeout=30_000)
    assert bubble_text(assistant) == "Orders ship within two days."
    expect(chat.locator(".sb-choice")).to_be_hidden()
    expect(chat.get_by_role("button", name="Talk to a person")).to_be_visible()
    assert _conversation_statuses(live_stack, slug) == ["waiting_for_agent", "bot"]
    assert console.errors() == []


def test_the_widgets_default_disclosures_are_the_servers(browser: Any, static_site: Any) -> None:
    """i18n.js says the same default as the server, in every language the widget speaks."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(static_site.origin + "/pages/markdown.html")
        page.add_script_tag(url=static_site.origin + "/static/widget/i18n.js")
        page.wait_for_function("Boolean(window.SupportbotWidgetI18n)")
        widget = page.evaluate(
            """() => {
                const { strings, languages } = window.SupportbotWidgetI18n;
                return Object.fromEntries(languages.map((l) => [l, strings[l].aiDisclosure]));
            }"""
        )
    finally:
        context.close()
    assert widget == DEFAULT_AI_DISCLOSURES
