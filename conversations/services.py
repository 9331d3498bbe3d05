"""Writes for conversations: visitors arriving, messages posted, replies queued.

Every function here is the one way in for its change: keyword arguments, one transaction,
broadcast and job enqueue only after commit.
"""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from django.db import IntegrityError, models, transaction

from conversations import jobs
from conversations.assistant_modes import person_first_wait_begin
from conversations.audit_trail import conversation_event, visitor_actor
from conversations.consent_records import ConsentStatus, Decision, consent_record_write
from conversations.handoff import asks_for_a_person, conversation_request_agent
from conversations.messages import conversation_changed, message_append
from conversations.models import Contact, Conversation, Message
from conversations.selectors import (
    VisitorAccess,
    VisitorRefused,
    access_conversation_for_identified_visitor,
    access_conversation_for_visitor,
    message_by_client_id,
)
from conversations.visitors import visitor_token_for
from supportbot.compliance.encryption import blind_index
from supportbot.tenants.identity import VerifiedIdentity
from supportbot.tenants.models import Tenant

M = TypeVar("M", bound=models.Model)


@dataclass(frozen=True)
class VisitorSession:
    """A visitor's widget session. `contact` and `conversation` may not be stored yet (a hello
    stores nothing): `visitor_conversation_store` creates them with the first message."""

    tenant: Tenant
    contact: Contact
    conversation: Conversation
    visitor_token: str

    @property
    def stored(self) -> bool:
        """False while the conversation exists only in this session (before its first message)."""
        return not self.conversation._state.adding


def visitor_session_open(
    *,
    tenant: Tenant,
    visitor_token: str | None,
    conversation_id: str | None,
    locale: str = "",
    identity: VerifiedIdentity | None = None,
) -> VisitorSession:
    """Find the visitor and their conversation for a widget `hello`, storing nothing.

    A new visitor (or one whose token expired) gets ids minted here, in memory, and a token
    carrying them; the rows are created with their first message (visitor_conversation_store).
    Every session gets a freshly signed token (a sliding expiry). A token that is not genuine or
    not this tenant's, or a conversation that is not this visitor's, raises VisitorRefused (see
    access_conversation_for_visitor). With a verified `identity`, the visitor is the tenant's
    contact of that identity (see identified_session_open).
    """
    if identity is not None:
        return identified_session_open(
            tenant=tenant,
            visitor_token=visitor_token,
            conversation_id=conversation_id,
            locale=locale,
            identity=identity,
        )
    access = access_conversation_for_visitor(
        tenant=tenant, visitor_token=visitor_token, conversation_id=conversation_id
    )
    return _session_from_access(tenant=tenant, access=access, locale=locale)


def _session_from_access(
    *, tenant: Tenant, access: VisitorAccess, locale: str, contact: Contact | None = None
) -> VisitorSession:
    """The session of `access`: what is not stored yet is made in memory, under the ids its
    token carries, and the token is signed afresh (a sliding expiry)."""
    contact = (
        contact
        or access.contact
        or Contact(id=access.contact_id or uuid.uuid4(), tenant=tenant, locale=locale[:35])
    )
    conversation = access.conversation or Conversation(
        id=access.pending_conversation_id or uuid.uuid4(),
        tenant=tenant,
        contact=contact,
        channel=Conversation.Channel.WIDGET,
    )
    conversation.contact = contact
    return VisitorSession(
        tenant=tenant,
        contact=contact,
        conversation=conversation,
        visitor_token=visitor_token_for(
            tenant_id=tenant.pk,
            contact_id=contact.pk,
            conversation_id=conversation.pk,
            external_id=contact.external_id,
        ),
    )


def _insert_or_get(model: type[M], *, pk: object, fields: dict[str, Any]) -> tuple[M, bool]:
    """The row `pk` of `model`, inserted with `fields` unless another socket stored it first:
    `get_or_create` for a primary key that is almost always new (the session made it up), so
    the INSERT comes first and the SELECT only after a conflict."""
    try:
        with transaction.atomic():
            return model._default_manager.create(pk=pk, **fields), True
    except IntegrityError:
        stored = model._default_manager.filter(pk=pk).first()
        if stored is None:
            raise
        return stored, False


def visitor_contact_store(*, contact: Contact) -> None:
    """Create a session's contact row, inside the caller's transaction, if it is not stored yet
    (the visitor's first message or consent).

    Idempotent, racing sockets included: an anonymous contact is decided by its primary key, a
    verified one by its identity (another device may have stored it first: the session then
    takes that row's id). A row under this id of another tenant raises VisitorRefused.
    """
    if not contact._state.adding:
        return
    if contact.external_id:
        stored, _ = Contact.objects.get_or_create(
            tenant_id=contact.tenant_id,
            external_id_index=blind_index(
                contact.tenant_id, contact.external_id, kind="external_id"
            ),
            defaults={
                "id": contact.pk,
                "external_id": contact.external_id,
                "email": contact.email,
                "name": contact.name,
                "locale": contact.locale,
            },
        )
        contact.id = stored.id
    else:
        stored, _ = _insert_or_get(
            Contact,
            pk=contact.pk,
            fields={"tenant_id": contact.tenant_id, "locale": contact.locale},
        )
    if stored.tenant_id != contact.tenant_id:
        raise VisitorRefused("conversation refused")
    contact._state.adding = False


def visitor_conversation_store(*, conversation: Conversation) -> bool:
    """Create a session's contact and conversation rows, inside the caller's transaction, if
    they are not stored yet: True when this call created the conversation.

    Idempotent, racing sockets included (the primary keys decide: the loser reads the winner's
    rows). Rows under these ids that are not this visitor's raise VisitorRefused.
    """
    if not conversation._state.adding:
        return False
    contact = conversation.contact
    contact_adding = contact._state.adding
    try:
        visitor_contact_store(contact=contact)
    except VisitorRefused:
        contact._state.adding = contact_adding
        raise
    conversation.contact = contact
    stored, created = _insert_or_get(
        Conversation,
        pk=conversation.pk,
        fields={
            "tenant_id": conversation.tenant_id,
            "contact_id": contact.pk,
            "channel": conversation.channel,
        },
    )
    if (stored.tenant_id, stored.contact_id) != (conversation.tenant_id, contact.pk):
        raise VisitorRefused("conversation refused")
    conversation.status = stored.status
    conversation.last_seq = stored.last_seq
    conversation.created_at = stored.created_at
    conversation._state.adding = False
    return created


@contextmanager
def _first_write(conversation: Conversation) -> Iterator[None]:
    """Around a transaction that may store the conversation: if it fails, the session again
    treats the conversation as not stored (its rows were rolled back with it)."""
    contact_adding, adding = conversation.contact._state.adding, conversation._state.adding
    try:
        yield
    except BaseException:
        conversation.contact._state.adding, conversation._state.adding = contact_adding, adding
        raise


def visitor_request_agent(*, conversation: Conversation) -> bool:
    """The visitor asked for a person (`handoff.request`): their first state change may be this
    one, so the conversation is stored first."""
    with _first_write(conversation), transaction.atomic():
        visitor_conversation_store(conversation=conversation)
        return conversation_request_agent(
            conversation_id=conversation.pk, reason="The visitor asked for a person."
        )


def identified_session_open(
    *,
    tenant: Tenant,
    visitor_token: str | None,
    conversation_id: str | None,
    locale: str,
    identity: VerifiedIdentity,
) -> VisitorSession:
    """The session of a verified visitor: their contact (found by `sub`) on any device, and
    their newest open conversation (or a new one, stored with its first message).

    Like an anonymous visitor's, a new verified contact is stored only when the visitor acts
    (their first message or consent: visitor_contact_store); a stored one takes the identity's
    newest email and name. The token returned is always the verified contact's own (an
    anonymous visitor's token is replaced).
    """
    access = access_conversation_for_identified_visitor(
        tenant=tenant,
        visitor_token=visitor_token,
        conversation_id=conversation_id,
        external_id=identity.external_id,
    )
    if access.contact is not None:
        contact = contact_for_identity(
            tenant=tenant, contact=access.contact, identity=identity, locale=locale
        )
    else:
        contact = Contact(
            id=access.contact_id or uuid.uuid4(),
            tenant=tenant,
            external_id=identity.external_id,
            email=identity.email,
            name=identity.name,
            locale=locale[:35],
        )
    return _session_from_access(tenant=tenant, access=access, locale=locale, contact=contact)


def contact_for_identity(
    *, tenant: Tenant, contact: Contact | None, identity: VerifiedIdentity, locale: str = ""
) -> Contact:
    """The verified contact of `identity`, created when new; the email and name it carries
    (claims the token holds) replace the stored ones.

    Two devices arriving at once with a new identity: the unique (tenant, external_id)
    constraint lets one insert win and the other reads it.
    """
    if contact is None:
        try:
            with transaction.atomic():
                return Contact.objects.create(
                    tenant=tenant,
                    external_id=identity.external_id,
                    email=identity.email,
                    name=identity.name,
                    locale=locale[:35],
                )
        except IntegrityError:
            contact = Contact.objects.get(
                tenant=tenant,
                external_id_index=blind_index(tenant.pk, identity.external_id, kind="external_id"),
            )
    changed = {
        field: value
        for field, value in (("email", identity.email), ("name", identity.name))
        if value and getattr(contact, field) != value
    }
    if changed:
        for field, value in changed.items():
            setattr(contact, field, value)
        contact.save(update_fields=[*changed, "last_seen_at"])
    return contact


@dataclass(frozen=True)
class PostedMessage:
    message: Message
    created: bool  # False when the client_id was seen before (a resend)


def message_post_from_visitor(
    *,
    conversation: Conversation,
    client_id: str,
    text: str,
    sender: str | None = None,
    route: str | None = None,
    consent: ConsentStatus | None = None,
    answer: bool = True,
) -> PostedMessage:
    """Persist a visitor's message once per `client_id` and queue the assistant's reply.

    A `client_id` seen before returns the message stored the first time (the unique
    constraint decides, so two sockets racing with the same id get the same answer). A
    visitor asking for a person gets one instead of a reply. A conversation not stored yet
    (the visitor's first message) is created in the same transaction. The tenant's
    conversation mode (and the first message's `route`) may have a person answer first (see
    assistant_modes). Under legitimate interest, the session's `consent` notice is recorded
    with the visitor's first message. Without `answer` (a message channel's attachment-only
    message: nothing the assistant can read) the message is stored for agents and not routed.
    """
    notice_due = consent is not None and consent.notice_due
    try:
        with _first_write(conversation), transaction.atomic():
            visitor_conversation_store(conversation=conversation)
            _consent_notice_store(conversation, consent if notice_due else None)
            message = message_append(
                conversation=conversation,
                role=Message.Role.USER,
                text=text,
                client_id=client_id,
                sender=sender,
            )
            if conversation.status == Conversation.Status.CLOSED:
                _conversation_reopen(conversation)
            if answer:
                _visitor_message_route(conversation=conversation, message=message, route=route)
            conversation_event(
                conversation,
                action="message.visitor",
                actor=visitor_actor(conversation),
                details={"message_id": str(message.pk), "seq": message.seq, "chars": len(text)},
            )
    except IntegrityError:
        if consent is not None and notice_due:
            consent.recorded = False  # rolled back with the message
        # The same client_id raced in on another socket: that insert won.
        existing = message_by_client_id(conversation=conversation, client_id=client_id)
        if existing is None:
            raise
        return PostedMessage(message=existing, created=False)
    return PostedMessage(message=message, created=True)


def _visitor_message_route(
    *, conversation: Conversation, message: Message, route: str | None
) -> None:
    """Who answers a visitor's message while the assistant has the conversation: a person
    when they ask for one, else the assistant's reply (or the person-first wait)."""
    if conversation.status != Conversation.Status.BOT:
        return
    if asks_for_a_person(message.text):
        # After commit, in its own transaction: it locks reply jobs before the conversation,
        # which the caller's transaction already holds.
        transaction.on_commit(
            partial(
                conversation_request_agent,
                conversation_id=conversation.pk,
                reason="The visitor asked for a person.",
            ),
            robust=True,
        )
    elif not person_first_wait_begin(conversation=conversation, trigger=message, route=route):
        jobs.reply_job_queue(conversation=conversation, trigger=message)


def _consent_notice_store(conversation: Conversation, consent: ConsentStatus | None) -> None:
    """Under legitimate interest: the record of the notice the visitor was shown, stored with
    their first message (on the conversation's channel: the widget, or a message channel)."""
    if consent is not None:
        consent_record_write(
            contact=conversation.contact,
            status=consent,
            decision=Decision.NOTICE,
            channel=conversation.channel,
        )


def _conversation_reopen(conversation: Conversation) -> None:
    """A visitor writing into a closed conversation reopens it with the assistant."""
    conversation.status = Conversation.Status.BOT
    conversation.assigned_agent = None
    conversation.save(update_fields=["status", "assigned_agent", "updated_at"])
    conversation_changed(conversation)
