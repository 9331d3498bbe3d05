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
    assert box is not None
    assert box["width"] == 60
    assert box["height"] == 60
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
    assert hello["key"] == KEY
    assert hello["visitor_token"] is None
    assert hello["last_seq"] == 0
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
    assert send_box is not None
    assert send_box["x"] + send_box["width"] <= 320


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
    assert hello["last_seq"] == 2
    assert hello["visitor_token"]
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


# ---- protocol extensions: the conversation's language and state, handoff, agents, sources -----

CHAT_IFRAME = "iframe[src*='/widget/frame/']"  # whatever its (translated) title

SPANISH_SOURCES = [
    {"title": "Cambiar la contraseña", "url": "https://ayuda.example.com/contrasena"},
    {"title": "Seguridad de la cuenta", "url": "https://ayuda.example.com/seguridad"},
]


def _conversation_id(standin: StandinBackend) -> str:
    return standin.wait_for(lambda: next(iter(standin.conversations), None), what="a conversation")


def _update(standin: StandinBackend, **changes: Any) -> None:
    standin.call(standin.update_conversation, _conversation_id(standin), **changes)


def _post(standin: StandinBackend, role: str, text: str, **fields: Any) -> None:
    standin.call(standin.post_message, _conversation_id(standin), role, text, **fields)


def _open_chat(page: Any) -> Any:
    """Open the widget in whatever language it speaks; return its FrameLocator once usable."""
    launcher(page).click()
    chat = page.frame_locator(CHAT_IFRAME)
    chat.locator("#sb-input").wait_for()
    return chat


def test_ui_follows_the_conversation_language_live(
    standin: StandinBackend, customer_site: Any, context_factory: Any
) -> None:
    url = _setup(standin, customer_site)
    standin.message_errors.append({"code": "rate_limited", "detail": "Slow.", "retry_after": 7})
    standin.replies.append(
        ScriptedReply(chunks=["Hola, ", "¿en qué te ayudo?"], interval=0.02, language="es")
    )
    page, console = _page(context_factory)
    page.goto(url)
    chat = open_widget(page)
    html = chat.locator("html")
    expect(html).to_have_attribute("lang", "en")
    handoff = chat.locator(".sb-handoff")
    expect(handoff).to_have_text("Talk to a person")

    send(chat, "hola, muy rápido")
    expect(bubbles(chat, "user").first.locator(".sb-msg__notice")).to_contain_text(
        "Please wait 7 seconds"
    )
    send(chat, "Hola")
    assistant = bubbles(chat, "assistant")
    expect(assistant).to_have_attribute("data-status", "complete")
    expect(assistant.locator(".sb-bubble")).to_have_attribute("lang", "es")

    # The server says the conversation is in Spanish: every string switches, nothing reloads.
    _update(standin, language="es")
    expect(html).to_have_attribute("lang", "es")
    expect(handoff).to_have_text("Hablar con una persona")
    expect(chat.locator(".sb-title")).to_have_text("Chat con Acme")
    expect(chat.locator("#sb-input")).to_have_attribute("placeholder", "Escribe tu pregunta…")
    expect(chat.get_by_role("button", name="Enviar")).to_be_visible()
    expect(chat.get_by_role("log")).to_have_attribute("aria-label", "Conversación")
    # Notices already shown are said again in Spanish.
    expect(bubbles(chat, "user").first.locator(".sb-msg__notice")).to_contain_text(
        "Espera 7 segundos"
    )
    expect(bubbles(chat, "user").first.get_by_role("button", name="Reintentar")).to_be_visible()
    assert chat_frame(page).evaluate("document.title") == "Chat con Acme"

    # A language the widget does not speak changes nothing; the others all work.
    _update(standin, language="ja")
    time.sleep(0.3)
    expect(html).to_have_attribute("lang", "es")
    for lang, label in [
        ("fr", "Parler à une personne"),
        ("de", "Mit einer Person sprechen"),
        ("pt-PT", "Falar com uma pessoa"),
        ("en", "Talk to a person"),
        ("fr-CA", "Parler à une personne"),
    ]:
        _update(standin, language=lang)
        expect(handoff).to_have_text(label)
        expect(html).to_have_attribute("lang", lang.split("-")[0])

    # The language is remembered: a reload speaks French before the server says anything.
    standin.hello_close_codes.append(4429)
    page.reload()
    chat = page.frame_locator(CHAT_IFRAME)
    expect(chat.locator(".sb-status")).to_contain_text("Trop de fenêtres de chat sont ouvertes.")
    expect(chat.locator("html")).to_have_attribute("lang", "fr")
    assert console.errors() == []


@pytest.mark.parametrize(
    ("locale", "lang", "placeholder", "launcher_label"),
    [
        ("es-ES", "es", "Escribe tu pregunta…", "Abrir el chat de ayuda"),
        ("de-AT", "de", "Ihre Frage…", "Support-Chat öffnen"),
        ("ja-JP", "en", "Type your question…", "Open support chat"),
    ],
)
def test_first_language_comes_from_the_visitors_locale(
    standin: StandinBackend,
    customer_site: Any,
    context_factory: Any,
    locale: str,
    lang: str,
    placeholder: str,
    launcher_label: str,
) -> None:
    url = _setup(standin, customer_site)
    page, console = _page(context_factory, locale=locale)
    page.goto(url)
    expect(launcher(page)).to_have_accessible_name(launcher_label)
    chat = _open_chat(page)
    origin = customer_site.origin.replace(":", "%3A").replace("/", "%2F")
    src = page.locator(CHAT_IFRAME).get_attribute("src")
    assert src.endswith(f"&locale={locale}&origin={origin}")
    expect(chat.locator("html")).to_have_attribute("lang", lang)
    expect(chat.locator("#sb-input")).to_have_attribute("placeholder", placeholder)
    assert standin.frames_received("hello")[0]["locale"] == locale
    assert console.errors() == []


def test_talk_to_a_person_sends_handoff_request_and_shows_the_waiting_banner(
    standin: StandinBackend, customer_site: Any, context_factory: Any
) -> None:
    url = _setup(standin, customer_site)
    page, console = _page(context_factory)
    page.goto(url)
    chat = open_widget(page)
    banner = chat.locator(".sb-banner")
    button = chat.get_by_role("button", name="Talk to a person")
    expect(button).to_be_enabled()
    expect(banner).to_be_hidden()

    button.click()
    standin.wait_for(lambda: standin.frames_received("handoff.request"), what="handoff.request")
    assert standin.frames_received("handoff.request") == [{"type": "handoff.request"}]
    expect(banner).to_have_text("A person from our team will join shortly.")
    expect(banner).to_have_attribute("role", "status")
    expect(button).to_be_hidden()
    expect(chat.locator(".sb-msg--system")).to_contain_text("I've asked a person from our team")
    assert len(standin.frames_received("handoff.request")) == 1  # one click, one request

    # A person joins: the banner says who; then hands back to the assistant: banner gone.
    _update(standin, status="with_agent", agent_name="Sam")
    expect(banner.locator(".sb-banner__text")).to_have_text(
        "You're chatting with Sam from our team."
    )
    expect(banner.locator(".sb-avatar")).to_have_text("S")
    expect(button).to_be_hidden()
    _update(standin, status="bot", agent_name=None)
    expect(banner).to_be_hidden()
    expect(button).to_be_visible()
    expect(chat.get_by_role("textbox", name="Your message")).to_be_enabled()
    assert console.errors() == []


def test_handoff_request_answered_with_an_error_says_so_and_can_be_tried_again(
    standin: StandinBackend, customer_site: Any, context_factory: Any
) -> None:
    url = _setup(standin, customer_site)
    standin.handoff_behaviour = "refuse"
    page, _ = _page(context_factory)
    page.goto(url)
    chat = open_widget(page)
    button = chat.locator(".sb-handoff")
    button.click()
    expect(chat.locator(".sb-msg--notice")).to_have_text(
        "We could not reach the team just now. Please try again."
    )
    expect(button).to_have_text("Talk to a person")
    expect(button).to_be_enabled()
    expect(chat.locator(".sb-banner")).to_be_hidden()
    standin.handoff_behaviour = "wait"
    button.click()
    expect(chat.locator(".sb-banner")).to_be_visible()
    assert len(standin.frames_received("handoff.request")) == 2


def test_agent_messages_show_the_agents_name(
    standin: StandinBackend, customer_site: Any, context_factory: Any
) -> None:
    url = _setup(standin, customer_site)
    page, _ = _page(context_factory)
    page.goto(url)
    chat = open_widget(page)
    send(chat, "Hi")
    expect(bubbles(chat, "assistant")).to_have_attribute("data-status", "complete")
    _update(standin, status="with_agent", agent_name="Sam")
    _post(standin, "agent", "Hi, I'm Sam. Let me check your order.", author_name="Sam")
    _post(standin, "agent", "Someone else without a name.")
    agent = bubbles(chat, "agent")
    expect(agent).to_have_count(2)
    expect(agent.nth(0).locator(".sb-msg__name")).to_have_text("Sam · Support team")
    expect(agent.nth(0).locator(".sb-avatar")).to_have_text("S")
    expect(agent.nth(0).locator(".sb-visually-hidden")).to_have_text("Sam: ")
    expect(agent.nth(1).locator(".sb-msg__name")).to_have_text("Support team")
    # A name is text, never markup.
    _post(standin, "agent", "Hello", author_name="<img src=x onerror=alert(1)>")
    expect(agent.nth(2).locator(".sb-msg__name")).to_have_text(
        "<img src=x onerror=alert(1)> · Support team"
    )
    expect(agent.nth(2).locator("img")).to_have_count(0)
    _update(standin, language="es")
    expect(agent.nth(0).locator(".sb-msg__name")).to_have_text("Sam · Equipo de soporte")
    expect(chat.locator(".sb-banner__text")).to_have_text(
        "Estás hablando con Sam, de nuestro equipo."
    )


def test_closed_conversation_shows_a_notice_and_writing_carries_it_on(
    standin: StandinBackend, customer_site: Any, context_factory: Any
) -> None:
    url = _setup(standin, customer_site)
    page, _ = _page(context_factory)
    page.goto(url)
    chat = open_widget(page)
    send(chat, "Thanks, that's all")
    expect(bubbles(chat, "assistant")).to_have_attribute("data-status", "complete")
    _update(standin, status="closed", agent_name=None)
    banner = chat.locator(".sb-banner")
    expect(banner).to_have_text("This conversation was closed. Write here any time to continue it.")
    expect(chat.locator(".sb-handoff")).to_be_hidden()
    box = chat.get_by_role("textbox", name="Your message")
    expect(box).to_be_enabled()
    send(chat, "One more question")
    expect(bubbles(chat, "assistant")).to_have_count(2)
    expect(bubbles(chat, "assistant").nth(1)).to_have_attribute("data-status", "complete")
    expect(banner).to_be_hidden()
    expect(chat.locator(".sb-handoff")).to_be_visible()
    assert len({c.id for c in standin.conversations.values()}) == 1  # the same conversation


def test_sources_are_numbered_safe_links(
    standin: StandinBackend, customer_site: Any, context_factory: Any
) -> None:
    url = _setup(standin, customer_site)
    standin.replies.append(
        ScriptedReply(
            chunks=["See the guides below."],
            sources=[
                {"title": "Resetting your password", "url": "https://help.example.com/password"},
                {"title": "Click me", "url": "javascript:alert(document.domain)"},
                {"title": "Plain http", "url": "http://help.example.com/plain"},
                {"title": "Data", "url": "data:text/html,<script>alert(1)</script>"},
                {"title": "Relative", "url": "/account"},
                {"title": "Mail us", "url": "mailto:help@example.com"},
                {"title": "Resetting again", "url": "https://help.example.com/password"},
                {"title": "", "url": "https://help.example.com/untitled"},
                {"title": "", "url": "javascript:void(0)"},
                "not an object",
            ],
        )
    )
    page, _ = _page(context_factory)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(url)
    chat = open_widget(page)
    send(chat, "Where are the guides?")
    assistant = bubbles(chat, "assistant")
    expect(assistant).to_have_attribute("data-status", "complete")
    sources = assistant.locator(".sb-sources")
    expect(sources.locator(".sb-sources__label")).to_have_text("Sources:")
    expect(sources.locator(".sb-sources__item")).to_have_text(
        [
            "[1]\u00a0Resetting your password",
            "[2]\u00a0Click me",
            "[3]\u00a0Plain http",
            "[4]\u00a0Data",
            "[5]\u00a0Relative",
            "[6]\u00a0Mail us",
            "[7]\u00a0https://help.example.com/untitled",
        ]
    )
    links = sources.locator("a")
    expect(links).to_have_text(
        ["Resetting your password", "Plain http", "https://help.example.com/untitled"]
    )
    for i in range(3):
        expect(links.nth(i)).to_have_attribute("target", "_blank")
        expect(links.nth(i)).to_have_attribute("rel", "noopener noreferrer")
    hrefs = links.evaluate_all("(links) => links.map((a) => a.getAttribute('href'))")
    assert hrefs == [
        "https://help.example.com/password",
        "http://help.example.com/plain",
        "https://help.example.com/untitled",
    ]
    # "Click me" is plain text: nothing to click that runs script.
    expect(sources.get_by_text("Click me")).to_have_js_property("tagName", "SPAN")
    sources.get_by_text("Click me").click()
    assert dialogs == []
    # One compact line under the answer on a desktop-sized panel, not a tall list.
    box = sources.bounding_box()
    assert box is not None
    assert box["height"] < 80, box
    _update(standin, language="pt")
    expect(sources.locator(".sb-sources__label")).to_have_text("Fontes:")


def test_a_server_without_the_extensions_gets_no_handoff_button(
    standin: StandinBackend, customer_site: Any, context_factory: Any
) -> None:
    url = _setup(standin, customer_site)
    standin.describe_conversation = False
    page, console = _page(context_factory)
    page.goto(url)
    chat = open_widget(page)
    send(chat, "Hi")
    expect(bubbles(chat, "assistant")).to_have_attribute("data-status", "complete")
    expect(chat.locator(".sb-handoff")).to_be_hidden()
    expect(chat.locator(".sb-banner")).to_be_hidden()
    welcome = standin.connections[0].sent[0]
    assert welcome["type"] == "welcome"
    assert "conversation" not in welcome
    assert standin.frames_received("handoff.request") == []
    assert console.errors() == []


@pytest.mark.parametrize(
    ("name", "viewport"),
    [("desktop", {"width": 1280, "height": 800}), ("375", {"width": 375, "height": 740})],
)
def test_spanish_conversation_with_an_agent_and_citations_looks_right(
    standin: StandinBackend,
    customer_site: Any,
    context_factory: Any,
    screenshots_dir: Any,
    name: str,
    viewport: dict[str, int],
) -> None:
    url = _setup(standin, customer_site)
    standin.new_conversation_language = "es"
    standin.replies.append(
        ScriptedReply(
            chunks=[
                "Para cambiar tu contraseña:",
                "\n\n1. Abre **Ajustes**",
                "\n2. Elige *Seguridad*",
                "\n3. Pulsa `Cambiar contraseña`",
            ],
            interval=0.02,
            language="es",
            sources=SPANISH_SOURCES,
        )
    )
    mobile = viewport["width"] < 480
    page, console = _page(
        context_factory, viewport=viewport, locale="es-ES", is_mobile=mobile, has_touch=mobile
    )
    page.goto(url)
    chat = _open_chat(page)
    expect(chat.locator("html")).to_have_attribute("lang", "es")
    box = chat.locator("#sb-input")
    box.fill("¿Cómo cambio mi contraseña?")
    box.press("Enter")
    assistant = bubbles(chat, "assistant")
    expect(assistant).to_have_attribute("data-status", "complete")
    expect(assistant.locator(".sb-sources a")).to_have_count(2)
    expect(assistant.locator(".sb-sources__label")).to_have_text("Fuentes:")
    page.screenshot(path=str(screenshots_dir / f"standin-es-bot-{name}.png"))

    chat.get_by_role("button", name="Hablar con una persona").click()
    expect(chat.locator(".sb-banner")).to_have_text(
        "Una persona de nuestro equipo se unirá en breve."
    )
    expect(chat.locator(".sb-msg--system")).to_have_text(
        "He pedido a una persona de nuestro equipo que se una a esta conversación. "
        "Te responderá aquí."
    )
    page.screenshot(path=str(screenshots_dir / f"standin-es-waiting-{name}.png"))
    _update(standin, status="with_agent", agent_name="Sam")
    _post(
        standin,
        "agent",
        "¡Hola! Soy **Sam**. Ya veo tu cuenta: te acabo de enviar un enlace para cambiarla.",
        author_name="Sam",
        language="es",
    )
    agent = bubbles(chat, "agent")
    expect(agent.locator(".sb-msg__name")).to_have_text("Sam · Equipo de soporte")
    expect(agent.locator(".sb-bubble")).to_have_attribute("lang", "es")
    expect(chat.locator(".sb-banner__text")).to_have_text(
        "Estás hablando con Sam, de nuestro equipo."
    )
    expect(chat.locator(".sb-handoff")).to_be_hidden()
    chat.locator("#sb-messages").evaluate("(list) => { list.scrollTop = list.scrollHeight; }")
    time.sleep(0.4)  # smooth scrolling
    page.screenshot(path=str(screenshots_dir / f"standin-es-agent-{name}.png"))
    width = viewport["width"] if mobile else 384
    assert chat_frame(page).evaluate("document.documentElement.scrollWidth") <= width
    assert console.csp_violations() == []
    assert console.errors() == []
