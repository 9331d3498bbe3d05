"""When no model could answer: quote the help centre, else offer a person; hand the
conversation over after repeated failures. The visitor always gets an honest reply."""

from conversations import frames
from conversations.broadcast import broadcast_frame
from conversations.handoff import conversation_request_agent
from conversations.models import ReplyJob
from conversations.notices import notice
from conversations.reply.claim import Claim
from conversations.reply.finish import Outcome, reply_finish
from conversations.reply.passages import knowledge_search, sources_cited
from supportbot.llm import LLMError
from supportbot.tenants.limits import LIMIT_CODES


def _recent_failures(claim: Claim) -> int:
    """Consecutive degraded replies in this conversation, this one included."""
    count = 0
    recent = ReplyJob.objects.filter(conversation=claim.conversation).order_by("-created_at")[:10]
    for error_code, state in recent.values_list("error_code", "state"):
        if state == ReplyJob.State.DONE and not error_code:
            break
        if error_code:
            count += 1
    return count


def _quote_or_offer(claim: Claim) -> Outcome:
    """The best help-centre passage quoted with its source, else the offer of a person."""
    passages = claim.context.passages or knowledge_search(
        claim.tenant, claim.context.query, claim.language, 1
    )
    if not passages:
        return Outcome(text=notice("handoff_offer", claim.language), finished=None)
    best = passages[0]
    quoted = "\n".join(f"> {line}" if line else ">" for line in best.text.strip().splitlines())
    text = f"{notice('knowledge_quote', claim.language)}\n\n{quoted}\n\n[1]"
    return Outcome(text=text, finished=None, sources=sources_cited([best], "[1]"))


def reply_degrade(claim: Claim, error: LLMError) -> None:
    """Finish the reply without a model, after `error`. When the tenant's usage limits refused
    the call, the reply says so first."""
    outcome = _quote_or_offer(claim)
    over_limit = error.code in LIMIT_CODES
    if over_limit:
        outcome.text = f"{notice('usage_limit', claim.language)}\n\n{outcome.text}"
    reply_finish(claim, outcome, degraded=f"degraded:{error.code}")
    if not outcome.sources:
        detail = (
            "The assistant has reached its usage limit; your message is kept."
            if over_limit
            else "The assistant can't answer right now; your message is kept."
        )
        broadcast_frame(
            claim.conversation.pk,
            frames.error_frame("unavailable", detail, client_id=claim.trigger.client_id),
        )
    if _recent_failures(claim) >= max(claim.tenant.handoff_after_failures, 1):
        conversation_request_agent(
            conversation_id=claim.conversation.pk,
            reason=f"The assistant could not answer ({error.code}), repeatedly.",
        )
