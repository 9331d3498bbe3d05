"""Which broadcast frames a socket passes on, so a client never sees streamed text twice and
never a silent gap.

Shared by the visitor's and the agent's websockets. A socket that resumed a streaming reply
from its snapshot drops the deltas the snapshot already held; once a reply's final `message`
went out, late frames of that reply (a cancelled reply's worker may flush once more) are
dropped too.

A delta whose index is past the next one expected means frames were lost on the way (the
channel layer dropped them, or the socket missed the reply's `reply.start`): the filter calls
it a gap, and the socket resyncs the client from the reply's snapshot (`reply.start` and one
`reply.delta` with the text so far) instead of passing the delta on.
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

    def is_gap(self, frame: dict[str, Any]) -> bool:
        """A delta that does not follow what the socket sent of its reply: frames before it
        were lost. (A reply's first delta is index 0, and each later one the next index.)"""
        if frame.get("type") != "reply.delta" or frame["message_id"] in self._finished:
            return False
        covered = self._covered.get(frame["message_id"], -1)
        return bool(frame["index"] > covered + 1)

    def resynced(self, message_id: str, index: int) -> None:
        """The socket sent the reply's text up to delta `index` (a `reply.start` and its
        snapshot) after a gap."""
        self._covered[message_id] = index

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
            self._covered[frame["message_id"]] = frame["index"]
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
