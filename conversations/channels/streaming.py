"""Showing a reply as it forms on Telegram and Slack: one message posted with the first text,
then edited, throttled within the platform's rate limits, until the reply is stored; the final
text is then delivered by the outbox (which edits that same message).

(Built by the channel layer's streaming work: `reply_stream_follow_run`.)
"""


def reply_stream_follow_run(*, job_id: int) -> None:
    """Follow the reply of a reply job on its conversation's channel (a no-op for now)."""
    return
