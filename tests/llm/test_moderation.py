"""moderate() against the scripted server's /moderations endpoint."""

from __future__ import annotations

import json

import pytest

from supportbot.llm import PermanentLLMError, TransientLLMError, moderate
from tests.support.llm_server import Reply

from .conftest import API_KEY


def test_flagged_input_is_reported_with_its_categories(server, make_config, records):
    verdict = moderate(
        make_config(model="omni-moderation-latest"),
        ["hello there", "you are [[flag]] awful"],
        on_record=records,
    )
    assert verdict.flagged
    assert verdict.categories == ("harassment",)
    assert verdict.flagged_inputs == (1,)
    (request,) = server.moderation_requests()
    assert request.json["input"] == ["hello there", "you are [[flag]] awful"]
    assert request.json["model"] == "omni-moderation-latest"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert records.one().outcome == "ok"
    assert server.chat_requests() == []


def test_clean_input_is_not_flagged_and_configured_terms_are(server, make_config):
    assert not moderate(make_config(), ["Where is my parcel?"]).flagged
    server.moderation_terms = ["parcel"]
    assert moderate(make_config(), ["Where is my parcel?"]).flagged


def test_empty_texts_make_no_request(server, make_config):
    assert not moderate(make_config(), ["", "  "]).flagged
    assert server.moderation_requests() == []


def test_server_errors_are_retried_like_chat_calls(server, make_config, records):
    server.enqueue_moderations(Reply(status=500))
    verdict = moderate(make_config(max_retries=2), ["fine"], on_record=records)
    assert not verdict.flagged
    assert len(server.moderation_requests()) == 2
    assert records.one().attempts == 2


def test_exhausted_retries_raise_a_transient_error(server, make_config, records):
    server.enqueue_moderations(Reply(status=503), Reply(status=503))
    with pytest.raises(TransientLLMError) as caught:
        moderate(make_config(max_retries=1), ["fine"], on_record=records)
    assert caught.value.code == "server_error"
    assert records.one().outcome == "error"


def test_auth_errors_are_permanent_and_never_show_the_key(server, make_config):
    server.enqueue_moderations(
        Reply(status=401, error_body={"error": {"message": f"bad key {API_KEY}", "code": "x"}})
    )
    with pytest.raises(PermanentLLMError) as caught:
        moderate(make_config(), ["fine"])
    assert caught.value.code == "auth"
    assert API_KEY not in str(caught.value)
    assert len(server.moderation_requests()) == 1


def test_a_timeout_is_bounded_by_the_deadline(server, make_config):
    server.moderation_delay = 2.0
    with pytest.raises(TransientLLMError) as caught:
        moderate(make_config(deadline=0.5, max_retries=0), ["fine"])
    assert caught.value.code == "timeout"


@pytest.mark.parametrize("provider", ["azure", "local"])
def test_providers_without_an_endpoint_are_a_config_error(server, make_config, provider):
    config = make_config(provider=provider, api_version="2024-10-21")
    with pytest.raises(PermanentLLMError) as caught:
        moderate(config, ["fine"])
    assert caught.value.code == "config"
    assert server.requests == []


def test_the_server_answers_topic_classifications_outside_the_reply_queue(server, make_config):
    from supportbot.llm import ChatParams, complete_chat

    server.enqueue(Reply(text="queued reply"))
    params = ChatParams(
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "sensitive_topic", "schema": {"type": "object"}},
        }
    )
    done = complete_chat(
        make_config(), [{"role": "user", "content": "[[topic: health]] my back hurts"}], params
    )
    assert json.loads(done.text) == {"topic": "health"}
    server.topic_terms = {"invoice": "finance"}
    done = complete_chat(make_config(), [{"role": "user", "content": "My invoice?"}], params)
    assert json.loads(done.text) == {"topic": "finance"}
    assert len(server.classification_requests()) == 2
    assert server.reply_requests() == []
