"""Stage timestamps inside Daphne and the Celery worker, for `bench/ttft.py --trace`.

    python -m bench._probe daphne -b 127.0.0.1 -p 8000 supportbot.asgi:application
    python -m bench._probe celery -A supportbot worker ...

runs the named module as `python -m` would, after wrapping a few functions of the application
(in memory, in that process only) so that each writes `{"e": stage, "k": key, "t": time.time()}`
lines to $BENCH_TRACE_DIR/<role>-<pid>.jsonl. Keys are conversation ids (before the reply
exists), job ids (worker start), and reply message ids (from the claim on). `breakdown` lines
the events up with the client's samples; every process runs on the same machine and clock.
"""

from __future__ import annotations

import functools
import json
import os
import runpy
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# -- recording -------------------------------------------------------------------------------------

_lock = threading.Lock()
_file: Any = None
_local = threading.local()


def _emit(event: str, key: Any, t: float | None = None) -> None:
    global _file
    line = json.dumps({"e": event, "k": str(key), "t": time.time() if t is None else t}) + "\n"
    with _lock:
        if _file is None:
            directory = Path(os.environ["BENCH_TRACE_DIR"])
            role = os.environ.get("BENCH_TRACE_ROLE", "proc")
            _file = (directory / f"{role}-{os.getpid()}.jsonl").open("a", buffering=1)
        _file.write(line)


def _is_first_delta(frame: Any) -> bool:
    return isinstance(frame, dict) and frame.get("type") == "reply.delta" and frame["index"] == 0


def _patch_web() -> None:
    from conversations import consumers

    consumer = consumers.WidgetConsumer
    original_receive = consumer.receive
    original_event = consumer.conversation_event
    original_widget_message = consumers.widget_message

    @functools.wraps(original_receive)
    async def receive(self: Any, text_data: str | None = None, bytes_data: bytes | None = None):  # type: ignore[no-untyped-def]
        t = time.time()
        is_message = (
            self.session is not None
            and text_data is not None
            and text_data.startswith('{"type": "message"')
        )
        if is_message:
            _emit("web.receive", self.session.conversation.pk, t)
        await original_receive(self, text_data=text_data, bytes_data=bytes_data)
        if is_message:
            _emit("web.ack_sent", self.session.conversation.pk)

    @functools.wraps(original_widget_message)
    def widget_message(*, session: Any, frame: Any, sender: Any = None) -> Any:
        _local.conversation = session.conversation.pk
        _emit("web.sync_start", session.conversation.pk)
        try:
            return original_widget_message(session=session, frame=frame, sender=sender)
        finally:
            _emit("web.sync_end", session.conversation.pk)
            _local.conversation = None

    @functools.wraps(original_event)
    async def conversation_event(self: Any, event: dict[str, Any]) -> None:
        frame = event.get("frame")
        first = _is_first_delta(frame)
        if first:
            _emit("web.event", frame["message_id"])
        await original_event(self, event)
        if first:
            _emit("web.delta_sent", frame["message_id"])

    consumer.receive = receive  # type: ignore[method-assign]
    consumer.conversation_event = conversation_event  # type: ignore[method-assign]
    consumers.widget_message = widget_message
    _patch_celery_publish()


def _patch_celery_publish() -> None:
    from celery.app.task import Task

    original = Task.apply_async

    @functools.wraps(original)
    def apply_async(self: Any, *args: Any, **kwargs: Any) -> Any:
        conversation = getattr(_local, "conversation", None)
        if conversation is None or self.name != "conversations.generate_reply":
            return original(self, *args, **kwargs)
        _emit("web.enqueue_start", conversation)
        try:
            return original(self, *args, **kwargs)
        finally:
            _emit("web.enqueue_end", conversation)

    Task.apply_async = apply_async  # type: ignore[method-assign]


def _patch_worker() -> None:
    from channels_redis.pubsub import RedisPubSubLoopLayer

    from conversations import replies, tasks

    original_generate = tasks.reply_generate
    original_claim = replies._claim
    original_stream = replies.stream_chat
    original_broadcast = replies.broadcast_frame
    original_group_send = RedisPubSubLoopLayer.group_send

    @functools.wraps(original_generate)
    def reply_generate(*, job_id: int) -> None:
        _emit("worker.task_start", job_id)
        _local.job = job_id
        return original_generate(job_id=job_id)

    @functools.wraps(original_claim)
    def claim(job_id: int) -> Any:
        result = original_claim(job_id)
        if result is not None:
            _local.message = result.reply.pk
            _emit("worker.claimed", f"{job_id}:{result.conversation.pk}:{result.reply.pk}")
        return result

    @functools.wraps(original_stream)
    def stream_chat(*args: Any, **kwargs: Any) -> Iterator[Any]:
        # Runs on the reply's stream thread: the job id comes with its cancel flag.
        job = getattr(kwargs.get("cancelled"), "job_id", None)
        _emit("worker.llm_request", job)
        first = True
        for event in original_stream(*args, **kwargs):
            if first and getattr(event, "text", None):
                _emit("worker.first_token", job)
                first = False
            yield event

    @functools.wraps(original_broadcast)
    def broadcast_frame(conversation_id: Any, frame: Any, **kwargs: Any) -> None:
        if _is_first_delta(frame):
            _emit("worker.delta_queued", frame["message_id"])
        original_broadcast(conversation_id, frame, **kwargs)

    @functools.wraps(original_group_send)
    async def group_send(self: Any, group: str, message: dict[str, Any]) -> None:
        frame = message.get("frame")
        first = _is_first_delta(frame)
        if first:
            _emit("worker.publish_start", frame["message_id"])
        await original_group_send(self, group, message)
        if first:
            _emit("worker.published", frame["message_id"])

    tasks.reply_generate = reply_generate
    replies._claim = claim
    replies.stream_chat = stream_chat
    replies.broadcast_frame = broadcast_frame
    RedisPubSubLoopLayer.group_send = group_send  # type: ignore[method-assign]


def main() -> None:
    module, rest = sys.argv[1], sys.argv[2:]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supportbot.settings")
    import django

    django.setup()
    if module == "daphne":
        os.environ["BENCH_TRACE_ROLE"] = "web"
        _patch_web()
    elif module == "celery":
        os.environ["BENCH_TRACE_ROLE"] = "worker"
        _patch_worker()
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


# -- analysis --------------------------------------------------------------------------------------

# (label, from event, to event): consecutive spans from the client's send to its first delta.
STAGES = [
    ("client send -> consumer.receive", "client.sent", "web.receive"),
    ("receive -> sync thread starts (database_sync_to_async)", "web.receive", "web.sync_start"),
    ("checks, INSERTs, COMMIT (widget_message)", "web.sync_start", "web.enqueue_start"),
    ("Celery publish (generate_reply.delay)", "web.enqueue_start", "web.enqueue_end"),
    ("publish -> task starts in the worker", "web.enqueue_end", "worker.task_start"),
    (
        "claim up to the request: job lock, language, history, knowledge, prompt",
        "worker.task_start",
        "worker.llm_request",
    ),
    (
        "LLM request -> first token (SDK; model 200 ms; reply row written meanwhile)",
        "worker.llm_request",
        "worker.first_token",
    ),
    ("first token -> delta queued (snapshot_write)", "worker.first_token", "worker.delta_queued"),
    (
        "queued -> published (broadcast thread, group_send)",
        "worker.delta_queued",
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
    for (event, key), _t in events.items():
        if event == "worker.claimed":
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
                ("web.enqueue_start", sample.conversation_id),
                ("web.enqueue_end", sample.conversation_id),
                ("web.sync_end", sample.conversation_id),
                ("web.ack_sent", sample.conversation_id),
                ("worker.task_start", job),
                ("worker.claimed", f"{job}:{sample.conversation_id}:{message}"),
                ("worker.llm_request", job),
                ("worker.first_token", job),
                ("worker.delta_queued", message),
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
