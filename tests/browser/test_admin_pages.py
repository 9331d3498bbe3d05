"""The admin under its Content-Security-Policy, in Chromium: pages load, their scripts run, and
nothing is refused. A staff user with a device gives a code after the password."""

from __future__ import annotations

import time
from typing import Any

import pytest
from playwright.sync_api import expect

from .widget import ConsoleLog

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

PASSWORD = "admin-password-for-csp-tests"
# Collected in the page itself (an init script is not subject to the page's CSP).
WATCH_CSP = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


def _superuser(live_stack: Any, username: str, with_device: bool) -> str:
    def create() -> str:
        from django.contrib.auth import get_user_model
        from django_otp.plugins.otp_totp.models import TOTPDevice

        user = get_user_model().objects.create_superuser(username=username, password=PASSWORD)
        if not with_device:
            return ""
        return str(TOTPDevice.objects.create(user=user, name="phone", confirmed=True).key)

    return str(live_stack.in_thread(create))


def _code(hex_key: str) -> str:
    from binascii import unhexlify

    from django_otp.oath import TOTP

    totp = TOTP(unhexlify(hex_key))
    totp.time = time.time()
    return f"{totp.token():06d}"


def _violations(page: Any) -> list[str]:
    return list(page.evaluate("window.__cspViolations || []"))


def test_admin_pages_run_under_their_csp(
    live_stack: Any, context_factory: Any, screenshots_dir: Any
) -> None:
    slug, _ = live_stack.create_tenant(allowed_origins=["https://shop.example.com"])
    username = f"csp-{slug}"[:150]
    _superuser(live_stack, username, with_device=False)
    context = context_factory()
    context.add_init_script(WATCH_CSP)
    page = context.new_page()
    console = ConsoleLog(page)
    page.goto(f"{live_stack.base_url}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#site-name")).to_be_visible()
    seen: dict[str, list[str]] = {}
    for path in (
        "/admin/",
        "/admin/tenants/tenant/",
        "/admin/tenants/tenant/add/",
        "/admin/conversations/conversation/",
        "/admin/knowledge/document/",
    ):
        response = page.goto(f"{live_stack.base_url}{path}")
        assert response is not None
        assert response.status == 200, path
        assert "script-src 'self'" in response.headers["content-security-policy"]
        page.wait_for_load_state("load")
        seen[path] = _violations(page)
    # Scripts ran: the theme toggle and the slug prepopulated from the name work.
    page.goto(f"{live_stack.base_url}/admin/tenants/tenant/add/")
    page.locator("#id_name").press_sequentially("Acme Shop")
    expect(page.locator("#id_slug")).to_have_value("acme-shop")
    seen["typing"] = _violations(page)
    page.screenshot(path=str(screenshots_dir / "admin-under-csp.png"), full_page=True)
    assert {path: found for path, found in seen.items() if found} == {}
    assert console.csp_violations() == []
    assert console.errors() == []


def test_a_staff_user_with_a_device_gives_the_code(
    live_stack: Any, context_factory: Any, screenshots_dir: Any
) -> None:
    slug, _ = live_stack.create_tenant(allowed_origins=["https://shop.example.com"])
    username = f"otp-{slug}"[:150]
    key = _superuser(live_stack, username, with_device=True)
    context = context_factory()
    context.add_init_script(WATCH_CSP)
    page = context.new_page()
    console = ConsoleLog(page)
    page.goto(f"{live_stack.base_url}/admin/login/?next=/admin/tenants/tenant/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#id_otp_token")).to_be_visible()
    assert "/admin/login/code/" in page.url
    page.screenshot(path=str(screenshots_dir / "admin-otp-code.png"))
    assert _violations(page) == []
    page.fill("#id_otp_token", _code(key))
    page.click("input[type=submit]")
    expect(page.locator("#site-name")).to_be_visible()
    assert page.url.endswith("/admin/tenants/tenant/")
    assert _violations(page) == []
    assert console.errors() == []
