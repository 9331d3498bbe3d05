from conversations.models import Message
from conversations.prompts import build_reply_prompt
from supportbot.llm import count_message_tokens


def turn(seq: int, role: str, text: str, status: str = "complete") -> Message:
    return Message(seq=seq, role=role, text=text, status=status)


def test_history_fits_budget_dropping_oldest_turns() -> None:
    history = [
        turn(i, "user" if i % 2 else "assistant", f"message number {i} " * 20) for i in range(1, 41)
    ]
    history.append(turn(41, "user", "What about my order?"))
    prompt = build_reply_prompt(persona="You help.", history=history, token_budget=400)
    assert prompt[0] == {"role": "system", "content": "You help."}
    assert prompt[-1] == {"role": "user", "content": "What about my order?"}
    assert count_message_tokens(prompt) <= 400
    assert len(prompt) < len(history)
    # The kept turns are the newest, in order.
    kept = [m["content"] for m in prompt[1:-1]]
    expected = [m.text for m in history[-len(kept) - 1 : -1]]
    assert kept == expected


def test_latest_visitor_message_is_kept_even_over_budget() -> None:
    prompt = build_reply_prompt(
        persona="p", history=[turn(1, "user", "word " * 2000)], token_budget=50
    )
    assert prompt[-1]["role"] == "user"
    assert len(prompt) == 2


def test_notices_and_failed_replies_are_not_sent_and_agents_speak_as_assistant() -> None:
    history = [
        turn(1, "user", "hi"),
        turn(2, "assistant", "partial", status="failed"),
        turn(3, "system", "The assistant can't answer right now."),
        turn(4, "agent", "Hello, this is Sam."),
        turn(5, "user", "thanks"),
    ]
    prompt = build_reply_prompt(persona="p", history=history, token_budget=1000)
    assert prompt[1:] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello, this is Sam."},
        {"role": "user", "content": "thanks"},
    ]
