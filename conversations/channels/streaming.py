"""Showing a reply as it forms on Telegram and Slack: one message posted with the first text,
then edited, throttled within the platform's rate limits, until the reply is stored; the final
text is then delivered by the outbox (which edits that same message).

`reply_stream_follow_run` (the task `conversations.channel_stream_follow`, queued with the
reply job) shows the typing action, waits for the reply's text in the stream snapshot
(`stream_state`, written by the worker before every delta) to have been forming for one
`interval` (a quicker reply is delivered whole), posts it (`stream_open`), records
the provider's id of that message as an OUTBOUND `ChannelMessageRef` of the reply (the outbox
reads it as `Outgoing.stream_ref`), then edits it with the text so far at most once per the
adapter's `interval`, and only when the text changed, until the reply is no longer streaming.
An adapter with `streams_by_edit` sets `interval` to the seconds its platform allows between
edits of one message (1.0 when it has none); a 429's `retry_after` pauses the edits longer.

The race with the final delivery is settled by the reply's own row: the follower posts or edits
only while holding the reply message's row lock (`FOR NO KEY UPDATE`) and seeing it still
streaming. Storing the finished reply updates that row, so it waits for a post or an edit in
flight; the delivery is queued after that commit, so it always finds the ref and its edit is
the last. Once the reply is complete the follower posts and edits nothing.

An edit that fails (a 429, a timeout) is skipped, never retried: the next one, or the final
delivery, carries the text. No database connection is held while waiting.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from uuid import UUID

from django.db import connection, transaction

from conversations.channels.base import ChannelAdapter, DeliveryFailed, adapter_for
from conversations.models import (
    ChannelAccount,
    ChannelMessageRef,
    Conversation,
    Message,
    ReplyJob,
)
from conversations.reply.claim import connection_release
from conversations.stream_state import snapshot_read

logger = logging.getLogger(__name__)

FIRST_TEXT_WAIT_SECONDS = 120.0  # the reply's first text (a queued job, a slow model)
FOLLOW_SECONDS = 600.0  # the longest a reply is followed (the stream snapshot's lifetime)
POLL_SECONDS = 0.1
JOB_CHECK_SECONDS = 0.5
TYPING_EVERY_SECONDS = 4.5  # Telegram shows "typing" for 5 seconds
DEFAULT_INTERVAL = 1.0
_ENDED_JOB_STATES = frozenset(
    {ReplyJob.State.DONE, ReplyJob.State.FAILED, ReplyJob.State.CANCELLED}
)


@dataclass
class Follow:
    """One reply being shown as it forms on its conversation's channel."""

    adapter: ChannelAdapter
    account: ChannelAccount
    conversation: Conversation
    reply_id: UUID | None = None
    ref: str = ""
    shown: str = ""  # the text the provider's message holds
    quiet_until: float = 0.0  # no edit before this (the provider asked us to wait)

    @property
    def interval(self) -> float:
        return float(getattr(self.adapter, "interval", DEFAULT_INTERVAL))


def reply_stream_follow_run(*, job_id: int) -> None:
    """Follow the reply of a reply job on its conversation's channel, when the channel shows
    replies as they form: typing, then one message edited as the text grows."""
    follow = _follow_start(job_id)
    if follow is None:
        return
    follow.adapter.typing(follow.account, follow.conversation)
    text = _first_text(follow, job_id)
    if not text or not _stream_open(follow, text):
        return
    _edits(follow)


def _follow_start(job_id: int) -> Follow | None:
    """The job's conversation, its channel account and adapter: None when the channel does
    not stream by editing (or the job is gone)."""
    job = ReplyJob.objects.select_related("conversation__channel_account").filter(pk=job_id).first()
    connection_release()
    if job is None or job.state in _ENDED_JOB_STATES:
        return None
    account = job.conversation.channel_account
    if account is None or not account.is_active:
        return None
    try:
        adapter = adapter_for(account.kind)
    except KeyError:
        return None
    if not getattr(adapter, "streams_by_edit", False):
        return None
    return Follow(adapter=adapter, account=account, conversation=job.conversation)


def _first_text(follow: Follow, job_id: int) -> str:
    """Wait for the reply's text (showing "typing" meanwhile) until it has been forming for one
    `interval`: a reply finished sooner is sent whole by the delivery (one message, no edit).
    "" when the job ends first or the wait is over. The job's row is read every
    `JOB_CHECK_SECONDS`, the snapshot (Redis) more often."""
    deadline = time.monotonic() + FIRST_TEXT_WAIT_SECONDS
    typed, checked, first_seen = time.monotonic(), 0.0, 0.0
    while time.monotonic() < deadline:
        if time.monotonic() - checked >= JOB_CHECK_SECONDS:
            row = ReplyJob.objects.filter(pk=job_id).values_list("state", "reply_id").first()
            connection_release()
            if row is None or row[0] in _ENDED_JOB_STATES:
                return ""
            follow.reply_id, checked = row[1], time.monotonic()
        snapshot = snapshot_read(follow.reply_id) if follow.reply_id else None
        if snapshot is not None and snapshot.text.strip():
            first_seen = first_seen or time.monotonic()
            if time.monotonic() - first_seen >= follow.interval:
                return snapshot.text
        if time.monotonic() - typed >= TYPING_EVERY_SECONDS:
            follow.adapter.typing(follow.account, follow.conversation)
            typed = time.monotonic()
        time.sleep(POLL_SECONDS)
    return ""


def _reply_lock(reply_id: UUID) -> bool:
    """Inside a transaction: lock the reply's row if it is still streaming (storing the
    finished reply waits for this transaction). False when it is complete or failed."""
    locked = (
        Message.objects.select_for_update(no_key=True)
        .filter(pk=reply_id, status=Message.Status.STREAMING)
        .values_list("pk", flat=True)
        .first()
    )
    return locked is not None


def _conversation_key_share(conversation_id: UUID) -> None:
    """Take the lock the ref's foreign key needs before the reply's row lock, so a take-over
    (which locks the conversation, then the reply) and the follower wait in the same order."""
    table = connection.ops.quote_name(Conversation._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {table} WHERE id = %s FOR KEY SHARE",  # noqa: S608 (the model's table)
            [conversation_id],
        )


def _stream_open(follow: Follow, text: str) -> bool:
    """Post the reply's first text and record its id for the delivery, while the reply is
    still streaming; False when it is not (nothing posted) or the post failed."""
    if follow.reply_id is None:
        return False
    with transaction.atomic():
        _conversation_key_share(follow.conversation.pk)
        if not _reply_lock(follow.reply_id):
            return False
        existing = ChannelMessageRef.objects.filter(
            message_id=follow.reply_id, direction=ChannelMessageRef.Direction.OUTBOUND
        ).first()
        if existing is not None:  # a redelivered follower: keep editing the same message
            follow.ref = existing.provider_ref
            return True
        try:
            follow.ref = follow.adapter.stream_open(follow.account, follow.conversation, text)
        except DeliveryFailed as failed:
            logger.info("streaming not started for reply %s: %s", follow.reply_id, failed.reason)
            return False
        ChannelMessageRef.objects.create(
            tenant_id=follow.conversation.tenant_id,
            channel_account=follow.account,
            conversation=follow.conversation,
            message_id=follow.reply_id,
            direction=ChannelMessageRef.Direction.OUTBOUND,
            provider_ref=follow.ref,
        )
    follow.shown = text
    connection_release()
    return True


def _edits(follow: Follow) -> None:
    """Edit the posted message with the text so far, at most once per interval and only when
    it changed, until the reply is no longer streaming (or the follow's time is up)."""
    if follow.reply_id is None:
        return
    deadline = time.monotonic() + FOLLOW_SECONDS
    last_edit = time.monotonic()
    while time.monotonic() < deadline:
        wait = max(last_edit + follow.interval, follow.quiet_until) - time.monotonic()
        time.sleep(max(wait, POLL_SECONDS))
        snapshot = snapshot_read(follow.reply_id)
        if snapshot is None or not _still_streaming(follow.reply_id):
            return  # stored (the delivery takes over), or cancelled (its snapshot sealed)
        if not snapshot.text.strip() or snapshot.text == follow.shown:
            continue
        if not _edit(follow, snapshot.text):
            return
        last_edit = time.monotonic()


def _still_streaming(reply_id: UUID) -> bool:
    streaming = Message.objects.filter(pk=reply_id, status=Message.Status.STREAMING).exists()
    connection_release()
    return streaming


def _edit(follow: Follow, text: str) -> bool:
    """One edit, made while the reply is still streaming: False when it no longer is."""
    if follow.reply_id is None:
        return False
    with transaction.atomic():
        if not _reply_lock(follow.reply_id):
            return False
        try:
            follow.adapter.stream_edit(follow.account, follow.conversation, follow.ref, text)
        except DeliveryFailed as failed:
            # Skipped, not retried: the next edit or the final delivery carries the text.
            if failed.retry_after:
                follow.quiet_until = time.monotonic() + failed.retry_after
            logger.info("streaming edit skipped for reply %s: %s", follow.reply_id, failed.reason)
    follow.shown = text
    connection_release()
    return True
