"""The Telegram Bot API as a `ProviderServer` responder, and the Updates Telegram posts.

    bot = FakeBotApi()
    with ProviderServer(default=bot) as server:
        settings.TELEGRAM_API_BASE = server.url
        ...
        bot.texts[(chat_id, message_id)]  # what each message of the bot shows now

It answers `sendMessage` with the new message (ids counting up per chat), `editMessageText`
with the edited message, or Telegram's 400 "message is not modified" when the text is the same
(and "message to edit not found" for an unknown id), `sendChatAction` with `true`; every answer
in Telegram's envelope, `{"ok": true, "result": ...}`. The updates below are retyped from the
Bot API documentation's objects (Update, Message, User, Chat, PhotoSize, Voice, Document).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.support.provider_server import ProviderServer, Recorded

BOT_TOKEN = "123456:ABC-test-token"
BOT = {"id": 123456, "is_bot": True, "first_name": "Shop help", "username": "shop_help_bot"}
PERSON = {
    "id": 555001,
    "is_bot": False,
    "first_name": "Ada",
    "last_name": "Lovelace",
    "username": "ada",
    "language_code": "en",
}
DATE = 1764600000


def _error(status: int, description: str, **parameters: Any) -> tuple[int, Any, dict[str, str]]:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return status, body, {}


def too_many_requests(retry_after: int) -> dict[str, Any]:
    """Telegram's 429 body (the wait is in `parameters`, not only in a header)."""
    return _error(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after)[1]


class FakeBotApi:
    """A bot's side of the Bot API, in memory: the messages it sent and their text now."""

    def __init__(self) -> None:
        self.texts: dict[tuple[str, int], str] = {}
        # Every call answered by this responder: (time.monotonic(), method, payload).
        self.calls: list[tuple[float, str, dict[str, Any]]] = []
        self._ids = itertools.count(1000)
        self._lock = threading.Lock()

    def __call__(self, request: Recorded) -> tuple[int, Any, dict[str, str]]:
        method = request.path.rsplit("/", 1)[-1]
        payload = request.json or {}
        with self._lock:
            self.calls.append((time.monotonic(), method, payload))
        if method == "sendMessage":
            return self._send(payload)
        if method == "editMessageText":
            return self._edit(payload)
        if method == "sendChatAction":
            return 200, {"ok": True, "result": True}, {}
        return _error(404, "Not Found")

    def _message(self, chat_id: str, message_id: int, text: str) -> dict[str, Any]:
        return {
            "message_id": message_id,
            "from": BOT,
            "chat": {"id": int(chat_id), "type": "private"},
            "date": DATE,
            "text": text,
        }

    def _send(self, payload: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        text = str(payload.get("text", ""))
        if not text or len(text) > 4096:
            return _error(400, "Bad Request: message text is empty or too long")
        chat_id = str(payload["chat_id"])
        with self._lock:
            message_id = next(self._ids)
            self.texts[(chat_id, message_id)] = text
        return 200, {"ok": True, "result": self._message(chat_id, message_id, text)}, {}

    def _edit(self, payload: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        chat_id, message_id = str(payload["chat_id"]), int(payload["message_id"])
        text = str(payload.get("text", ""))
        with self._lock:
            if (chat_id, message_id) not in self.texts:
                return _error(400, "Bad Request: message to edit not found")
            if self.texts[(chat_id, message_id)] == text:
                return _error(
                    400,
                    "Bad Request: message is not modified: specified new message content and "
                    "reply markup are exactly the same as a current content and reply markup "
                    "of the message",
                )
            self.texts[(chat_id, message_id)] = text
        return 200, {"ok": True, "result": self._message(chat_id, message_id, text)}, {}

    def answered(self, method: str) -> list[tuple[float, dict[str, Any]]]:
        """The calls of `method` this responder answered (scripted failures are not among
        them), with when they came."""
        with self._lock:
            return [(at, payload) for at, name, payload in self.calls if name == method]

    def chat_texts(self, chat_id: int | str) -> list[str]:
        """What the bot's messages in a chat show now, oldest first."""
        with self._lock:
            return [
                text
                for (chat, _id), text in sorted(self.texts.items(), key=lambda item: item[0][1])
                if chat == str(chat_id)
            ]


@contextmanager
def bot_api_serving(bot: FakeBotApi, settings: Any) -> Iterator[ProviderServer]:
    """A loopback server answering as `bot`, the Telegram API base of the test's settings."""
    with ProviderServer(default=bot) as server:
        settings.TELEGRAM_API_BASE = server.url
        yield server


# --- Updates (what Telegram posts to the webhook) ---------------------------------------------


def _private_chat(person: dict[str, Any]) -> dict[str, Any]:
    chat = {"id": person["id"], "type": "private", "first_name": person["first_name"]}
    for key in ("last_name", "username"):
        if key in person:
            chat[key] = person[key]
    return chat


def message_update(
    update_id: int,
    *,
    text: str | None = "Hello, where is my order?",
    person: dict[str, Any] | None = None,
    message_id: int = 1,
    **fields: Any,
) -> dict[str, Any]:
    """An Update with a private chat's message (`fields` adds photo, voice, caption...)."""
    person = person or PERSON
    message: dict[str, Any] = {
        "message_id": message_id,
        "from": person,
        "chat": _private_chat(person),
        "date": DATE,
    }
    if text is not None:
        message["text"] = text
    message.update(fields)
    return {"update_id": update_id, "message": message}


def start_update(update_id: int) -> dict[str, Any]:
    update = message_update(update_id, text="/start")
    update["message"]["entities"] = [{"offset": 0, "length": 6, "type": "bot_command"}]
    return update


def photo_update(update_id: int, caption: str | None = "Is this the right cable?") -> dict:
    sizes = [
        {"file_id": "AgACAgQAAxkBAAIBsmall", "file_unique_id": "AQADs", "width": 90,
         "height": 67, "file_size": 1247},
        {"file_id": "AgACAgQAAxkBAAIBlarge", "file_unique_id": "AQADl", "width": 1280,
         "height": 960, "file_size": 120512},
    ]  # fmt: skip
    fields: dict[str, Any] = {"photo": sizes}
    if caption is not None:
        fields["caption"] = caption
    return message_update(update_id, text=None, **fields)


def voice_update(update_id: int) -> dict[str, Any]:
    voice = {
        "file_id": "AwACAgQAAxkBAAIBvoice",
        "file_unique_id": "AgADv",
        "duration": 4,
        "mime_type": "audio/ogg",
        "file_size": 16384,
    }
    return message_update(update_id, text=None, voice=voice)


def document_update(update_id: int) -> dict[str, Any]:
    document = {
        "file_id": "BQACAgQAAxkBAAIBdoc",
        "file_unique_id": "AgADd",
        "file_name": "invoice-1042.pdf",
        "mime_type": "application/pdf",
        "file_size": 53211,
    }
    return message_update(update_id, text=None, document=document)


def edited_update(update_id: int) -> dict[str, Any]:
    update = message_update(update_id, text="Hello, where is my parcel?")
    update["edited_message"] = {**update.pop("message"), "edit_date": DATE + 30}
    return update


def group_update(update_id: int, chat_id: int = -1001234567890) -> dict[str, Any]:
    update = message_update(update_id, text="@shop_help_bot do you ship to Norway?")
    update["message"]["chat"] = {"id": chat_id, "type": "supergroup", "title": "Shop fans"}
    return update


def bot_update(update_id: int) -> dict[str, Any]:
    return message_update(update_id, text="I am a bot too", person={**BOT, "id": 777})


def channel_post_update(update_id: int) -> dict[str, Any]:
    post = {
        "message_id": 9,
        "sender_chat": {"id": -100777, "type": "channel", "title": "Shop news"},
        "chat": {"id": -100777, "type": "channel", "title": "Shop news"},
        "date": DATE,
        "text": "New arrivals!",
    }
    return {"update_id": update_id, "channel_post": post}
