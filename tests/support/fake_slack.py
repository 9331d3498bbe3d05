"""Slack's side of the Slack channel, for tests: the Web API's answers (a `ProviderServer`
responder) and the Events API's requests (its documented payloads, signed as Slack signs them).

    with ProviderServer(default=SlackWebApi(token="xoxb-1").respond) as server:
        settings.SLACK_API_BASE = server.url + "/api"
        client.post(url, data=body, content_type="application/json",
                    headers=signed_headers(SIGNING_SECRET, body))

The payloads are those of Slack's Events API reference (url_verification, event_callback with
an app_mention, a direct message, a bot's message, an edit, a file share), with our ids.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from typing import Any

from tests.support.provider_server import Recorded


class SlackWebApi:
    """Answers `chat.postMessage` and `chat.update` as Slack does: HTTP 200 with `ok`, the
    channel and the message's ts; `{"ok": false, "error": "invalid_auth"}` for another token."""

    def __init__(self, token: str) -> None:
        self.token = token
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self._rate_limits: list[str] = []
        self.call_times: list[tuple[str, float]] = []  # (method, time.monotonic()) of each call

    def rate_limit_next(self, retry_after: int = 1, *, times: int = 1) -> None:
        """The next `times` calls are refused as Slack refuses a method called too often:
        HTTP 429, `Retry-After`, `{"ok": false, "error": "ratelimited"}`."""
        with self._lock:
            self._rate_limits.extend([str(retry_after)] * times)

    def _rate_limited(self) -> str | None:
        with self._lock:
            return self._rate_limits.pop(0) if self._rate_limits else None

    def calls_of(self, method: str) -> list[float]:
        with self._lock:
            return [at for name, at in self.call_times if name == method]

    def _next_ts(self) -> str:
        with self._lock:
            return f"1700000000.{next(self._counter):06d}"

    def respond(self, request: Recorded) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            self.call_times.append((request.path.rsplit("/", 1)[-1], time.monotonic()))
        retry_after = self._rate_limited()
        if retry_after is not None:
            return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": retry_after}
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        payload = request_payload(request)
        channel = payload.get("channel", "")
        if request.path.endswith("/chat.postMessage"):
            ts = self._next_ts()
            message = {"type": "message", "text": payload.get("text", ""), "ts": ts}
            return 200, {"ok": True, "channel": channel, "ts": ts, "message": message}, {}
        if request.path.endswith("/chat.update"):
            ts = payload.get("ts", "")
            return 200, {"ok": True, "channel": channel, "ts": ts, "text": payload.get("text")}, {}
        return 200, {"ok": False, "error": "unknown_method"}, {}


def request_payload(request: Recorded) -> dict[str, Any]:
    """A Web API call's arguments, sent as JSON or as a form."""
    if request.headers.get("content-type", "").startswith("application/json"):
        return dict(request.json or {})
    return dict(request.form)


def signed_headers(
    secret: str, body: bytes, *, timestamp: int | None = None, retry_num: int | None = None
) -> dict[str, str]:
    """The headers Slack sends with a request: its timestamp and its v0 HMAC-SHA256 signature
    of `v0:<timestamp>:<body>` under the app's signing secret."""
    sent_at = str(int(time.time()) if timestamp is None else timestamp)
    base = b"v0:" + sent_at.encode() + b":" + body
    signature = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    headers = {"X-Slack-Request-Timestamp": sent_at, "X-Slack-Signature": signature}
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = "http_timeout"
    return headers


def body_of(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


def url_verification(
    challenge: str = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
) -> dict[str, Any]:
    return {"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": challenge, "type": "url_verification"}


def event_callback(
    event: dict[str, Any], *, event_id: str = "Ev0PV52K25", team_id: str = "T0001"
) -> dict[str, Any]:
    """The envelope every event comes in."""
    return {
        "token": "XXYYZZ",
        "team_id": team_id,
        "api_app_id": "A0PNCHHK2",
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": 1515449522,
        "authed_users": ["U0LAN0Z89"],
    }


def app_mention(
    text: str,
    *,
    user: str = "U123ABC456",
    channel: str = "C123ABC456",
    ts: str = "1515449522.000016",
    thread_ts: str | None = None,
    bot_user_id: str = "U0LAN0Z89",
) -> dict[str, Any]:
    """A person mentioning the bot in a channel (`<@bot> text`)."""
    event = {
        "type": "app_mention",
        "user": user,
        "text": f"<@{bot_user_id}> {text}",
        "ts": ts,
        "channel": channel,
        "event_ts": ts,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def direct_message(
    text: str,
    *,
    user: str = "U2147483697",
    channel: str = "D024BE91L",
    ts: str = "1355517523.000005",
    thread_ts: str | None = None,
) -> dict[str, Any]:
    """A person's direct message to the bot (`message.im`)."""
    event = {
        "type": "message",
        "channel": channel,
        "user": user,
        "text": text,
        "ts": ts,
        "event_ts": ts,
        "channel_type": "im",
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def bot_message(
    text: str = "Pushing is the answer", *, channel: str = "D024BE91L"
) -> dict[str, Any]:
    """A bot's message (our own replies come back like this)."""
    return {
        "type": "message",
        "subtype": "bot_message",
        "ts": "1358877455.000010",
        "text": text,
        "bot_id": "BB12033",
        "username": "github",
        "icons": {},
        "channel": channel,
        "channel_type": "im",
    }


def message_changed(channel: str = "D024BE91L") -> dict[str, Any]:
    """A message edited after it was sent."""
    return {
        "type": "message",
        "subtype": "message_changed",
        "hidden": True,
        "channel": channel,
        "channel_type": "im",
        "ts": "1358878755.000001",
        "message": {
            "type": "message",
            "user": "U2147483697",
            "text": "Hello, world!",
            "ts": "1355517523.000005",
            "edited": {"user": "U2147483697", "ts": "1358878755.000001"},
        },
    }


def file_share(
    text: str = "Here is the screenshot", *, channel: str = "D024BE91L"
) -> dict[str, Any]:
    """A direct message with a file."""
    return {
        **direct_message(text, channel=channel, ts="1355517600.000007"),
        "subtype": "file_share",
        "files": [
            {
                "id": "F0123ABCDEF",
                "name": "screenshot.png",
                "title": "screenshot.png",
                "mimetype": "image/png",
                "filetype": "png",
                "size": 48213,
                "url_private": "https://files.slack.com/files-pri/T0001-F0123ABCDEF/screenshot.png",
            }
        ],
    }
