"""`GET /healthz`: can this process serve? Database, Redis and the LLM provider, each checked.

The public answer is the status alone (200 `ok` or 503 `unavailable`): which dependency is
down, or whether a provider is configured, is for staff. `GET /healthz/details` gives each
check's result to a signed-in staff user, and 404 to anyone else.
"""

import time
from typing import Any

import httpx
from django.conf import settings
from django.db import connection
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from supportbot.redis_store import get_redis


def _check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except Exception:
        return "unavailable"


def _check_redis() -> str:
    try:
        get_redis().ping()
        return "ok"
    except Exception:
        return "unavailable"


_llm_cache: dict[str, Any] = {"at": 0.0, "value": "unknown"}


def _check_llm() -> str:
    """Reachability of the default provider's base URL (cached for 30 s; never sends the key)."""
    if not settings.LLM_BASE_URL:
        return "configured" if settings.LLM_PROVIDER else "not_configured"
    now = time.monotonic()
    if now - _llm_cache["at"] < 30:
        return str(_llm_cache["value"])
    try:
        httpx.get(settings.LLM_BASE_URL.rstrip("/") + "/models", timeout=2.0)
        value = "ok"
    except httpx.HTTPError:
        value = "unreachable"
    _llm_cache.update(at=now, value=value)
    return value


def _serving() -> tuple[bool, dict[str, str]]:
    database, redis_state = _check_database(), _check_redis()
    ok = database == "ok" and redis_state == "ok"
    return ok, {"database": database, "redis": redis_state}


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    ok, _ = _serving()
    return JsonResponse({"status": "ok" if ok else "unavailable"}, status=200 if ok else 503)


@require_GET
def healthz_details(request: HttpRequest) -> JsonResponse:
    # The platform's health is the operators' (superusers'): not a tenant's staff.
    user = request.user
    if not (user.is_authenticated and user.is_active and user.is_staff and user.is_superuser):
        raise Http404()
    ok, checks = _serving()
    body = {"status": "ok" if ok else "unavailable", **checks, "llm": _check_llm()}
    return JsonResponse(body, status=200 if ok else 503)
