"""Configuration fails closed: production refuses DEBUG and the development key, a development
server on defaults answers loopback only, and error reports hide the passwords in URLs."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.test import RequestFactory
from django.views.debug import ExceptionReporter, get_default_exception_reporter_filter

from supportbot.asgi import application
from supportbot.development_guard import LoopbackOnlyMiddleware, reached_on_loopback

REPO = Path(__file__).resolve().parents[1]
PRODUCTION_SECRETS = {
    "SECRET_KEY": "x" * 20 + "a-long-random-production-secret-key-0123456789",
    "FIELD_ENCRYPTION_KEYS": "hT3bFm0fX9m2bqMRg6TFp1oFJm6tN8bYHn8m3o4p5Qs=",
    "ALLOWED_HOSTS": "support.example.com",
}
SHOWN = [
    "DEBUG",
    "SERVE_LOOPBACK_ONLY",
    "SECURE_HSTS_PRELOAD",
    "SECURE_PROXY_SSL_HEADER",
    "SILENCED_SYSTEM_CHECKS",
    "TRUSTED_PROXIES",
]
_CONFIGURATION = set(PRODUCTION_SECRETS) | {"SUPPORTBOT_ENV", "DEBUG", "TRUSTED_PROXIES"}


def settings_of(**variables: str) -> subprocess.CompletedProcess[str]:
    """Import the settings in a fresh process with only these configuration variables (the
    servers' URLs are kept) and print the SHOWN settings as JSON."""
    env = {k: v for k, v in os.environ.items() if k not in _CONFIGURATION}
    env.update(variables)
    code = (
        "import json, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'supportbot.settings';"
        "from django.conf import settings;"
        f"print(json.dumps({{name: getattr(settings, name, None) for name in {SHOWN!r}}}))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def loaded(**variables: str) -> dict[str, Any]:
    result = settings_of(**variables)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_production_refuses_debug() -> None:
    result = settings_of(SUPPORTBOT_ENV="production", DEBUG="true", **PRODUCTION_SECRETS)
    assert result.returncode != 0
    assert "DEBUG is on with SUPPORTBOT_ENV=production" in result.stderr


def test_production_refuses_the_development_key() -> None:
    secrets = {**PRODUCTION_SECRETS, "SECRET_KEY": "dev-only-insecure-key-never-use-in-production"}
    result = settings_of(SUPPORTBOT_ENV="production", **secrets)
    assert result.returncode != 0
    assert "public development key" in result.stderr


def test_production_settings_fail_closed() -> None:
    production = loaded(SUPPORTBOT_ENV="production", **PRODUCTION_SECRETS)
    assert production["DEBUG"] is False
    assert production["SERVE_LOOPBACK_ONLY"] is False
    # The scheme is resolved from trusted proxies only; Django never reads the header itself.
    assert production["SECURE_PROXY_SSL_HEADER"] is None
    assert production["TRUSTED_PROXIES"] == []


def test_hsts_preload_is_an_opt_in_and_documented_as_one() -> None:
    production = loaded(SUPPORTBOT_ENV="production", **PRODUCTION_SECRETS)
    assert production["SECURE_HSTS_PRELOAD"] is False
    # check --deploy's reminder about preloading is silenced only while it is off.
    assert production["SILENCED_SYSTEM_CHECKS"] == ["security.W021"]
    preloaded = loaded(
        SUPPORTBOT_ENV="production", SECURE_HSTS_PRELOAD="true", **PRODUCTION_SECRETS
    )
    assert preloaded["SECURE_HSTS_PRELOAD"] is True
    assert preloaded["SILENCED_SYSTEM_CHECKS"] == []
    for document in ("README.md", "docs/operations.md"):
        text = (REPO / document).read_text()
        row = next(line for line in text.splitlines() if "`SECURE_HSTS_PRELOAD`" in line)
        assert row.rstrip(" |").endswith("off"), (document, row)


def test_development_on_defaults_nobody_chose_serves_loopback_only() -> None:
    assert loaded()["SERVE_LOOPBACK_ONLY"] is True  # no configuration at all (a bare Procfile)
    assert loaded(SECRET_KEY="a-key-of-my-own")["SERVE_LOOPBACK_ONLY"] is True  # DEBUG is on
    assert loaded(DEBUG="false")["SERVE_LOOPBACK_ONLY"] is True  # the public key
    assert loaded(SECRET_KEY="a-key-of-my-own", DEBUG="false")["SERVE_LOOPBACK_ONLY"] is False
    # A development server on purpose (what `make run` and `make test` set).
    assert loaded(SUPPORTBOT_ENV="development")["SERVE_LOOPBACK_ONLY"] is False


def test_a_bad_trusted_proxy_stops_the_start() -> None:
    result = settings_of(TRUSTED_PROXIES="10.0.0.0/8,10.0.0.300")
    assert result.returncode != 0
    assert "TRUSTED_PROXIES: '10.0.0.300' is not an IP address or CIDR" in result.stderr


@pytest.mark.parametrize(
    ("server", "local"),
    [
        (("127.0.0.1", 8000), True),
        (("127.0.0.2", 8000), True),
        (("::1", 8000), True),
        (("::ffff:127.0.0.1", 8000), True),
        (["/run/supportbot.sock", None], True),
        (None, True),
        (("10.1.2.3", 8000), False),
        (("2001:db8::5", 8000), False),
        (("0.0.0.0", 8000), False),
    ],
)
def test_what_counts_as_loopback(server: Any, local: bool) -> None:
    assert reached_on_loopback({"type": "http", "server": server}) is local


async def _through_guard(scope: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    sent: list[dict[str, Any]] = []
    reached: list[bool] = []

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        reached.append(True)

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await LoopbackOnlyMiddleware(inner)(scope, receive, send)
    return sent, bool(reached)


async def test_a_development_server_on_defaults_refuses_other_addresses(settings: Any) -> None:
    assert isinstance(application, LoopbackOnlyMiddleware)
    settings.SERVE_LOOPBACK_ONLY = True
    public = ("192.0.2.10", 8000)
    sent, reached = await _through_guard({"type": "http", "server": public})
    assert not reached
    assert sent[0] == {
        "type": "http.response.start",
        "status": 403,
        "headers": [(b"content-type", b"text/plain; charset=utf-8")],
    }
    assert b"SUPPORTBOT_ENV=production" in sent[1]["body"]
    sent, reached = await _through_guard({"type": "websocket", "server": public})
    assert not reached
    assert sent == [{"type": "websocket.close", "code": 1008}]
    sent, reached = await _through_guard({"type": "http", "server": ("127.0.0.1", 8000)})
    assert reached
    assert sent == []
    settings.SERVE_LOOPBACK_ONLY = False
    _, reached = await _through_guard({"type": "http", "server": public})
    assert reached


# Written apart: a report shows source lines around the failure, and this must not be there.
PASSWORD = "hun" + "ter2"


def _report() -> tuple[str, str]:
    """The text and HTML error reports of a failure in a request."""
    request = RequestFactory().get("/boom")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        reporter = ExceptionReporter(request, *sys.exc_info())
        return reporter.get_traceback_text(), reporter.get_traceback_html()


def test_error_reports_hide_the_passwords_in_urls(settings: Any) -> None:
    settings.DATABASE_URL = f"postgres://supportbot:db-{PASSWORD}@db:5432/supportbot"
    settings.REDIS_URL = f"redis://:redis-{PASSWORD}@redis:6379/0"
    settings.CELERY_BROKER_URL = settings.REDIS_URL
    settings.LLM_BASE_URL = f"https://user:llm-{PASSWORD}@llm.example.com/v1"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://:cache-{PASSWORD}@redis:6379/0",
        }
    }
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [f"redis://default:layer-{PASSWORD}@redis:6379/0"]},
        }
    }
    safe = get_default_exception_reporter_filter().get_safe_settings()
    assert PASSWORD not in repr(safe)
    assert safe["CACHES"]["default"]["LOCATION"] == "redis://:********************@redis:6379/0"
    assert safe["DATABASE_URL"] == "********************"
    text, html = _report()
    assert "redis://default:********************@redis:6379/0" in text
    assert PASSWORD not in text
    assert PASSWORD not in html


def test_a_staff_login_lasts_a_working_day() -> None:
    from django.conf import settings

    assert settings.SESSION_COOKIE_AGE == 8 * 3600
