"""Tenants (the companies using Supportbot) and their public widget keys."""

import secrets
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import (
    MaxLengthValidator,
    MaxValueValidator,
    MinValueValidator,
    RegexValidator,
    URLValidator,
)
from django.db import models

from supportbot.tenants.business_hours import (
    BusinessHoursError,
    business_hours_normalize,
    timezone_get,
)
from supportbot.tenants.consent_texts import CONSENT_TEXT_MAX_CHARS
from supportbot.tenants.disclosure import DisclosureError, ai_disclosure_normalize
from supportbot.tenants.origins import normalize_origins
from supportbot.tenants.provider_hosts import check_base_url
from supportbot.tenants.sensitive_topics import (
    MODERATION_NONE,
    MODERATION_PROVIDER,
    MODERATION_URL,
    SensitiveTopicsError,
    sensitive_topics_normalize,
)

# What the tenant's secrets are bound to when encrypted (supportbot.compliance.encryption).
LLM_API_KEY_LABEL = "tenants.tenant.llm_api_key"
IDENTITY_SECRET_LABEL = "tenants.tenant.identity_secret"  # noqa: S105 (a label, not a secret)
MODERATION_API_KEY_LABEL = "tenants.tenant.moderation_api_key"

DEFAULT_PERSONA = (
    "You are a friendly, concise customer-support assistant. Answer the visitor's question "
    "accurately. If you do not know, say so and offer to connect them with a person."
)


# Upper bounds of a tenant's numbers: what one tenant's admin may make a reply cost.
MAX_PERSONA_CHARS = 20_000
MAX_MESSAGE_CHARS = 32_000  # a visitor's message must also fit in one 64 KiB frame
MAX_HISTORY_TOKEN_BUDGET = 200_000
MAX_KNOWLEDGE_PASSAGES = 20
MAX_HANDOFF_AFTER_FAILURES = 20
MAX_REPLY_TOKENS = 32_768
MAX_SEED = 2**31 - 1
MAX_STOP_CHARS = 100

# Retention (days; None keeps the rows): GDPR's storage limitation. Conversations go a year after
# their last activity; LLM call records (model, tokens, cost: operations data, its daily totals
# stay in TenantUsageDay) after 90 days; the audit log, the evidence of what was done, after
# three years (the common limitation period for claims).
DEFAULT_CONVERSATION_RETENTION_DAYS = 365
DEFAULT_LLM_CALL_RETENTION_DAYS = 90
DEFAULT_AUDIT_RETENTION_DAYS = 3 * 365
MAX_RETENTION_DAYS = 10 * 366
MIN_AUDIT_RETENTION_DAYS = 30


def default_history_token_budget() -> int:
    """A new tenant's history budget: the HISTORY_TOKEN_BUDGET setting."""
    return int(settings.HISTORY_TOKEN_BUDGET)


def _validate_origin_list(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError('Enter a list of origins such as ["https://shop.example.com"].')
    normalize_origins(value)


class Tenant(models.Model):
    class LLMProvider(models.TextChoices):
        DEFAULT = "", "Server default"
        OPENAI = "openai", "OpenAI or OpenAI-compatible"
        AZURE = "azure", "Azure OpenAI"
        LOCAL = "local", "Local model"

    class LawfulBasis(models.TextChoices):
        CONSENT = "consent", "Consent (the visitor accepts before anything is stored)"
        LEGITIMATE_INTEREST = "legitimate_interest", "Legitimate interest (a notice is shown)"

    class ConversationMode(models.TextChoices):
        ASSISTANT_FIRST = "assistant_first", "Assistant first"
        PERSON_FIRST = "person_first", "Person first"
        VISITOR_DECIDES = "visitor_decides", "Visitor decides"

    class ModerationSource(models.TextChoices):
        PROVIDER = MODERATION_PROVIDER, "The model provider's moderation endpoint"
        URL = MODERATION_URL, "An OpenAI-compatible moderation URL"
        NONE = MODERATION_NONE, "None (no moderation)"

    slug = models.SlugField(max_length=63, unique=True)
    name = models.CharField(max_length=200)
    is_active = models.BooleanField(default=True)
    persona = models.TextField(
        default=DEFAULT_PERSONA,
        validators=[MaxLengthValidator(MAX_PERSONA_CHARS)],
        help_text="System prompt: who the assistant is and how it answers.",
    )
    allowed_origins = models.JSONField(
        default=list,
        blank=True,
        validators=[_validate_origin_list],
        help_text='Websites allowed to embed the widget, e.g. ["https://shop.example.com"].',
    )
    message_max_chars = models.PositiveIntegerField(
        default=4000,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_MESSAGE_CHARS)],
        help_text="Longest visitor message accepted, in characters.",
    )
    history_token_budget = models.PositiveIntegerField(
        default=default_history_token_budget,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_HISTORY_TOKEN_BUDGET)],
        help_text="Tokens of conversation history sent to the model.",
    )
    supported_languages = models.JSONField(
        default=list,
        blank=True,
        help_text='Languages the assistant answers in, as ISO 639-1 codes, e.g. ["en", "es"]. '
        "Empty: any language.",
    )
    fallback_language = models.CharField(
        max_length=12,
        default="en",
        help_text="Language used when the visitor's is not supported or cannot be told.",
    )
    fallback_llm_model = models.CharField(
        max_length=200,
        blank=True,
        default="",
        help_text="Model (same provider) tried when the main one fails or times out.",
    )
    handoff_after_failures = models.PositiveSmallIntegerField(
        default=2,
        validators=[MaxValueValidator(MAX_HANDOFF_AFTER_FAILURES)],
        help_text="Hand the conversation to a person after this many failed replies.",
    )
    knowledge_passages = models.PositiveSmallIntegerField(
        default=4,
        validators=[MaxValueValidator(MAX_KNOWLEDGE_PASSAGES)],
        help_text="Knowledge-base passages given to the model with each question.",
    )

    # Optional per-tenant provider override; blank fields fall back to the server's settings.
    llm_provider = models.CharField(
        max_length=16, choices=LLMProvider.choices, blank=True, default=""
    )
    llm_base_url = models.URLField(
        blank=True,
        default="",
        help_text="Loopback, private and link-local hosts are refused unless the server allows "
        "them (LLM_ALLOWED_PRIVATE_HOSTS).",
    )
    llm_api_key_encrypted = models.TextField(blank=True, default="", editable=False)
    llm_model = models.CharField(max_length=200, blank=True, default="")
    llm_api_version = models.CharField(max_length=40, blank=True, default="")

    # Verified visitor identity: the HS256 secret the tenant's backend signs identities with
    # (stored encrypted; shown once, when created or rotated).
    identity_secret_encrypted = models.TextField(blank=True, default="", editable=False)
    identity_required = models.BooleanField(
        default=False,
        help_text="Refuse widget visitors without a verified identity signed by your backend.",
    )

    # Chat Completions parameters.
    temperature = models.FloatField(null=True, blank=True)
    top_p = models.FloatField(null=True, blank=True)
    max_tokens = models.PositiveIntegerField(
        null=True,
        blank=True,
        default=512,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_REPLY_TOKENS)],
    )
    presence_penalty = models.FloatField(null=True, blank=True)
    frequency_penalty = models.FloatField(null=True, blank=True)
    seed = models.IntegerField(
        null=True, blank=True, validators=[MinValueValidator(0), MaxValueValidator(MAX_SEED)]
    )
    stop = models.JSONField(default=list, blank=True, help_text="Up to 4 stop sequences.")

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Who answers first, and what the widget says about the assistant.
    ai_disclosure = models.JSONField(
        default=dict,
        blank=True,
        help_text="The widget's line saying the visitor is talking to an AI assistant, per "
        'language, e.g. {"en": "You\'re chatting with our AI assistant."}. A language left '
        "out gets the default text.",
    )
    conversation_mode = models.CharField(
        max_length=20,
        choices=ConversationMode.choices,
        default=ConversationMode.ASSISTANT_FIRST,
        help_text="Assistant first: the assistant answers at once. Person first: a person is "
        "asked first; the assistant answers when no one takes the conversation within the "
        "wait, or outside business hours. Visitor decides: the widget offers both.",
    )
    person_first_wait_minutes = models.PositiveSmallIntegerField(
        default=5,
        validators=[MinValueValidator(1), MaxValueValidator(240)],
        help_text="Person first: minutes to wait for a person before the assistant answers.",
    )
    business_hours_timezone = models.CharField(
        max_length=64,
        default="UTC",
        help_text="Time zone of the business hours, e.g. Europe/Madrid.",
    )
    business_hours = models.JSONField(
        default=dict,
        blank=True,
        help_text="When a person can answer, e.g. "
        '{"mon": ["09:00-17:00"], "sat": ["10:00-14:00"]}. A day left out is closed; empty: '
        "any time.",
    )

    # Retention per data class (conversations.retention, a nightly task); empty: kept.
    conversation_retention_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        default=DEFAULT_CONVERSATION_RETENTION_DAYS,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_RETENTION_DAYS)],
        help_text="Days after a conversation's last activity before it is deleted with its "
        "messages (and its contact, when they have no other conversation). Empty: kept.",
    )
    llm_call_retention_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        default=DEFAULT_LLM_CALL_RETENTION_DAYS,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_RETENTION_DAYS)],
        help_text="Days LLM call records are kept (the daily usage totals stay). Empty: kept.",
    )
    audit_retention_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        default=DEFAULT_AUDIT_RETENTION_DAYS,
        validators=[
            MinValueValidator(MIN_AUDIT_RETENTION_DAYS),
            MaxValueValidator(MAX_RETENTION_DAYS),
        ],
        help_text=f"Days audit events are kept (at least {MIN_AUDIT_RETENTION_DAYS}). Empty: kept.",
    )
    # Data protection: why the tenant may store what a visitor writes, and where its policy is.
    lawful_basis = models.CharField(
        max_length=24,
        choices=LawfulBasis.choices,
        default=LawfulBasis.LEGITIMATE_INTEREST,
        help_text="Consent: the widget asks the visitor to accept the consent text before their "
        "first message is stored. Legitimate interest: the text is shown as a notice.",
    )
    privacy_url = models.URLField(
        blank=True,
        validators=[URLValidator(schemes=["http", "https"])],
        default="",
        help_text="Your privacy policy, linked from the widget's consent text (http or https).",
    )
    # Personal data in what is sent to the model provider (conversations/redaction.py).
    redact_pii = models.BooleanField(
        default=True,
        help_text="Replace emails, phone numbers, payment cards and IBANs with placeholders in "
        "everything sent to the model provider; the visitor and agents still see them.",
    )
    phone_region = models.CharField(
        max_length=2,
        blank=True,
        default="",
        validators=[RegexValidator(r"^[A-Z]{2}$", "An ISO country code such as ES.")],
        help_text="Country whose national phone numbers are recognised, e.g. ES. Blank: the "
        "visitor's locale. International numbers (+34…) are always recognised.",
    )
    # Moderation of visitor messages and replies, and sensitive topics.
    moderation_source = models.CharField(
        max_length=12,
        choices=ModerationSource.choices,
        default=ModerationSource.PROVIDER,
        help_text="Where messages and replies are checked. The provider's endpoint exists for "
        "OpenAI only: with Azure or a local model, use a moderation URL or there is none.",
    )
    moderation_url = models.URLField(
        blank=True,
        default="",
        help_text="The base URL of an OpenAI-compatible moderation service (POST …/moderations), "
        "e.g. https://api.openai.com/v1. Loopback, private and link-local hosts are refused "
        "unless the server allows them.",
    )
    moderation_model = models.CharField(
        max_length=100, blank=True, default="", help_text="Blank: omni-moderation-latest."
    )
    moderation_api_key_encrypted = models.TextField(blank=True, default="", editable=False)
    moderation_fail_closed = models.BooleanField(
        default=False,
        help_text="When the moderation check itself fails: refuse to answer (checked) or answer "
        "unchecked, with a warning in the audit log (unchecked).",
    )
    sensitive_topics = models.JSONField(
        default=dict,
        blank=True,
        help_text='Topics and their policy, e.g. {"health": "refuse", "finance": "disclaimer", '
        '"insurance claims": "refuse"}. Refuse: no answer, a person is offered. Disclaimer: '
        "the answer carries a disclaimer. Built in: health, finance, legal.",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        self.allowed_origins = normalize_origins(self.allowed_origins or [])
        if not isinstance(self.supported_languages, list) or not all(
            isinstance(code, str) and 2 <= len(code) <= 12 for code in self.supported_languages
        ):
            raise ValidationError({"supported_languages": 'A list of codes such as ["en", "es"].'})
        self.supported_languages = [code.lower() for code in self.supported_languages]
        self.fallback_language = (self.fallback_language or "en").lower()
        if not isinstance(self.stop, list) or len(self.stop) > 4:
            raise ValidationError({"stop": "At most 4 stop sequences."})
        if not all(isinstance(s, str) and 0 < len(s) <= MAX_STOP_CHARS for s in self.stop):
            raise ValidationError(
                {"stop": f"Each stop sequence is text of 1 to {MAX_STOP_CHARS} characters."}
            )
        if self.llm_base_url:
            try:
                check_base_url(self.llm_base_url)
            except ValidationError as exc:
                raise ValidationError({"llm_base_url": exc.messages}) from None
        if self.temperature is not None and not 0 <= self.temperature <= 2:
            raise ValidationError({"temperature": "Between 0 and 2."})
        if self.top_p is not None and not 0 <= self.top_p <= 1:
            raise ValidationError({"top_p": "Between 0 and 1."})
        for field in ("presence_penalty", "frequency_penalty"):
            value = getattr(self, field)
            if value is not None and not -2 <= value <= 2:
                raise ValidationError({field: "Between -2 and 2."})
        self._clean_conversation_modes()
        self._clean_moderation()

    def _clean_moderation(self) -> None:
        """The moderation URL (checked like the provider's) and the sensitive topics."""
        if self.moderation_source == MODERATION_URL and not self.moderation_url:
            raise ValidationError({"moderation_url": "Enter the moderation service's URL."})
        if self.moderation_url:
            try:
                check_base_url(self.moderation_url)
            except ValidationError as exc:
                raise ValidationError({"moderation_url": exc.messages}) from None
        try:
            self.sensitive_topics = sensitive_topics_normalize(self.sensitive_topics)
        except SensitiveTopicsError as exc:
            raise ValidationError({"sensitive_topics": str(exc)}) from None

    def _clean_conversation_modes(self) -> None:
        """The disclosure texts, the time zone and the opening hours, normalised."""
        try:
            self.ai_disclosure = ai_disclosure_normalize(self.ai_disclosure)
        except DisclosureError as exc:
            raise ValidationError({"ai_disclosure": str(exc)}) from None
        try:
            timezone_get(self.business_hours_timezone)
        except BusinessHoursError as exc:
            raise ValidationError({"business_hours_timezone": str(exc)}) from None
        try:
            self.business_hours = business_hours_normalize(self.business_hours)
        except BusinessHoursError as exc:
            raise ValidationError({"business_hours": str(exc)}) from None


class ConsentText(models.Model):
    """One version of a tenant's consent or privacy notice text in one language. The newest
    version of a language is the one shown; older ones stay, so every consent record's version
    names the text that was accepted."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="consent_texts")
    language = models.CharField(
        max_length=12, help_text="A language code such as en or pt-br.", default="en"
    )
    version = models.PositiveIntegerField(
        editable=False, help_text="Numbered per tenant and language, from 1."
    )
    text = models.TextField(validators=[MaxLengthValidator(CONSENT_TEXT_MAX_CHARS)])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["language", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "language", "version"], name="consent_text_unique_version"
            )
        ]

    def __str__(self) -> str:
        return f"{self.language} v{self.version}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        """A new text gets the next version of its language (the unique constraint settles a
        race); a stored version is never rewritten: a changed text is a new version."""
        if self.version is None:
            newest = ConsentText.objects.filter(
                tenant_id=self.tenant_id, language=self.language
            ).aggregate(newest=models.Max("version"))["newest"]
            self.version = (newest or 0) + 1
        super().save(*args, **kwargs)

    def clean(self) -> None:
        self.language = (self.language or "").strip().lower().replace("_", "-")
        if not 2 <= len(self.language) <= 12:
            raise ValidationError({"language": "A language code such as en or pt-br."})
        self.text = (self.text or "").strip()
        if not self.text:
            raise ValidationError({"text": "Write the text the visitor is shown."})


def new_public_key() -> str:
    return "wk_" + secrets.token_urlsafe(18)


class WidgetKey(models.Model):
    """The public key a customer's page uses to load the widget; it names the tenant."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="widget_keys")
    public_key = models.CharField(max_length=64, unique=True, default=new_public_key)
    label = models.CharField(max_length=100, blank=True, default="")
    is_active = models.BooleanField(default=True)
    allowed_origins = models.JSONField(
        default=list,
        blank=True,
        validators=[_validate_origin_list],
        help_text="Origins for this key only; empty means the tenant's allowed origins.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.public_key

    def clean(self) -> None:
        self.allowed_origins = normalize_origins(self.allowed_origins or [])

    @property
    def effective_origins(self) -> list[str]:
        return self.allowed_origins or self.tenant.allowed_origins


DISPLAY_NAME_MAX_CHARS = 80


def _validate_display_name(value: str) -> None:
    if any(not ch.isprintable() for ch in value):
        raise ValidationError("A display name is one line of printable characters.")


class TenantMembership(models.Model):
    """A staff user's access to one tenant, with their role there (see tenants/roles.py)."""

    class Role(models.TextChoices):
        AGENT = "agent", "Agent"
        ADMIN = "admin", "Tenant admin"
        COMPLIANCE = "compliance", "Compliance officer"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tenant_memberships"
    )
    role = models.CharField(max_length=12, choices=Role.choices, default=Role.AGENT)
    display_name = models.CharField(
        max_length=DISPLAY_NAME_MAX_CHARS,
        blank=True,
        default="",
        validators=[_validate_display_name],
        help_text='The name visitors see when this person answers (e.g. "Sam"). Empty: '
        'visitors see a neutral "Support agent", never the login name or email.',
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "user"], name="membership_unique_user")
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant} ({self.get_role_display()})"

    def clean(self) -> None:
        self.display_name = " ".join((self.display_name or "").split())


class TenantLimits(models.Model):
    """A tenant's limits on model use, enforced by the workers before every provider call
    (supportbot/tenants/limits.py). Zero means no limit."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="limits")
    requests_per_minute = models.PositiveIntegerField(
        default=0, help_text="Provider requests a minute (replies, summaries, embeddings). 0: none."
    )
    tokens_per_day = models.PositiveBigIntegerField(
        default=0, help_text="Prompt + completion tokens a day (UTC). 0: no limit."
    )
    tokens_per_month = models.PositiveBigIntegerField(
        default=0, help_text="Prompt + completion tokens a calendar month (UTC). 0: no limit."
    )
    spend_per_month = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        default=Decimal(0),
        validators=[MinValueValidator(Decimal(0))],
        help_text="Spend a calendar month, in the price table's currency (USD). 0: no limit.",
    )
    max_concurrent_replies = models.PositiveIntegerField(
        default=0, help_text="Reply requests in flight at once. 0: no limit."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "usage limits"
        verbose_name_plural = "usage limits"

    def __str__(self) -> str:
        return f"Limits of {self.tenant}"


class ModelPrice(models.Model):
    """What one model costs per million tokens; the spend of every call is computed from it.

    `model` matches a call's model exactly, or as the prefix of a dated version
    ("gpt-4o-mini" prices "gpt-4o-mini-2024-07-18"). A model with no row costs nothing.
    """

    model = models.CharField(max_length=200, unique=True)
    prompt_per_million = models.DecimalField(
        max_digits=12, decimal_places=4, validators=[MinValueValidator(Decimal(0))]
    )
    completion_per_million = models.DecimalField(
        max_digits=12, decimal_places=4, validators=[MinValueValidator(Decimal(0))]
    )
    prices_as_of = models.DateField(help_text="When these prices were taken from the provider.")
    note = models.CharField(max_length=200, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model"]

    def __str__(self) -> str:
        return self.model


class TenantUsageDay(models.Model):
    """A tenant's use of one model on one day (UTC): tokens, cost, replies.

    Aggregates only: nothing here points to a conversation, message or person, so erasing a
    person leaves the usage history intact. Written when each call settles.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="usage_days")
    day = models.DateField()
    model = models.CharField(max_length=200)
    requests = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=18, decimal_places=9, default=Decimal(0))
    replies = models.PositiveIntegerField(default=0)
    degraded_replies = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "day", "model"], name="usage_day_unique")
        ]
        indexes = [models.Index(fields=["tenant", "-day"], name="usage_day_tenant_recent")]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.day} {self.model}"
