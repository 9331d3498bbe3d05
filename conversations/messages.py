"""The write primitives every conversation service builds on: append a message (with its
`seq`), and tell the conversation's sockets about a change once the transaction commits.

Nothing here decides anything: no handoff, no reply, no job. Services call these inside their
own transaction.
"""

from typing import Any

from django.db import connection
from django.utils import timezone

from conversations import frames
from conversations.broadcast import broadcast_on_commit
from conversations.models import Conversation, Message
from conversations.outbox import message_outbound_queue

# The table name comes from the model, never from input.
_NEXT_SEQ_SQL = (
    f"UPDATE {Conversation._meta.db_table} SET last_seq = last_seq + 1, last_message_at = %s "  # noqa: S608
    "WHERE id = %s RETURNING last_seq, status"
)


def _next_seq(conversation: Conversation) -> int:
    """Allocate the next `seq` of a conversation (one statement; the row stays locked until
    commit) and refresh `conversation.status`, which another process may have changed."""
    with connection.cursor() as cursor:
        cursor.execute(_NEXT_SEQ_SQL, [timezone.now(), conversation.pk])
        row = cursor.fetchone()
    if row is None:
        raise Conversation.DoesNotExist(f"conversation {conversation.pk} is gone")
    conversation.last_seq, conversation.status = row
    return int(row[0])


def message_append(
    *,
    conversation: Conversation,
    role: str,
    text: str,
    status: str = Message.Status.COMPLETE,
    client_id: str | None = None,
    author: Any = None,
    broadcast: bool = True,
    sender: str | None = None,
) -> Message:
    """Add a message at the end of a conversation (inside the caller's transaction).

    `author` is the staff user of an agent's message. With `broadcast`, the message frame goes
    to the conversation's sockets after commit (except `sender`, a channel name).
    """
    message = Message.objects.create(
        tenant_id=conversation.tenant_id,
        conversation=conversation,
        seq=_next_seq(conversation),
        role=role,
        text=text,
        status=status,
        client_id=client_id,
        author=author,
        completed_at=timezone.now() if status == Message.Status.COMPLETE else None,
    )
    if broadcast:
        broadcast_on_commit(conversation.pk, frames.message_frame(message), sender=sender)
        message_outbound_queue(conversation=conversation, message=message)
    return message


def conversation_changed(conversation: Conversation, *, sender: str | None = None) -> None:
    """Broadcast the conversation's new state (`conversation.updated`) after commit."""
    broadcast_on_commit(
        conversation.pk, frames.conversation_updated_frame(conversation), sender=sender
    )
