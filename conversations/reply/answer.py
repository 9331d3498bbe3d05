"""One model's answer to a claimed reply job: each step streamed to the sockets, the tools it
asks for run between steps, at most MAX_TOOL_STEPS rounds of tools (then it must answer).

Moderation and the sensitive-topic policies (`safety`): a question about a refused topic gets
the offer of a person before any of the model's text is shown; the text is checked sentence by
sentence while it streams (`OutputGuard`), and a flagged reply stops and is replaced."""

from dataclasses import replace
from typing import Any

from conversations.models import LLMCall
from conversations.redaction import placeholders_save
from conversations.reply.claim import Claim, LeaseKeeper
from conversations.reply.delivery import ReplyDelivery
from conversations.reply.finish import Outcome
from conversations.reply.output_check import OutputGuard
from conversations.reply.passages import sources_cited
from conversations.reply.provider_stream import ProviderStream, SettledCall
from conversations.reply.safety import (
    output_withheld,
    topic_disclaimer,
    topic_refusal,
    unchecked_review,
)
from conversations.reply.tools import ToolTurn, tool_call_run
from supportbot.llm import Finished, ProviderConfig, TextDelta
from supportbot.tenants.usage import usage_day_add

MAX_TOOL_STEPS = 3
OUTPUT_CHECK_MARGIN = 1.0  # seconds past the moderation deadline to wait for the last check


class _Flagged(Exception):
    """The reply's text did not pass moderation; its stream was stopped."""


def _calls_record(claim: Claim, calls: list[SettledCall], purpose: str = "reply") -> None:
    """Store the calls of a request (with their cost) and add them to the tenant's usage."""
    if not calls:
        return
    LLMCall.objects.bulk_create(
        LLMCall.from_record(
            call.record,
            tenant_id=claim.tenant.pk,
            purpose=purpose,
            conversation_id=claim.conversation.pk,
            message_id=claim.reply.pk,
            cost=call.cost,
        )
        for call in calls
    )
    for call in calls:
        usage_day_add(
            tenant_id=claim.tenant.pk,
            model=call.record.model,
            requests=call.record.attempts,
            prompt_tokens=call.record.prompt_tokens or 0,
            completion_tokens=call.record.completion_tokens or 0,
            cost=call.cost,
        )
    calls.clear()


def _topic_calls_record(claim: Claim) -> None:
    """Store the sensitive-topic classification's call, once it answered."""
    if claim.topics is None:
        return
    records = claim.topics.result(timeout=0).records
    calls = [SettledCall(record, cost) for record, cost in records]
    records.clear()
    _calls_record(claim, calls, purpose="classification")


def _step(
    claim: Claim,
    stream: ProviderStream,
    delivery: ReplyDelivery,
    lease: LeaseKeeper,
    guard: OutputGuard,
) -> Finished:
    """Stream one request's text to the sockets; its `Finished`. Its call is recorded.
    Raises _Flagged (the stream stopped) when moderation flags the text."""
    finished: Finished | None = None
    stream.idle = lease.tick  # the lease is kept while the provider is silent, too
    try:
        for event in stream:
            if guard.flagged:
                stream.stop(timeout=1)
                raise _Flagged()
            if isinstance(event, TextDelta):
                delivery.add(event.text)
                guard.add(event.text)
                lease.tick()
            else:
                finished = event
    finally:
        _calls_record(claim, stream.records)
    assert finished is not None, "stream_chat ends with Finished"
    return finished


def _tool_request(finished: Finished) -> dict[str, Any]:
    """The assistant's turn that asked for tools, for the next request."""
    return {
        "role": "assistant",
        "content": finished.text or None,
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in finished.tool_calls
        ],
    }


def _ended(
    turn: ToolTurn, delivery: ReplyDelivery, finished: Finished, *, handed_off: bool = False
) -> Outcome:
    """The reply's outcome: its text (flushed to the sockets), the sources it cites (none when
    it handed off) and every passage it was given."""
    delivery.flush(end=True)
    text = delivery.all_text
    return Outcome(
        text=text,
        finished=finished,
        sources=[] if handed_off else sources_cited(turn.passages, text),
        handed_off=handed_off,
        chunk_ids=[passage.chunk_id for passage in turn.passages],
    )


def _redacted_results(claim: Claim, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tools' results as the provider may see them (new placeholders stored)."""
    if not claim.tenant.redact_pii:
        return results
    placeholders = claim.context.placeholders
    redacted = placeholders.redact_messages(results)
    placeholders_save(claim.conversation.pk, placeholders)
    return redacted


def reply_answer(
    claim: Claim,
    delivery: ReplyDelivery,
    config: ProviderConfig,
    first: ProviderStream | None,
    *,
    wait: float,
) -> Outcome:
    """The tool loop with model `config`; `first` is the request already on its way, if any.
    A request over the tenant's rate or concurrency limit waits up to `wait` seconds.

    Raises the provider's LLMError, and LeaseLost when another worker took the job over.
    """
    refusal = topic_refusal(claim)
    if refusal is not None:
        _topic_calls_record(claim)
        if first is not None:
            first.stop(timeout=1)
            _calls_record(claim, first.records)
        return refusal
    guard = OutputGuard(claim.screen.config, fail_closed=claim.tenant.moderation_fail_closed)
    try:
        return _answer(claim, delivery, config, first, wait=wait, guard=guard)
    except _Flagged:
        return output_withheld(claim, guard, None)
    finally:
        guard.close()


def _answer(
    claim: Claim,
    delivery: ReplyDelivery,
    config: ProviderConfig,
    first: ProviderStream | None,
    *,
    wait: float,
    guard: OutputGuard,
) -> Outcome:
    """The tool loop itself (see reply_answer)."""
    messages = list(claim.context.messages)
    turn = ToolTurn(
        tenant=claim.tenant,
        conversation_id=claim.conversation.pk,
        job_id=claim.job_id,
        reply_id=claim.reply.pk,
        language=claim.language,
        passages=list(claim.context.passages),
        placeholders=claim.context.placeholders,
    )
    lease = LeaseKeeper(claim)
    stream = first
    for step in range(MAX_TOOL_STEPS + 1):
        if stream is None:
            params = claim.context.params
            if step == MAX_TOOL_STEPS:
                params = replace(params, tool_choice="none")  # answer now
            stream = ProviderStream(
                config=config,
                messages=messages,
                params=params,
                cancel=claim.cancel,
                budget=claim.budget,
                wait=wait,
            )
        finished = _step(claim, stream, delivery, lease, guard)
        stream = None
        if not finished.tool_calls or step == MAX_TOOL_STEPS:
            return _answered(claim, delivery, guard, finished, turn)
        messages.append(_tool_request(finished))
        for call in finished.tool_calls:
            result = tool_call_run(turn, call, step=step)
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
        messages[-len(finished.tool_calls) :] = _redacted_results(
            claim, messages[-len(finished.tool_calls) :]
        )
        if turn.handed_off:
            return _ended(turn, delivery, finished, handed_off=True)
    raise AssertionError("unreachable")


def _answered(
    claim: Claim, delivery: ReplyDelivery, guard: OutputGuard, finished: Finished, turn: ToolTurn
) -> Outcome:
    """The outcome of a reply the model finished: its last sentences checked, the sensitive
    topic's disclaimer added."""
    deadline = claim.screen.config.deadline if claim.screen.config is not None else 0.0
    if not guard.finish(timeout=deadline + OUTPUT_CHECK_MARGIN):
        return output_withheld(claim, guard, finished)
    disclaimer, review = topic_disclaimer(claim)
    _topic_calls_record(claim)
    if disclaimer:
        delivery.add(f"\n\n_{disclaimer}_")
    delivery.flush(end=True)
    text = delivery.all_text
    return Outcome(
        text=text,
        finished=finished,
        sources=sources_cited(turn.passages, text),
        review=review or unchecked_review(claim, guard),
        chunk_ids=[passage.chunk_id for passage in turn.passages],
    )
