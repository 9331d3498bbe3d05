"""The one choke point every provider call of a tenant passes: reserve before, settle after.

Replies (`conversations/reply/provider_stream.py`), summaries (`conversations/summaries.py`) and
embeddings (`knowledge/vectors.py`) call `CallBudget.reserve_chat` / `reserve_embedding`
before `stream_chat` / `complete_chat` / `embed_texts`, and `Reservation.settle` with the call's
`CallRecord` after it.

One Lua script checks every limit and reserves in one step, so racing workers cannot all pass
the same check: requests this minute, reply requests in flight, tokens today and this month
(used + reserved + this call's estimate), spend this month. A call reserves its prompt estimate
plus its max_tokens (and their cost); settling replaces the reservation with the real usage.
A reservation a crashed worker never settled expires after its call's deadline (plus a margin):
the next check of the tenant frees it. Counters live in Redis; when they are missing (a new
day, a flushed Redis) they are rebuilt from the `TenantUsageDay` rows before the check.

Requests-a-minute and concurrency limits make a call wait (up to `wait` seconds); spent tokens
or money refuse at once. A refusal is `UsageLimitReached`, an `LLMError`, so callers degrade
through the paths they already have for a failed provider.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import redis
from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.db import transaction
from django.db.models import Sum

from supportbot.compliance.audit import record_event
from supportbot.llm import CallRecord, ChatParams, LLMError, ProviderConfig, TransientLLMError
from supportbot.llm.tokens import count_message_tokens, count_tokens
from supportbot.redis_store import get_redis, redis_key
from supportbot.tenants.models import Tenant, TenantLimits, TenantUsageDay
from supportbot.tenants.prices import Price, from_nano, model_price, to_nano

logger = logging.getLogger(__name__)

# LLMError codes of a refusal.
LIMIT_REQUESTS = "limit_requests"
LIMIT_CONCURRENCY = "limit_concurrency"
LIMIT_TOKENS_DAY = "limit_tokens_day"
LIMIT_TOKENS_MONTH = "limit_tokens_month"
LIMIT_SPEND_MONTH = "limit_spend_month"
LIMIT_CODES = frozenset(
    {LIMIT_REQUESTS, LIMIT_CONCURRENCY, LIMIT_TOKENS_DAY, LIMIT_TOKENS_MONTH, LIMIT_SPEND_MONTH}
)
LIMITS_UNAVAILABLE = "limits_unavailable"  # Redis could not be asked: the call is not made
WAITING_CODES = frozenset({LIMIT_REQUESTS, LIMIT_CONCURRENCY})  # may clear in a moment
_CODES = {1: LIMIT_REQUESTS, 2: LIMIT_CONCURRENCY, 3: LIMIT_TOKENS_DAY, 4: LIMIT_TOKENS_MONTH}
_CODES[5] = LIMIT_SPEND_MONTH

RESERVATION_MARGIN_SECONDS = 30.0  # past the call's deadline, before a reservation expires
POLL_SECONDS = 0.05  # how often a waiting call asks again
DAY_TTL_SECONDS = 3 * 86400
MONTH_TTL_SECONDS = 40 * 86400
ALERT_THRESHOLDS = (100, 80)  # percent of a budget: logged once per crossing, banner shown

# KEYS: day hash, month hash, minute counter, reservations zset, reservations hash, in-flight zset
# ARGV: now ms, id, tokens, spend (nano), expires ms, requests/min, tokens/day, tokens/month,
#       spend/month (nano), max concurrent, counts as a reply (1/0), counters must be seeded (1/0),
#       day TTL s, month TTL s, reservation sets TTL ms
# Returns {0} reserved, {-1} counters missing (seed, then again), {n} refused by limit n.
_RESERVE = """
local function give_back(key, field, n)  -- n: digits; Redis refuses "-0"
  if n ~= '0' then redis.call('HINCRBY', key, field, '-' .. n) end
end
local now = tonumber(ARGV[1])
local expired = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now)
for _, rid in ipairs(expired) do
  local v = redis.call('HGET', KEYS[5], rid)
  if v then
    local t, s, dk, mk = string.match(v, '^(%d+) (%d+) (%S+) (%S+)$')
    if redis.call('EXISTS', dk) == 1 then give_back(dk, 'reserved', t) end
    if redis.call('EXISTS', mk) == 1 then
      give_back(mk, 'reserved', t)
      give_back(mk, 'rspent', s)
    end
    redis.call('HDEL', KEYS[5], rid)
  end
  redis.call('ZREM', KEYS[4], rid)
end
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now)
if ARGV[12] == '1' and (redis.call('HEXISTS', KEYS[1], 'seeded') == 0
    or redis.call('HEXISTS', KEYS[2], 'seeded') == 0) then
  return {-1}
end
local function num(key, field) return tonumber(redis.call('HGET', key, field) or '0') end
local limit = tonumber(ARGV[6])
if limit > 0 and tonumber(redis.call('GET', KEYS[3]) or '0') >= limit then return {1} end
limit = tonumber(ARGV[10])
if ARGV[11] == '1' and limit > 0 and redis.call('ZCARD', KEYS[6]) >= limit then return {2} end
local tokens = tonumber(ARGV[3])
limit = tonumber(ARGV[7])
if limit > 0 and num(KEYS[1], 'used') + num(KEYS[1], 'reserved') + tokens > limit then
  return {3}
end
limit = tonumber(ARGV[8])
if limit > 0 and num(KEYS[2], 'used') + num(KEYS[2], 'reserved') + tokens > limit then
  return {4}
end
limit = tonumber(ARGV[9])
if limit > 0 and num(KEYS[2], 'spent') + num(KEYS[2], 'rspent') + tonumber(ARGV[4]) > limit then
  return {5}
end
redis.call('INCR', KEYS[3])
redis.call('EXPIRE', KEYS[3], 120)
redis.call('HINCRBY', KEYS[1], 'reserved', ARGV[3])
redis.call('HINCRBY', KEYS[2], 'reserved', ARGV[3])
redis.call('HINCRBY', KEYS[2], 'rspent', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[13])
redis.call('EXPIRE', KEYS[2], ARGV[14])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[2])
redis.call('HSET', KEYS[5], ARGV[2], ARGV[3] .. ' ' .. ARGV[4] .. ' ' .. KEYS[1] .. ' ' .. KEYS[2])
redis.call('PEXPIRE', KEYS[4], ARGV[15])
redis.call('PEXPIRE', KEYS[5], ARGV[15])
if ARGV[11] == '1' then
  redis.call('ZADD', KEYS[6], ARGV[5], ARGV[2])
  redis.call('PEXPIRE', KEYS[6], ARGV[15])
end
return {0}
"""

# KEYS: day hash, month hash, reservations zset, reservations hash, in-flight zset
# ARGV: id ("" when nothing was reserved), tokens used, spend used (nano), day TTL, month TTL
# Returns {tokens today, tokens this month, spend this month (nano)}.
_SETTLE = """
local function give_back(key, field, n)  -- n: digits; Redis refuses "-0"
  if n ~= '0' then redis.call('HINCRBY', key, field, '-' .. n) end
end
local v = ARGV[1] ~= '' and redis.call('HGET', KEYS[4], ARGV[1])
if v then
  local t, s = string.match(v, '^(%d+) (%d+) ')
  give_back(KEYS[1], 'reserved', t)
  give_back(KEYS[2], 'reserved', t)
  give_back(KEYS[2], 'rspent', s)
  redis.call('HDEL', KEYS[4], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
end
if ARGV[1] ~= '' then redis.call('ZREM', KEYS[5], ARGV[1]) end
local day = redis.call('HINCRBY', KEYS[1], 'used', ARGV[2])
local month = redis.call('HINCRBY', KEYS[2], 'used', ARGV[2])
local spent = redis.call('HINCRBY', KEYS[2], 'spent', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[5])
return {day, month, spent}
"""


# KEYS: day hash, month hash
# ARGV: tokens on the day, tokens in the month, spend in the month (nano) from Postgres; TTLs
# A counter that is not seeded yet takes the larger of its own count (the calls settled since it
# was created) and Postgres's; the first to seed wins, so racing workers never lower a count.
_SEED = """
local function raise_to(key, field, value)
  if tonumber(value) > tonumber(redis.call('HGET', key, field) or '0') then
    redis.call('HSET', key, field, value)
  end
end
if redis.call('HEXISTS', KEYS[1], 'seeded') == 0 then
  raise_to(KEYS[1], 'used', ARGV[1])
  redis.call('HSET', KEYS[1], 'seeded', 1)
end
if redis.call('HEXISTS', KEYS[2], 'seeded') == 0 then
  raise_to(KEYS[2], 'used', ARGV[2])
  raise_to(KEYS[2], 'spent', ARGV[3])
  redis.call('HSET', KEYS[2], 'seeded', 1)
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[5])
return 1
"""


class UsageLimitReached(LLMError):
    """A limit of the tenant refused the call before it was made: no request was sent."""

    retryable = False


@dataclass(frozen=True)
class Limits:
    """A tenant's limits; 0 is no limit."""

    requests_per_minute: int = 0
    tokens_per_day: int = 0
    tokens_per_month: int = 0
    spend_per_month: Decimal = Decimal(0)
    max_concurrent_replies: int = 0

    @property
    def any(self) -> bool:
        return bool(
            self.requests_per_minute
            or self.tokens_per_day
            or self.tokens_per_month
            or self.spend_per_month
            or self.max_concurrent_replies
        )

    @property
    def budgets(self) -> bool:
        """Tokens or money are limited: calls must reserve their estimate."""
        return bool(self.tokens_per_day or self.tokens_per_month or self.spend_per_month)

    @classmethod
    def from_row(cls, row: TenantLimits | None) -> Limits:
        if row is None:
            return cls()
        return cls(
            requests_per_minute=row.requests_per_minute,
            tokens_per_day=row.tokens_per_day,
            tokens_per_month=row.tokens_per_month,
            spend_per_month=row.spend_per_month,
            max_concurrent_replies=row.max_concurrent_replies,
        )


def tenant_limits(tenant: Tenant) -> Limits:
    """The limits of `tenant` (its `limits` row, read with select_related when it was)."""
    try:
        row: TenantLimits | None = tenant.limits
    except ObjectDoesNotExist:
        row = None
    return Limits.from_row(row)


def tenant_limits_by_id(tenant_id: int) -> Limits:
    return Limits.from_row(TenantLimits.objects.filter(tenant_id=tenant_id).first())


@dataclass(frozen=True)
class Periods:
    day: str  # YYYYMMDD, UTC
    month: str  # YYYYMM, UTC
    minute: int

    @classmethod
    def now(cls) -> Periods:
        now = datetime.now(UTC)
        return cls(now.strftime("%Y%m%d"), now.strftime("%Y%m"), int(now.timestamp() // 60))


def day_key(tenant_id: int, day: str) -> str:
    return redis_key("usage", tenant_id, "d", day)


def month_key(tenant_id: int, month: str) -> str:
    return redis_key("usage", tenant_id, "m", month)


def _reservations_keys(tenant_id: int) -> tuple[str, str, str]:
    return (
        redis_key("usage", tenant_id, "reservations"),
        redis_key("usage", tenant_id, "reserved"),
        redis_key("usage", tenant_id, "in-flight"),
    )


def minute_key(tenant_id: int, minute: int) -> str:
    return redis_key("usage", tenant_id, "rpm", minute)


@dataclass
class Reservation:
    """What one call reserved, to settle with its CallRecord (once)."""

    tenant_id: int
    limits: Limits
    id: str  # "" when nothing was reserved (the tenant has no limit)
    periods: Periods
    price: Price
    prompt_estimate: int
    settled: bool = False

    def settle(self, record: CallRecord) -> Decimal:
        """Replace the reservation with the call's real usage; the call's cost. Logs a budget
        crossing 80% or 100% (once per crossing). Never raises: a failed settle is logged."""
        prompt, completion = record.prompt_tokens, record.completion_tokens
        if prompt is None and completion is None and record.outcome == "interrupted":
            prompt = self.prompt_estimate  # text was produced: the prompt was read, at least
        prompt, completion = prompt or 0, completion or 0
        cost = self.price.cost(prompt, completion)
        if self.settled:
            return cost
        self.settled = True
        try:
            totals = _settle_script()(
                keys=[
                    day_key(self.tenant_id, self.periods.day),
                    month_key(self.tenant_id, self.periods.month),
                    *_reservations_keys(self.tenant_id),
                ],
                args=[
                    self.id,
                    prompt + completion,
                    to_nano(cost),
                    DAY_TTL_SECONDS,
                    MONTH_TTL_SECONDS,
                ],
            )
        except Exception:
            logger.exception("usage of tenant %s could not be settled in Redis", self.tenant_id)
            return cost
        if self.limits.any:
            _alert_crossings(self, int(totals[0]), int(totals[1]), int(totals[2]))
        return cost

    def release(self) -> None:
        """Give the reservation back unused (the call was never made)."""
        if not self.settled:
            self.settle(CallRecord("", "", "error", "unused", 0, 0, 0, None, 0, None))


@dataclass(frozen=True)
class CallBudget:
    """A tenant's limits, for the calls one job makes."""

    tenant_id: int
    limits: Limits

    def reserve_chat(
        self,
        config: ProviderConfig,
        messages: Sequence[dict[str, Any]],
        params: ChatParams | None,
        *,
        reply: bool,
        wait: float = 0.0,
        cancelled: Callable[[], bool] | None = None,
    ) -> Reservation:
        """Reserve a chat request (a reply's counts against the concurrency cap). Raises
        UsageLimitReached, after waiting up to `wait` seconds when the limit is a rate."""
        estimate = 0
        completion = 0
        if self.limits.budgets:
            estimate = count_message_tokens(messages)
            if params is not None and params.tools:
                estimate += count_tokens(json.dumps(params.tools))
            completion = _max_tokens(params)
        return self._reserve(config, config.model, estimate, completion, reply, wait, cancelled)

    def reserve_embedding(
        self, config: ProviderConfig, texts: Sequence[str], *, model: str
    ) -> Reservation:
        """Reserve an embeddings request for `texts` (never waits)."""
        estimate = sum(count_tokens(text) for text in texts) if self.limits.budgets else 0
        return self._reserve(config, model, estimate, 0, False, 0.0, None)

    def _reserve(
        self,
        config: ProviderConfig,
        model: str,
        prompt: int,
        completion: int,
        reply: bool,
        wait: float,
        cancelled: Callable[[], bool] | None,
    ) -> Reservation:
        periods = Periods.now()
        price = model_price(config.provider, model)
        reservation = Reservation(self.tenant_id, self.limits, "", periods, price, prompt)
        if not self.limits.any:
            return reservation
        reservation.id = uuid.uuid4().hex
        spend = to_nano(price.cost(prompt, completion)) if self.limits.spend_per_month else 0
        ttl = config.deadline + RESERVATION_MARGIN_SECONDS
        give_up_at = time.monotonic() + max(wait, 0.0)
        seeded = False
        while True:
            try:
                code = _reserve_once(reservation, prompt + completion, spend, ttl, reply)
            except redis.RedisError:
                logger.exception("the limits of tenant %s could not be checked", self.tenant_id)
                detail = "the usage limits could not be checked"
                raise TransientLLMError(LIMITS_UNAVAILABLE, detail) from None
            if code == -1 and not seeded:
                _seed(self.tenant_id, periods)
                seeded = True
                continue
            if code == -1:
                raise TransientLLMError(LIMITS_UNAVAILABLE, "the usage counters were not rebuilt")
            if code == 0:
                return reservation
            error = _CODES[code]
            left = give_up_at - time.monotonic()
            if error not in WAITING_CODES or left <= 0 or (cancelled is not None and cancelled()):
                raise UsageLimitReached(error, _refusal_detail(error))
            time.sleep(min(left, POLL_SECONDS * random.uniform(0.5, 1.5)))
            now = Periods.now()
            seeded = seeded and now.day == periods.day  # a new day has counters to seed
            reservation.periods = periods = now


def _max_tokens(params: ChatParams | None) -> int:
    if params is not None:
        for value in (params.max_completion_tokens, params.max_tokens):
            if value:
                return int(value)
    return int(settings.LIMIT_RESERVE_MAX_TOKENS)


_scripts: dict[str, Any] = {}


def _script(name: str, source: str) -> Any:
    """A registered script (EVALSHA, loaded again by redis-py if Redis forgot it)."""
    client = get_redis()
    found = _scripts.get(name)
    if found is None or found.registered_client is not client:
        found = _scripts[name] = client.register_script(source)
    return found


def _settle_script() -> Any:
    return _script("settle", _SETTLE)


def _reserve_once(
    reservation: Reservation, tokens: int, spend: int, ttl: float, reply: bool
) -> int:
    limits = reservation.limits
    tenant_id, periods = reservation.tenant_id, reservation.periods
    now_ms = int(time.time() * 1000)
    result = _script("reserve", _RESERVE)(
        keys=[
            day_key(tenant_id, periods.day),
            month_key(tenant_id, periods.month),
            minute_key(tenant_id, periods.minute),
            *_reservations_keys(tenant_id),
        ],
        args=[
            now_ms,
            reservation.id,
            tokens,
            spend,
            now_ms + int(ttl * 1000),
            limits.requests_per_minute,
            limits.tokens_per_day,
            limits.tokens_per_month,
            to_nano(limits.spend_per_month),
            limits.max_concurrent_replies,
            1 if reply else 0,
            1 if limits.budgets else 0,
            DAY_TTL_SECONDS,
            MONTH_TTL_SECONDS,
            MONTH_TTL_SECONDS * 1000,  # the reservation sets outlive every reservation
        ],
    )
    return int(result[0])


def _seed(tenant_id: int, periods: Periods) -> None:
    """Rebuild the tenant's counters of this day and month from its usage rows (Postgres is
    the truth; Redis lost them, or the period just began). Reservations are left as they are;
    a counter is never lowered (calls settled in Redis may not be in Postgres yet)."""
    day = datetime.strptime(periods.day + "+0000", "%Y%m%d%z").date()
    rows = TenantUsageDay.objects.filter(
        tenant_id=tenant_id, day__gte=day.replace(day=1), day__lte=day
    )
    month = rows.aggregate(p=Sum("prompt_tokens"), c=Sum("completion_tokens"), cost=Sum("cost"))
    today = rows.filter(day=day).aggregate(p=Sum("prompt_tokens"), c=Sum("completion_tokens"))
    _script("seed", _SEED)(
        keys=[day_key(tenant_id, periods.day), month_key(tenant_id, periods.month)],
        args=[
            (today["p"] or 0) + (today["c"] or 0),
            (month["p"] or 0) + (month["c"] or 0),
            to_nano(month["cost"] or Decimal(0)),
            DAY_TTL_SECONDS,
            MONTH_TTL_SECONDS,
        ],
    )


_DETAILS = {
    LIMIT_REQUESTS: "the tenant's requests a minute are used up",
    LIMIT_CONCURRENCY: "the tenant's replies in flight are at their cap",
    LIMIT_TOKENS_DAY: "the tenant's tokens for today are used up",
    LIMIT_TOKENS_MONTH: "the tenant's tokens for this month are used up",
    LIMIT_SPEND_MONTH: "the tenant's spend for this month is used up",
}


def _refusal_detail(code: str) -> str:
    return _DETAILS[code]


def budget_percentages(
    limits: Limits, *, day_tokens: int, month_tokens: int, month_spend: Decimal
) -> dict[str, float]:
    """How much of each budget is used, in percent (only the budgets that are set)."""
    found: dict[str, float] = {}
    if limits.tokens_per_day:
        found["tokens_per_day"] = 100.0 * day_tokens / limits.tokens_per_day
    if limits.tokens_per_month:
        found["tokens_per_month"] = 100.0 * month_tokens / limits.tokens_per_month
    if limits.spend_per_month:
        found["spend_per_month"] = float(100 * month_spend / limits.spend_per_month)
    return found


def crossed_threshold(percent: float) -> int | None:
    """The highest alert threshold `percent` has reached (100 or 80), or None."""
    return next((t for t in ALERT_THRESHOLDS if percent >= t), None)


def _alert_crossings(reservation: Reservation, day: int, month: int, spent: int) -> None:
    """Log each budget that crossed 80% or 100% with this call, once per crossing."""
    percents = budget_percentages(
        reservation.limits, day_tokens=day, month_tokens=month, month_spend=from_nano(spent)
    )
    periods = reservation.periods
    for budget, percent in percents.items():
        threshold = crossed_threshold(percent)
        if threshold is None:
            continue
        period = periods.day if budget == "tokens_per_day" else periods.month
        key = redis_key("usage", reservation.tenant_id, "alert", budget, period, threshold)
        if get_redis().set(key, 1, nx=True, ex=MONTH_TTL_SECONDS):
            logger.warning(
                "tenant %s has used %.0f%% of its %s (period %s)",
                reservation.tenant_id,
                percent,
                budget.replace("_", " "),
                period,
            )


def usage_live(tenant_id: int) -> dict[str, int]:
    """What only Redis knows: requests this minute and reply requests in flight now."""
    periods = Periods.now()
    pipe = get_redis().pipeline()
    pipe.get(minute_key(tenant_id, periods.minute))
    pipe.zcount(_reservations_keys(tenant_id)[2], int(time.time() * 1000), "+inf")
    minute, in_flight = pipe.execute()
    return {"requests_this_minute": int(minute or 0), "replies_in_flight": int(in_flight or 0)}


LIMIT_FIELDS = (
    "requests_per_minute",
    "tokens_per_day",
    "tokens_per_month",
    "spend_per_month",
    "max_concurrent_replies",
)


@transaction.atomic
def tenant_limits_set(
    *, tenant: Tenant, actor: str = "system", **values: int | Decimal
) -> TenantLimits:
    """Set some of a tenant's limits (the others stay as they are; 0 removes one). Raises
    ValueError for an unknown or negative limit."""
    unknown = set(values) - set(LIMIT_FIELDS)
    if unknown:
        raise ValueError(f"unknown limit {sorted(unknown)[0]!r}")
    for name, value in values.items():
        if value < 0:
            raise ValueError(f"{name.replace('_', ' ')} must be 0 (no limit) or more")
    row, _ = TenantLimits.objects.select_for_update().get_or_create(tenant=tenant)
    for name, value in values.items():
        setattr(row, name, value)
    row.full_clean()
    row.save()
    record_event(
        tenant_id=tenant.pk,
        action="tenantlimits.change",
        actor=actor,
        target=f"tenantlimits:{row.pk}",
        details={"fields": sorted(values)},
    )
    return row
