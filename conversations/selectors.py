"""Reads for conversations. A user-supplied id becomes a Conversation only here.

Each `access_*` function checks tenant and permission and raises an AccessRefused error (never
an HTTP or websocket one): the adapters map them to close codes, error frames and statuses. An
id that does not exist and one of another tenant are refused alike, so a client never learns
whether another tenant's ids exist.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, TypeGuard, TypeVar
from uuid import UUID

from django.conf import settings
from django.contrib.auth import SESSION_KEY, get_user_model
from django.core.paginator import Paginator
from django.db.models import Model, Q, QuerySet

from conversations.erased import erased_any
from conversations.models import Contact, Conversation, Message
from conversations.visitors import (
    TokenExpired,
    VisitorClaims,
    identity_digest,
    visitor_token_read,
)
from supportbot.compliance.encryption import IndexKind, blind_index, blind_index_lookups
from supportbot.tenants.models import Tenant
from supportbot.tenants.roles import Capability, rows_for_user, user_can_anywhere

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User

    AnyUser = User | AnonymousUser | None

_Row = TypeVar("_Row", bound=Model)


class AccessRefused(Exception):
    """The caller may not have what it asked for."""


class VisitorRefused(AccessRefused):
    """A visitor token that is not genuine or not this tenant's, or a conversation that is not
    this visitor's."""


class VisitorErased(AccessRefused):
    """The token's visitor, or the conversation named, was erased: the widget is told
    (`erased`) and starts afresh."""

    def __init__(self, conversation_id: str) -> None:
        super().__init__("visitor erased")
        self.conversation_id = conversation_id


class NotAnAgent(AccessRefused):
    """The user is not an active staff member."""


class ConversationNotFound(AccessRefused):
    """No such conversation, or one of a tenant the user does not work for."""


def _parse_uuid(value: object) -> UUID | None:
    if isinstance(value, UUID):
        return value
    if not isinstance(value, str):
        return None
    try:
        return UUID(value)
    except ValueError:
        return None


# --- visitors ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class VisitorAccess:
    """Who a widget `hello` is, and what it resumes. Rows are created only with the visitor's
    first message, so a genuine token may name ids that are not stored (yet)."""

    contact: Contact | None  # the stored contact; None: not stored (a new visitor, or pending)
    conversation: Conversation | None  # the stored conversation resumed; None: none open
    contact_id: UUID | None = None  # the token's contact, stored or not; None: a new visitor
    pending_conversation_id: UUID | None = None  # the token's conversation, not stored yet


def access_conversation_for_visitor(
    *, tenant: Tenant, visitor_token: str | None, conversation_id: str | None
) -> VisitorAccess:
    """The visitor a widget `hello` names, and the conversation it resumes.

    Without `conversation_id`, the visitor's newest conversation that is not closed, else the
    one their token was handed out with if it was never stored. A conversation id that is not
    stored is accepted only as the token's own. A token that is not genuine or not this
    tenant's, a conversation that is not this visitor's, or the token of a verified visitor
    (who must present their identity again) raises VisitorRefused; an expired token is a new
    visitor; the token of an erased visitor or conversation raises VisitorErased.
    """
    if not visitor_token:
        if conversation_id:
            raise VisitorRefused("a conversation needs the visitor token it was opened with")
        return VisitorAccess(contact=None, conversation=None)
    claims = _visitor_claims(tenant=tenant, visitor_token=visitor_token)
    if claims is None:
        return VisitorAccess(contact=None, conversation=None)
    _refuse_erased(tenant=tenant, claims=claims, conversation_id=conversation_id)
    contact = _token_contact(tenant=tenant, claims=claims)
    if claims.identity or (contact is not None and contact.external_id):
        raise VisitorRefused("a verified visitor's token needs their identity")
    return _visitor_resume(
        tenant=tenant, claims=claims, contact=contact, conversation_id=conversation_id
    )


def access_conversation_for_identified_visitor(
    *, tenant: Tenant, visitor_token: str | None, conversation_id: str | None, external_id: str
) -> VisitorAccess:
    """The verified visitor `external_id` (the identity's `sub`) and the conversation to resume.

    Their contact may not exist yet (contact None). A visitor token of this same person resumes
    as usual; one of another verified person raises VisitorRefused (an identity never changes
    under a token); an anonymous visitor's token is left behind: the session switches to the
    verified contact and its newest open conversation (the anonymous conversation stays with
    the anonymous contact).
    """
    if not visitor_token and conversation_id:
        raise VisitorRefused("a conversation needs the visitor token it was opened with")
    claims = _visitor_claims(tenant=tenant, visitor_token=visitor_token) if visitor_token else None
    if claims is not None:
        _refuse_erased(tenant=tenant, claims=claims, conversation_id=conversation_id)
    token_contact = _token_contact(tenant=tenant, claims=claims) if claims else None
    contact = Contact.objects.filter(
        tenant=tenant, external_id_index=blind_index(tenant.pk, external_id, kind="external_id")
    ).first()
    if claims is not None and (claims.identity or (token_contact and token_contact.external_id)):
        if claims.identity not in (None, identity_digest(tenant.pk, external_id)) or (
            token_contact is not None and token_contact.external_id != external_id
        ):
            raise VisitorRefused("the identity differs from the visitor token's")
        if token_contact is not None or contact is None:
            # Their stored contact, or one not stored yet (under the token's ids).
            return _visitor_resume(
                tenant=tenant,
                claims=claims,
                contact=token_contact,
                conversation_id=conversation_id,
            )
    if contact is None:
        return VisitorAccess(contact=None, conversation=None)
    newest_open = (
        Conversation.objects.filter(tenant=tenant, contact=contact)
        .exclude(status=Conversation.Status.CLOSED)
        .order_by("-created_at")
        .first()
    )
    return VisitorAccess(contact=contact, conversation=newest_open, contact_id=contact.pk)


def _visitor_claims(*, tenant: Tenant, visitor_token: str) -> VisitorClaims | None:
    """The token's claims; None when it expired (a new visitor); VisitorRefused when it is
    not genuine or not this tenant's."""
    try:
        claims = visitor_token_read(visitor_token, tenant_id=tenant.pk)
    except TokenExpired:
        return None
    if claims is None:
        raise VisitorRefused("visitor token refused")
    return claims


def _refuse_erased(*, tenant: Tenant, claims: VisitorClaims, conversation_id: str | None) -> None:
    """VisitorErased when the token's contact or the conversation (the hello's, else the
    token's) was erased."""
    conversation = conversation_id or str(claims.conversation_id or "")
    if erased_any(tenant_id=tenant.pk, contact_id=claims.contact_id, conversation_id=conversation):
        raise VisitorErased(conversation)


def _token_contact(*, tenant: Tenant, claims: VisitorClaims) -> Contact | None:
    """The token's contact if it is stored (VisitorRefused when it is another tenant's)."""
    contact = Contact.objects.filter(pk=claims.contact_id).first()
    if contact is not None and contact.tenant_id != tenant.pk:
        raise VisitorRefused("visitor unknown")
    return contact


def _visitor_resume(
    *, tenant: Tenant, claims: VisitorClaims, contact: Contact | None, conversation_id: str | None
) -> VisitorAccess:
    if not conversation_id:
        return _visitor_newest_open(tenant=tenant, claims=claims, contact=contact)
    conversation_uuid = _parse_uuid(conversation_id)
    stored = None
    if conversation_uuid is not None:
        stored = Conversation.objects.filter(pk=conversation_uuid).first()
    owner = (tenant.pk, claims.contact_id)
    if stored is not None and (stored.tenant_id, stored.contact_id) == owner:
        return VisitorAccess(contact=contact, conversation=stored, contact_id=claims.contact_id)
    if stored is None and conversation_uuid and conversation_uuid == claims.conversation_id:
        return VisitorAccess(
            contact=contact,
            conversation=None,
            contact_id=claims.contact_id,
            pending_conversation_id=conversation_uuid,
        )
    raise VisitorRefused("conversation refused")


def _visitor_newest_open(
    *, tenant: Tenant, claims: VisitorClaims, contact: Contact | None
) -> VisitorAccess:
    """The visitor's newest conversation that is not closed; else the token's own if it was
    never stored (two tabs of one new visitor share it)."""
    newest_open = (
        Conversation.objects.filter(tenant=tenant, contact_id=claims.contact_id)
        .exclude(status=Conversation.Status.CLOSED)
        .order_by("-created_at")
        .first()
    )
    pending = claims.conversation_id if newest_open is None else None
    if pending is not None and Conversation.objects.filter(pk=pending).exists():
        pending = None  # stored and closed since: the visitor starts a new one
    return VisitorAccess(
        contact=contact,
        conversation=newest_open,
        contact_id=claims.contact_id,
        pending_conversation_id=pending,
    )


# --- agents -----------------------------------------------------------------------------------


def _is_agent(user: AnyUser) -> TypeGuard[User]:
    return bool(
        getattr(user, "is_authenticated", False)
        and getattr(user, "is_active", False)
        and getattr(user, "is_staff", False)
    )


def tenant_rows_for_user(rows: QuerySet[_Row], *, user: AnyUser) -> QuerySet[_Row]:
    """The rows (of a model with a `tenant`) of the tenants where `user` may work on
    conversations (supportbot.tenants.roles): every tenant's for a superuser, none for anyone
    who is not an active staff member or whose roles there give no such right.

    The admin's lists and the agents' access both scope by this one rule.
    """
    return rows_for_user(rows, user=user, capability=Capability.CONVERSATIONS)


def access_agent(user: AnyUser, *, session_key: str | None = None) -> User:
    """The user as the database has them now, when they are an active staff member whose role
    lets them work on some tenant's conversations (an agent or tenant admin; a compliance
    officer is not an agent).

    A socket keeps the user it was opened by; staff or active flags and memberships may have
    changed since, and with `session_key` (the login session the socket was opened with) the
    user may have logged out since. NotAnAgent otherwise.
    """
    user_id = getattr(user, "pk", None)
    stored = get_user_model().objects.filter(pk=user_id).first() if user_id is not None else None
    if not _is_agent(stored) or not user_can_anywhere(stored, Capability.CONVERSATIONS):
        raise NotAnAgent("Only agents can work on conversations.")
    if session_key is not None and not _session_is_users(session_key, stored):
        raise NotAnAgent("The login session has ended.")
    return stored


def _session_is_users(session_key: str, user: User) -> bool:
    """True while the login session `session_key` exists and is still `user`'s."""
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    if not store.exists(session_key):
        return False
    return str(store.get(SESSION_KEY)) == str(user.pk)


def access_conversation_for_agent(*, user: AnyUser, conversation_id: UUID | str) -> Conversation:
    """The conversation, when `user` may work on it.

    NotAnAgent for a user who is not an active staff member; ConversationNotFound for an unknown
    id or a conversation of a tenant the user has no membership of.
    """
    if not _is_agent(user):
        raise NotAnAgent("Only staff members can work on conversations.")
    conversation_uuid = _parse_uuid(conversation_id)
    conversations = tenant_rows_for_user(
        Conversation.objects.select_related("tenant", "assigned_agent"), user=user
    )
    conversation = conversations.filter(pk=conversation_uuid).first() if conversation_uuid else None
    if conversation is None:
        raise ConversationNotFound("No such conversation.")
    return conversation


# --- messages of a conversation the caller already has access to ------------------------------


# The highest `seq` a row can hold (PositiveIntegerField): a client's larger `last_seq` means
# "nothing missed", never an out-of-range query.
_MAX_SEQ = 2**31 - 1


@dataclass(frozen=True)
class Transcript:
    conversation: Conversation  # as stored now, with its assigned agent
    messages: list[Message]  # the messages after the seq asked for (the newest `limit`), by seq
    truncated: bool = False  # older messages after the seq asked for were left out (the limit)

    @property
    def settled(self) -> list[Message]:
        """The messages whose text is final (complete or failed)."""
        return [m for m in self.messages if m.status != Message.Status.STREAMING]

    @property
    def streaming(self) -> list[Message]:
        """Replies still streaming: their text so far is in stream_state, not in the row."""
        return [m for m in self.messages if m.status == Message.Status.STREAMING]


def conversation_transcript(
    conversation_id: UUID, *, after_seq: int = 0, limit: int | None = None
) -> Transcript:
    """The conversation's messages with `seq > after_seq`, for a socket's catch-up: with a
    `limit`, only the newest `limit` of them (`truncated` says whether older ones were left out).
    The caller has checked access already (it holds a session or an access_* result).
    """
    conversation = Conversation.objects.select_related("assigned_agent").get(pk=conversation_id)
    rows = Message.objects.filter(
        conversation=conversation, seq__gt=min(max(after_seq, 0), _MAX_SEQ)
    ).select_related("author")
    if limit is None:
        return Transcript(conversation=conversation, messages=list(rows.order_by("seq")))
    newest = list(rows.order_by("-seq")[: max(limit, 0) + 1])
    return Transcript(
        conversation=conversation,
        messages=newest[:limit][::-1],
        truncated=len(newest) > limit,
    )


@dataclass(frozen=True)
class TranscriptPage:
    """One page of a conversation's transcript for the admin; page 1 holds the newest messages."""

    messages: list[Message]  # in `seq` order
    number: int
    pages: int

    @property
    def older(self) -> int | None:
        """The number of the page of older messages, if there is one."""
        return self.number + 1 if self.number < self.pages else None

    @property
    def newer(self) -> int | None:
        """The number of the page of newer messages, if there is one."""
        return self.number - 1 if self.number > 1 else None


def conversation_transcript_page(
    conversation: Conversation, *, page: int | str | None, per_page: int
) -> TranscriptPage:
    """Page `page` (1: the newest; a missing or invalid number reads as 1, one past the end as
    the last) of the conversation's messages, `per_page` to a page."""
    rows = (
        Message.objects.filter(conversation=conversation)
        .select_related("author")
        .prefetch_related("attachments")
    )
    paginator = Paginator(rows.order_by("-seq"), max(per_page, 1), allow_empty_first_page=True)
    current = paginator.get_page(page)
    return TranscriptPage(
        messages=list(current.object_list)[::-1],
        number=current.number,
        pages=paginator.num_pages,
    )


def conversation_resume_seq(conversation: Conversation) -> int:
    """Where a live view that shows every settled message resumes from: below the oldest reply
    still streaming (its final text arrives later), else the conversation's last `seq`."""
    oldest_streaming = (
        Message.objects.filter(conversation=conversation, status=Message.Status.STREAMING)
        .order_by("seq")
        .values_list("seq", flat=True)
        .first()
    )
    if oldest_streaming is None:
        return conversation.last_seq
    return oldest_streaming - 1


def message_by_client_id(*, conversation: Conversation, client_id: str) -> Message | None:
    """The visitor's message sent with `client_id`, when it was stored before (a resend)."""
    # By id: the conversation may be one this session has not seen stored yet.
    return Message.objects.filter(conversation_id=conversation.pk, client_id=client_id).first()


_CONTACT_INDEXES: tuple[tuple[IndexKind, str], ...] = (
    ("email", "email_index"),
    ("external_id", "external_id_index"),
)


def contacts_matching(tenant_ids: Iterable[int], term: str) -> Q:
    """Contacts of `tenant_ids` whose email (compared lower-cased) or verified identity `sub` is
    `term`, found through their blind indexes (the columns themselves are encrypted)."""
    tenant_ids = list(tenant_ids)
    matches = Q(pk__in=[])
    for kind, column in _CONTACT_INDEXES:
        for tenant_id, index in blind_index_lookups(tenant_ids, term, kind=kind).items():
            matches |= Q(tenant_id=tenant_id, **{column: index})
    return matches
