"""The cost of keeping personal data from the provider (`conversations/redaction.py`).

    .venv/bin/python bench/redaction.py [--rounds 2000] [--json out.json]

CPU only, in this process (no database, no server): the reply worker's share of redaction.

typical message          `Placeholders.redact`, seen for the first time, of a visitor's
                         message of 15-40 words with an order number, a date and a price,
                         no personal data (the phone matcher still reads the order
                         number's digit run).
typical message, no run  the same kind of message without any run of 7 digits (the phone
                         matcher is skipped).
message with PII         the same with an email, a phone number, a card and an IBAN.
50-message history       `Placeholders.redact_messages` of a reply prompt of 50 turns (1 in 5
                         with personal data), the conversation's placeholders already stored
                         (nothing new to store): every message new (the remembered
                         findings forgotten), and read before (the next reply of the
                         conversation: only its newest message is new).
restore a reply          `PlaceholderStream.feed` over a 120-token reply naming 2 placeholders,
                         piece by piece, as the delivery does.

For scale, the same 50 turns counted with tiktoken (`count_message_tokens`, which every reply
prompt already does) are timed too. Each figure is the median (and p95) of `--rounds` timed
runs after 200 untimed ones; the inputs rotate over 40 generated texts (seed 7).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Settings import with URLs; nothing here connects to them.
os.environ.setdefault("DATABASE_URL", "postgres://bench@127.0.0.1:1/bench")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:1/0")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supportbot.settings")

import django

django.setup()

from bench._common import machine_summary  # noqa: E402
from conversations import redaction  # noqa: E402
from conversations.redaction import Placeholders  # noqa: E402
from supportbot.llm import count_message_tokens  # noqa: E402


def _cold() -> None:
    """Forget where the findings of each text were: the cost of text seen the first time."""
    redaction._FOUND.clear()


WORDS = re.findall(
    r"\w+",
    "my parcel has not arrived yet and the tracking page shows nothing new since last week "
    "could you check what happened with the delivery please I ordered the blue jacket in size "
    "medium and paid already the invoice says shipped but the courier never came",
)
PII = [
    "you can reach me at {n}.lee@example.com",
    "call me on +44 20 7946 {n:04d}",
    "my card is 4111 1111 1111 1111",
    "refund to GB82 WEST 1234 5698 7654 32",
]


def _message(rng: random.Random, *, digits: bool, pii: bool) -> str:
    words = rng.sample(WORDS, rng.randint(15, min(40, len(WORDS))))
    if digits:
        words[rng.randrange(len(words))] = f"order {rng.randint(10_000_000, 99_999_999)}"
    words.append(f"on {rng.randint(1, 28)} March for {rng.randint(10, 300)}.99 euros")
    if pii:
        words.insert(rng.randrange(len(words)), rng.choice(PII).format(n=rng.randint(1, 999)))
    return " ".join(words)


def _timed(run: Callable[[int], Any], rounds: int) -> list[float]:
    for i in range(200):
        run(i)
    samples = []
    for i in range(rounds):
        start = time.perf_counter()
        run(i)
        samples.append((time.perf_counter() - start) * 1e6)
    return samples


def _row(name: str, samples: list[float]) -> dict[str, Any]:
    ordered = sorted(samples)
    return {
        "case": name,
        "median_us": statistics.median(ordered),
        "p95_us": ordered[int(len(ordered) * 0.95) - 1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rng = random.Random(7)
    plain = [_message(rng, digits=True, pii=False) for _ in range(40)]
    no_run = [_message(rng, digits=False, pii=False) for _ in range(40)]
    personal = [_message(rng, digits=True, pii=True) for _ in range(40)]
    histories = []
    for _ in range(40):
        turns = []
        for n in range(50):
            role = "user" if n % 2 == 0 else "assistant"
            turns.append({"role": role, "content": _message(rng, digits=True, pii=n % 5 == 0)})
        histories.append([{"role": "system", "content": "You are Acme's assistant."}, *turns])
    stored = Placeholders(region="GB")
    for history in histories:
        stored.redact_messages(history)
    steady = stored.as_json()
    reply_tokens = [f"{w} " for w in rng.choices(WORDS, k=120)]
    reply_tokens[30:31] = ["[EMA", "IL_1] "]
    reply_tokens[80:81] = ["[PHONE", "_1] "]

    def restore(_: int) -> None:
        stream = Placeholders(steady).stream()
        for piece in reply_tokens:
            stream.feed(piece)
        stream.end()

    def message(texts: list[str]) -> Callable[[int], Any]:
        def run(i: int) -> None:
            _cold()
            Placeholders(region="GB").redact(texts[i % 40])

        return run

    def history(cold: bool) -> Callable[[int], Any]:
        def run(i: int) -> None:
            if cold:
                _cold()
            Placeholders(steady, region="GB").redact_messages(histories[i % 40])

        return run

    few = max(args.rounds // 10, 50)
    rows = [
        _row("typical message", _timed(message(plain), args.rounds)),
        _row("typical message, no run of 7 digits", _timed(message(no_run), args.rounds)),
        _row(
            "message with PII (email, phone, card or IBAN)", _timed(message(personal), args.rounds)
        ),
        _row("50-message history, every message new", _timed(history(True), few)),
        _row("50-message history, read before (the next reply)", _timed(history(False), few)),
        _row(
            "for scale: tiktoken count of the same 50 messages",
            _timed(lambda i: count_message_tokens(histories[i % 40]), few),
        ),
        _row("restore a 120-token reply, piece by piece", _timed(restore, args.rounds)),
    ]
    print(f"Machine: {machine_summary()}; load average {os.getloadavg()[0]:.1f}\n")
    print("| case | median (µs) | p95 (µs) |\n|---|---:|---:|")
    for row in rows:
        print(f"| {row['case']} | {row['median_us']:.0f} | {row['p95_us']:.0f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
