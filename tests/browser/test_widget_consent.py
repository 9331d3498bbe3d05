"""Consent before storage in Chromium, against the real stack (`live_stack`: Daphne and a
Celery worker as child processes, the scripted provider): the consent text is shown, nothing is
stored (in the database or the browser) until the visitor accepts, the chat then works, and
"Delete my data / withdraw consent" clears the browser's storage and the visitor's rows."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from supportbot.tenants.consent_texts import DEFAULT_CONSENT_TEXTS
from tests.support.llm_server import Reply

from .conftest import customer_page
from .widget import FRAME, ConsoleLog, bubbles, chat_frame, launcher, open_widget, send

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

PRIVACY = "https://shop.example.com/privacy"


def _rows(live_stack: Any, slug: str) -> dict[str, int]:
    from conversations.models import ConsentRecord, Contact, Conversation, Message

    def count() -> dict[str, int]:
        return {
            "contacts": Contact.objects.filter(tenant__slug=slug).count(),
            "conversations": Conversation.objects.filter(tenant__slug=slug).count(),
            "messages": Message.objects.filter(tenant__slug=slug).count(),
            "consents": ConsentRecord.objects.filter(tenant__slug=slug).count(),
        }

    result: dict[str, int] = live_stack.in_thread(count)
    return result


def _customer_url(live_stack: Any, customer_site: Any, key: str) -> str:
    loader = f"{live_stack.base_url}/static/widget/loader.js"
    url: str = customer_site.page("/", customer_page(loader, key))
    return url


NOTHING = {"contacts": 0, "conversations": 0, "messages": 0, "consents": 0}


def _storage_keys(page: Any) -> list[str]:
    keys: list[str] = chat_frame(page).evaluate("() => Object.keys(localStorage)")
    return keys


def test_consent_is_asked_before_anything_is_stored_and_withdrawal_clears_it(
    live_stack: Any, customer_site: Any, context_factory: Any, screenshots_dir: Any
) -> None:
    slug, key = live_stack.create_tenant(
        allowed_origins=[customer_site.origin], lawful_basis="consent", privacy_url=PRIVACY
    )
    page = context_factory(locale="en-US").new_page()
    console = ConsoleLog(page)
    page.goto(_customer_url(live_stack, customer_site, key))
    launcher(page).click()
    chat = page.frame_locator(FRAME)

    panel = chat.locator(".sb-consent")
    expect(panel).to_be_visible(timeout=10_000)
    expect(chat.locator(".sb-consent__text")).to_have_text(DEFAULT_CONSENT_TEXTS["en"])
    link = chat.get_by_role("link", name="Privacy policy")
    expect(link).to_have_attribute("href", PRIVACY)
    box = chat.get_by_role("textbox", name="Your message")
    expect(box).to_be_hidden()  # nothing to write in before accepting
    page.screenshot(path=str(screenshots_dir / "widget-consent.png"))
    assert _rows(live_stack, slug) == NOTHING
    assert _storage_keys(page) == []

    chat.get_by_role("button", name="Accept").click()
    expect(box).to_be_visible()
    expect(panel).to_be_hidden()
    chat_frame(page).wait_for_function("() => Object.keys(localStorage).length === 1")
    assert _rows(live_stack, slug) == {**NOTHING, "contacts": 1, "consents": 1}

    live_stack.llm.enqueue(Reply(text="Happy to help."))
    send(chat, "Hello, my email is ann@example.com")
    expect(bubbles(chat, "assistant")).to_have_attribute("data-status", "complete", timeout=30_000)
    assert _rows(live_stack, slug)["messages"] == 2

    # Delete my data / withdraw consent: confirmed, erased, the browser forgets the visitor.
    page.on("dialog", lambda dialog: dialog.accept())
    chat.get_by_role("button", name="More options").click()
    chat.get_by_role("menuitem", name="Delete my data / withdraw consent").click()
    expect(chat.get_by_text("Your data was deleted.")).to_be_visible(timeout=10_000)
    expect(bubbles(chat, "user")).to_have_count(0)
    chat_frame(page).wait_for_function(
        "() => window.supportbotWidget.connection.state === 'open' && !localStorage.length"
    )
    assert _storage_keys(page) == []
    expect(panel).to_be_visible()  # a fresh start asks again
    rows = _rows(live_stack, slug)
    assert rows == NOTHING
    assert console.csp_violations() == []
    assert console.errors() == []


def test_legitimate_interest_shows_a_notice_and_the_chat_at_once(
    live_stack: Any, customer_site: Any, context_factory: Any
) -> None:
    slug, key = live_stack.create_tenant(allowed_origins=[customer_site.origin])
    page = context_factory(locale="en-US").new_page()
    page.goto(_customer_url(live_stack, customer_site, key))
    chat = open_widget(page)
    notice = chat.locator(".sb-consent__text")
    expect(notice).to_have_text(DEFAULT_CONSENT_TEXTS["en"], timeout=10_000)
    expect(chat.get_by_role("button", name="Accept")).to_be_hidden()
    expect(chat.get_by_role("textbox", name="Your message")).to_be_visible()
    assert _rows(live_stack, slug)["contacts"] == 0
