"""provider_call: a provider's answers become the outbox's retry decisions, over real HTTP to a
loopback provider."""

from collections.abc import Iterator
from datetime import timedelta
from email.utils import format_datetime

import pytest
from django.utils import timezone

from conversations.channels.base import DeliveryFailed
from conversations.channels.http import provider_call
from tests.support.provider_server import ProviderServer
from tests.support.stack import free_port

TOKEN_PATH = "/bot123:secret-token/sendMessage"


@pytest.fixture
def server() -> Iterator[ProviderServer]:
    with ProviderServer() as running:
        yield running


def failure_of(server: ProviderServer, **script: object) -> DeliveryFailed:
    server.fail_next(TOKEN_PATH, **script)  # type: ignore[arg-type]
    with pytest.raises(DeliveryFailed) as caught:
        provider_call("POST", server.url + TOKEN_PATH, json={"text": "hi"})
    return caught.value


def test_a_2xx_answer_is_returned(server: ProviderServer) -> None:
    response = provider_call(
        "POST", server.url + TOKEN_PATH, json={"text": "hi"}, headers={"X-Test": "1"}
    )
    assert response.json() == {"ok": True}
    (request,) = server.received(TOKEN_PATH)
    assert request.json == {"text": "hi"}
    assert request.headers["x-test"] == "1"


def test_form_data_and_basic_auth_are_sent(server: ProviderServer) -> None:
    provider_call("POST", server.url + "/Messages.json", data={"Body": "hi"}, auth=("AC1", "pw"))
    (request,) = server.received("/Messages.json")
    assert request.form == {"Body": "hi"}
    assert request.headers["authorization"].startswith("Basic ")


def test_429_with_retry_after_seconds(server: ProviderServer) -> None:
    failed = failure_of(server, status=429, headers={"Retry-After": "7"})
    assert (failed.status, failed.retry_after, failed.permanent) == (429, 7.0, False)


def test_429_with_retry_after_as_a_date(server: ProviderServer) -> None:
    when = format_datetime(timezone.now() + timedelta(seconds=30), usegmt=True)
    failed = failure_of(server, status=429, headers={"Retry-After": when})
    assert failed.retry_after is not None
    assert 20 <= failed.retry_after <= 31
    assert not failed.permanent


def test_429_with_telegram_parameters_retry_after(server: ProviderServer) -> None:
    body = {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 5",
        "parameters": {"retry_after": 5},
    }
    failed = failure_of(server, status=429, body=body)
    assert (failed.status, failed.retry_after, failed.permanent) == (429, 5.0, False)
    assert "Too Many Requests" in failed.reason


def test_5xx_is_retried_with_backoff(server: ProviderServer) -> None:
    failed = failure_of(server, status=503)
    assert (failed.status, failed.retry_after, failed.permanent) == (503, None, False)


def test_other_4xx_is_permanent_and_names_no_secret(server: ProviderServer) -> None:
    failed = failure_of(
        server, status=403, body={"ok": False, "description": "Forbidden: bot was blocked"}
    )
    assert (failed.status, failed.permanent) == (403, True)
    assert "bot was blocked" in failed.reason
    assert "secret-token" not in failed.reason
    assert "secret-token" not in str(failed)


def test_graph_error_message_is_kept(server: ProviderServer) -> None:
    body = {"error": {"message": "Invalid parameter", "code": 100}}
    failed = failure_of(server, status=400, body=body)
    assert failed.permanent
    assert "Invalid parameter" in failed.reason


def test_a_network_failure_is_retried_and_names_no_url(settings: object) -> None:
    url = f"http://127.0.0.1:{free_port()}{TOKEN_PATH}"
    with pytest.raises(DeliveryFailed) as caught:
        provider_call("POST", url, json={})
    failed = caught.value
    assert (failed.status, failed.retry_after, failed.permanent) == (None, None, False)
    assert "secret-token" not in failed.reason


def test_a_stalled_provider_times_out_and_is_retried(server: ProviderServer, settings) -> None:  # type: ignore[no-untyped-def]
    settings.CHANNEL_HTTP_TIMEOUT = 0.3
    failed = failure_of(server, status=200, stall=2.0)
    assert failed.status is None
    assert not failed.permanent
    assert "Timeout" in failed.reason
