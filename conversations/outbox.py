"""The outbox's front door: a message the visitor should see, on a conversation of a message
channel (email, Telegram, WhatsApp, Slack, SMS), becomes a delivery row in the same transaction
and a send job after commit; a reply starting on a channel that shows replies as they form
(Telegram, Slack) gets a stream follower.

Called wherever a message frame is broadcast (`messages.message_append`, `reply/finish`,
`handoff`), so every reply, agent message and notice reaches the conversation's channel. Widget
and REST API conversations have no outbox: their sockets and event streams get the frames.
"""

from celery import current_app
from django.db import transaction

from conversations.models import Conversation, Message, OutboundDelivery

MESSAGE_CHANNELS = frozenset(
    {
        Conversation.Channel.EMAIL,
        Conversation.Channel.TELEGRAM,
        Conversation.Channel.WHATSAPP,
        Conversation.Channel.SLACK,
        Conversation.Channel.SMS,
    }
)
STREAM_EDIT_CHANNELS = frozenset({Conversation.Channel.TELEGRAM, Conversation.Channel.SLACK})

DELIVER_TASK = "conversations.channel_deliver"
STREAM_FOLLOW_TASK = "conversations.channel_stream_follow"

_VISIBLE_ROLES = frozenset({Message.Role.ASSISTANT, Message.Role.AGENT, Message.Role.SYSTEM})


def _send(task_name: str, *args: object) -> None:
    current_app.send_task(task_name, args=list(args))


def delivery_enqueue(delivery_id: int) -> None:
    """Queue the sending of an outbox row (call after commit)."""
    _send(DELIVER_TASK, delivery_id)


def message_outbound_queue(*, conversation: Conversation, message: Message) -> None:
    """Inside the caller's transaction: the outbox row of a message the visitor should see on
    the conversation's channel, sent after commit. Nothing for the widget and the API, for the
    visitor's own messages, or for a reply that produced no text."""
    if conversation.channel not in MESSAGE_CHANNELS or conversation.channel_account_id is None:
        return
    if message.role not in _VISIBLE_ROLES or message.status != Message.Status.COMPLETE:
        return
    if not message.text.strip():
        return
    delivery, created = OutboundDelivery.objects.get_or_create(
        message=message,
        channel_account_id=conversation.channel_account_id,
        defaults={"tenant_id": conversation.tenant_id, "conversation": conversation},
    )
    if created:
        transaction.on_commit(lambda: delivery_enqueue(delivery.pk))


def reply_stream_follow(*, conversation: Conversation, job_id: int) -> None:
    """Inside the caller's transaction: on a channel that shows replies as they form, a
    follower for the reply job, started after commit."""
    if conversation.channel in STREAM_EDIT_CHANNELS and conversation.channel_account_id:
        transaction.on_commit(lambda: _send(STREAM_FOLLOW_TASK, job_id))
