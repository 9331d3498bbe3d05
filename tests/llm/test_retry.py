"""The backoff policy, as pure functions."""

from __future__ import annotations

import random

import pytest

from supportbot.llm.retry import BackoffPolicy, next_delay

POLICY = BackoffPolicy(base=0.5, cap=8.0, retry_after_jitter=0.1, min_attempt_time=0.05)


@pytest.mark.parametrize(
    ("retry", "ceiling"), [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (9, 8.0)]
)
def test_full_jitter_bounds_grow_exponentially_up_to_the_cap(retry, ceiling):
    assert POLICY.delay(retry, retry_after=None, remaining=1000, rand=lambda: 0.0) == 0.0
    top = POLICY.delay(retry, retry_after=None, remaining=1000, rand=lambda: 0.999999)
    assert top == pytest.approx(ceiling, rel=1e-5)
    assert top <= ceiling


def test_jitter_is_spread_over_the_whole_range():
    rng = random.Random(1234)
    delays = [
        POLICY.delay(3, retry_after=None, remaining=100, rand=rng.random) for _ in range(2000)
    ]
    assert all(0 <= d <= 2.0 for d in delays)
    assert min(delays) < 0.1
    assert max(delays) > 1.9
    assert 0.9 < sum(delays) / len(delays) < 1.1


def test_retry_after_takes_precedence_over_backoff():
    assert POLICY.delay(1, retry_after=3.0, remaining=100, rand=lambda: 0.0) == 3.0
    top = POLICY.delay(1, retry_after=3.0, remaining=100, rand=lambda: 1.0)
    assert 3.0 <= top <= 3.3
    # even above the backoff cap
    assert POLICY.delay(1, retry_after=20.0, remaining=100, rand=lambda: 0.0) == 20.0
    # a zero Retry-After means "now"
    assert POLICY.delay(1, retry_after=0.0, remaining=100, rand=lambda: 0.5) == 0.0


def test_retry_after_that_does_not_fit_before_the_deadline_gives_up():
    assert POLICY.delay(1, retry_after=10.0, remaining=5.0) is None
    assert POLICY.delay(1, retry_after=4.98, remaining=5.0) is None  # no time left to try
    assert POLICY.delay(1, retry_after=4.0, remaining=5.0, rand=lambda: 1.0) == pytest.approx(4.4)


def test_retry_after_jitter_is_cut_at_the_deadline():
    delay = POLICY.delay(1, retry_after=4.0, remaining=4.2, rand=lambda: 1.0)
    assert 4.0 <= delay <= 4.2 - 0.05 + 1e-9


def test_backoff_is_capped_by_the_time_left():
    delay = POLICY.delay(5, retry_after=None, remaining=1.0, rand=lambda: 0.999999)
    assert delay == pytest.approx(0.95, rel=1e-5)
    assert POLICY.delay(1, retry_after=None, remaining=0.04) is None
    assert POLICY.delay(1, retry_after=None, remaining=-1) is None


def test_next_delay_respects_max_retries_and_retryability():
    kwargs = {"retry_after": None, "remaining": 100, "policy": POLICY, "rand": lambda: 0.5}
    assert next_delay(1, 3, retryable=True, **kwargs) == 0.25
    assert next_delay(3, 3, retryable=True, **kwargs) == 1.0
    assert next_delay(4, 3, retryable=True, **kwargs) is None
    assert next_delay(1, 0, retryable=True, **kwargs) is None
    assert next_delay(1, 3, retryable=False, **kwargs) is None


def test_retry_counts_from_one():
    with pytest.raises(ValueError, match="counts from 1"):
        POLICY.delay(0, retry_after=None, remaining=10)
