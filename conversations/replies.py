"""Generating an assistant reply: claim the job, stream from the model, persist once.

A reply job may be delivered more than once (a worker died, Redis redelivered it). The
`ReplyJob` row decides: a finished job is a no-op; a running job whose lease is still being
renewed is left to its worker; a running job whose lease lapsed is taken over and the reply
is generated again from the start under the same message id.

The model may call tools (`search_knowledge`, `handoff_to_human`) for a bounded number of steps.
When the provider fails, the reply degrades instead of failing: the tenant's fallback model,
else the best help-centre passage quoted with its source, else an offer of a person — and after
repeated failures the conversation is handed to a person.
"""

import json
import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from conversations import frames
from conversations.broadcast import broadcast_frame, broadcast_on_commit
from conversations.handoff import conversation_request_agent, reply_cancel_requested
from conversations.language import (
    conversation_language_store,
    language_instruction,
    reply_language_decide,
)
from conversations.models import Conversation, LLMCall, Message, ReplyJob, ToolInvocation
from conversations.notices import notice
from conversations.prompts import TOOLS_GUIDE, PromptParts, build_reply_prompt
from conversations.messages import conversation_changed, message_append
from conversations.stream_state import snapshot_clear, snapshot_write
from conversations.summaries import summary_enqueue_if_needed, summary_system_text
from knowledge.retrieval import Passage, search_knowledge
from supportbot.llm import (
    CallRecord,
    ChatParams,
    Finished,
    LLMError,
    ProviderConfig,
    StreamInterrupted,
    TextDelta,
    stream_chat,
)
from supportbot.tenants.models import Tenant
from supportbot.tenants.selectors import tenant_chat_params, tenant_provider_config

logger = logging.getLogger(__name__)

HISTORY_LIMIT = 200
MAX_TOOL_STEPS = 3
CANCEL_CHECK_INTERVAL = 0.1

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "search_knowledge",
            "description": "Search the company's help-centre articles. Returns numbered passages.",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "What to look for, in words."}
                },
                "required": ["query"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "handoff_to_human",
            "description": "Hand the conversation to a person from the support team.",
            "parameters": {
                "type": "object",
                "properties": {
                    "reason": {"type": "string", "description": "Why a person is needed."}
                },
                "required": ["reason"],
                "additionalProperties": False,
            },
        },
    },
]


class LeaseHeld(Exception):
    """Another worker is generating this reply; try again when its lease may have lapsed."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"reply lease held for {seconds:.1f}s more")
        self.seconds = seconds


class _Cancelled(Exception):
    """The reply was cancelled (an agent took over); whoever cancelled it has finalised it."""


class _LeaseLost(Exception):
    """Another worker took the job over."""


def _lease_seconds() -> float:
    return float(settings.REPLY_LEASE_SECONDS)


# --- the provider stream, started early on its own thread ---------------------------------------

_END = object()


class _Pump:
    """Runs a provider stream on a thread and hands its events over through a queue.

    Lets the worker start the request first and do its database writes while the model
    thinks, instead of before. Call records are handed over too, so only the worker's own
    thread touches the database.
    """

    def __init__(self, start: Callable[[Callable[[CallRecord], None]], Iterator[Any]]) -> None:
        self._events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.records: list[CallRecord] = []
        self._thread = threading.Thread(target=self._run, args=(start,), daemon=True)
        self._thread.start()

    def _run(self, start: Callable[[Callable[[CallRecord], None]], Iterator[Any]]) -> None:
        try:
            for event in start(self.records.append):
                self._events.put(event)
            self._events.put(_END)
        except BaseException as exc:  # handed to the consuming thread
            self._events.put(exc)

    def __iter__(self) -> Iterator[TextDelta | Finished]:
        while True:
            item = self._events.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def join(self, timeout: float = 5.0) -> None:
        self._thread.join(timeout)


@dataclass
class _Claim:
    job_id: int
    attempt: int
    tenant: Tenant
    conversation: Conversation
    reply: Message
    trigger: Message
    language: str
    messages: list[dict[str, Any]]
    passages: list[Passage]
    config: ProviderConfig
    params: ChatParams
    cancel_flag: "_CancelFlag"
    pump: _Pump | None = None


@dataclass
class _CancelFlag:
    job_id: int
    checked_at: float = 0.0
    cancelled: bool = False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self.cancelled and now - self.checked_at >= CANCEL_CHECK_INTERVAL:
            self.checked_at = now
            self.cancelled = reply_cancel_requested(self.job_id)
        return self.cancelled


def _start_pump(
    config: ProviderConfig, messages: list[dict[str, Any]], params: ChatParams, cancel: _CancelFlag
) -> _Pump:
    msgs = list(messages)
    return _Pump(
        lambda record: stream_chat(config, msgs, params, on_record=record, cancelled=cancel)
    )


def _format_passages(passages: list[Passage], *, start: int = 1) -> str:
    blocks = []
    for number, passage in enumerate(passages, start=start):
        heading = f" — {passage.heading}" if passage.heading else ""
        blocks.append(f"[{number}] {passage.title}{heading}\n{passage.text.strip()}")
    return "\n\n".join(blocks)


def _safe_search(tenant: Tenant, query: str, language: str, limit: int) -> list[Passage]:
    if limit <= 0 or not query.strip():
        return []
    try:
        return search_knowledge(tenant_id=tenant.pk, query=query, language=language, limit=limit)
    except Exception:  # retrieval trouble must not cost the visitor an answer
        logger.exception("knowledge search failed for tenant %s", tenant.pk)
        return []


def _claim(job_id: int) -> _Claim | None:
    with transaction.atomic():
        job = (
            ReplyJob.objects.select_for_update(of=("self",))
            .select_related("conversation__tenant", "trigger", "reply")
            .filter(pk=job_id)
            .first()
        )
        if job is None or job.state in (
            ReplyJob.State.DONE,
            ReplyJob.State.FAILED,
            ReplyJob.State.CANCELLED,
        ):
            return None
        now = timezone.now()
        if (
            job.state == ReplyJob.State.RUNNING
            and job.lease_expires_at
            and job.lease_expires_at > now
        ):
            raise LeaseHeld((job.lease_expires_at - now).total_seconds())
        conversation = job.conversation
        tenant = conversation.tenant
        if conversation.status != Conversation.Status.BOT:
            job.state = ReplyJob.State.CANCELLED
            job.save(update_fields=["state", "updated_at"])
            return None

        # Decided now (the prompt needs it), stored once the request is on its way.
        detected, language = reply_language_decide(conversation=conversation, message=job.trigger)
        before = {"seq__lt": job.reply.seq} if job.reply is not None else {}
        history = list(
            Message.objects.filter(
                conversation=conversation, seq__gt=conversation.summary_seq, **before
            ).order_by("-seq")[:HISTORY_LIMIT]
        )
        history.reverse()
        passages = _safe_search(tenant, job.trigger.text, language, tenant.knowledge_passages)
        parts = PromptParts(
            persona=tenant.persona,
            language_instruction=language_instruction(language) if language else "",
            knowledge_context=_format_passages(passages),
            summary_text=summary_system_text(conversation.summary) if conversation.summary else "",
            tools_guide=TOOLS_GUIDE,
        )
        messages = build_reply_prompt(
            persona=parts, history=history, token_budget=tenant.history_token_budget
        )
        config = tenant_provider_config(tenant)
        params = replace(tenant_chat_params(tenant), tools=TOOLS, tool_choice="auto")
        cancel = _CancelFlag(job_id=job.pk)
        # The request goes out now; the writes below happen while the model thinks.
        pump = _start_pump(config, messages, params, cancel)
        try:
            if job.reply is None:
                job.reply = message_append(
                    conversation=conversation,
                    role=Message.Role.ASSISTANT,
                    text="",
                    status=Message.Status.STREAMING,
                    broadcast=False,
                )
            else:
                job.reply.text = ""
                job.reply.status = Message.Status.STREAMING
                job.reply.save(update_fields=["text", "status"])
            if conversation_language_store(
                conversation=conversation,
                message=job.trigger,
                detected=detected,
                reply_language=language,
            ):
                conversation_changed(conversation)
            job.state = ReplyJob.State.RUNNING
            job.attempts += 1
            job.lease_expires_at = now + timedelta(seconds=_lease_seconds())
            job.save(update_fields=["state", "attempts", "lease_expires_at", "reply", "updated_at"])
            summary_enqueue_if_needed(
                conversation=conversation, history=history, token_budget=tenant.history_token_budget
            )
        except BaseException:
            cancel.cancelled = True
            raise
    return _Claim(
        job_id=job.pk,
        attempt=job.attempts,
        tenant=tenant,
        conversation=conversation,
        reply=job.reply,
        trigger=job.trigger,
        language=language,
        messages=messages,
        passages=passages,
        config=config,
        params=params,
        cancel_flag=cancel,
        pump=pump,
    )


def _renew_lease(claim: _Claim) -> bool:
    """Extend our lease; False when another worker has taken the job over."""
    return bool(
        ReplyJob.objects.filter(
            pk=claim.job_id, attempts=claim.attempt, state=ReplyJob.State.RUNNING
        ).update(lease_expires_at=timezone.now() + timedelta(seconds=_lease_seconds()))
    )


def _record_calls(claim: _Claim, records: list[CallRecord], purpose: str = "reply") -> None:
    LLMCall.objects.bulk_create(
        LLMCall.from_record(
            record,
            tenant_id=claim.tenant.pk,
            purpose=purpose,
            conversation_id=claim.conversation.pk,
            message_id=claim.reply.pk,
        )
        for record in records
    )
    records.clear()


def _release_connection() -> None:
    """Give the pooled database connection back while the model streams (seconds with no
    query but a lease renewal): a worker thread holding it would cap concurrent replies at
    the pool's size. The next query takes one from the pool again."""
    if connection.settings_dict.get("OPTIONS", {}).get("pool") and not connection.in_atomic_block:
        connection.close()


def _lock_own_job(claim: _Claim) -> ReplyJob | None:
    job = ReplyJob.objects.select_for_update().filter(pk=claim.job_id).first()
    if job is None or job.attempts != claim.attempt or job.state != ReplyJob.State.RUNNING:
        return None
    return job


# --- streaming ----------------------------------------------------------------------------------


@dataclass
class _Stream:
    """Text streamed to the conversation's sockets, flushed in coalesced deltas."""

    conversation_id: Any
    message_id: str
    flush_interval: float
    text: str = ""
    pending: str = ""
    index: int = -1
    last_flush: float = 0.0

    def start(self) -> None:
        self.text, self.pending, self.index = "", "", -1
        snapshot_write(self.message_id, text="", index=-1)
        broadcast_frame(
            self.conversation_id, {"type": "reply.start", "message_id": self.message_id}
        )

    def add(self, piece: str) -> None:
        self.pending += piece
        now = time.monotonic()
        if self.index < 0 or now - self.last_flush >= self.flush_interval:
            self.flush()
            self.last_flush = now

    def flush(self) -> None:
        if not self.pending:
            return
        self.index += 1
        self.text += self.pending
        # The snapshot first, then the delta: see stream_state.
        snapshot_write(self.message_id, text=self.text, index=self.index)
        broadcast_frame(
            self.conversation_id,
            {
                "type": "reply.delta",
                "message_id": self.message_id,
                "index": self.index,
                "text": self.pending,
            },
        )
        self.pending = ""

    @property
    def all_text(self) -> str:
        return self.text + self.pending


@dataclass
class _Outcome:
    text: str
    finished: Finished | None
    sources: list[dict[str, str]] = field(default_factory=list)
    handed_off: bool = False


def _sources(passages: list[Passage], text: str) -> list[dict[str, str]]:
    """The passages the answer cites by number ([2]), or all it was given when it cites none."""
    cited = {int(n) for n in re.findall(r"\[(\d{1,2})\]", text)}
    chosen = [p for i, p in enumerate(passages, start=1) if i in cited] or passages
    seen: set[tuple[str, str]] = set()
    result = []
    for passage in chosen:
        key = (passage.title, passage.url)
        if key not in seen:
            seen.add(key)
            result.append({"title": passage.title, "url": passage.url})
    return result


def _arguments(raw: str, name: str, limit: int) -> str | None:
    """The one string argument a tool takes, validated: the model's JSON is not trusted."""
    try:
        data = json.loads(raw or "{}")
    except ValueError:
        return None
    if not isinstance(data, dict) or set(data) - {name}:
        return None
    value = data.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        return None
    return value.strip()


def _run_tool(claim: _Claim, call: Any, step: int, passages: list[Passage]) -> tuple[str, bool]:
    """Execute one tool call; returns (result for the model, handed off)."""
    handed_off = False
    if call.name == "search_knowledge":
        query = _arguments(call.arguments, "query", 500)
        if query is None:
            status, result = (
                ToolInvocation.Status.INVALID_ARGUMENTS,
                ('Invalid arguments: expected {"query": "<text, at most 500 characters>"}.'),
            )
        else:
            found = [
                p
                for p in _safe_search(
                    claim.tenant, query, claim.language, max(claim.tenant.knowledge_passages, 3)
                )
                if p.chunk_id not in {q.chunk_id for q in passages}
            ]
            status = ToolInvocation.Status.OK
            result = (
                _format_passages(found, start=len(passages) + 1)
                if found
                else "No help-centre passage matches."
            )
            passages.extend(found)
    elif call.name == "handoff_to_human":
        reason = _arguments(call.arguments, "reason", 300)
        if reason is None:
            status, result = (
                ToolInvocation.Status.INVALID_ARGUMENTS,
                ('Invalid arguments: expected {"reason": "<text, at most 300 characters>"}.'),
            )
        else:
            handed_off = conversation_request_agent(
                conversation_id=claim.conversation.pk,
                reason=reason,
                from_job=claim.job_id,
                notify=False,
            )
            status, result = ToolInvocation.Status.OK, "A person from the team was asked to join."
    else:
        status, result = ToolInvocation.Status.UNKNOWN_TOOL, f"Unknown tool {call.name[:64]!r}."
    ToolInvocation.objects.create(
        tenant_id=claim.tenant.pk,
        conversation_id=claim.conversation.pk,
        message_id=claim.reply.pk,
        call_id=call.id[:100],
        name=call.name[:64],
        arguments=call.arguments[:4000],
        status=status,
        result=result[:4000],
        step=step,
    )
    return result, handed_off


def _generate(
    claim: _Claim, stream: _Stream, config: ProviderConfig, first: _Pump | None
) -> _Outcome:
    """The tool loop: stream each step; run the tools it asks for; at most MAX_TOOL_STEPS."""
    messages = list(claim.messages)
    passages = list(claim.passages)
    renew_every = _lease_seconds() / 3
    last_renew = time.monotonic()
    pump = first
    for step in range(MAX_TOOL_STEPS + 1):
        params = claim.params
        if step == MAX_TOOL_STEPS:
            params = replace(params, tool_choice="none")  # answer now
        if pump is None:
            pump = _start_pump(config, messages, params, claim.cancel_flag)
        finished: Finished | None = None
        try:
            for event in pump:
                if isinstance(event, TextDelta):
                    stream.add(event.text)
                    now = time.monotonic()
                    if now - last_renew >= renew_every:
                        if not _renew_lease(claim):
                            raise _LeaseLost()
                        _release_connection()
                        last_renew = now
                else:
                    finished = event
        finally:
            _record_calls(claim, pump.records)
            pump = None
        assert finished is not None, "stream_chat ends with Finished"
        if not finished.tool_calls or step == MAX_TOOL_STEPS:
            stream.flush()
            return _Outcome(
                text=stream.all_text, finished=finished, sources=_sources(passages, stream.all_text)
            )
        messages.append(
            {
                "role": "assistant",
                "content": finished.text or None,
                "tool_calls": [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": c.arguments},
                    }
                    for c in finished.tool_calls
                ],
            }
        )
        handed_off = False
        for call in finished.tool_calls:
            result, handed = _run_tool(claim, call, step, passages)
            handed_off = handed_off or handed
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
        if handed_off:
            stream.flush()
            return _Outcome(text=stream.all_text, finished=finished, handed_off=True)
    raise AssertionError("unreachable")


# --- endings -------------------------------------------------------------------------------------


def _finish(claim: _Claim, outcome: _Outcome, *, degraded: str = "") -> None:
    """Persist the reply (once: only the job's current attempt may) and broadcast it on commit."""
    reply = claim.reply
    finished = outcome.finished
    notices: list[str] = []
    with transaction.atomic():
        job = _lock_own_job(claim)
        if job is None:
            return
        reply.text = outcome.text
        reply.status = Message.Status.COMPLETE
        reply.sources = outcome.sources
        reply.language = claim.language
        if outcome.handed_off:
            if not outcome.text.strip():
                # Nothing was said: the reply becomes the notice that a person was asked.
                reply.role = Message.Role.SYSTEM
                reply.text = notice("handoff", claim.language)
                reply.sources = []
            else:
                notices.append(notice("handoff", claim.language))
        elif finished is not None and finished.finish_reason == "length":
            notices.append(notice("length", claim.language))
        elif finished is not None and finished.finish_reason == "content_filter":
            notices.append(notice("content_filter", claim.language))
        elif not outcome.text.strip():
            reply.status = Message.Status.FAILED
            notices.append(notice("unavailable", claim.language))
        if finished is not None:
            reply.finish_reason = finished.finish_reason or ""
            reply.model = finished.model or ""
            if finished.usage is not None:
                reply.prompt_tokens = finished.usage.prompt_tokens
                reply.completion_tokens = finished.usage.completion_tokens
            reply.latency_ms = finished.latency_ms
        else:
            reply.finish_reason = "degraded"
        reply.completed_at = timezone.now()
        reply.save()
        job.state = ReplyJob.State.DONE
        job.error_code = degraded[:40]
        job.save(update_fields=["state", "error_code", "updated_at"])
        broadcast_on_commit(claim.conversation.pk, frames.message_frame(reply))
        for text in notices:
            message_append(conversation=claim.conversation, role=Message.Role.SYSTEM, text=text)
    snapshot_clear(reply.pk)


def _recent_failures(claim: _Claim) -> int:
    """Consecutive degraded replies in this conversation, this one included."""
    count = 0
    recent = ReplyJob.objects.filter(conversation=claim.conversation).order_by("-created_at")[:10]
    for job in recent.values_list("error_code", "state"):
        error_code, state = job
        if state == ReplyJob.State.DONE and not error_code:
            break
        if error_code:
            count += 1
    return count


def _degrade(claim: _Claim, error: LLMError) -> None:
    """No model could answer: quote the help centre, else offer a person; hand over after
    repeated failures. The visitor always gets an honest reply."""
    passages = claim.passages or _safe_search(claim.tenant, claim.trigger.text, claim.language, 1)
    code = f"degraded:{error.code}"
    if passages:
        best = passages[0]
        quoted = "\n".join(f"> {line}" if line else ">" for line in best.text.strip().splitlines())
        text = f"{notice('knowledge_quote', claim.language)}\n\n{quoted}\n\n[1]"
        outcome = _Outcome(text=text, finished=None, sources=_sources([best], "[1]"))
    else:
        outcome = _Outcome(text=notice("handoff_offer", claim.language), finished=None)
    _finish(claim, outcome, degraded=code)
    trigger = claim.trigger
    if not passages:
        broadcast_frame(
            claim.conversation.pk,
            frames.error_frame(
                "unavailable",
                "The assistant can't answer right now; your message is kept.",
                client_id=trigger.client_id,
            ),
        )
    if _recent_failures(claim) >= max(claim.tenant.handoff_after_failures, 1):
        conversation_request_agent(
            conversation_id=claim.conversation.pk,
            reason=f"The assistant could not answer ({error.code}), repeatedly.",
        )


def _release(claim: _Claim) -> None:
    """Give the job back after an unexpected error, so a retry can claim it at once."""
    ReplyJob.objects.filter(
        pk=claim.job_id, attempts=claim.attempt, state=ReplyJob.State.RUNNING
    ).update(lease_expires_at=timezone.now())


def reply_generate(*, job_id: int) -> None:
    """Produce the assistant's reply for a reply job, streaming it to the conversation."""
    claim = _claim(job_id)
    if claim is None:
        return
    _release_connection()
    stream = _Stream(
        conversation_id=claim.conversation.pk,
        message_id=str(claim.reply.pk),
        flush_interval=float(settings.REPLY_FLUSH_INTERVAL),
    )
    stream.start()
    configs = [claim.config]
    fallback = claim.tenant.fallback_llm_model
    if fallback and fallback != claim.config.model:
        configs.append(replace(claim.config, model=fallback))
    first = claim.pump
    error: LLMError | None = None
    try:
        for attempt, config in enumerate(configs):
            if attempt:
                stream.start()  # the fallback answers from the start under the same id
            try:
                outcome = _generate(claim, stream, config, first)
            except StreamInterrupted as exc:
                error = exc
            except LLMError as exc:
                if exc.code == "cancelled":
                    raise _Cancelled() from None
                error = exc
            else:
                _finish(claim, outcome)
                return
            finally:
                first = None
            logger.warning("reply %s: %s failed (%s)", claim.reply.pk, config.model, error.code)
        assert error is not None
        _degrade(claim, error)
    except (_Cancelled, _LeaseLost):
        logger.info("reply %s stopped: cancelled or taken over", claim.reply.pk)
    except Exception:
        _release(claim)
        raise
    finally:
        if claim.pump is not None:
            claim.cancel_flag.cancelled = True
            claim.pump.join(timeout=1)


def reply_jobs_requeue_stalled(*, older_than: timedelta = timedelta(minutes=2)) -> list[int]:
    """Ids of reply jobs that lost their worker or their queue message, to enqueue again."""
    now = timezone.now()
    queued = ReplyJob.objects.filter(
        state=ReplyJob.State.QUEUED, created_at__lt=now - older_than
    ).values_list("pk", flat=True)
    running = ReplyJob.objects.filter(
        state=ReplyJob.State.RUNNING, lease_expires_at__lt=now
    ).values_list("pk", flat=True)
    return list(queued[:500]) + list(running[:500])
