"""Fixtures shared by the whole suite.

Real Postgres and Redis (embedded ones started by `make test`, or the servers named by
DATABASE_URL/REDIS_URL), a real Celery worker, and the scripted OpenAI-compatible server on
loopback standing in for the paid provider.
"""

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.llm_server import ScriptedLLMServer

pytest_plugins = [
    "tests.support.stack",
    "tests.support.fault_stack",
    "tests.support.run_rules",
    "pytester",
]


def _close_connection_pools() -> None:
    from django.db import connections

    for connection in connections.all():
        close_pool = getattr(connection, "close_pool", None)
        if close_pool is not None:
            close_pool()


@pytest.fixture(scope="session")
def django_db_setup(
    request: pytest.FixtureRequest,
    django_test_environment: None,
    django_db_blocker: Any,
    django_db_modify_db_settings: None,
) -> Iterator[None]:
    """The test database, for every session.

    pytest-django only creates it when a selected test is marked `django_db`; end-to-end and
    browser tests aren't, yet their processes need it: without this they would write into the
    development database. No pooled connection is left pointing at the database it replaces.
    """
    from django.test.utils import setup_databases, teardown_databases

    _close_connection_pools()
    with django_db_blocker.unblock():
        db_cfg = setup_databases(
            verbosity=request.config.option.verbose,
            interactive=False,
            aliases={"default"},
            serialized_aliases=set(),
        )
    _close_connection_pools()
    yield
    with django_db_blocker.unblock():
        _close_connection_pools()
        teardown_databases(db_cfg, verbosity=request.config.option.verbose)


@pytest.fixture(scope="session")
def llm_server() -> Iterator[ScriptedLLMServer]:
    server = ScriptedLLMServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def llm(llm_server: ScriptedLLMServer, settings: Any) -> ScriptedLLMServer:
    """The scripted provider, reset, and configured as the server default for this test."""
    llm_server.reset()
    settings.LLM_PROVIDER = "openai"
    settings.LLM_BASE_URL = llm_server.base_url
    settings.LLM_API_KEY = "sk-test-secret"
    settings.LLM_MODEL = "scripted-model"
    settings.LLM_READ_TIMEOUT = 5.0
    settings.LLM_DEADLINE = 20.0
    settings.LLM_MAX_RETRIES = 1
    return llm_server


@pytest.fixture(scope="session", autouse=True)
def _clean_redis() -> None:
    """Start from an empty Redis database: no queued jobs or counters from an earlier run."""
    from supportbot.redis_store import get_redis

    get_redis().flushdb()


@pytest.fixture
def make_tenant(db: None) -> Any:
    from supportbot.tenants.services import tenant_create

    counter = {"n": 0}

    def make(name: str | None = None, allowed_origins: list[str] | None = None, **fields: Any):  # type: ignore[no-untyped-def]
        counter["n"] += 1
        tenant, key = tenant_create(
            name=name or f"Tenant {counter['n']}",
            allowed_origins=allowed_origins
            if allowed_origins is not None
            else ["https://shop.example.com"],
        )
        for field, value in fields.items():
            setattr(tenant, field, value)
        if fields:
            tenant.save()
        return tenant, key

    return make


@pytest.fixture(autouse=True)
def _fresh_client_conversation_counts() -> None:
    """Each test starts with no conversations counted against any client address: tests share
    a few addresses (10.0.0.1, loopback), and the hourly cap would otherwise carry over."""
    from supportbot.redis_store import get_redis, redis_key

    redis = get_redis()
    keys = list(redis.scan_iter(match=redis_key("client-conversations", "*")))
    if keys:
        redis.delete(*keys)
