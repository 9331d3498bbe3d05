"""Moderation as a widget visitor sees it, through the real consumer and a Celery worker."""

import uuid
from typing import Any

import pytest

from conversations.notices import notice
from tests.conversations.test_consumer import (
    SHOP,
    connect,
    hello,
    is_final_assistant,
    receive_until,
)
from tests.support.llm_server import Reply

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_idle")]


@pytest.fixture
def key(make_tenant: Any, llm: Any) -> Any:
    _, key = make_tenant(allowed_origins=[SHOP])
    return key


async def test_a_flagged_reply_is_replaced_in_the_visitors_final_message(
    key: Any, llm: Any
) -> None:
    planted = "Do this [[flag]] harmful thing now."
    llm.enqueue(Reply(text=f"Sure. {planted}" + " More text." * 80, token_interval=0.01))
    ws = await connect()
    await hello(ws, key.public_key)
    await ws.send_json_to({"type": "message", "client_id": str(uuid.uuid4()), "text": "Help?"})
    frames = await receive_until(ws, is_final_assistant, timeout=20)
    final = frames[-1]["message"]
    assert final["text"] == notice("moderated_reply", "en")
    assert "[[flag]]" not in final["text"]
    await ws.disconnect()
    # A later visitor (catch-up) never gets the text either.
    again = await connect()
    welcome = await hello(again, key.public_key)
    assert all("[[flag]]" not in str(m) for m in welcome.get("messages", []))
    await again.disconnect()


async def test_a_flagged_message_is_refused_in_the_visitors_language(key: Any, llm: Any) -> None:
    ws = await connect()
    await hello(ws, key.public_key, locale="es-ES")
    text = "Hola, sois todos unos [[flag]] inútiles, quiero hablar de mi pedido ahora mismo"
    await ws.send_json_to({"type": "message", "client_id": str(uuid.uuid4()), "text": text})
    frames = await receive_until(ws, is_final_assistant, timeout=20)
    assert frames[-1]["message"]["text"] == notice("moderated_input", "es")
    assert llm.chat_requests() == []
    await ws.disconnect()
