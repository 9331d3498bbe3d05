"""What moderation and the sensitive-topic policies make of a reply: the refusals, the withheld
reply's notice, the disclaimer, and the audit (`Review`) stored with the reply."""

from conversations.notices import notice
from conversations.reply.claim import Claim
from conversations.reply.finish import Outcome, Review
from conversations.reply.output_check import OutputGuard
from conversations.reply.screening import ScreenResult
from conversations.review import INPUT_FLAGGED, MODERATION_UNAVAILABLE, OUTPUT_FLAGGED
from supportbot.llm import Finished
from supportbot.tenants.sensitive_topics import DISCLAIMER, REFUSE

MODERATED = "moderated"
SENSITIVE_TOPIC = "sensitive_topic"


def _details(result: ScreenResult | None, stage: str) -> dict[str, object]:
    details: dict[str, object] = {"stage": stage}
    if result is not None and result.verdict is not None:
        details["categories"] = list(result.verdict.categories)
        details["model"] = result.verdict.model
    if result is not None and result.error:
        details["error"] = result.error
    return details


def input_refusal(claim: Claim, result: ScreenResult) -> Outcome:
    """The reply to a visitor's message that did not pass moderation: a polite refusal, or (the
    check failed, failing closed) that the assistant can't answer now; marked for review."""
    if result.flagged:
        text, reason = notice("moderated_input", claim.language), INPUT_FLAGGED
    else:
        text, reason = notice("unavailable", claim.language), MODERATION_UNAVAILABLE
    return Outcome(
        text=text,
        finished=None,
        withheld=MODERATED,
        review=Review(
            action=f"moderation.{reason}", reason=reason, details=_details(result, "input")
        ),
    )


def output_withheld(claim: Claim, guard: OutputGuard, finished: Finished | None) -> Outcome:
    """The reply whose text did not pass moderation: an honest notice instead of the text."""
    result = guard.result
    reason = OUTPUT_FLAGGED if result is not None and result.flagged else MODERATION_UNAVAILABLE
    return Outcome(
        text=notice("moderated_reply", claim.language),
        finished=finished,
        withheld=MODERATED,
        review=Review(
            action=f"moderation.{reason}", reason=reason, details=_details(result, "output")
        ),
    )


def topic_refusal(claim: Claim) -> Outcome | None:
    """The offer of a person when the question is about a topic the tenant refuses; None when
    it is not (waits for the classification, bounded by its deadline)."""
    if claim.topics is None or not claim.topics.may_refuse:
        return None
    verdict = claim.topics.result(timeout=claim.topics.config.deadline + 1)
    if verdict.policy != REFUSE:
        return None
    return Outcome(
        text=notice("sensitive_refuse", claim.language, topic=verdict.topic),
        finished=None,
        withheld=SENSITIVE_TOPIC,
        review=Review(action="sensitive_topic.refused", details={"topic": verdict.topic}),
    )


def topic_disclaimer(claim: Claim) -> tuple[str, Review | None]:
    """The disclaimer a reply about a "disclaimer" topic ends with ("" for none)."""
    if claim.topics is None:
        return "", None
    verdict = claim.topics.result(timeout=claim.topics.config.deadline + 1)
    if verdict.policy != DISCLAIMER:
        return "", None
    text = notice("sensitive_disclaimer", claim.language, topic=verdict.topic)
    return text, Review(action="sensitive_topic.disclaimer", details={"topic": verdict.topic})


def unchecked_review(claim: Claim, guard: OutputGuard) -> Review | None:
    """The audit event of a reply let through although a moderation check failed (fail open)."""
    for result, stage in ((claim.screen.result(), "input"), (guard.result, "output")):
        if result is not None and result.error and not result.blocked:
            return Review(action="moderation.unchecked", details=_details(result, stage))
    return None
