"""The reply's text as it streams: coalesced deltas to the conversation's sockets.

A delta goes out at once for the first piece of text, then at most every `flush_interval`
seconds, so a fast model does not cost a frame per token. The text so far is written to the
stream snapshot before each delta (see `stream_state`), so a socket that (re)connects mid-reply
misses nothing and repeats nothing.

The model writes placeholders where the visitor's personal data was (`redaction.py`): the
delivery restores them, holding back a trailing piece that may be the start of one until the
next piece (or the end) tells, so the sockets, the snapshot and the stored reply all hold the
visitor's own text.

These frames are sent at once, not on commit: they belong to no transaction, and the worker
holds no database connection while the model streams. Each goes out with its snapshot write, in
one Redis script (`broadcast.layer_publication`), or, with a channel layer other than Redis
pub/sub, through `broadcast_frame` after it.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from conversations.broadcast import broadcast_frame, layer_publication
from conversations.redaction import Placeholders, PlaceholderStream
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
    placeholders: Placeholders = field(default_factory=Placeholders)
    restoring: PlaceholderStream | None = None
    on_sealed: Callable[[], None] | None = None  # told when a write finds the reply sealed

    def start(self) -> None:
        """Tell the sockets a reply starts (again, from nothing, for a fallback model)."""
        self.text, self.pending, self.index = "", "", -1
        self.restoring = self.placeholders.stream()
        # A sealed (cancelled) reply: nothing more reaches the sockets.
        self._send({"type": "reply.start", "message_id": self.message_id}, text="", index=-1)

    def add(self, piece: str) -> None:
        if self.restoring is None:
            self.restoring = self.placeholders.stream()
        self.pending += self.restoring.feed(piece)
        now = time.monotonic()
        if self.index < 0 or now - self.last_flush >= self.flush_interval:
            self.flush()
            self.last_flush = now

    def flush(self, *, end: bool = False) -> None:
        """Send what is pending as one delta; at the `end` of the text, what was held back
        too."""
        if end and self.restoring is not None:
            self.pending += self.restoring.end()
        if not self.pending:
            return
        self.index += 1
        self.text += self.pending
        if self.index == 0:
            trace("reply.first_delta", self.message_id)
        frame = {
            "type": "reply.delta",
            "message_id": self.message_id,
            "index": self.index,
            "text": self.pending,
        }
        self.pending = ""
        self._send(frame, text=self.text, index=self.index)

    def _send(self, frame: dict[str, Any], *, text: str, index: int) -> bool:
        """The snapshot first, then the frame (see stream_state); False when the reply is
        sealed (cancelled): nothing is published, and `on_sealed` is told."""
        publication = layer_publication(self.conversation_id, frame)
        if publication is not None:
            publish = (publication.channel, publication.payload)
            written = snapshot_write(self.message_id, text=text, index=index, publish=publish)
            if written and index == 0:
                trace("worker.published", self.message_id)
        elif written := snapshot_write(self.message_id, text=text, index=index):
            broadcast_frame(self.conversation_id, frame)
        if not written and self.on_sealed is not None:
            self.on_sealed()
        return written

    @property
    def all_text(self) -> str:
        return self.text + self.pending
