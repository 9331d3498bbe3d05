"""Which broadcast frames a socket passes on, so a client never sees streamed text twice.

Shared by the visitor's and the agent's websockets. A socket that resumed a streaming reply
from its snapshot drops the deltas the snapshot already held; once a reply's final `message`
went out, late frames of that reply (a cancelled reply's worker may flush once more) are
dropped too.
"""

from typing import Any

_FINISHED_MEMORY = 64  # replies remembered as ended, per socket


class ReplyStreamFilter:
    def __init__(self) -> None:
        self._covered: dict[str, int] = {}  # message id -> last delta index already sent
        self._finished: dict[str, None] = {}  # insertion-ordered set of ended replies

    def resumed(self, covered: dict[str, int]) -> None:
        """The socket sent these replies' text so far (snapshot delta index per message id)."""
        self._covered = dict(covered)

    def admit(self, frame: dict[str, Any]) -> bool:
        kind = frame.get("type")
        if kind in ("reply.start", "reply.delta") and frame["message_id"] in self._finished:
            return False
        if kind == "reply.start":
            self._covered[frame["message_id"]] = -1  # a (re)start: indexes count from 0 again
        elif kind == "reply.delta":
            covered = self._covered.get(frame["message_id"])
            if covered is not None and frame["index"] <= covered:
                return False
        elif kind == "message" and frame["message"].get("status") != "streaming":
            message_id = frame["message"]["id"]
            if self._covered.pop(message_id, None) is not None:
                self._finished[message_id] = None
                if len(self._finished) > _FINISHED_MEMORY:
                    del self._finished[next(iter(self._finished))]
        return True


def is_first_delta(frame: object) -> bool:
    """The first `reply.delta` of a reply: where a trace times the stream's first token."""
    return (
        isinstance(frame, dict) and frame.get("type") == "reply.delta" and frame.get("index") == 0
    )
