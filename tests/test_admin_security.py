"""The admin's front door: lockout after failed logins (keyed to the client resolved through
TRUSTED_PROXIES and the username), two-factor login for staff, write-only secrets, and the
headers of admin pages and the widget frame."""

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import time
from http.cookies import SimpleCookie
from io import StringIO
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from supportbot.asgi import application
from tests.support.admin_forms import tenant_change_data
from tests.test_settings import PRODUCTION_SECRETS

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "a-long-staff-password-42"
HOST = "support.example.com"
LOGIN = "/admin/login/"


# --- Lockout, through the project's ASGI application -----------------------------------------


class AsgiBrowser:
    """One client of the real ASGI application (ForwardedClientMiddleware included): keeps its
    cookies, sends from `peer` with whatever forwarding headers it is given."""

    def __init__(self, peer: str) -> None:
        self.peer = peer
        self.cookies: dict[str, str] = {}

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: list[tuple[bytes, bytes]] = ()
    ) -> tuple[int, dict[bytes, bytes], bytes]:
        all_headers = [(b"host", HOST.encode()), *headers]
        if self.cookies:
            cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            all_headers.append((b"cookie", cookie.encode()))
        if body:
            all_headers.append((b"content-type", b"application/x-www-form-urlencoded"))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": all_headers,
            "client": (self.peer, 50000),
            "server": ("127.0.0.1", 8000),
        }
        sent: list[dict[str, Any]] = []
        requests = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            if requests:
                return requests.pop()
            await asyncio.Event().wait()  # Django cancels this once it has answered
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await asyncio.wait_for(application(scope, receive, send), timeout=30)
        start = next(m for m in sent if m["type"] == "http.response.start")
        content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        for name, value in start["headers"]:
            if name.lower() == b"set-cookie":
                for key, morsel in SimpleCookie(value.decode()).items():
                    self.cookies[key] = morsel.value
        return start["status"], dict(start["headers"]), content

    async def login(self, username: str, password: str, forwarded_for: str | None = None) -> int:
        headers = [(b"x-forwarded-for", forwarded_for.encode())] if forwarded_for else []
        status, _, page = await self.request("GET", LOGIN, headers=headers)
        assert status == 200
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token is not None
        form = {
            "csrfmiddlewaretoken": token.group(1).decode(),
            "username": username,
            "password": password,
            "next": "/admin/",
        }
        status, _, _ = await self.request("POST", LOGIN, urlencode(form).encode(), headers=headers)
        return status


@pytest.fixture
def lockout_settings(settings: Any) -> Any:
    settings.ALLOWED_HOSTS = [HOST]
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    settings.AXES_FAILURE_LIMIT = 3
    settings.ADMIN_REQUIRE_OTP = False
    return settings


async def _staff(username: str) -> User:
    return await database_sync_to_async(User.objects.create_user)(
        username=username, password=PASSWORD, is_staff=True
    )


async def _attempt_addresses(username: str) -> list[str]:
    from axes.models import AccessAttempt

    rows = AccessAttempt.objects.filter(username=username).values_list("ip_address", flat=True)
    return await database_sync_to_async(list)(rows)


@pytest.mark.django_db(transaction=True)
async def test_a_rotating_x_forwarded_for_from_an_untrusted_peer_is_locked_out(
    lockout_settings: Any,
) -> None:
    await _staff("alice")
    browser = AsgiBrowser("198.51.100.7")
    statuses = [
        await browser.login("alice", "wrong", forwarded_for=f"203.0.113.{attempt + 1}")
        for attempt in range(3)
    ]
    assert statuses == [200, 200, 429]  # the form again with an error, then the lockout
    # The right password no longer helps, whatever address the client claims.
    assert await browser.login("alice", PASSWORD, forwarded_for="203.0.113.99") == 429
    assert await browser.login("alice", PASSWORD) == 429
    assert await _attempt_addresses("alice") == ["198.51.100.7"]
    # Another client (and the same client for another username) is not held.
    assert await AsgiBrowser("198.51.100.8").login("alice", PASSWORD) == 302


@pytest.mark.django_db(transaction=True)
async def test_behind_a_trusted_proxy_the_real_client_is_locked_out(
    lockout_settings: Any,
) -> None:
    await _staff("bob")
    proxy = AsgiBrowser("10.0.0.2")
    statuses = [
        await proxy.login("bob", "wrong", forwarded_for="6.6.6.6, 203.0.113.9") for _ in range(3)
    ]
    assert statuses == [200, 200, 429]
    assert await proxy.login("bob", PASSWORD, forwarded_for="203.0.113.9") == 429
    assert await _attempt_addresses("bob") == ["203.0.113.9"]
    # Another client behind the same proxy logs in.
    assert await AsgiBrowser("10.0.0.2").login("bob", PASSWORD, forwarded_for="203.0.113.10") == 302


@pytest.mark.django_db
def test_an_operator_lifts_a_lockout(settings: Any, client: Client) -> None:
    settings.AXES_FAILURE_LIMIT = 2
    settings.ADMIN_REQUIRE_OTP = False
    User.objects.create_user(username="carol", password=PASSWORD, is_staff=True)
    for _ in range(2):
        client.post(LOGIN, {"username": "carol", "password": "wrong"})
    locked = client.post(LOGIN, {"username": "carol", "password": PASSWORD})
    assert locked.status_code == 429
    assert b"Too many failed logins" in locked.content
    assert PASSWORD.encode() not in locked.content
    call_command("axes_reset_username", "carol", stdout=StringIO())
    assert client.post(LOGIN, {"username": "carol", "password": PASSWORD}).status_code == 302


def test_an_ipv6_client_is_counted_by_its_64() -> None:
    from django.test import RequestFactory

    from supportbot.admin_security.lockout import lockout_client_address

    request = RequestFactory().get("/", REMOTE_ADDR="2001:db8:1:2::99")
    assert lockout_client_address(request) == "2001:db8:1:2::"
    request = RequestFactory().get("/", REMOTE_ADDR="203.0.113.9")
    assert lockout_client_address(request) == "203.0.113.9"
    request = RequestFactory().get("/", REMOTE_ADDR="", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert lockout_client_address(request) is None  # never read from a header


# --- Two-factor login ----------------------------------------------------------------------------


SHOWN = [
    "ADMIN_REQUIRE_OTP",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SESSION_COOKIE_NAME",
    "CSRF_COOKIE_NAME",
    "SESSION_COOKIE_DOMAIN",
    "AXES_FAILURE_LIMIT",
]


def settings_of(**variables: str) -> dict[str, Any]:
    """The SHOWN settings as a fresh process with these variables imports them."""
    env = {k: v for k, v in os.environ.items() if k not in {*PRODUCTION_SECRETS, *SHOWN}}
    env.pop("SUPPORTBOT_ENV", None)
    env.update(variables)
    code = (
        "import json, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'supportbot.settings';"
        "from django.conf import settings;"
        f"print(json.dumps({{name: getattr(settings, name) for name in {SHOWN!r}}}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_two_factor_login_is_required_in_production_only() -> None:
    production = settings_of(SUPPORTBOT_ENV="production", **PRODUCTION_SECRETS)
    assert production == {
        "ADMIN_REQUIRE_OTP": True,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        # Browsers keep __Host- cookies only when Secure, host-only and for the whole path.
        "SESSION_COOKIE_NAME": "__Host-sessionid",
        "CSRF_COOKIE_NAME": "__Host-csrftoken",
        "SESSION_COOKIE_DOMAIN": None,
        "AXES_FAILURE_LIMIT": 5,
    }
    development = settings_of(SUPPORTBOT_ENV="development")
    assert development["ADMIN_REQUIRE_OTP"] is False
    assert development["SESSION_COOKIE_SECURE"] is False
    chosen = settings_of(ADMIN_REQUIRE_OTP="true", ADMIN_LOGIN_FAILURE_LIMIT="7")
    assert chosen["ADMIN_REQUIRE_OTP"] is True
    assert chosen["AXES_FAILURE_LIMIT"] == 7


def _code(device: TOTPDevice, steps_ahead: int = 0) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() + steps_ahead * device.step
    return f"{totp.token():0{device.digits}d}"


def _password_step(client: Client, username: str, next_url: str = "/admin/") -> Any:
    return client.post(
        f"{LOGIN}?{urlencode({'next': next_url})}",
        {"username": username, "password": PASSWORD, "next": next_url},
    )


@pytest.fixture
def otp_required(settings: Any) -> Any:
    settings.ADMIN_REQUIRE_OTP = True
    return settings


@pytest.mark.django_db
def test_in_production_a_password_alone_reaches_no_admin_page(
    otp_required: Any, client: Client
) -> None:
    User.objects.create_user(username="dave", password=PASSWORD, is_staff=True)
    response = _password_step(client, "dave")
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin-otp-enrol"))
    # Not logged in yet: the admin and the staff-only health details refuse.
    page = client.get("/admin/")
    assert page.status_code == 302
    assert page["Location"].startswith(LOGIN)
    assert client.get("/healthz/details").status_code == 404
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_first_login_enrols_then_every_login_asks_for_the_code(
    otp_required: Any, client: Client
) -> None:
    user = User.objects.create_user(username="erin", password=PASSWORD, is_staff=True)
    _password_step(client, "erin", next_url="/admin/tenants/tenant/")
    enrol = client.get(reverse("admin-otp-enrol"), {"next": "/admin/tenants/tenant/"})
    assert enrol.status_code == 200
    device = TOTPDevice.objects.get(user=user)
    assert not device.confirmed
    secret = enrol.context["enrolment"].secret
    body = enrol.content.decode()
    assert secret in body
    assert "<svg" in body  # the QR code, inline (no script, no remote image)
    wrong = client.post(reverse("admin-otp-enrol"), {"otp_token": "000000"})
    assert wrong.status_code == 200
    assert "not valid" in wrong.content.decode()
    assert wrong.context["enrolment"].secret == secret  # the same enrolment, to retry
    # django-otp refuses any code for a while after a wrong one (doubling each time).
    assert not TOTPDevice.objects.get(pk=device.pk).verify_is_allowed()[0]
    otp_required.OTP_TOTP_THROTTLE_FACTOR = 0
    confirmed = client.post(
        f"{reverse('admin-otp-enrol')}?next=/admin/tenants/tenant/",
        {"otp_token": _code(device), "next": "/admin/tenants/tenant/"},
    )
    assert confirmed.status_code == 302
    assert confirmed["Location"] == "/admin/tenants/tenant/"
    assert client.get("/admin/").status_code == 200
    device.refresh_from_db()
    assert device.confirmed
    # The secret is never shown again: a new login asks for a code.
    client.post(reverse("admin:logout"))
    response = _password_step(client, "erin")
    assert response["Location"].startswith(reverse("admin-otp-verify"))
    verify = client.get(response["Location"])
    assert secret not in verify.content.decode()
    assert client.get("/admin/").status_code == 302
    bad = client.post(response["Location"], {"otp_token": "12345a", "next": "/admin/"})
    assert bad.status_code == 200
    assert "not valid" in bad.content.decode()
    good = client.post(response["Location"], {"otp_token": _code(device, 1), "next": "/admin/"})
    assert good.status_code == 302
    assert good["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


@pytest.mark.django_db
def test_a_session_without_a_verified_device_is_logged_out(
    otp_required: Any, client: Client
) -> None:
    user = User.objects.create_user(username="frank", password=PASSWORD, is_staff=True)
    client.force_login(user)  # a login made before two-factor was required
    response = client.get("/admin/tenants/tenant/")
    assert response.status_code == 302
    assert response["Location"] == f"{LOGIN}?next=%2Fadmin%2Ftenants%2Ftenant%2F"
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_one_users_code_never_completes_another_users_login(
    otp_required: Any, client: Client, make_tenant: Any
) -> None:
    """Staff of tenant A with a pending login cannot use B's device, see B's secret, or
    confirm B's enrolment."""
    from supportbot.tenants.models import TenantMembership

    tenant_a, _ = make_tenant(name="Tenant A")
    tenant_b, _ = make_tenant(name="Tenant B")
    alice = User.objects.create_user(username="a-agent", password=PASSWORD, is_staff=True)
    bob = User.objects.create_user(username="b-agent", password=PASSWORD, is_staff=True)
    for user, tenant in ((alice, tenant_a), (bob, tenant_b)):
        TenantMembership.objects.create(user=user, tenant=tenant, role="agent")
    bob_device = TOTPDevice.objects.create(user=bob, name="b", confirmed=True)
    bob_enrolling = Client()
    _password_step(bob_enrolling, "b-agent")
    TOTPDevice.objects.filter(user=bob, confirmed=False).delete()

    _password_step(client, "a-agent")
    enrol = client.get(reverse("admin-otp-enrol"))
    assert enrol.context["enrolment"].device.user_id == alice.pk
    assert bob_device.key not in enrol.content.decode()
    refused = client.post(reverse("admin-otp-enrol"), {"otp_token": _code(bob_device)})
    assert refused.status_code == 200
    assert client.get("/admin/").status_code == 302
    # Alice's session holds Alice's enrolment only: naming Bob's device changes nothing.
    session = client.session
    session["admin_otp_enrolment"] = bob_device.pk
    session.save()
    client.post(reverse("admin-otp-enrol"), {"otp_token": _code(bob_device)})
    assert client.get("/admin/").status_code == 302
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_wrong_codes_count_toward_the_lockout(otp_required: Any, client: Client) -> None:
    otp_required.AXES_FAILURE_LIMIT = 3
    user = User.objects.create_user(username="gina", password=PASSWORD, is_staff=True)
    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    _password_step(client, "gina")
    statuses = [
        client.post(reverse("admin-otp-verify"), {"otp_token": "000000"}).status_code
        for _ in range(3)
    ]
    assert statuses == [200, 200, 429]
    # Locked: even the right code (or the password again) does not log in.
    response = client.post(reverse("admin-otp-verify"), {"otp_token": _code(device)})
    assert response.status_code == 302
    assert response["Location"].startswith(LOGIN)
    assert _password_step(client, "gina").status_code == 429
    assert client.get("/admin/").status_code == 302


@pytest.mark.django_db
def test_development_logs_in_without_a_code(settings: Any, client: Client) -> None:
    assert settings.ADMIN_REQUIRE_OTP is False
    User.objects.create_user(username="demo-admin", password=PASSWORD, is_staff=True)
    response = _password_step(client, "demo-admin")
    assert response.status_code == 302
    assert response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


@pytest.mark.django_db
def test_in_development_a_user_with_a_device_still_gives_the_code(
    settings: Any, client: Client
) -> None:
    user = User.objects.create_user(username="hank", password=PASSWORD, is_staff=True)
    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    response = _password_step(client, "hank")
    assert response["Location"].startswith(reverse("admin-otp-verify"))
    assert client.get("/admin/").status_code == 302
    client.post(response["Location"], {"otp_token": _code(device)})
    assert client.get("/admin/").status_code == 200


@pytest.mark.django_db
def test_an_operator_resets_a_users_devices(otp_required: Any, client: Client) -> None:
    user = User.objects.create_user(username="ivan", password=PASSWORD, is_staff=True)
    TOTPDevice.objects.create(user=user, name="lost phone", confirmed=True)
    out = StringIO()
    call_command("admin_otp_reset", "ivan", stdout=out)
    assert "Removed 1 device(s) of ivan" in out.getvalue()
    assert not TOTPDevice.objects.filter(user=user).exists()
    assert _password_step(client, "ivan")["Location"].startswith(reverse("admin-otp-enrol"))
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        call_command("admin_otp_reset", "nobody")


@pytest.mark.django_db
def test_a_logged_in_admin_skips_the_login_page(admin_client: Client) -> None:
    response = admin_client.get(LOGIN, {"next": "/admin/tenants/tenant/"})
    assert response.status_code == 302
    assert response["Location"] == "/admin/tenants/tenant/"


@pytest.mark.django_db
def test_the_next_address_stays_on_this_site(settings: Any, client: Client) -> None:
    User.objects.create_user(username="judy", password=PASSWORD, is_staff=True)
    response = _password_step(client, "judy", next_url="https://evil.example/admin/")
    assert response["Location"] == "/admin/"


# --- Write-only secrets --------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_provider_key_never_appears_in_admin_pages_or_logs(
    admin_client: Client, make_tenant: Any, caplog: pytest.LogCaptureFixture
) -> None:
    tenant, _ = make_tenant(name="Keyed")
    secret = "sk-write-only-" + "7f3a9c1e5b" * 3
    url = reverse("admin:tenants_tenant_change", args=[tenant.pk])
    form = admin_client.get(url).context["adminform"].form
    data = tenant_change_data(form)
    data.update(
        {
            "allowed_origins": '["https://shop.example.com"]',
            "llm_provider": "openai",
            "llm_api_key": secret,
        }
    )
    with caplog.at_level(logging.DEBUG):
        response = admin_client.post(url, data)
        assert response.status_code == 302
        tenant.refresh_from_db()
        assert tenant.llm_api_key_encrypted  # stored, encrypted
        pages = [
            admin_client.get(url),
            admin_client.get(reverse("admin:tenants_tenant_history", args=[tenant.pk])),
            admin_client.get(reverse("admin:tenants_tenant_changelist")),
            admin_client.get(reverse("admin:tenants_tenant_changelist"), {"q": "Keyed"}),
            admin_client.get("/admin/"),  # recent actions
        ]
    for page in pages:
        assert page.status_code == 200
        body = page.content.decode()
        assert secret not in body
        assert secret[:12] + "7f3a" not in body
        assert tenant.llm_api_key_encrypted not in body
    assert secret not in caplog.text
    assert "7f3a9c1e5b" not in caplog.text


# --- Headers and the widget's own origin ---------------------------------------------------------


@pytest.mark.django_db
def test_admin_pages_carry_a_strict_csp_and_deny_framing(admin_client: Client) -> None:
    pages = [(admin_client, "/admin/"), (admin_client, "/admin/tenants/tenant/"), (Client(), LOGIN)]
    for browser, path in pages:
        response = browser.get(path)
        assert response.status_code == 200, path
        csp = response["Content-Security-Policy"]
        directives = {part.split()[0]: part.split()[1:] for part in csp.split(";") if part.strip()}
        assert directives["default-src"] == ["'self'"]
        assert directives["script-src"] == ["'self'"]  # no inline script, no eval
        assert directives["style-src"] == ["'self'"]
        assert directives["connect-src"] == ["'self'", "ws://testserver"]
        assert directives["frame-ancestors"] == ["'none'"]
        assert response["X-Frame-Options"] == "DENY"
        body = response.content.decode()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", body), path  # no inline script
        assert " style=" not in body, path


@pytest.mark.django_db
def test_the_widget_frame_may_open_sockets_to_its_own_host_only(
    client: Client, make_tenant: Any, settings: Any
) -> None:
    _, key = make_tenant()

    def connect_src(**extra: Any) -> list[str]:
        response = client.get("/widget/frame/", {"key": key.public_key}, **extra)
        csp = response["Content-Security-Policy"]
        return next(p for p in csp.split(";") if "connect-src" in p).split()[1:]

    assert connect_src() == ["'self'", "ws://testserver"]
    assert connect_src(secure=True) == ["'self'", "wss://testserver"]
    settings.ALLOWED_HOSTS = ["support.example.com", "widget.example.net"]
    settings.PUBLIC_URL = "https://support.example.com"
    settings.WIDGET_PUBLIC_URL = "https://widget.example.net"
    # Behind a TLS proxy that is not (yet) trusted, the public URL still says wss.
    assert connect_src(HTTP_HOST="widget.example.net") == ["'self'", "wss://widget.example.net"]
    assert connect_src(HTTP_HOST="support.example.com") == [
        "'self'",
        "wss://support.example.com",
    ]


@pytest.mark.django_db
def test_the_widget_host_serves_the_widget_and_never_the_admin(
    client: Client, admin_client: Client, make_tenant: Any, settings: Any
) -> None:
    _, key = make_tenant()
    settings.ALLOWED_HOSTS = ["support.example.com", "widget.example.net"]
    settings.PUBLIC_URL = "https://support.example.com"
    settings.WIDGET_PUBLIC_URL = "https://widget.example.net"
    widget = {"HTTP_HOST": "widget.example.net"}
    frame = client.get("/widget/frame/", {"key": key.public_key}, **widget)
    assert frame.status_code == 200
    assert not frame.cookies  # the frame sets no cookie
    assert client.get(LOGIN, **widget).status_code == 404
    assert admin_client.get("/admin/", **widget).status_code == 404
    login = client.get(LOGIN, HTTP_HOST="support.example.com")
    assert login.status_code == 200
    # Cookies are host-only: no Domain attribute would carry them to the widget's host.
    for morsel in login.cookies.values():
        assert not morsel["domain"]
    assert settings.SESSION_COOKIE_DOMAIN is None
    assert settings.CSRF_COOKIE_DOMAIN is None
