"""The widget passes a signed-in visitor's identity from the page to `hello` (Chromium against
the stand-in backend, which records every frame; the real server's checks are tested in
tests/conversations/test_identity.py)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from .conftest import customer_page
from .standin import StandinBackend
from .widget import open_widget

pytestmark = pytest.mark.browser

KEY = "pk_test_identity"


def fake_token(sub: str, marker: str) -> str:
    """A JWT-shaped token: the widget only reads its `sub`; the stand-in checks nothing."""

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part({'sub': sub, 'exp': 1})}.{marker}"


def _hellos(standin: StandinBackend, count: int) -> list[dict[str, Any]]:
    standin.wait_for(
        lambda: len(standin.frames_received("hello")) >= count, what=f"{count} hello frames"
    )
    return standin.frames_received("hello")


def test_identity_reaches_hello_and_another_person_starts_over(
    standin: StandinBackend, customer_site: Any, context_factory: Any
) -> None:
    standin.keys[KEY] = [customer_site.origin]
    ann = fake_token("ann", "sig-ann-1")
    html = customer_page(f"{standin.base_url}/static/widget/loader.js", KEY).replace(
        f'data-key="{KEY}"', f'data-key="{KEY}" data-identity="{ann}"'
    )
    url = customer_site.page("/", html)
    page = context_factory().new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(url)
    open_widget(page)

    first = _hellos(standin, 1)[0]
    assert first["identity"] == ann
    assert first["visitor_token"] is None
    assert not any("sig-ann" in address for address in requested)  # never in a URL

    # A renewed token of the same person: the same session, with the new token.
    ann_renewed = fake_token("ann", "sig-ann-2")
    page.evaluate("(token) => window.Supportbot.identify(token)", ann_renewed)
    second = _hellos(standin, 2)[1]
    assert second["identity"] == ann_renewed
    assert second["visitor_token"] is not None

    # Another person: the stored session is forgotten before their hello.
    bob = fake_token("bob", "sig-bob")
    page.evaluate("(token) => window.Supportbot.identify(token)", bob)
    third = _hellos(standin, 3)[2]
    assert third["identity"] == bob
    assert third["visitor_token"] is None

    # Signed out: a fresh anonymous session, no identity.
    page.evaluate("() => window.Supportbot.identify(null)")
    fourth = _hellos(standin, 4)[3]
    assert "identity" not in fourth
    assert fourth["visitor_token"] is None
