"""The messages sent to the model for a reply.

System prompt: the tenant's persona, the language to answer in, how to use tools and the
numbered knowledge-base context, and the rolling summary of older turns. Then the newest turns
(after the summary) that fit the token budget, oldest dropped first.
"""

from dataclasses import dataclass
from typing import Any

from conversations.models import Message
from supportbot.llm import count_message_tokens

# The turns the model sees: the visitor speaks as "user"; the assistant and agents are the
# assistant's side. Notices (system messages) are not turns.
TURN_ROLES: dict[str, str] = {
    Message.Role.USER: "user",
    Message.Role.ASSISTANT: "assistant",
    Message.Role.AGENT: "assistant",
}

TOOLS_GUIDE = (
    "You can call search_knowledge(query) to look up the help centre when the context below "
    "does not answer the question, and handoff_to_human(reason) when the visitor asks for a "
    "person or you cannot help. Never invent policies, prices or facts."
)
CONTEXT_GUIDE = (
    "Answer from the numbered help-centre passages below when they are relevant, and cite them "
    "with their numbers in square brackets, e.g. [1]. If they don't answer the question, say "
    "so honestly."
)


def is_turn(message: Message) -> bool:
    """True for a message the model is shown: a visitor's, assistant's or agent's words (not a
    notice, not empty, not a failed reply)."""
    return (
        message.role in TURN_ROLES
        and bool(message.text)
        and message.status != Message.Status.FAILED
    )


def model_turn(message: Message) -> dict[str, str]:
    """The chat message for a turn (see `is_turn`)."""
    return {"role": TURN_ROLES[message.role], "content": message.text}


@dataclass
class PromptParts:
    persona: str
    language_instruction: str = ""
    knowledge_context: str = ""
    summary_text: str = ""
    tools_guide: str = ""

    def system_text(self) -> str:
        parts = [self.persona.strip()]
        if self.language_instruction:
            parts.append(self.language_instruction)
        if self.tools_guide:
            parts.append(self.tools_guide)
        if self.knowledge_context:
            parts.append(f"{CONTEXT_GUIDE}\n\n{self.knowledge_context}")
        if self.summary_text:
            parts.append(self.summary_text)
        return "\n\n".join(part for part in parts if part)


def build_reply_prompt(
    *, persona: str | PromptParts, history: list[Message], token_budget: int
) -> list[dict[str, Any]]:
    """System prompt plus the newest turns that fit `token_budget` (oldest dropped first).

    `history` is in `seq` order (already cut at the summary) and ends with the visitor's
    message being answered, which is always kept. Notices and failed replies are not shown
    to the model; agents' messages are the assistant's side of the conversation.
    """
    parts = persona if isinstance(persona, PromptParts) else PromptParts(persona=persona)
    system = {"role": "system", "content": parts.system_text()}
    turns = [model_turn(m) for m in history if is_turn(m)]
    kept: list[dict[str, Any]] = []
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
