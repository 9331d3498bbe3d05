"""HTTP entry points: health, the widget frame and its framing policy, admin transcripts."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from conversations.messages import message_append
from conversations.services import visitor_conversation_store, visitor_session_open
from supportbot import health

pytestmark = pytest.mark.django_db
REPO = Path(__file__).resolve().parents[1]


def test_healthz_tells_the_public_the_status_only(
    client: Client, llm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    monkeypatch.setattr(health, "_check_redis", lambda: "unavailable")
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable"}


def test_healthz_details_are_for_operators(
    client: Client, admin_client: Client, llm: Any, django_user_model: Any
) -> None:
    assert client.get("/healthz/details").status_code == 404
    client.force_login(
        django_user_model.objects.create_user(username="visitor", password="pw-visitor-1")
    )
    assert client.get("/healthz/details").status_code == 404
    agent = django_user_model.objects.create_user(
        username="agent", password="pw-agent-1", is_staff=True
    )
    client.force_login(agent)  # a tenant's staff member, not an operator
    assert client.get("/healthz/details").status_code == 404
    response = admin_client.get("/healthz/details")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "redis": "ok", "llm": "ok"}


def test_widget_frame_is_framable_only_by_the_tenants_origins(
    client: Client, make_tenant: Any
) -> None:
    _, key = make_tenant(allowed_origins=["https://shop.example.com", "http://localhost:8001"])
    response = client.get("/widget/frame/", {"key": key.public_key, "locale": "es-ES"})
    assert response.status_code == 200
    csp = response["Content-Security-Policy"]
    ancestors = next(p for p in csp.split(";") if "frame-ancestors" in p).split()
    assert ancestors == [
        "frame-ancestors",
        "'self'",
        "https://shop.example.com",
        "http://localhost:8001",
    ]
    assert "script-src 'self'" in csp
    assert "X-Frame-Options" not in response
    body = response.content.decode()
    assert key.public_key in body
    assert "<script>" not in body  # no inline script under the CSP


def test_widget_frame_for_another_tenants_or_unknown_key_reveals_nothing(
    client: Client, make_tenant: Any
) -> None:
    _, key = make_tenant(name="Secret Corp")
    key.is_active = False
    key.save()
    for value in (key.public_key, "wk_nope", ""):
        response = client.get("/widget/frame/", {"key": value})
        assert response.status_code == 404
        assert "Secret Corp" not in response.content.decode()
        assert "frame-ancestors 'self' 'none'" in response["Content-Security-Policy"]


def test_tenant_name_is_escaped_in_the_frame(client: Client, make_tenant: Any) -> None:
    _, key = make_tenant(name='<img src=x onerror="alert(1)">')
    body = client.get("/widget/frame/", {"key": key.public_key}).content.decode()
    assert "<img src=x" not in body


def test_admin_transcript_shows_the_chat_escaped(admin_client: Client, make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    session = visitor_session_open(tenant=tenant, visitor_token=None, conversation_id=None)
    visitor_conversation_store(conversation=session.conversation)
    message_append(
        conversation=session.conversation, role="user", text="<script>alert('x')</script> hello"
    )
    message_append(conversation=session.conversation, role="assistant", text="Hi **there**")
    response = admin_client.get(
        f"/admin/conversations/conversation/{session.conversation.pk}/change/"
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; hello" in body
    assert "<script>alert('x')</script>" not in body
    assert "Hi **there**" in body
    # Message text is stored encrypted: the search box finds a conversation by its id.
    listing = admin_client.get(
        "/admin/conversations/conversation/",
        {"tenant": tenant.pk, "q": str(session.conversation.pk)[:8]},
    )
    assert listing.status_code == 200
    assert str(session.conversation.pk)[:8] in listing.content.decode()


def test_admin_requires_staff(client: Client) -> None:
    response = client.get("/admin/conversations/conversation/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def _production_env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("SECRET_KEY", "FIELD_ENCRYPTION"))
    }
    env.update(SUPPORTBOT_ENV="production", ALLOWED_HOSTS="support.example.com", **extra)
    return env


def test_check_deploy_passes_with_production_settings() -> None:
    env = _production_env(
        SECRET_KEY="x" * 20 + "a-long-random-production-secret-key-0123456789",
        FIELD_ENCRYPTION_KEYS="hT3bFm0fX9m2bqMRg6TFp1oFJm6tN8bYHn8m3o4p5Qs=",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_secrets() -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=REPO,
        env=_production_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr
