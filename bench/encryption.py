"""What encryption at rest costs: AES-256-GCM per message, and loading a reply's history.

    .venv/bin/python bench/encryption.py [--rounds 300] [--json out.json]

A scratch database (`supportbot_bench_encryption_<pid>`, created, migrated and dropped) on the
Postgres of DATABASE_URL, else on an embedded Postgres under var/bench/. In this process:

per message    `encrypt_bytes` + `decrypt_bytes` of a visitor message (240 characters) and of an
               assistant reply (900 characters), bound to tenant and field as the fields do,
               with the tenant's data key cached (as in a running worker).
history        the reply path's history read (`conversations.reply.context._history`, 50
               messages alternating visitor / assistant) and every message's text read:
               decrypted, vs. the same rows with the text left sealed (the cost of the query
               alone). Rounds alternate which goes first.
cold key       the first history read of a process: the tenant's data key is read and
               unwrapped once (one query) before it is cached.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    fresh_database,
    machine_summary,
    median,
    percentile,
    say,
    servers_from_env_or_embedded,
)

VISITOR_TEXT = ("Hello, my order 48213 has not arrived and the tracking page says nothing. " * 4)[
    :240
]
REPLY_TEXT = (
    "Thanks for waiting. Orders usually ship within two working days; yours left our warehouse "
    "yesterday and the carrier's page updates once the parcel is scanned at the depot. "
) * 6
REPLY_TEXT = REPLY_TEXT[:900]
HISTORY = 50


def _setup(database_url: str, redis_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ["REDIS_URL"] = redis_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supportbot.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def _conversation() -> Any:
    from conversations.models import Contact, Conversation, Message
    from supportbot.tenants.services import tenant_create

    tenant, _ = tenant_create(name="Bench", allowed_origins=["https://shop.example.com"])
    contact = Contact.objects.create(tenant=tenant, email="bench@example.com")
    conversation = Conversation.objects.create(tenant=tenant, contact=contact)
    for seq in range(1, HISTORY + 1):
        user = seq % 2 == 1
        Message.objects.create(
            tenant=tenant,
            conversation=conversation,
            seq=seq,
            role="user" if user else "assistant",
            text=VISITOR_TEXT if user else REPLY_TEXT,
        )
    return Conversation.objects.select_related("tenant").get(pk=conversation.pk)


def _per_message(tenant_id: int, text: str, rounds: int) -> list[float]:
    from supportbot.compliance.encryption import decrypt_bytes, encrypt_bytes

    data = text.encode()
    label = "conversations.message.text"
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        token = encrypt_bytes(data, tenant_id=tenant_id, label=label)
        decrypt_bytes(token, tenant_id=tenant_id, label=label)
        samples.append(time.perf_counter() - start)
    return samples


def _history_read(conversation: Any, *, decrypt: bool) -> float:
    from conversations.reply.context import _history

    start = time.perf_counter()
    history = _history(conversation, None)
    if decrypt:
        texts = [message.text for message in history]
    else:
        texts = [message.__dict__["text"] for message in history]
    elapsed = time.perf_counter() - start
    assert len(texts) == HISTORY
    return elapsed


def run(rounds: int) -> dict[str, Any]:
    from supportbot.compliance.encryption import clear_caches

    conversation = _conversation()
    clear_caches()
    cold = _history_read(conversation, decrypt=True)
    for _ in range(20):  # warm-up
        _history_read(conversation, decrypt=True)
        _history_read(conversation, decrypt=False)
    with_decryption, without = [], []
    for i in range(rounds):
        order = (True, False) if i % 2 == 0 else (False, True)
        for decrypt in order:
            (with_decryption if decrypt else without).append(
                _history_read(conversation, decrypt=decrypt)
            )
    tenant_id = conversation.tenant_id
    return {
        "visitor_message_us": [s * 1e6 for s in _per_message(tenant_id, VISITOR_TEXT, 20 * rounds)],
        "reply_message_us": [s * 1e6 for s in _per_message(tenant_id, REPLY_TEXT, 20 * rounds)],
        "history_decrypted_ms": [s * 1e3 for s in with_decryption],
        "history_sealed_ms": [s * 1e3 for s in without],
        "cold_history_ms": cold * 1e3,
    }


def report(samples: dict[str, Any]) -> None:
    def row(name: str, values: list[float], unit: str) -> str:
        return f"| {name} | {median(values):.1f} {unit} | {percentile(values, 95):.1f} {unit} |"

    delta = median(samples["history_decrypted_ms"]) - median(samples["history_sealed_ms"])
    print(f"\n{machine_summary()}\n")
    print("| measure | median | p95 |")
    print("|---|---|---|")
    print(
        row("encrypt + decrypt, visitor message (240 chars)", samples["visitor_message_us"], "µs")
    )
    print(row("encrypt + decrypt, reply (900 chars)", samples["reply_message_us"], "µs"))
    print(
        row(f"history of {HISTORY}: read, texts decrypted", samples["history_decrypted_ms"], "ms")
    )
    print(row(f"history of {HISTORY}: read, texts left sealed", samples["history_sealed_ms"], "ms"))
    print(f"\ndecryption adds {delta:+.2f} ms (median) to a {HISTORY}-message history read;")
    print(f"the first read of a process (data key unwrapped): {samples['cold_history_ms']:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    servers = servers_from_env_or_embedded()
    try:
        with fresh_database(
            servers.postgres_url, f"supportbot_bench_encryption_{os.getpid()}"
        ) as url:
            say("migrating the scratch database")
            _setup(url, servers.redis_url)
            samples = run(args.rounds)
            from django.db import connections

            connections.close_all()
    finally:
        servers.stop()
    report(samples)
    if args.json:
        args.json.write_text(json.dumps(samples))


if __name__ == "__main__":
    main()
