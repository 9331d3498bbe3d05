"""The messages sent to the model for a reply: the persona, then the history that fits."""

from conversations.models import Message
from supportbot.llm import count_message_tokens

_ROLE_FOR_MODEL: dict[str, str] = {
    Message.Role.USER: "user",
    Message.Role.ASSISTANT: "assistant",
    Message.Role.AGENT: "assistant",
}


def build_reply_prompt(
    *, persona: str, history: list[Message], token_budget: int
) -> list[dict[str, str]]:
    """System prompt plus the newest turns that fit `token_budget` (oldest dropped first).

    `history` is in `seq` order and ends with the visitor's message being answered, which is
    always kept. Notices and failed replies are not shown to the model.
    """
    system = {"role": "system", "content": persona}
    turns = [
        {"role": _ROLE_FOR_MODEL[m.role], "content": m.text}
        for m in history
        if m.role in _ROLE_FOR_MODEL and m.text and m.status != Message.Status.FAILED
    ]
    kept: list[dict[str, str]] = []
    used = count_message_tokens([system])
    for turn in reversed(turns):
        cost = count_message_tokens([turn])
        if kept and used + cost > token_budget:
            break
        kept.append(turn)
        used += cost
    kept.reverse()
    # A conversation handed to the model starts with the visitor speaking.
    while kept and kept[0]["role"] == "assistant" and len(kept) > 1:
        kept.pop(0)
    return [system, *kept]
