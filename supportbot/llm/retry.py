"""Retry policy: exponential backoff with full jitter, Retry-After first, bounded by the deadline.

Pure functions of their inputs (the random source is injectable) so they are unit-testable.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class BackoffPolicy:
    base: float = 0.5  # the first retry waits up to this long
    cap: float = 8.0  # no backoff wait is longer than this (Retry-After may be)
    retry_after_jitter: float = 0.1  # up to this fraction is added to a Retry-After wait
    min_attempt_time: float = 0.05  # don't start an attempt with less time than this left

    def delay(
        self,
        retry: int,
        *,
        retry_after: float | None,
        remaining: float,
        rand: Callable[[], float] = random.random,
    ) -> float | None:
        """Seconds to wait before retry number `retry` (1 for the first retry), or None to give up.

        - With `retry_after` (the provider said when): wait at least that long, plus a little
          jitter so that clients told the same thing don't come back at the same instant; give up
          if it does not fit before the deadline.
        - Otherwise full jitter: uniform in [0, min(cap, base * 2**(retry-1))], capped so that at
          least `min_attempt_time` is left for the attempt; give up when there isn't even that.
        """
        if retry < 1:
            raise ValueError("retry counts from 1")
        if retry_after is not None and retry_after >= 0:
            wait = retry_after + retry_after * self.retry_after_jitter * rand()
            if retry_after + self.min_attempt_time > remaining:
                return None
            return min(wait, remaining - self.min_attempt_time)
        budget = remaining - self.min_attempt_time
        if budget <= 0:
            return None
        return min(self.cap, self.base * 2 ** (retry - 1), budget) * rand()


DEFAULT_POLICY = BackoffPolicy()


def next_delay(
    retry: int,
    max_retries: int,
    *,
    retryable: bool,
    retry_after: float | None,
    remaining: float,
    policy: BackoffPolicy = DEFAULT_POLICY,
    rand: Callable[[], float] = random.random,
) -> float | None:
    """The wait before retry number `retry`, or None when the call must not be retried."""
    if not retryable or retry > max_retries:
        return None
    return policy.delay(retry, retry_after=retry_after, remaining=remaining, rand=rand)
