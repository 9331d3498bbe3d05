"""The frame throttle of one websocket: a token bucket kept in memory by the socket itself.

Every client frame takes a token before anything reads it; a socket whose bucket is empty is
closed with 4429. A frame flood therefore never reaches the database (the process's one thread
for it) past the bucket's burst.
"""

import time
from collections.abc import Callable

from django.conf import settings


class FrameBucket:
    """`burst` frames at once, refilled at `rate` frames a second."""

    def __init__(
        self, *, burst: int, rate: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.burst = max(1, burst)
        self.rate = max(0.0, rate)
        self.clock = clock
        self.tokens = float(self.burst)
        self.updated = clock()

    def take(self) -> bool:
        """Spend one token for a frame; False when none is left (the socket is flooding)."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


def socket_frame_bucket() -> FrameBucket:
    """A new socket's bucket, from SOCKET_FRAME_BURST and SOCKET_FRAMES_PER_SECOND."""
    return FrameBucket(burst=settings.SOCKET_FRAME_BURST, rate=settings.SOCKET_FRAMES_PER_SECOND)
