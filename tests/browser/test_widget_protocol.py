"""The widget in Chromium against the stand-in backend (tests/browser/standin.py).

Fast and self-contained: the client's handling of protocol v1 (streaming, resume after a drop,
idempotent resend, delta gaps, refusals, error frames, back-off), its keyboard use, its isolation
from the customer's CSS, and how it looks on desktop and on a phone.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import customer_page
from .standin import ScriptedReply, StandinBackend
from .widget import (
    FRAME,
    LAUNCHER_CLOSE,
    LAUNCHER_OPEN,
    ConsoleLog,
    bubble_text,
    bubbles,
    chat_frame,
    launcher,
    open_widget,
    send,
)

pytestmark = pytest.mark.browser

KEY = "pk_test_standin"

ANSWER_CHUNKS = [
    "To change your password:",
    "\n\n1. Open **Settings**",
    "\n2. Choose *Security*",
    "\n3. Click `Change password`",
    "\n\nSee [the help centre](https://help.example.com/password) for more.",
]
ANSWER = "".join(ANSWER_CHUNKS)


def _setup(standin: StandinBackend, customer_site: Any, *, allowed: bool = True) -> str:
    standin.keys[KEY] = [customer_site.origin] if allowed else []
    return customer_site.page(
        "/", customer_page(f"{standin.base_url}/static/widget/loader.js", KEY)
    )


def _page(context_factory: Any, **options: Any) -> tuple[Any, ConsoleLog]:
    page = context_factory(**options).new_page()
    return page, ConsoleLog(page)


def _wait_for_intermediate(page: Any, final: str) -> str:
    """Wait until the streaming reply shows some, but not all, of `final`; return that text."""
    handle = chat_frame(page).wait_for_function(
        """(final) => {
            const el = document.querySelector('.sb-msg--assistant[data-phase="streaming"] .sb-md');
            const text = el && el.textContent;
            return text && text.length > 0 && text.length < final.replace(/[*`\\[\\]]/g, '').length
                ? text : null;
        }""",
        arg=final,
        timeout=10_000,
    )
    return handle.json_value()


def test_chat_streams_a_reply_and_looks_right(
    standin: StandinBackend, customer_site: Any, context_factory: Any, screenshots_dir: Any
) -> None:
    url = _setup(standin, customer_site)
    standin.replies.append(
        ScriptedReply(
            chunks=ANSWER_CHUNKS,
            interval=0.25,
            first_delay=0.6,
            sources=[
                {"title": "Resetting your password", "url": "https://help.example.com/password"},
                {"title": "Account security", "url": "https://help.example.com/security"},
            ],
        )
    )
    page, console = _page(context_factory)
    page.goto(url)

    button = launcher(page)
    expect(button).to_have_attribute("aria-expanded", "false")
    expect(button).to_have_accessible_name(LAUNCHER_OPEN)
    # The page's hostile CSS (red 300px buttons, hidden SVGs, Comic Sans) does not reach it.
    box = button.bounding_box()
    assert box is not None and box["width"] == 60 and box["height"] == 60
    assert button.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(67, 56, 202)"
    assert button.locator("svg").evaluate("s => getComputedStyle(s).display") != "none"

    chat = open_widget(page)
    expect(button).to_have_attribute("aria-expanded", "true")
    expect(button).to_have_accessible_name(LAUNCHER_CLOSE)
    frame_url = page.locator(FRAME).get_attribute("src")
    assert frame_url.startswith(f"{standin.base_url}/widget/frame/?key={KEY}&locale=")
    assert frame_url.endswith(
        "&origin=" + customer_site.origin.replace(":", "%3A").replace("/", "%2F")
    )
    expect(chat.locator(".sb-title")).to_have_text("Chat with Acme")
    expect(chat.locator(".sb-empty")).to_be_visible()

    send(chat, "How do I change my password?")
    expect(bubbles(chat, "user")).to_have_count(1)
    expect(bubbles(chat, "user").first).to_contain_text("How do I change my password?")
    # Typing indicator until the first delta.
    expect(chat.locator(".sb-msg--assistant .sb-bubble--typing")).to_be_visible()
    page.screenshot(path=str(screenshots_dir / "standin-typing.png"))
    partial = _wait_for_intermediate(page, ANSWER)
    assert ANSWER.startswith(partial[:10])
    page.screenshot(path=str(screenshots_dir / "standin-streaming.png"))

    assistant = bubbles(chat, "assistant")
    expect(assistant).to_have_attribute("data-status", "complete", timeout=10_000)
    expect(assistant).to_have_count(1)
    expect(assistant.locator(".sb-md ol > li")).to_have_count(3)
    expect(assistant.locator(".sb-md strong")).to_have_text("Settings")
    link = assistant.locator(".sb-md a")
    expect(link).to_have_attribute("target", "_blank")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    expect(assistant.locator(".sb-sources a")).to_have_text(
        ["Resetting your password", "Account security"]
    )
    expect(chat.locator(".sb-typing")).to_have_count(0)

    # The list is a polite live region; the composer is labelled and empty again.
    expect(chat.locator("[role=log]")).to_have_attribute("aria-live", "polite")
    expect(chat.get_by_role("textbox", name="Your message")).to_have_value("")
    page.screenshot(path=str(screenshots_dir / "standin-desktop.png"))

    hello = standin.frames_received("hello")[0]
    assert hello["key"] == KEY and hello["visitor_token"] is None and hello["last_seq"] == 0
    assert standin.connections[0].origin == standin.base_url  # the iframe's own origin
    assert console.csp_violations() == []
    assert console.errors() == []


def test_phone_width_is_full_screen(
    standin: StandinBackend, customer_site: Any, context_factory: Any, screenshots_dir: Any
) -> None:
    url = _setup(standin, customer_site)
    standin.replies.append(ScriptedReply(chunks=ANSWER_CHUNKS, interval=0.02))
    page, console = _page(
        context_factory, viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True
    )
    page.goto(url)
    chat = open_widget(page)
    frame_box = page.locator(FRAME).bounding_box()
    assert frame_box == {"x": 0, "y": 0, "width": 375, "height": 740}
    send(chat, "How do I change my password? I tried the usual way and it did not work.")
    expect(bubbles(chat, "assistant")).to_have_attribute("data-status", "complete")
    # Nothing overflows sideways at this width.
    assert chat_frame(page).evaluate("document.documentElement.scrollWidth") <= 375
    page.screenshot(path=str(screenshots_dir / "standin-375.png"))
    # The header's close button closes it.
    chat.get_by_role("button", name="Close chat").click()
    expect(page.locator(FRAME)).to_be_hidden()
    expect(launcher(page)).to_be_visible()
    expect(launcher(page)).to_be_focused()
    assert console.csp_violations() == []


def test_narrow_320_layout(
    standin: StandinBackend, customer_site: Any, context_factory: Any
) -> None:
    url = _setup(standin, customer_site)
    standin.replies.append(
        ScriptedReply(
            chunks=["A very long word: " + "x" * 120, "\n\n```\n" + "code " * 40 + "\n```"],
            interval=0.02,
        )
    )
    page, _ = _page(context_factory, viewport={"width": 320, "height": 568})
    page.goto(url)
    chat = open_widget(page)
    send(chat, "y" * 200)
    expect(bubbles(chat, "assistant")).to_have_attribute("data-status", "complete")
    frame = chat_frame(page)
    assert frame.evaluate("document.documentElement.scrollWidth") <= 320
    send_box = chat.get_by_role("button", name="Send").bounding_box()
    assert send_box is not None and send_box["x"] + send_box["width"] <= 320


def test_keyboard_enter_shift_enter_escape_and_focus(
    standin: StandinBackend, customer_site: Any, context_factory: Any
) -> None:
    url = _setup(standin, customer_site)
    page, _ = _page(context_factory)
    page.goto(url)
    # Reach the launcher with the keyboard: the page's link, then the launcher.
    button = launcher(page)
    button.wait_for()
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(button).to_be_focused()
    page.keyboard.press("Enter")
    chat = page.frame_locator(FRAME)
    box = chat.get_by_role("textbox", name="Your message")
    expect(box).to_be_focused()
    # Shift+Enter is a new line; Enter sends.
    page.keyboard.type("first line")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("second line")
    expect(box).to_have_value("first line\nsecond line")
    page.keyboard.press("Enter")
    expect(bubbles(chat, "user").locator(".sb-plain")).to_have_text("first line\nsecond line")
    expect(box).to_have_value("")
    expect(chat.get_by_role("button", name="Send")).to_be_disabled()
    # Esc inside the chat closes it and gives focus back to the launcher.
    box.press("Escape")
    expect(page.locator(FRAME)).to_be_hidden()
    expect(button).to_be_focused()
    expect(button).to_have_attribute("aria-expanded", "false")
    # Reopen with the keyboard; Esc while focus is on the page also closes.
    page.keyboard.press("Enter")
    expect(page.locator(FRAME)).to_be_visible()
    button.focus()
    page.keyboard.press("Escape")
    expect(page.locator(FRAME)).to_be_hidden()
    # The visible focus ring is there (not suppressed by the page's CSS).
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")
    assert button.evaluate("b => getComputedStyle(b).outlineStyle") == "solid"


def test_character_limit_hint(
    standin: StandinBackend, customer_site: Any, context_factory: Any
) -> None:
    url = _setup(standin, customer_site)
    page, _ = _page(context_factory)
    page.goto(url)
    chat = open_widget(page)
    box = chat.get_by_role("textbox", name="Your message")
    box.fill("a" * 3700)
    expect(chat.locator("#sb-counter")).to_have_text("300 characters left")
    box.fill("a" * 4010)
    expect(chat.locator("#sb-counter")).to_have_text("10 characters over the limit")
    expect(chat.get_by_role("button", name="Send")).to_be_disabled()
    box.press("Enter")
    expect(bubbles(chat, "user")).to_have_count(0)


def test_resume_after_the_socket_drops_mid_reply(
    standin: StandinBackend, customer_site: Any, context_factory: Any
) -> None:
    url = _setup(standin, customer_site)
    standin.replies.append(ScriptedReply(chunks=ANSWER_CHUNKS, interval=0.3, drop_after_index=1))
    page, console = _page(context_factory)
    page.goto(url)
    chat = open_widget(page)
    send(chat, "How do I change my password?")
    assistant = bubbles(chat, "assistant")
    expect(assistant).to_have_attribute("data-status", "complete", timeout=15_000)
    expect(assistant).to_have_count(1)
    expect(bubbles(chat, "user")).to_have_count(1)
    assert bubble_text(assistant).startswith("To change your password:")
    expect(assistant.locator(".sb-md ol > li")).to_have_count(3)
    expect(chat.locator(".sb-status")).to_be_hidden()

    hellos = standin.frames_received("hello")
    assert len(hellos) >= 2
    conversation = next(iter(standin.conversations.values()))
    assert hellos[1]["visitor_token"] == conversation.visitor_token
    assert hellos[1]["conversation_id"] == conversation.id
    # The user's message (seq 1) was shown; the reply (seq 2) was not finished, so resume from 1.
    assert hellos[1]["last_seq"] == 1
    # The reconnect got reply.start and a snapshot delta of the text so far.
    resumed = standin.connections[1].sent
    assert [f["type"] for f in resumed[:3]] == ["welcome", "reply.start", "reply.delta"]
    assert console.errors() == []


def test_unacknowledged_message_is_sent_again_with_the_same_client_id(
    standin: StandinBackend, customer_site: Any, context_factory: Any
) -> None:
    url = _setup(standin, customer_site)
    standin.drop_before_ack = 1
    standin.replies.append(
        ScriptedReply(chunks=["Sure", ", done."], interval=0.05, first_delay=0.5)
    )
    page, _ = _page(context_factory)
    page.goto(url)
    chat = open_widget(page)
    send(chat, "Please help")
    expect(bubbles(chat, "assistant")).to_have_attribute("data-status", "complete", timeout=15_000)
    sent = standin.frames_received("message")
    assert len(sent) == 2
    assert sent[0]["client_id"] == sent[1]["client_id"]
    assert [m.role for m in standin.all_messages()] == ["user", "assistant"]
    expect(bubbles(chat, "user")).to_have_count(1)
    expect(bubbles(chat, "user")).to_have_attribute("data-status", "complete")
    expect(bubbles(chat, "assistant")).to_have_count(1)


def test_gap_in_delta_indexes_waits_for_the_final_message(
    standin: StandinBackend, customer_site: Any, context_factory: Any
) -> None:
    url = _setup(standin, customer_site)
    standin.replies.append(
        ScriptedReply(
            chunks=["One", " two", " three", " four"],
            interval=0.1,
            skip_indexes={2},
            pause_after_index={3: 2.0},
        )
    )
    page, _ = _page(context_factory)
    page.goto(url)
    chat = open_widget(page)
    send(chat, "Count")
    assistant = bubbles(chat, "assistant")
    expect(assistant).to_have_attribute("data-phase", "gap")
    # After the gap nothing is appended: " four" (index 3) must not show up without " three".
    time.sleep(0.5)
    assert bubble_text(assistant) == "One two"
    expect(assistant).to_have_attribute("data-status", "complete", timeout=10_000)
    assert bubble_text(assistant) == "One two three four"


def test_refused_key_or_origin_shows_plain_words_and_does_not_reconnect(
    standin: StandinBackend, customer_site: Any, context_factory: Any
) -> None:
    url = _setup(standin, customer_site)
    standin.hello_close_codes.append(4403)
    page, _ = _page(context_factory)
    page.goto(url)
    chat = open_widget(page)
    status = chat.locator(".sb-status")
    expect(status).to_contain_text("This chat is not available on this website.")
    expect(chat.get_by_role("textbox", name="Your message")).to_be_disabled()
    time.sleep(3)
    assert len(standin.connections) == 1


def test_refused_stored_session_offers_a_new_conversation(
    standin: StandinBackend, customer_site: Any, context_factory: Any
) -> None:
    url = _setup(standin, customer_site)
    page, _ = _page(context_factory)
    page.goto(url)
    chat = open_widget(page)
    send(chat, "Hi")
    expect(bubbles(chat, "assistant")).to_have_attribute("data-status", "complete")
    # The server forgets the visitor (say, their data was erased): their token is refused.
    standin.conversations.clear()
    page.reload()
    chat = page.frame_locator(FRAME)
    start_over = chat.get_by_role("button", name="Start a new conversation")
    expect(start_over).to_be_visible()
    assert len(standin.connections) == 2  # no reconnect loop
    start_over.click()
    expect(chat.locator(".sb-status")).to_be_hidden()
    expect(chat.locator(".sb-msg")).to_have_count(0)
    send(chat, "Hello again")
    expect(bubbles(chat, "assistant")).to_have_attribute("data-status", "complete")
    assert standin.frames_received("hello")[-1]["visitor_token"] is None


def test_error_frames_show_next_to_the_message_and_the_chat_goes_on(
    standin: StandinBackend, customer_site: Any, context_factory: Any, screenshots_dir: Any
) -> None:
    url = _setup(standin, customer_site)
    standin.message_errors.extend(
        [
            {"code": "too_long", "detail": "Messages are limited to 4000 characters."},
            {"code": "rate_limited", "detail": "Slow down.", "retry_after": 7},
            {"code": "unavailable"},
        ]
    )
    page, _ = _page(context_factory)
    page.goto(url)
    chat = open_widget(page)
    box = chat.get_by_role("textbox", name="Your message")

    send(chat, "first, too long for the server")
    first = bubbles(chat, "user").nth(0)
    expect(first.locator(".sb-msg__notice")).to_have_text(
        "This message is too long. Please shorten it and send it again."
    )
    expect(first).to_have_attribute("data-status", "failed")
    expect(box).to_have_value("first, too long for the server")  # back in the composer to edit

    send(chat, "second, too fast")
    second = bubbles(chat, "user").nth(1)
    expect(second.locator(".sb-msg__notice")).to_contain_text(
        "Please wait 7 seconds and try again."
    )

    send(chat, "third, assistant down")
    third = bubbles(chat, "user").nth(2)
    expect(third.locator(".sb-msg__notice")).to_contain_text(
        "The assistant cannot answer right now."
    )
    expect(third).to_have_attribute("data-status", "complete")  # stored, acknowledged

    # "Try again" resends the rate-limited message (same client_id) and it goes through.
    second.get_by_role("button", name="Try again").click()
    expect(bubbles(chat, "assistant")).to_have_count(1, timeout=10_000)
    sent = standin.frames_received("message")
    assert sent[1]["client_id"] == sent[3]["client_id"]
    expect(bubbles(chat, "assistant")).to_have_attribute("data-status", "complete")
    page.screenshot(path=str(screenshots_dir / "standin-errors.png"))
    assert len(standin.connections) == 1  # the socket stayed up throughout


def test_too_many_connections_backs_off_longer(
    standin: StandinBackend, customer_site: Any, context_factory: Any
) -> None:
    url = _setup(standin, customer_site)
    standin.hello_close_codes.append(4429)
    page, _ = _page(context_factory)
    page.goto(url)
    chat = open_widget(page)
    expect(chat.locator(".sb-status")).to_contain_text("Too many chat windows are open.")
    standin.wait_for(lambda: len(standin.connections) >= 2, timeout=10, what="a second connection")
    waited = standin.connections[1].opened_at - standin.connections[0].opened_at
    assert waited >= 2.4, f"reconnected after {waited:.2f}s"
    expect(chat.locator(".sb-status")).to_be_hidden()


def test_reload_restores_the_transcript_and_resumes(
    standin: StandinBackend, customer_site: Any, context_factory: Any, screenshots_dir: Any
) -> None:
    url = _setup(standin, customer_site)
    page, _ = _page(context_factory)
    page.goto(url)
    chat = open_widget(page)
    send(chat, "Remember me")
    expect(bubbles(chat, "assistant")).to_have_attribute("data-status", "complete")

    page.reload()  # another page of the shop: the chat reopens as it was
    chat = page.frame_locator(FRAME)
    expect(launcher(page)).to_have_attribute("aria-expanded", "true")
    expect(bubbles(chat, "user")).to_have_count(1)
    expect(bubbles(chat, "assistant")).to_have_count(1)
    standin.wait_for(lambda: len(standin.frames_received("hello")) == 2, what="the second hello")
    hello = standin.frames_received("hello")[1]
    assert hello["last_seq"] == 2 and hello["visitor_token"]
    assert standin.connections[1].sent[0]["messages"] == []  # nothing missed, nothing re-sent

    # An agent joins: a notice and a message that look different from the assistant's.
    conversation_id = next(iter(standin.conversations))
    standin.call(
        standin.post_message, conversation_id, "system", "Sam from Acme joined the conversation."
    )
    standin.call(
        standin.post_message, conversation_id, "agent", "Hi, I'm **Sam**. I can help with that."
    )
    expect(chat.locator(".sb-msg--system")).to_have_text("Sam from Acme joined the conversation.")
    agent = bubbles(chat, "agent")
    expect(agent.locator(".sb-msg__name")).to_have_text("Support team")
    expect(agent.locator(".sb-md strong")).to_have_text("Sam")
    page.screenshot(path=str(screenshots_dir / "standin-agent.png"))


def test_unknown_origin_cannot_frame_the_chat(
    standin: StandinBackend, customer_site: Any, context_factory: Any
) -> None:
    url = _setup(standin, customer_site, allowed=False)
    page, _ = _page(context_factory)
    page.goto(url)
    launcher(page).click()
    panel = page.locator("[data-supportbot-widget] .panel")
    expect(panel.get_by_role("alert")).to_have_text(
        "This chat is not available on this website. Please contact the company another way.",
        timeout=10_000,
    )
    assert standin.connections == []  # the chat never started


def test_loader_without_current_script_in_head_and_pasted_twice(
    standin: StandinBackend, customer_site: Any, context_factory: Any
) -> None:
    """`document.currentScript` unavailable, the tag in <head> before <body> exists, and the
    snippet pasted twice: still exactly one working launcher."""
    standin.keys[KEY] = [customer_site.origin]
    loader = f"{standin.base_url}/static/widget/loader.js"
    html = customer_page(
        loader,
        KEY,
        extra_head=(
            '<script src="/hide-current-script.js"></script>'
            f'<script src="{loader}" data-key="{KEY}" async></script>'
        ),
    )
    customer_site.routes["/hide-current-script.js"] = (
        b"Object.defineProperty(document, 'currentScript', { get: () => null });",
        "text/javascript",
        {},
    )
    page, console = _page(context_factory)
    page.goto(customer_site.page("/", html))
    expect(page.locator("[data-supportbot-widget]")).to_have_count(1)
    expect(page.locator("[data-supportbot-widget] button.launcher")).to_have_count(1)
    chat = open_widget(page)
    send(chat, "Hello")
    expect(bubbles(chat, "assistant")).to_have_attribute("data-status", "complete")
    assert console.errors() == []
