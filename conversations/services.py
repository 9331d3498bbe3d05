"""Writes for conversations: visitors arriving, messages posted, replies queued.

Every function here is the one way in for its change: keyword arguments, one transaction,
broadcast and job enqueue only after commit.
"""

from dataclasses import dataclass
from functools import partial
from uuid import UUID

from django.db import IntegrityError, transaction

from conversations import jobs
from conversations.handoff import asks_for_a_person, conversation_request_agent
from conversations.messages import conversation_changed, message_append
from conversations.models import Contact, Conversation, Message, ReplyJob
from conversations.visitors import contact_id_from_token, visitor_token_for
from supportbot.tenants.models import Tenant


class AccessDenied(Exception):
    """The visitor may not open what it asked for (forged token, another tenant's conversation)."""


@dataclass(frozen=True)
class VisitorSession:
    tenant: Tenant
    contact: Contact
    conversation: Conversation
    visitor_token: str


def _parse_uuid(value: object) -> UUID | None:
    if not isinstance(value, str):
        return None
    try:
        return UUID(value)
    except ValueError:
        return None


@transaction.atomic
def visitor_session_open(
    *,
    tenant: Tenant,
    visitor_token: str | None,
    conversation_id: str | None,
    locale: str = "",
) -> VisitorSession:
    """Find (or create) the visitor and their conversation for a widget `hello`.

    A token that is not genuine or not this tenant's, or a conversation that is not this
    visitor's, raises AccessDenied: a client never learns whether another tenant's ids exist.
    """
    contact: Contact | None = None
    if visitor_token:
        contact_id = contact_id_from_token(visitor_token, tenant_id=tenant.pk)
        if contact_id is None:
            raise AccessDenied("visitor token refused")
        contact = Contact.objects.filter(pk=contact_id, tenant=tenant).first()
        if contact is None:
            raise AccessDenied("visitor unknown")
    elif conversation_id:
        raise AccessDenied("a conversation needs the visitor token it was opened with")

    if contact is None:
        contact = Contact.objects.create(tenant=tenant, locale=locale[:35])

    conversation: Conversation | None = None
    if conversation_id:
        conversation_uuid = _parse_uuid(conversation_id)
        conversation = (
            Conversation.objects.filter(
                pk=conversation_uuid, tenant=tenant, contact=contact
            ).first()
            if conversation_uuid
            else None
        )
        if conversation is None:
            raise AccessDenied("conversation refused")
    if conversation is None:
        conversation = (
            Conversation.objects.filter(tenant=tenant, contact=contact)
            .exclude(status=Conversation.Status.CLOSED)
            .order_by("-created_at")
            .first()
        )
    if conversation is None:
        conversation = Conversation.objects.create(
            tenant=tenant, contact=contact, channel=Conversation.Channel.WIDGET
        )
    return VisitorSession(
        tenant=tenant,
        contact=contact,
        conversation=conversation,
        visitor_token=visitor_token
        or visitor_token_for(tenant_id=tenant.pk, contact_id=contact.pk),
    )


@dataclass(frozen=True)
class PostedMessage:
    message: Message
    created: bool  # False when the client_id was seen before (a resend)


def message_post_from_visitor(
    *, conversation: Conversation, client_id: str, text: str, sender: str | None = None
) -> PostedMessage:
    """Persist a visitor's message once per `client_id` and queue the assistant's reply.

    A `client_id` seen before returns the message stored the first time (the unique
    constraint decides, so two sockets racing with the same id get the same answer). A
    visitor asking for a person gets one instead of a reply.
    """
    try:
        with transaction.atomic():
            message = message_append(
                conversation=conversation,
                role=Message.Role.USER,
                text=text,
                client_id=client_id,
                sender=sender,
            )
            if conversation.status == Conversation.Status.CLOSED:
                _conversation_reopen(conversation)
            if conversation.status == Conversation.Status.BOT:
                if asks_for_a_person(text):
                    # After commit, in its own transaction: it locks reply jobs before the
                    # conversation, which this transaction already holds.
                    transaction.on_commit(
                        partial(
                            conversation_request_agent,
                            conversation_id=conversation.pk,
                            reason="The visitor asked for a person.",
                        ),
                        robust=True,
                    )
                else:
                    reply_job_queue(conversation=conversation, trigger=message)
    except IntegrityError:
        # The same client_id raced in on another socket: that insert won.
        existing = Message.objects.get(conversation=conversation, client_id=client_id)
        return PostedMessage(message=existing, created=False)
    return PostedMessage(message=message, created=True)


def _conversation_reopen(conversation: Conversation) -> None:
    """A visitor writing into a closed conversation reopens it with the assistant."""
    conversation.status = Conversation.Status.BOT
    conversation.assigned_agent = None
    conversation.save(update_fields=["status", "assigned_agent", "updated_at"])
    conversation_changed(conversation)


def reply_job_queue(*, conversation: Conversation, trigger: Message) -> ReplyJob:
    """Create the state row of a reply and enqueue its job after commit."""
    job = ReplyJob.objects.create(
        tenant_id=conversation.tenant_id, conversation=conversation, trigger=trigger
    )
    transaction.on_commit(lambda: jobs.reply_job_enqueue(job.pk))
    return job
