"""What a reply is generated from: the language to answer in, the history, the help-centre
passages and the prompt.

What goes to the provider is redacted (`conversations/redaction.py`, when the tenant redacts):
the turns, the summary and the passages in the prompt, and the search query (it may be
embedded by the provider). `placeholders` restores what the model writes back.

Built from a job read without a lock, before the job is claimed: the knowledge search alone may
take seconds, and a takeover must never wait behind it. Nothing here writes; the claim stores
the language it decided (`ReplyContext.detected`, `.language`).
"""

from dataclasses import dataclass, replace
from typing import Any

from conversations.language import language_instruction, reply_language_decide
from conversations.models import Conversation, Message, ReplyJob
from conversations.prompts import TOOLS_GUIDE, PromptParts, build_reply_prompt
from conversations.redaction import Placeholders, mask, phone_region, provider_messages
from conversations.reply.passages import knowledge_search
from conversations.reply.screening import topics_instruction
from conversations.reply.tools import TOOL_SCHEMAS
from conversations.summaries import summary_prompt_text
from knowledge.retrieval import Passage, format_context
from supportbot.llm import ChatParams, ProviderConfig
from supportbot.tenants.selectors import tenant_chat_params, tenant_provider_config

HISTORY_LIMIT = 200


@dataclass(frozen=True)
class ReplyContext:
    detected: str | None  # the language detected in the message answered (None: unsure)
    language: str  # the language to answer in
    history: list[Message]  # after the summary and before the reply, in `seq` order
    passages: list[Passage]  # in the prompt, numbered from 1
    messages: list[dict[str, Any]]  # the prompt
    config: ProviderConfig
    params: ChatParams
    placeholders: Placeholders  # the conversation's, with those the prompt added
    query: str  # the visitor's message as searched: its personal data masked


def _history(conversation: Conversation, reply: Message | None) -> list[Message]:
    """The newest HISTORY_LIMIT messages after the summary (before the reply, when retried)."""
    before = {"seq__lt": reply.seq} if reply is not None else {}
    newest = Message.objects.filter(
        conversation=conversation, seq__gt=conversation.summary_seq, **before
    ).order_by("-seq")[:HISTORY_LIMIT]
    return list(reversed(newest))


def reply_context_build(job: ReplyJob) -> ReplyContext:
    """Decide the language, read the history, search the help centre and write the prompt for
    `job` (loaded with its conversation, tenant, trigger and reply)."""
    conversation = job.conversation
    tenant = conversation.tenant
    detected, language = reply_language_decide(conversation=conversation, message=job.trigger)
    history = _history(conversation, job.reply)
    query = job.trigger.text
    if tenant.redact_pii:
        region = phone_region(tenant_region=tenant.phone_region, locale=conversation.contact.locale)
        query = mask(query, region=region)
    passages = knowledge_search(tenant, query, language, tenant.knowledge_passages)
    parts = PromptParts(
        persona=tenant.persona,
        language_instruction=language_instruction(language) if language else "",
        knowledge_context=format_context(passages),
        summary_text=summary_prompt_text(conversation.summary) if conversation.summary else "",
        tools_guide=TOOLS_GUIDE,
        topics_guide=topics_instruction(tenant.sensitive_topics),
    )
    messages, placeholders = provider_messages(
        conversation,
        build_reply_prompt(
            persona=parts, history=history, token_budget=tenant.history_token_budget
        ),
    )
    return ReplyContext(
        detected=detected,
        language=language,
        history=history,
        passages=passages,
        messages=messages,
        config=tenant_provider_config(tenant),
        params=replace(tenant_chat_params(tenant), tools=TOOL_SCHEMAS, tool_choice="auto"),
        placeholders=placeholders,
        query=query,
    )
