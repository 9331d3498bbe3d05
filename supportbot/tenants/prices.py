"""What a call costs: the per-model price table (`ModelPrice`, edited by superusers in the
admin), read into the process and refreshed every PRICE_CACHE_SECONDS.

Costs are Decimals in the table's currency (USD). Redis counts spend in nano-units (integers,
1e-9 of the currency) so a Lua script can add it exactly; `to_nano` / `from_nano` convert.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from supportbot.tenants.models import ModelPrice

logger = logging.getLogger(__name__)

PRICE_CACHE_SECONDS = 60.0
NANO = Decimal(1_000_000_000)
MILLION = Decimal(1_000_000)
FREE_PROVIDERS = frozenset({"local"})  # a model on the operator's own machine costs nothing


@dataclass(frozen=True)
class Price:
    """Per million tokens."""

    prompt: Decimal
    completion: Decimal

    def cost(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        return (self.prompt * prompt_tokens + self.completion * completion_tokens) / MILLION


FREE = Price(Decimal(0), Decimal(0))

_lock = threading.Lock()
_table: dict[str, Price] = {}
_loaded_at = float("-inf")
_unpriced_logged: set[str] = set()


def prices_reload() -> None:
    """Read the table again now (after an edit; tests)."""
    global _table, _loaded_at
    table = {
        model: Price(prompt, completion)
        for model, prompt, completion in ModelPrice.objects.values_list(
            "model", "prompt_per_million", "completion_per_million"
        )
    }
    with _lock:
        _table = table
        _loaded_at = time.monotonic()


def _current() -> dict[str, Price]:
    if time.monotonic() - _loaded_at > PRICE_CACHE_SECONDS:
        prices_reload()
    return _table


def model_price(provider: str, model: str) -> Price:
    """The price of `model`: its row, else the row whose model it extends with "-<version>"
    (the longest such), else free (logged once per model)."""
    if provider in FREE_PROVIDERS or not model:
        return FREE
    table = _current()
    found = table.get(model)
    if found is not None:
        return found
    best = ""
    for name in table:
        if model.startswith(name + "-") and len(name) > len(best):
            best = name
    if best:
        return table[best]
    if model not in _unpriced_logged:
        _unpriced_logged.add(model)
        logger.warning("model %s has no price in the price table: its calls cost 0", model)
    return FREE


def to_nano(amount: Decimal) -> int:
    """`amount` in nano-units, rounded up (a reservation never under-counts)."""
    return int((amount * NANO).to_integral_value(rounding=ROUND_CEILING))


def from_nano(nano: int | str | None) -> Decimal:
    return Decimal(int(nano or 0)) / NANO
