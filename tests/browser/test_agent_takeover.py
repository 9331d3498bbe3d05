"""End to end: a visitor chats through the widget while an agent, in the admin, takes over.

Daphne and a Celery worker run as child processes (`live_stack`); the visitor's page is a
customer's site on another origin; the agent logs into the admin and works from the
conversation page's live panel (static/admin_extras/agent.js).
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.support.llm_server import Reply

from .conftest import customer_page
from .widget import ConsoleLog, bubbles, open_widget, send

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

PASSWORD = "agent-password-for-tests"


def _create_agent(live_stack: Any, slug: str, username: str) -> None:
    def create() -> None:
        from django.contrib.auth import get_user_model

        from supportbot.tenants.models import Tenant, TenantMembership

        user = get_user_model().objects.create_user(
            username=username, password=PASSWORD, is_staff=True, first_name="Ana"
        )
        TenantMembership.objects.create(
            tenant=Tenant.objects.get(slug=slug), user=user, display_name="Ana"
        )

    live_stack.in_thread(create)


def _conversation_id(live_stack: Any, slug: str) -> str:
    def find() -> str:
        from conversations.models import Conversation

        return str(Conversation.objects.get(tenant__slug=slug).pk)

    return str(live_stack.in_thread(find))


def test_agent_takes_over_answers_hands_back_and_closes(
    live_stack: Any, customer_site: Any, context_factory: Any, screenshots_dir: Any
) -> None:
    slug, key = live_stack.create_tenant(allowed_origins=[customer_site.origin])
    username = f"ana-{slug}"[:150]
    _create_agent(live_stack, slug, username)
    live_stack.llm.enqueue(Reply(text="Orders ship in two days."))

    visitor = context_factory().new_page()
    visitor.goto(
        customer_site.page(
            "/", customer_page(f"{live_stack.base_url}/static/widget/loader.js", key)
        )
    )
    chat = open_widget(visitor)
    send(chat, "When do you ship my order to the United Kingdom?")
    expect(bubbles(chat, "assistant")).to_have_count(1, timeout=10_000)
    conversation_id = _conversation_id(live_stack, slug)

    agent = context_factory().new_page()
    console = ConsoleLog(agent)
    change_url = f"/admin/conversations/conversation/{conversation_id}/change/"
    agent.goto(f"{live_stack.base_url}/admin/login/?next={change_url}")
    agent.fill("#id_username", username)
    agent.fill("#id_password", PASSWORD)
    agent.click("input[type=submit]")
    panel = agent.locator("#agent-panel")
    expect(panel.locator('[data-role="connection"]')).to_have_text("Live", timeout=10_000)
    status = panel.locator('[data-role="status"]')
    expect(status).to_have_text("Answered by the assistant")
    transcript = agent.locator("#transcript")
    expect(transcript.locator(".turn")).to_have_count(2)

    # Take over: the visitor is told who joined; the page shows the new status.
    panel.get_by_role("button", name="Take over").click()
    expect(status).to_have_text("With an agent")
    expect(panel.locator('[data-role="agent"]')).to_have_text("Agent: Ana")
    expect(agent.locator(".field-assigned_agent .readonly")).to_have_text("Ana")
    expect(transcript.locator(".turn-system").last).to_contain_text("Ana from our team")
    expect(bubbles(chat, "system").last).to_contain_text(
        "Ana from our team has joined the conversation.", timeout=10_000
    )

    # The agent answers with Enter; the visitor sees an agent message.
    box = panel.get_by_role("textbox", name="Reply to the visitor")
    box.fill("Hi, I'm Ana. Your parcel left today.")
    box.press("Enter")
    expect(bubbles(chat, "agent")).to_have_count(1, timeout=10_000)
    expect(bubbles(chat, "agent").last).to_contain_text("Your parcel left today.")
    expect(box).to_have_value("")
    expect(transcript.locator(".turn-agent")).to_have_count(1)

    # The visitor's next message reaches the agent live, as text (never as markup).
    hostile = '<img src=x onerror="window.__pwned = 1"> thank you, that is very helpful'
    send(chat, hostile)
    last_user = transcript.locator(".turn-user").last
    expect(last_user.locator(".turn-text")).to_have_text(hostile, timeout=10_000)
    assert transcript.locator("img").count() == 0
    assert agent.evaluate("window.__pwned") is None
    agent.screenshot(path=str(screenshots_dir / "agent-takeover.png"), full_page=True)

    # Hand back: the bot answers again, and the agent watches its reply stream in.
    panel.get_by_role("button", name="Hand back to the assistant").click()
    expect(status).to_have_text("Answered by the assistant")
    expect(bubbles(chat, "system").last).to_contain_text(
        "You're chatting with our assistant again.", timeout=10_000
    )
    live_stack.llm.enqueue(Reply(text="Anything else I can do?", token_interval=0.05))
    send(chat, "Could you also tell me how returns work for my order, please?")
    expect(transcript.locator(".turn-assistant").last.locator(".turn-text")).to_have_text(
        "Anything else I can do?", timeout=10_000
    )

    # Close: the buttons that no longer apply are disabled.
    panel.get_by_role("button", name="Close conversation").click()
    expect(status).to_have_text("Closed")
    expect(box).to_be_disabled()
    expect(panel.get_by_role("button", name="Take over")).to_be_disabled()
    expect(bubbles(chat, "system").last).to_contain_text("was closed", timeout=10_000)
    assert console.errors() == []
