"""Protocol v1 frames built from models (see docs/widget-protocol.md)."""

from typing import Any

from conversations.models import Message


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")


def message_payload(message: Message) -> dict[str, Any]:
    return {
        "id": str(message.id),
        "seq": message.seq,
        "role": message.role,
        "text": message.text,
        "created_at": _iso(message.created_at),
        "client_id": message.client_id,
        "status": message.status,
        "sources": message.sources or [],
    }


def message_frame(message: Message) -> dict[str, Any]:
    return {"type": "message", "message": message_payload(message)}


def error_frame(code: str, detail: str, **extra: Any) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", "code": code, "detail": detail}
    frame.update({k: v for k, v in extra.items() if v is not None})
    return frame
