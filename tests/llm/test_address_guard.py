"""A config's address guard: every connection resolves its host and goes only to addresses the
guard accepts; a refused address fails the call at once (permanent, never retried, nothing sent)."""

from __future__ import annotations

import socket

import pytest

from supportbot.llm import ChatParams, PermanentLLMError, complete_chat, stream_chat
from tests.support.llm_server import Reply

MESSAGES = [{"role": "user", "content": "Hello?"}]


def refuse_loopback(host: str, address: str) -> str | None:
    return f"{host} is loopback ({address})" if address.startswith("127.") else None


def accept_all(host: str, address: str) -> str | None:
    return None


def test_a_refused_address_fails_permanently_and_sends_nothing(server, make_config, records):
    config = make_config(address_guard=refuse_loopback, max_retries=3)
    with pytest.raises(PermanentLLMError) as caught:
        complete_chat(config, MESSAGES, ChatParams(), on_record=records)
    assert caught.value.code == "config"
    assert "127.0.0.1 is loopback" in str(caught.value)
    assert records.one().attempts == 1  # not retried
    with pytest.raises(PermanentLLMError):
        list(stream_chat(config, MESSAGES, ChatParams()))
    assert server.requests == []


def test_an_accepted_address_is_reached(server, make_config):
    server.enqueue(Reply(text="Hi."))
    done = complete_chat(make_config(address_guard=accept_all), MESSAGES, ChatParams())
    assert done.text == "Hi."
    assert len(server.chat_requests()) == 1


def test_the_address_checked_is_the_one_resolved_at_connection_time(
    server, make_config, monkeypatch
):
    """A name that resolves to a public address when the guard is consulted but is then
    connected to elsewhere cannot happen: the guard sees every address the name resolves to
    when the connection is opened, and the connection goes to one of those."""
    real = socket.getaddrinfo
    seen: list[tuple[str, str]] = []

    def resolve(host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host == "provider.test":
            return real("127.0.0.1", port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    def guard(host: str, address: str) -> str | None:
        seen.append((host, address))
        return None

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    port = server.base_url.split(":")[2].split("/")[0]
    server.enqueue(Reply(text="Through the name."))
    config = make_config(base_url=f"http://provider.test:{port}/v1", address_guard=guard)
    assert complete_chat(config, MESSAGES, ChatParams()).text == "Through the name."
    assert seen == [("provider.test", "127.0.0.1")]
    assert server.chat_requests()[0].headers["host"] == f"provider.test:{port}"
