"""Azure OpenAI: the api-version flavour (deployment path, api-key header) and the v1 base URL."""

from __future__ import annotations

from supportbot.llm import ProviderConfig, complete_chat, stream_chat
from tests.support.llm_server import Reply

from .conftest import API_KEY

MESSAGES = [{"role": "user", "content": "Bonjour"}]


def drain(events):
    return list(events)[-1]


def test_azure_with_api_version_uses_deployment_path_query_and_api_key_header(server, records):
    config = ProviderConfig(
        provider="azure",
        model="support-gpt4o",
        base_url=server.root_url,
        api_key=API_KEY,
        api_version="2024-10-21",
    )
    server.enqueue(Reply(text="Bonjour !"))
    done = drain(stream_chat(config, MESSAGES, on_record=records))
    assert done.text == "Bonjour !"
    assert done.model == "support-gpt4o"

    (request,) = server.chat_requests()
    assert request.path == "/openai/deployments/support-gpt4o/chat/completions"
    assert request.query == {"api-version": "2024-10-21"}
    assert request.headers["api-key"] == API_KEY
    assert "authorization" not in request.headers
    assert request.json["stream_options"] == {"include_usage": True}
    record = records.one()
    assert (record.provider, record.model, record.outcome) == ("azure", "support-gpt4o", "ok")


def test_azure_endpoint_given_with_openai_suffix_still_works(server):
    config = ProviderConfig(
        provider="azure",
        model="dep",
        base_url=server.root_url + "/openai/",
        api_key=API_KEY,
        api_version="2024-10-21",
    )
    assert complete_chat(config, MESSAGES).text
    assert server.chat_requests()[0].path == "/openai/deployments/dep/chat/completions"


def test_azure_v1_base_url(server):
    config = ProviderConfig(
        provider="azure",
        model="support-gpt4o",
        base_url=server.root_url + "/openai/v1/",
        api_key=API_KEY,
    )
    done = drain(stream_chat(config, MESSAGES))
    assert done.finish_reason == "stop"
    (request,) = server.chat_requests()
    assert request.path == "/openai/v1/chat/completions"
    assert request.query == {}
    assert request.json["model"] == "support-gpt4o"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"


def test_azure_resource_endpoint_without_api_version_uses_v1(server):
    config = ProviderConfig(
        provider="azure", model="dep", base_url=server.root_url, api_key=API_KEY
    )
    complete_chat(config, MESSAGES)
    (request,) = server.chat_requests()
    assert request.path == "/openai/v1/chat/completions"
    assert request.json["model"] == "dep"


def test_local_provider_needs_no_key(server):
    config = ProviderConfig(provider="local", model="smollm2", base_url=server.base_url)
    assert complete_chat(config, MESSAGES).text
    assert server.chat_requests()[0].headers["authorization"] == "Bearer local"
