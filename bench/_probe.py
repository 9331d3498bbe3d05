"""Stage timestamps inside Daphne and the Celery worker, for `bench/ttft.py --trace`.

    python -m bench._probe daphne -b 127.0.0.1 -p 8000 supportbot.asgi:application
    python -m bench._probe celery -A supportbot worker ...

runs the named module as `python -m` would, after registering callbacks (in that process only)
that write `{"e": stage, "k": key, "t": time.time()}` lines to $BENCH_TRACE_DIR/<role>-<pid>.jsonl.
Keys are conversation ids (web side, before the reply exists), job ids (enqueue, worker start,
provider request), and reply message ids (from the first delta on). `breakdown` lines the events
up with the client's samples; every process runs on the same machine and clock.

Where the events come from: the named trace points of `supportbot.trace` (the widget consumer
`web.receive` / `web.ack_sent`, `widget_message` `web.sync_start`, a socket's first delta
`web.event` / `web.delta_sent`, the reply path `reply.*`, `worker.published` once the first
delta is published) and Celery's own publish signals (`web.enqueue_start` /
`web.enqueue_end`). Nothing is patched.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

# -- recording -------------------------------------------------------------------------------------

_lock = threading.Lock()
_file: Any = None


def _emit(event: str, key: Any, t: float | None = None) -> None:
    global _file
    line = json.dumps({"e": event, "k": str(key), "t": time.time() if t is None else t}) + "\n"
    with _lock:
        if _file is None:
            directory = Path(os.environ["BENCH_TRACE_DIR"])
            role = os.environ.get("BENCH_TRACE_ROLE", "proc")
            _file = (directory / f"{role}-{os.getpid()}.jsonl").open("a", buffering=1)
        _file.write(line)


def _on_trace(stage: str, key: str) -> None:
    _emit(stage, key)


def _reply_job_of(sender: Any, body: Any) -> Any:
    """The job id of a `generate_reply` message (protocol 2 body: (args, kwargs, embed))."""
    if sender != "conversations.generate_reply":
        return None
    try:
        return body[0][0]
    except (IndexError, KeyError, TypeError):
        return None


def _trace_enqueue() -> None:
    from celery.signals import after_task_publish, before_task_publish

    def before(sender: Any = None, body: Any = None, **_: Any) -> None:
        job = _reply_job_of(sender, body)
        if job is not None:
            _emit("web.enqueue_start", job)

    def after(sender: Any = None, body: Any = None, **_: Any) -> None:
        job = _reply_job_of(sender, body)
        if job is not None:
            _emit("web.enqueue_end", job)

    before_task_publish.connect(before, weak=False)
    after_task_publish.connect(after, weak=False)


def _trace_web() -> None:
    from supportbot.trace import trace_callback_add

    trace_callback_add(_on_trace)
    _trace_enqueue()


def _trace_worker() -> None:
    from supportbot.trace import trace_callback_add

    trace_callback_add(_on_trace)


def main() -> None:
    module, rest = sys.argv[1], sys.argv[2:]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supportbot.settings")
    import django

    django.setup()
    if module == "daphne":
        os.environ["BENCH_TRACE_ROLE"] = "web"
        _trace_web()
    elif module == "celery":
        os.environ["BENCH_TRACE_ROLE"] = "worker"
        _trace_worker()
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


# -- analysis --------------------------------------------------------------------------------------

# (label, from event, to event): consecutive spans from the client's send to its first delta.
STAGES = [
    ("client send -> consumer.receive", "client.sent", "web.receive"),
    ("receive -> sync thread starts (database_sync_to_async)", "web.receive", "web.sync_start"),
    ("checks, INSERTs, COMMIT (widget_message)", "web.sync_start", "web.enqueue_start"),
    ("Celery publish (jobs.reply_job_enqueue)", "web.enqueue_start", "web.enqueue_end"),
    ("publish -> task starts in the worker", "web.enqueue_end", "reply.task_start"),
    (
        "claim up to the request: job read, language, history, knowledge, prompt",
        "reply.task_start",
        "reply.llm_request",
    ),
    (
        "LLM request -> first token (SDK; model 200 ms; claim's writes meanwhile)",
        "reply.llm_request",
        "reply.first_token",
    ),
    ("first token -> first delta flushed", "reply.first_token", "reply.first_delta"),
    (
        "flushed -> published (snapshot script with PUBLISH)",
        "reply.first_delta",
        "worker.published",
    ),
    ("published -> consumer gets the event (Redis pub/sub)", "worker.published", "web.event"),
    ("consumer event -> frame written (send_frame)", "web.event", "web.delta_sent"),
    ("frame written -> client receives it", "web.delta_sent", "client.first_delta"),
]


def _load(trace_dir: Path) -> dict[tuple[str, str], float]:
    events: dict[tuple[str, str], float] = {}
    for path in trace_dir.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            events.setdefault((item["e"], item["k"]), item["t"])
    return events


def breakdown(trace_dir: Path, raw: dict[int, dict[str, list[Any]]]) -> dict[str, Any]:
    """Median and p95 of each stage, per concurrency level, over the traced stack samples."""
    from bench._common import median, percentile

    events = _load(trace_dir)
    by_conversation: dict[str, tuple[str, str]] = {}  # conversation -> (job, message)
    for event, key in events:
        if event == "reply.claimed":
            job, conversation, message = key.split(":")
            by_conversation[conversation] = (job, message)
    levels: dict[str, Any] = {}
    for n, sides in raw.items():
        spans: dict[str, list[float]] = defaultdict(list)
        traced = 0
        for sample in sides["stack"]:
            if sample.ttft is None or sample.conversation_id not in by_conversation:
                continue
            job, message = by_conversation[sample.conversation_id]
            times = {
                "client.sent": sample.sent_at,
                "client.first_delta": sample.sent_at + sample.ttft,
            }
            for event, key in (
                ("web.receive", sample.conversation_id),
                ("web.sync_start", sample.conversation_id),
                ("web.enqueue_start", job),
                ("web.enqueue_end", job),
                ("web.ack_sent", sample.conversation_id),
                ("reply.task_start", job),
                ("reply.claimed", f"{job}:{sample.conversation_id}:{message}"),
                ("reply.llm_request", job),
                ("reply.first_token", job),
                ("reply.first_delta", message),
                ("worker.published", message),
                ("web.event", message),
                ("web.delta_sent", message),
            ):
                if (event, key) in events:
                    times[event] = events[(event, key)]
            if not all(a in times and b in times for _, a, b in STAGES):
                continue
            traced += 1
            for label, a, b in STAGES:
                spans[label].append(times[b] - times[a])
            spans["total: client send -> first delta"].append(sample.ttft)
        levels[str(n)] = {
            "traced": traced,
            "stages": {
                label: {"median": median(values), "p95": percentile(values, 95)}
                for label, values in spans.items()
            },
        }
    return levels


def trace_markdown(trace: dict[str, Any]) -> str:
    from bench._common import ms

    levels = list(trace)
    header = "| stage | " + " | ".join(f"{n} conv. median / p95 (ms)" for n in levels) + " |"
    lines = [header, "|---|" + "---:|" * len(levels)]
    labels = [label for label, _, _ in STAGES] + ["total: client send -> first delta"]
    for label in labels:
        cells = []
        for n in levels:
            stage = trace[n]["stages"].get(label)
            cells.append("n/a" if stage is None else f"{ms(stage['median'])} / {ms(stage['p95'])}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append(
        "\n(traced samples: "
        + ", ".join(f"{trace[n]['traced']} at {n} conv." for n in levels)
        + "; stage medians need not add up to the total median)"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
