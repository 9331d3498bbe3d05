"""Trace points: callbacks see every stage reached; without callbacks nothing happens."""

from supportbot.trace import trace, trace_callback_add, trace_callback_remove


def test_callbacks_see_stages_until_removed() -> None:
    seen: list[tuple[str, str]] = []

    def callback(stage: str, key: str) -> None:
        seen.append((stage, key))

    trace("reply.task_start", 1)  # nobody listens: a no-op
    trace_callback_add(callback)
    try:
        trace("reply.task_start", 7)
        trace("reply.first_delta", "a-message-id")
    finally:
        trace_callback_remove(callback)
    trace("reply.task_start", 8)
    assert seen == [("reply.task_start", "7"), ("reply.first_delta", "a-message-id")]
