"""Channel-layer group names, built in one place."""

from uuid import UUID


def conversation_group(conversation_id: UUID | str) -> str:
    return f"conversation.{conversation_id}"
