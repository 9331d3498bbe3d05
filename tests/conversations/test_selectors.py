"""The selectors: where a visitor's or an agent's id becomes a conversation, and the one read of
a conversation's messages that every catch-up and the admin use."""

import uuid
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from conversations.models import Contact, Conversation, Message
from conversations.selectors import (
    ConversationNotFound,
    NotAnAgent,
    VisitorRefused,
    access_agent,
    access_conversation_for_agent,
    access_conversation_for_visitor,
    conversation_resume_seq,
    conversation_transcript,
    conversation_transcript_page,
    message_by_client_id,
    tenant_rows_for_user,
)
from conversations.visitors import visitor_token_for
from supportbot.tenants.models import TenantMembership

pytestmark = pytest.mark.django_db


def _visitor(tenant: Any) -> tuple[Contact, str]:
    contact = Contact.objects.create(tenant=tenant)
    return contact, visitor_token_for(tenant_id=tenant.pk, contact_id=contact.pk)


def _staff(username: str, *, tenant: Any = None, **fields: Any) -> Any:
    user = get_user_model().objects.create_user(
        username=username, password="pw-not-used", is_staff=True, **fields
    )
    if tenant is not None:
        TenantMembership.objects.create(tenant=tenant, user=user)
    return user


# --- visitors ---------------------------------------------------------------------------------


def test_a_visitor_without_a_token_is_new(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    access = access_conversation_for_visitor(
        tenant=tenant, visitor_token=None, conversation_id=None
    )
    assert access.contact is None
    assert access.conversation is None
    with pytest.raises(VisitorRefused):
        access_conversation_for_visitor(
            tenant=tenant, visitor_token=None, conversation_id=str(uuid.uuid4())
        )


def test_a_visitor_resumes_their_newest_open_conversation(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    contact, token = _visitor(tenant)
    older = Conversation.objects.create(tenant=tenant, contact=contact)
    Conversation.objects.create(tenant=tenant, contact=contact, status="closed")
    access = access_conversation_for_visitor(tenant=tenant, visitor_token=token, conversation_id="")
    assert access.contact == contact
    assert access.conversation == older
    closed_only, closed_token = _visitor(tenant)
    closed = Conversation.objects.create(tenant=tenant, contact=closed_only, status="closed")
    access = access_conversation_for_visitor(
        tenant=tenant, visitor_token=closed_token, conversation_id=None
    )
    assert access.contact == closed_only
    assert access.conversation is None
    # Asked for by id, a closed conversation is still the visitor's (writing reopens it).
    access = access_conversation_for_visitor(
        tenant=tenant, visitor_token=closed_token, conversation_id=str(closed.pk)
    )
    assert access.conversation == closed


def test_forged_foreign_and_mismatched_ids_are_refused(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    other_tenant, _ = make_tenant()
    contact, token = _visitor(tenant)
    _, other_token = _visitor(other_tenant)
    someone_else, _ = _visitor(tenant)
    theirs = Conversation.objects.create(tenant=tenant, contact=someone_else)
    refused = [
        (token + "x", None),  # not genuine
        (other_token, None),  # another tenant's visitor
        (token, str(theirs.pk)),  # another visitor's conversation
        (token, "not-a-uuid"),
        (token, str(uuid.uuid4())),
    ]
    for visitor_token, conversation_id in refused:
        with pytest.raises(VisitorRefused):
            access_conversation_for_visitor(
                tenant=tenant, visitor_token=visitor_token, conversation_id=conversation_id
            )
    # A genuine token whose contact is not stored (never was, or was erased) names a visitor
    # whose rows come with their first message: no conversation, none of anyone else's.
    Contact.objects.filter(pk=contact.pk).delete()
    access = access_conversation_for_visitor(
        tenant=tenant, visitor_token=token, conversation_id=None
    )
    assert (access.contact, access.conversation, access.contact_id) == (None, None, contact.pk)
    with pytest.raises(VisitorRefused):
        access_conversation_for_visitor(
            tenant=tenant, visitor_token=token, conversation_id=str(theirs.pk)
        )


# --- agents -----------------------------------------------------------------------------------


def test_agents_reach_only_their_tenants_conversations(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    other_tenant, _ = make_tenant()
    mine = Conversation.objects.create(tenant=tenant, contact=_visitor(tenant)[0])
    theirs = Conversation.objects.create(tenant=other_tenant, contact=_visitor(other_tenant)[0])
    agent = _staff("ana", tenant=tenant)
    assert access_conversation_for_agent(user=agent, conversation_id=str(mine.pk)) == mine
    assert access_conversation_for_agent(user=agent, conversation_id=mine.pk) == mine
    for conversation_id in (str(theirs.pk), str(uuid.uuid4()), "not-a-uuid"):
        with pytest.raises(ConversationNotFound):
            access_conversation_for_agent(user=agent, conversation_id=conversation_id)
    root = get_user_model().objects.create_superuser(username="root", password="pw-not-used")
    assert access_conversation_for_agent(user=root, conversation_id=theirs.pk) == theirs

    listed = tenant_rows_for_user(Conversation.objects.all(), user=agent)
    assert list(listed) == [mine]
    assert set(tenant_rows_for_user(Conversation.objects.all(), user=root)) == {mine, theirs}
    nobody = _staff("no-membership")
    assert not tenant_rows_for_user(Conversation.objects.all(), user=nobody).exists()


def test_who_is_not_an_active_staff_member_is_not_an_agent(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    conversation = Conversation.objects.create(tenant=tenant, contact=_visitor(tenant)[0])
    member = _staff("member", tenant=tenant)
    not_staff = _staff("not-staff", tenant=tenant)
    not_staff.is_staff = False
    not_staff.save()
    inactive = _staff("inactive", tenant=tenant, is_active=False)
    for user in (not_staff, inactive, None):
        with pytest.raises(NotAnAgent):
            access_conversation_for_agent(user=user, conversation_id=conversation.pk)
        with pytest.raises(NotAnAgent):
            access_agent(user)
    assert access_agent(member) == member
    # The user as stored now decides, not the instance a socket kept since it opened.
    get_user_model().objects.filter(pk=member.pk).update(is_staff=False)
    assert member.is_staff
    with pytest.raises(NotAnAgent):
        access_agent(member)


# --- messages ---------------------------------------------------------------------------------


def test_transcript_splits_out_replies_still_streaming(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    conversation = Conversation.objects.create(tenant=tenant, contact=_visitor(tenant)[0])
    rows = [
        ("user", "complete", "q1"),
        ("assistant", "failed", "a1"),
        ("user", "complete", "q2"),
        ("assistant", "streaming", ""),
    ]
    for seq, (role, status, client_id) in enumerate(rows, start=1):
        Message.objects.create(
            tenant=tenant,
            conversation=conversation,
            seq=seq,
            role=role,
            status=status,
            text=f"text {seq}",
            client_id=client_id or None,
        )
    Conversation.objects.filter(pk=conversation.pk).update(last_seq=4)

    transcript = conversation_transcript(conversation.pk)
    assert [m.seq for m in transcript.messages] == [1, 2, 3, 4]
    assert [m.seq for m in transcript.settled] == [1, 2, 3]
    assert [m.seq for m in transcript.streaming] == [4]
    assert transcript.conversation.last_seq == 4
    after = conversation_transcript(conversation.pk, after_seq=2)
    assert [m.seq for m in after.settled] == [3]
    assert [m.seq for m in after.streaming] == [4]
    assert conversation_transcript(conversation.pk, after_seq=-5).messages == transcript.messages

    resent = message_by_client_id(conversation=conversation, client_id="q2")
    assert resent is not None
    assert resent.seq == 3
    assert message_by_client_id(conversation=conversation, client_id="unknown") is None


def _conversation_with_messages(tenant: Any, count: int, *, streaming: int = 0) -> Conversation:
    """A conversation of `count` messages, the last `streaming` of them replies still streaming."""
    conversation = Conversation.objects.create(tenant=tenant, contact=_visitor(tenant)[0])
    Message.objects.bulk_create(
        Message(
            tenant=tenant,
            conversation=conversation,
            seq=seq,
            role="user" if seq % 2 else "assistant",
            status="streaming" if seq > count - streaming else "complete",
            text=f"text {seq}",
        )
        for seq in range(1, count + 1)
    )
    Conversation.objects.filter(pk=conversation.pk).update(last_seq=count)
    conversation.refresh_from_db()
    return conversation


def test_transcript_with_a_limit_keeps_the_newest_and_says_so(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    conversation = _conversation_with_messages(tenant, 10, streaming=1)
    capped = conversation_transcript(conversation.pk, limit=4)
    assert [m.seq for m in capped.messages] == [7, 8, 9, 10]
    assert capped.truncated
    assert [m.seq for m in capped.streaming] == [10]
    exactly = conversation_transcript(conversation.pk, after_seq=6, limit=4)
    assert [m.seq for m in exactly.messages] == [7, 8, 9, 10]
    assert not exactly.truncated
    assert not conversation_transcript(conversation.pk, after_seq=8, limit=4).truncated
    everything = conversation_transcript(conversation.pk)
    assert len(everything.messages) == 10
    assert not everything.truncated
    # A client's absurd last_seq is "nothing missed", not a query Postgres refuses.
    assert conversation_transcript(conversation.pk, after_seq=10**30, limit=4).messages == []


def test_transcript_pages_start_from_the_newest(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    conversation = _conversation_with_messages(tenant, 7)
    newest = conversation_transcript_page(conversation, page=None, per_page=3)
    assert [m.seq for m in newest.messages] == [5, 6, 7]
    assert (newest.number, newest.pages, newest.newer, newest.older) == (1, 3, None, 2)
    middle = conversation_transcript_page(conversation, page="2", per_page=3)
    assert [m.seq for m in middle.messages] == [2, 3, 4]
    assert (middle.newer, middle.older) == (1, 3)
    oldest = conversation_transcript_page(conversation, page=3, per_page=3)
    assert [m.seq for m in oldest.messages] == [1]
    assert (oldest.newer, oldest.older) == (2, None)
    assert conversation_transcript_page(conversation, page="x", per_page=3).number == 1
    assert conversation_transcript_page(conversation, page=99, per_page=3).number == 3
    empty = Conversation.objects.create(tenant=tenant, contact=_visitor(tenant)[0])
    nothing = conversation_transcript_page(empty, page=None, per_page=3)
    assert (nothing.messages, nothing.pages, nothing.older) == ([], 1, None)


def test_resume_seq_is_below_the_oldest_reply_still_streaming(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    assert conversation_resume_seq(_conversation_with_messages(tenant, 5)) == 5
    assert conversation_resume_seq(_conversation_with_messages(tenant, 6, streaming=2)) == 4
