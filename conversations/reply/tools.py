"""The tools the model may call while it writes a reply: a registry, name -> schema + handler.

Every tool takes one string argument. The model's JSON is not trusted: the argument is parsed
and validated before the handler runs, and every call is recorded as a `ToolInvocation` (its
arguments as the model wrote them). A tool acts for the visitor: the placeholders of their
personal data in its argument are restored before it runs, unless its argument goes to the
provider again (`restores_placeholders=False`: the search, whose query may be embedded). Its
result is redacted before it goes back to the model (`answer.py`). To add
a tool, write its handler and add a `Tool` to `TOOLS`.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from conversations.handoff import conversation_request_agent
from conversations.models import ToolInvocation
from conversations.redaction import Placeholders
from conversations.reply.passages import knowledge_search
from knowledge.retrieval import Passage, format_context
from supportbot.llm import ToolCall
from supportbot.tenants.models import Tenant


@dataclass
class ToolTurn:
    """What the tools of one reply work with, and what they change."""

    tenant: Tenant
    conversation_id: UUID
    job_id: int
    reply_id: UUID
    language: str
    # The passages the model was given, numbered from 1; a search adds what it finds.
    passages: list[Passage] = field(default_factory=list)
    handed_off: bool = False  # a person was asked to join: the reply ends after this step
    placeholders: Placeholders = field(default_factory=Placeholders)


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    argument: str  # the one string argument
    argument_description: str
    max_chars: int
    run: Callable[[ToolTurn, str], str]  # (turn, argument) -> the result for the model
    restores_placeholders: bool = True  # the argument's placeholders become the values

    def schema(self) -> dict[str, Any]:
        """The Chat Completions `tools` entry."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": {
                    "type": "object",
                    "properties": {
                        self.argument: {"type": "string", "description": self.argument_description}
                    },
                    "required": [self.argument],
                    "additionalProperties": False,
                },
            },
        }

    def argument_from(self, raw: str) -> str | None:
        """The argument from the model's JSON, or None when it is not exactly what we asked."""
        try:
            data = json.loads(raw or "{}")
        except ValueError:
            return None
        if not isinstance(data, dict) or set(data) - {self.argument}:
            return None
        value = data.get(self.argument)
        if not isinstance(value, str) or not value.strip() or len(value) > self.max_chars:
            return None
        return value.strip()


def _search_knowledge(turn: ToolTurn, query: str) -> str:
    known = {p.chunk_id for p in turn.passages}
    limit = max(turn.tenant.knowledge_passages, 3)
    found = [
        p
        for p in knowledge_search(turn.tenant, query, turn.language, limit)
        if p.chunk_id not in known
    ]
    if not found:
        return "No help-centre passage matches."
    result = format_context(found, start=len(turn.passages) + 1)
    turn.passages.extend(found)
    return result


def _handoff_to_human(turn: ToolTurn, reason: str) -> str:
    if conversation_request_agent(
        conversation_id=turn.conversation_id, reason=reason, from_job=turn.job_id, notify=False
    ):
        turn.handed_off = True
    return "A person from the team was asked to join."


TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool(
            name="search_knowledge",
            description="Search the company's help-centre articles. Returns numbered passages.",
            argument="query",
            argument_description="What to look for, in words.",
            max_chars=500,
            run=_search_knowledge,
            restores_placeholders=False,
        ),
        Tool(
            name="handoff_to_human",
            description="Hand the conversation to a person from the support team.",
            argument="reason",
            argument_description="Why a person is needed.",
            max_chars=300,
            run=_handoff_to_human,
        ),
    )
}

TOOL_SCHEMAS: list[dict[str, Any]] = [tool.schema() for tool in TOOLS.values()]


def tool_call_run(turn: ToolTurn, call: ToolCall, *, step: int) -> str:
    """Run one tool call of the model and record it; returns the result for the model."""
    tool = TOOLS.get(call.name)
    if tool is None:
        status, result = ToolInvocation.Status.UNKNOWN_TOOL, f"Unknown tool {call.name[:64]!r}."
    else:
        argument = tool.argument_from(call.arguments)
        if argument is None:
            status = ToolInvocation.Status.INVALID_ARGUMENTS
            result = (
                f'Invalid arguments: expected {{"{tool.argument}": '
                f'"<text, at most {tool.max_chars} characters>"}}.'
            )
        else:
            if tool.restores_placeholders:
                argument = turn.placeholders.restore(argument)
            status, result = ToolInvocation.Status.OK, tool.run(turn, argument)
    ToolInvocation.objects.create(
        tenant_id=turn.tenant.pk,
        conversation_id=turn.conversation_id,
        message_id=turn.reply_id,
        call_id=call.id[:100],
        name=call.name[:64],
        arguments=call.arguments[:4000],
        status=status,
        result=result[:4000],
        step=step,
    )
    return result
