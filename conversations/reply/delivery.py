"""The reply's text as it streams: coalesced deltas to the conversation's sockets.

A delta goes out at once for the first piece of text, then at most every `flush_interval`
seconds, so a fast model does not cost a frame per token. The text so far is written to the
stream snapshot before each delta (see `stream_state`), so a socket that (re)connects mid-reply
misses nothing and repeats nothing.

These frames are sent at once (`broadcast_frame`), not on commit: they belong to no
transaction, and the worker holds no database connection while the model streams.
"""

import time
from dataclasses import dataclass
from uuid import UUID

from conversations.broadcast import broadcast_frame
from conversations.stream_state import snapshot_write
from supportbot.trace import trace


@dataclass
class ReplyDelivery:
    conversation_id: UUID
    message_id: str
    flush_interval: float
    text: str = ""  # sent so far
    pending: str = ""  # received, not sent yet
    index: int = -1  # of the last delta sent
    last_flush: float = 0.0

    def start(self) -> None:
        """Tell the sockets a reply starts (again, from nothing, for a fallback model)."""
        self.text, self.pending, self.index = "", "", -1
        if not snapshot_write(self.message_id, text="", index=-1):
            return  # cancelled (sealed): nothing more reaches the sockets
        broadcast_frame(
            self.conversation_id, {"type": "reply.start", "message_id": self.message_id}
        )

    def add(self, piece: str) -> None:
        self.pending += piece
        now = time.monotonic()
        if self.index < 0 or now - self.last_flush >= self.flush_interval:
            self.flush()
            self.last_flush = now

    def flush(self) -> None:
        """Send what is pending as one delta."""
        if not self.pending:
            return
        self.index += 1
        self.text += self.pending
        # The snapshot first, then the delta: see stream_state. A sealed (cancelled) reply
        # publishes nothing more.
        if not snapshot_write(self.message_id, text=self.text, index=self.index):
            self.pending = ""
            return
        if self.index == 0:
            trace("reply.first_delta", self.message_id)
        broadcast_frame(
            self.conversation_id,
            {
                "type": "reply.delta",
                "message_id": self.message_id,
                "index": self.index,
                "text": self.pending,
            },
        )
        self.pending = ""

    @property
    def all_text(self) -> str:
        return self.text + self.pending
