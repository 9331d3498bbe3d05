"""embed_texts against the scripted server's /v1/embeddings."""

from __future__ import annotations

import math
import time

import pytest

from supportbot.llm import PermanentLLMError, TransientLLMError, embed_texts
from tests.support.llm_server import EMBEDDING_DIMENSIONS, Reply, hashed_embedding

from .conftest import API_KEY


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (
        math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    )


def test_vectors_in_order_batched_with_one_record(server, make_config, records):
    texts = [f"text number {i}" for i in range(5)]
    vectors = embed_texts(
        make_config(), texts, model="embed-small", batch_size=2, on_record=records
    )
    assert vectors == [hashed_embedding(t) for t in texts]
    assert all(len(v) == EMBEDDING_DIMENSIONS for v in vectors)
    requests = server.embedding_requests()
    assert [r.json["input"] for r in requests] == [texts[0:2], texts[2:4], texts[4:5]]
    assert {r.json["model"] for r in requests} == {"embed-small"}
    assert {r.json["encoding_format"] for r in requests} == {"float"}
    assert requests[0].headers["authorization"] == f"Bearer {API_KEY}"
    record = records.one()
    assert (record.outcome, record.model, record.attempts) == ("ok", "embed-small", 3)
    assert record.prompt_tokens == 15
    assert record.completion_tokens == 0


def test_similar_texts_are_closer_than_unrelated_ones(server, make_config):
    a, b, c = embed_texts(
        make_config(),
        [
            "Returns are accepted within 30 days",
            "You can return items within 30 days",
            "Our office dog is called Biscuit",
        ],
        model="embed-small",
    )
    assert cosine(a, b) > cosine(a, c) + 0.2


def test_dimensions_are_sent_when_given(server, make_config):
    (vector,) = embed_texts(make_config(), ["short"], model="m", dimensions=64)
    assert len(vector) == 64
    assert server.embedding_requests()[0].json["dimensions"] == 64
    embed_texts(make_config(), ["short"], model="m")
    assert "dimensions" not in server.embedding_requests()[1].json


def test_empty_list_makes_no_request_and_empty_text_is_refused(server, make_config, records):
    assert embed_texts(make_config(), [], model="m", on_record=records) == []
    with pytest.raises(ValueError, match="empty text"):
        embed_texts(make_config(), ["fine", "  "], model="m")
    assert server.embedding_requests() == []
    assert records == []


def test_429_with_retry_after_is_retried(server, make_config, records):
    server.enqueue_embeddings(Reply(status=429, headers={"retry-after-ms": "300"}))
    (vector,) = embed_texts(make_config(), ["hello"], model="m", on_record=records)
    assert vector == hashed_embedding("hello")
    a, b = server.embedding_requests()
    assert b.at - a.at >= 0.3
    assert (records.one().outcome, records.one().attempts) == ("ok", 2)


def test_connection_drop_is_retried(server, make_config):
    server.enqueue_embeddings(Reply(fail_after_tokens=0))
    assert embed_texts(make_config(), ["hello"], model="m") == [hashed_embedding("hello")]
    assert len(server.embedding_requests()) == 2


def test_401_is_permanent_not_retried_and_hides_the_key(server, make_config, records):
    server.enqueue_embeddings(Reply(status=401))
    with pytest.raises(PermanentLLMError) as info:
        embed_texts(make_config(), ["hello"], model="m", on_record=records)
    assert info.value.code == "auth"
    assert API_KEY not in str(info.value)
    assert info.value.__context__ is None
    assert len(server.embedding_requests()) == 1
    assert (records.one().outcome, records.one().error_code) == ("error", "auth")


def test_5xx_exhausts_retries(server, make_config, records):
    server.enqueue_embeddings(*[Reply(status=503)] * 3)
    with pytest.raises(TransientLLMError) as info:
        embed_texts(make_config(max_retries=2), ["hello"], model="m", on_record=records)
    assert info.value.code == "server_error"
    assert len(server.embedding_requests()) == 3
    assert records.one().attempts == 3


def test_a_slow_provider_is_bounded_by_the_deadline(server, make_config, records):
    server.enqueue_embeddings(Reply(first_token_delay=5))
    started = time.monotonic()
    with pytest.raises(TransientLLMError) as info:
        embed_texts(make_config(deadline=1.0, max_retries=0), ["hello"], model="m")
    assert time.monotonic() - started < 2.5
    assert info.value.code == "timeout"


def test_empty_model_is_a_config_error(server, make_config, records):
    with pytest.raises(PermanentLLMError) as info:
        embed_texts(make_config(), ["hello"], model="", on_record=records)
    assert info.value.code == "config"
    assert server.embedding_requests() == []


def test_base64_encoding_from_the_server_decodes_to_the_same_vector(server):
    import base64
    import json
    import struct
    import urllib.request

    request = urllib.request.Request(
        server.base_url + "/embeddings",
        data=json.dumps({"model": "m", "input": "hello", "encoding_format": "base64"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        payload = json.load(response)
    raw = base64.b64decode(payload["data"][0]["embedding"])
    decoded = list(struct.unpack(f"<{len(raw) // 4}f", raw))
    assert decoded == pytest.approx(hashed_embedding("hello"), abs=1e-6)
