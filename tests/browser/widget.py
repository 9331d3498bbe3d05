"""Driving the embedded widget from a customer's page in Chromium."""

from __future__ import annotations

from typing import Any

LAUNCHER_OPEN = "Open support chat"
LAUNCHER_CLOSE = "Close support chat"
FRAME = "iframe[title='Support chat']"


class ConsoleLog:
    """Console messages and page errors of a page and its frames."""

    def __init__(self, page: Any) -> None:
        self.lines: list[str] = []
        self.failed_responses: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.lines.append(f"pageerror: {error}"))
        page.on("response", self._response)

    def _console(self, msg: Any) -> None:
        # A failed load is logged without its URL: `failed_responses` has those, with URLs.
        if not msg.text.startswith("Failed to load resource"):
            self.lines.append(f"{msg.type}: {msg.text}")

    def _response(self, response: Any) -> None:
        if response.status >= 400 and not response.url.endswith("/favicon.ico"):
            self.failed_responses.append(f"{response.status} {response.url}")

    def csp_violations(self) -> list[str]:
        return [line for line in self.lines if "Content Security Policy" in line]

    def errors(self) -> list[str]:
        errors = [line for line in self.lines if line.startswith(("error:", "pageerror:"))]
        return errors + self.failed_responses


def launcher(page: Any) -> Any:
    return page.locator("[data-supportbot-widget]").locator("button.launcher")


def open_widget(page: Any) -> Any:
    """Click the launcher; return the chat's FrameLocator once its composer is usable."""
    launcher(page).click()
    chat = page.frame_locator(FRAME)
    chat.get_by_role("textbox", name="Your message").wait_for()
    return chat


def chat_frame(page: Any) -> Any:
    """The Frame of the chat (for evaluate)."""
    for frame in page.frames:
        if "/widget/frame/" in frame.url:
            return frame
    raise AssertionError("the chat iframe is not in the page")


def send(chat: Any, text: str) -> None:
    box = chat.get_by_role("textbox", name="Your message")
    box.fill(text)
    box.press("Enter")


def bubbles(chat: Any, role: str) -> Any:
    return chat.locator(f".sb-msg--{role}")


def bubble_text(locator: Any) -> str:
    """A message's visible text without its screen-reader prefix ("Assistant: ")."""
    return locator.locator(".sb-md, .sb-plain").inner_text()
