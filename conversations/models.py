"""Contacts (visitors), conversations, their messages, reply jobs and LLM call records."""

import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import models
from django.db.models import Q

from supportbot.compliance.fields import (
    BlindIndexField,
    EncryptedJSONField,
    EncryptedTextField,
    with_blind_indexes,
)
from supportbot.tenants.models import Tenant

if TYPE_CHECKING:
    from supportbot.llm import CallRecord


class Contact(models.Model):
    """A person writing to the tenant: an anonymous widget visitor, or a verified one.

    A verified contact has the `sub` of the identity the tenant's backend signed as its
    `external_id` (unique per tenant); its email and name come from that identity's claims only.
    Those three are stored encrypted; the email and the `sub` are found through their blind
    indexes (`email_index`, `external_id_index`).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="contacts")
    locale = models.CharField(max_length=35, blank=True, default="")
    external_id = EncryptedTextField(blank=True, default="")
    email = EncryptedTextField(blank=True, default="")
    name = EncryptedTextField(blank=True, default="")
    email_index = BlindIndexField(source="email", kind="email", db_index=True)
    external_id_index = BlindIndexField(source="external_id", kind="external_id")
    # A contact who writes through a message channel: the channel's kind and the provider's id
    # of the person (Telegram chat id, phone number, Slack user, email address), unique per
    # tenant and channel. Empty for widget visitors.
    channel = models.CharField(max_length=20, blank=True, default="")
    channel_user_id = EncryptedTextField(blank=True, default="")
    channel_user_index = BlindIndexField(source="channel_user_id", kind="channel_user")
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "-created_at"], name="contact_tenant_recent")]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "external_id_index"],
                condition=~models.Q(external_id_index=""),
                name="contact_unique_external_id",
            ),
            models.UniqueConstraint(
                fields=["tenant", "channel", "channel_user_index"],
                condition=~models.Q(channel_user_index=""),
                name="contact_unique_channel_user",
            ),
        ]

    def __str__(self) -> str:
        if self.external_id:
            return self.name or self.email or f"Visitor {self.external_id[:40]}"
        return f"Visitor {str(self.id)[:8]}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = with_blind_indexes(Contact, kwargs["update_fields"])
        super().save(*args, **kwargs)

    @property
    def is_verified(self) -> bool:
        return bool(self.external_id)


class Conversation(models.Model):
    class Channel(models.TextChoices):
        WIDGET = "widget", "Website widget"
        EMAIL = "email", "Email"
        TELEGRAM = "telegram", "Telegram"
        WHATSAPP = "whatsapp", "WhatsApp"
        SLACK = "slack", "Slack"
        SMS = "sms", "SMS"
        API = "api", "REST API"

    class Status(models.TextChoices):
        BOT = "bot", "Answered by the assistant"
        WAITING_FOR_AGENT = "waiting_for_agent", "Waiting for an agent"
        WITH_AGENT = "with_agent", "With an agent"
        CLOSED = "closed", "Closed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="conversations")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="conversations")
    channel = models.CharField(max_length=20, choices=Channel.choices, default=Channel.WIDGET)
    # The tenant's channel (a bot, a mailbox, a number) a non-widget conversation came through,
    # and the provider's thread within it (Telegram chat id, Slack "channel:thread_ts", an
    # email thread's first Message-ID, a phone number): replies go back the same way.
    channel_account = models.ForeignKey(
        "ChannelAccount",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="conversations",
    )
    channel_thread = EncryptedTextField(blank=True, default="")
    channel_thread_index = BlindIndexField(
        source="channel_thread", kind="channel_user", db_index=True
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.BOT)
    language = models.CharField(max_length=12, blank=True, default="")
    last_seq = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    last_message_at = models.DateTimeField(null=True, blank=True)
    assigned_agent = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="assigned_conversations",
    )
    handoff_reason = models.CharField(max_length=300, blank=True, default="")
    # Rolling summary of the turns up to `summary_seq` (regenerated, never appended to).
    summary = EncryptedJSONField(default=dict, blank=True)
    summary_seq = models.PositiveIntegerField(default=0)
    summary_updated_at = models.DateTimeField(null=True, blank=True)
    # Personal data kept from the provider: placeholder -> {"value", "key"} (see redaction.py),
    # encrypted like the messages it comes from.
    pii_placeholders = EncryptedJSONField(default=dict, blank=True, editable=False)
    # Person first: when the assistant answers if no agent has taken the conversation by then.
    assistant_fallback_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Marked for review by a person: a flagged visitor message or reply (`review_reason`).
    review_reason = models.CharField(max_length=40, blank=True, default="")
    review_flagged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-last_message_at"]
        indexes = [
            models.Index(
                fields=["tenant", "-review_flagged_at"],
                condition=Q(review_flagged_at__isnull=False),
                name="conv_tenant_review",
            ),
            models.Index(
                fields=["assistant_fallback_at"],
                condition=Q(assistant_fallback_at__isnull=False),
                name="conv_assistant_fallback",
            ),
            models.Index(
                fields=["tenant", "status", "-last_message_at"], name="conv_tenant_status"
            ),
            models.Index(
                fields=["tenant", "channel", "-last_message_at"], name="conv_tenant_channel"
            ),
            models.Index(fields=["tenant", "-created_at"], name="conv_tenant_created"),
        ]

    def __str__(self) -> str:
        return f"Conversation {str(self.id)[:8]}"


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user", "Visitor"
        ASSISTANT = "assistant", "Assistant"
        AGENT = "agent", "Agent"
        SYSTEM = "system", "Notice"

    class Status(models.TextChoices):
        COMPLETE = "complete", "Complete"
        STREAMING = "streaming", "Streaming"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    seq = models.PositiveIntegerField()
    role = models.CharField(max_length=12, choices=Role.choices)
    text = EncryptedTextField(blank=True, default="")
    # NULL, not "", for messages without one: the unique constraint skips NULLs.
    client_id = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.COMPLETE)
    sources = models.JSONField(default=list, blank=True)
    # For assistant replies: what produced them.
    model = models.CharField(max_length=200, blank=True, default="")
    finish_reason = models.CharField(max_length=20, blank=True, default="")
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    language = models.CharField(max_length=12, blank=True, default="")
    # The agent who wrote an `agent` message.
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["conversation", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["conversation", "seq"], name="message_unique_seq"),
            models.UniqueConstraint(
                fields=["conversation", "client_id"],
                condition=Q(client_id__isnull=False),
                name="message_unique_client_id",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.role}"


class ReplyJob(models.Model):
    """The state row of one assistant reply: makes a redelivered job a no-op once done."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="reply_jobs"
    )
    trigger = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="reply_job")
    reply = models.OneToOneField(
        Message, on_delete=models.SET_NULL, null=True, blank=True, related_name="produced_by"
    )
    state = models.CharField(max_length=12, choices=State.choices, default=State.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    error_code = models.CharField(max_length=40, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["state", "updated_at"], name="replyjob_state")]

    def __str__(self) -> str:
        return f"Reply job {self.pk} ({self.state})"


class LLMCall(models.Model):
    """One call to a model provider: what it cost and how it went."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="llm_calls")
    conversation = models.ForeignKey(
        Conversation, on_delete=models.SET_NULL, null=True, blank=True, related_name="llm_calls"
    )
    message = models.ForeignKey(
        Message, on_delete=models.SET_NULL, null=True, blank=True, related_name="llm_calls"
    )
    purpose = models.CharField(max_length=20, default="reply")
    provider = models.CharField(max_length=20)
    model = models.CharField(max_length=200)
    outcome = models.CharField(max_length=20)
    error_code = models.CharField(max_length=40, blank=True, default="")
    finish_reason = models.CharField(max_length=20, blank=True, default="")
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField()
    first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=1)
    # From the price table (supportbot.tenants.prices) at the time of the call.
    cost = models.DecimalField(max_digits=18, decimal_places=9, default=Decimal(0))
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "LLM call"
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant", "-created_at"], name="llmcall_tenant_recent")]

    def __str__(self) -> str:
        return f"{self.model} {self.outcome} ({self.latency_ms} ms)"

    @classmethod
    def from_record(
        cls,
        record: "CallRecord",
        *,
        tenant_id: int,
        purpose: str,
        conversation_id: uuid.UUID | None = None,
        message_id: uuid.UUID | None = None,
        cost: Decimal = Decimal(0),
    ) -> "LLMCall":
        """An unsaved row for what the LLM layer reported about one call."""
        return cls(
            tenant_id=tenant_id,
            conversation_id=conversation_id,
            message_id=message_id,
            purpose=purpose,
            provider=record.provider,
            model=record.model,
            outcome=record.outcome,
            error_code=record.error_code or "",
            finish_reason=record.finish_reason or "",
            prompt_tokens=record.prompt_tokens,
            completion_tokens=record.completion_tokens,
            latency_ms=record.latency_ms,
            first_token_ms=record.first_token_ms,
            attempts=record.attempts,
            cost=cost,
        )


class ToolInvocation(models.Model):
    """One function call the model made while producing a reply, and what it was given back."""

    class Status(models.TextChoices):
        OK = "ok", "OK"
        INVALID_ARGUMENTS = "invalid_arguments", "Invalid arguments"
        UNKNOWN_TOOL = "unknown_tool", "Unknown tool"
        ERROR = "error", "Error"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="tool_invocations"
    )
    message = models.ForeignKey(
        Message, on_delete=models.SET_NULL, null=True, blank=True, related_name="tool_invocations"
    )
    call_id = models.CharField(max_length=100, blank=True, default="")
    name = models.CharField(max_length=64)
    arguments = EncryptedTextField(blank=True, default="")  # as the model sent them: untrusted
    status = models.CharField(max_length=20, choices=Status.choices)
    result = EncryptedTextField(blank=True, default="")
    step = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["tenant", "-created_at"], name="toolcall_tenant_recent")]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"


class ConsentRecord(models.Model):
    """A visitor's decision on the tenant's consent or privacy notice, as proof of what they
    were shown: the text's version and the SHA-256 of its exact words, the lawful basis then in
    force, the channel and the time. A `notice` is the record of a notice shown under
    legitimate interest (stored with the first message)."""

    class Decision(models.TextChoices):
        ACCEPT = "accept", "Accepted"
        DECLINE = "decline", "Declined"
        WITHDRAW = "withdraw", "Withdrawn"
        NOTICE = "notice", "Notice shown"

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="consents")
    language = models.CharField(max_length=12, blank=True, default="")
    version = models.PositiveIntegerField()
    text_sha256 = models.CharField(max_length=64)
    decision = models.CharField(max_length=10, choices=Decision.choices)
    lawful_basis = models.CharField(max_length=24, choices=Tenant.LawfulBasis.choices)
    channel = models.CharField(max_length=20, default="widget")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["contact", "-created_at"], name="consent_contact_recent")]

    def __str__(self) -> str:
        return f"{self.get_decision_display()} v{self.version}"


class ErasedVisitor(models.Model):
    """Tombstone of an erased contact or conversation id, so a widget still holding a token or
    id of it is told (the `erased` frame) and starts afresh rather than resuming under the same
    ids. Only the SHA-256 of the id is kept: nothing here names or describes the person."""

    digest = models.CharField(max_length=64, primary_key=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    erased_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.digest[:12]


class ChannelAccount(models.Model):
    """One of a tenant's channels beyond the widget: a mailbox, a Telegram bot, a WhatsApp
    number, a Slack app, a Twilio number or a REST API client.

    `config` holds what is not secret (addresses, hosts, ids); `credentials` the secrets (tokens,
    signing secrets, passwords), encrypted and never shown again once saved. The webhook URL
    carries the account's id: `/channels/<id>/webhook/`.
    """

    class Kind(models.TextChoices):
        EMAIL = "email", "Email"
        TELEGRAM = "telegram", "Telegram"
        WHATSAPP = "whatsapp", "WhatsApp"
        SLACK = "slack", "Slack"
        SMS = "sms", "SMS (Twilio)"
        API = "api", "REST API"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="channel_accounts")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    name = models.CharField(max_length=100, blank=True, default="")
    is_active = models.BooleanField(default=True)
    config = models.JSONField(default=dict, blank=True)
    credentials = EncryptedJSONField(default=dict, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "channel"
        indexes = [models.Index(fields=["tenant", "kind"], name="channelaccount_tenant_kind")]

    def __str__(self) -> str:
        return self.name or f"{self.get_kind_display()} {str(self.id)[:8]}"


class ApiKey(models.Model):
    """A REST API key of a tenant's `api` channel: only its SHA-256 is kept (the key is shown
    once, when made); `prefix` (the key's first characters) tells keys apart in the admin."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    channel_account = models.ForeignKey(
        ChannelAccount, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=100, blank=True, default="")
    prefix = models.CharField(max_length=16)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}…"


class InboundEvent(models.Model):
    """One webhook delivery or polled message, stored before the provider is answered: the
    unique (channel, provider id) makes a redelivery a no-op. `payload` (the parsed item, as
    the adapter gave it) is cleared once processed, but for an email's subject (the reply's
    "Re: <subject>"); a message held until its writer answers the consent question (`held`)
    keeps it."""

    class State(models.TextChoices):
        RECEIVED = "received", "Received"
        PROCESSED = "processed", "Processed"
        IGNORED = "ignored", "Ignored"
        FAILED = "failed", "Failed"
        HELD = "held", "Held for consent"

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    channel_account = models.ForeignKey(
        ChannelAccount, on_delete=models.CASCADE, related_name="inbound_events"
    )
    provider_event_id = models.CharField(max_length=255)
    kind = models.CharField(max_length=20, default="message")  # message, status, ignored
    state = models.CharField(max_length=12, choices=State.choices, default=State.RECEIVED)
    payload = EncryptedJSONField(default=dict, blank=True)
    contact = models.ForeignKey(
        Contact, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    message = models.ForeignKey(
        Message, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    detail = models.CharField(max_length=200, blank=True, default="")
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["channel_account", "provider_event_id"], name="inbound_unique_event"
            )
        ]
        indexes = [models.Index(fields=["state", "received_at"], name="inbound_state")]

    def __str__(self) -> str:
        return f"{self.kind} {self.provider_event_id[:20]}"


class OutboundDelivery(models.Model):
    """The outbox: one row per message to deliver on a conversation's channel, sent by a Celery
    task with retries and backoff (and the provider's Retry-After). The text is read from the
    message when sent; `provider_message_ids` are what the provider called the parts."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    channel_account = models.ForeignKey(
        ChannelAccount, on_delete=models.CASCADE, related_name="deliveries"
    )
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="deliveries"
    )
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="deliveries")
    state = models.CharField(max_length=12, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True, default="")
    provider_message_ids = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "outbound deliveries"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["message", "channel_account"], name="delivery_unique_message"
            )
        ]
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="delivery_state_due"),
            models.Index(fields=["tenant", "state", "-created_at"], name="delivery_tenant"),
        ]

    def __str__(self) -> str:
        return f"Delivery {self.pk} ({self.state})"


class ChannelMessageRef(models.Model):
    """What a provider calls a message of ours or of the visitor's: an email's Message-ID (so
    a reply joins its thread), a Telegram or Slack message being edited as a reply streams."""

    class Direction(models.TextChoices):
        INBOUND = "in", "Inbound"
        OUTBOUND = "out", "Outbound"

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    channel_account = models.ForeignKey(
        ChannelAccount, on_delete=models.CASCADE, related_name="message_refs"
    )
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="channel_refs"
    )
    message = models.ForeignKey(
        Message, on_delete=models.CASCADE, null=True, blank=True, related_name="channel_refs"
    )
    direction = models.CharField(max_length=3, choices=Direction.choices)
    provider_ref = EncryptedTextField(blank=True, default="")
    provider_ref_index = BlindIndexField(source="provider_ref", kind="channel_user")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["channel_account", "provider_ref_index"], name="channelref_lookup")
        ]

    def __str__(self) -> str:
        return f"{self.direction} ref {self.pk}"


class MessageAttachment(models.Model):
    """Content of a visitor's message the assistant cannot read (an image, a voice note, a
    file), kept for agents: its kind and name, and either its bytes (base64, encrypted) or the
    provider's reference to fetch it by."""

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attachments")
    kind = models.CharField(max_length=20, default="file")  # image, audio, video, file, ...
    content_type = models.CharField(max_length=100, blank=True, default="")
    filename = EncryptedTextField(blank=True, default="")
    size = models.PositiveIntegerField(null=True, blank=True)
    provider_ref = EncryptedTextField(blank=True, default="")
    content_b64 = EncryptedTextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.kind} attachment {self.pk}"
