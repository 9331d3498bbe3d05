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
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "-created_at"], name="contact_tenant_recent")]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "external_id_index"],
                condition=~models.Q(external_id_index=""),
                name="contact_unique_external_id",
            )
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

    class Status(models.TextChoices):
        BOT = "bot", "Answered by the assistant"
        WAITING_FOR_AGENT = "waiting_for_agent", "Waiting for an agent"
        WITH_AGENT = "with_agent", "With an agent"
        CLOSED = "closed", "Closed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="conversations")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="conversations")
    channel = models.CharField(max_length=20, choices=Channel.choices, default=Channel.WIDGET)
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
