"""Refusing a websocket: the close codes of protocol v1 and the one exception that carries one.

Adapters raise SocketRefused; consumers close the socket with its `close_code`.
"""

from enum import IntEnum


class CloseCode(IntEnum):
    """Protocol v1 close codes (docs/widget-protocol.md, "Errors and close codes")."""

    BAD_HELLO = 4400  # no valid `hello` in time, or a frame that is not JSON
    FORBIDDEN = 4403  # unknown key, origin not allowed, forged token, someone else's conversation
    ERASED = 4410  # the visitor's data was erased: the widget clears its storage, starts afresh
    TOO_MANY = 4429  # too many connections from one client, or too many frames on one socket
    # Not a refusal: the server lost the channel layer for a moment (a Redis restart) and frames
    # may have been lost; the client reconnects at once and resumes from its last `seq`. (1012,
    # "service restart", is reserved to the websocket implementation: servers may not send it.)
    RESUME = 4012


class SocketRefused(Exception):
    """The socket must be closed with `close_code`; `reason` is for the log, never the client."""

    def __init__(
        self, close_code: CloseCode, reason: str, *, last_frame: dict[str, object] | None = None
    ) -> None:
        super().__init__(reason)
        self.close_code = int(close_code)
        # Sent to the client before the socket is closed (the `erased` frame).
        self.last_frame = last_frame
