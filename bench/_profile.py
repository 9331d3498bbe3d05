"""Where a reply's CPU goes: sampled stacks of Daphne and the worker, for `bench/ttft.py --profile`.

`py-spy record --format raw` runs against each process during the timed rounds of a level
(py-spy samples only threads that are on the CPU, and without pausing the process:
`--nonblocking`). py-spy also counts threads blocked in some system calls (a select, a socket
read, a lock): stacks whose innermost frame is such a wait (`WAITS`) are left out. Each other
stack is put in the first stage below whose pattern appears in one of its frames; a stage's
share of those samples times the process's measured CPU time per reply gives its CPU ms per
reply. The raw stacks stay in the directory (`<level>-<process>.txt`,
one `frame;frame;... count` line per stack: speedscope and flamegraph.pl read them).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PY_SPY = str(Path(os.environ.get("VIRTUAL_ENV", Path(__file__).resolve().parents[1] / ".venv")))
PY_SPY = str(Path(PY_SPY) / "bin" / "py-spy")
RATE = 200  # samples a second

# Innermost frames that wait rather than compute.
WAITS = (
    "EpollSelector.select",
    "_epoll.poll",
    "Connection.wait (psycopg",
    "Condition.wait (",
    "Event.wait (",
    "Thread.join (",
    "_wait_for_tstate_lock",
    "SyncStream.read (",
    "ProviderStream.__iter__",
    "_worker (concurrent/futures/thread.py",
    "SocketBuffer._read_from_socket",
)

# (stage, patterns): the first stage with a pattern in any frame of a stack takes it. The order
# puts the specific before the general (the SDK's parsing before the provider thread around it).
STAGES: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "worker": [
        ("language detection (langdetect)", ("langdetect",)),
        ("redaction (PII placeholders)", ("conversations/redaction", "redaction.py")),
        ("stream snapshot (Redis EVAL)", ("stream_state.py",)),
        ("broadcast (channel layer: msgpack, PUBLISH)", ("broadcast.py", "channels_redis")),
        ("moderation requests (SDK)", ("llm/moderation",)),
        ("provider stream: SDK, httpx, SSE parsing", ("openai/", "httpx", "httpcore", "llm/chat")),
        ("tenant limits (reserve, settle)", ("tenants/limits",)),
        ("provider thread, queue, cancel checks", ("provider_stream.py",)),
        ("moderation: screening, output check", ("screening.py", "output_check")),
        ("claim: job, history, knowledge, prompt", ("reply/claim", "reply/context", "passages")),
        ("finish: store the reply, audit", ("reply/finish", "audit")),
        ("reply delivery (coalescing)", ("reply/delivery",)),
        ("reply: answer/generate (other)", ("conversations/reply/",)),
        ("Celery, kombu (task receive, ack)", ("celery/", "kombu/", "billiard")),
        ("Django ORM, psycopg (other)", ("django/db", "psycopg")),
    ],
    "web": [
        (
            "widget hello and message (sync: key, checks, reads, INSERTs)",
            ("channels/widget", "conversations/services", "tenants/selectors"),
        ),
        ("close_old_connections per message (channels)", ("aclose_old_connections",)),
        ("Celery publish (reply job enqueue)", ("kombu/", "celery/")),
        ("Django ORM, psycopg (other)", ("django/db", "psycopg")),
        (
            "event to frame: conversation_event, filter, json",
            ("conversation_event", "stream_filter"),
        ),
        ("channel layer receive (Redis pub/sub, msgpack)", ("channels_redis",)),
        ("consumers (receive, hello)", ("consumers.py", "sockets.py")),
        ("websocket frames (autobahn, twisted, daphne)", ("autobahn", "twisted/", "daphne/http")),
        ("asgiref thread hops (sync_to_async)", ("asgiref",)),
        ("asyncio loop, Daphne's reactor", ("asyncio", "twisted", "daphne")),
    ],
}


@dataclass
class Recorder:
    name: str
    process: subprocess.Popen[bytes]
    out: Path


def start(directory: Path, level: int, pids: dict[str, int]) -> list[Recorder]:
    """A py-spy recorder per process; stop them with `stop`."""
    directory.mkdir(parents=True, exist_ok=True)
    recorders = []
    for name, pid in pids.items():
        out = directory / f"{level}-{name}.txt"
        command = [PY_SPY, "record", "--pid", str(pid), "--rate", str(RATE), "--format", "raw"]
        command += ["--nonblocking", "--output", str(out)]
        log = (directory / f"{level}-{name}.log").open("wb")
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        recorders.append(Recorder(name, process, out))
    return recorders


def stop(recorders: list[Recorder]) -> None:
    for recorder in recorders:
        recorder.process.send_signal(signal.SIGINT)
    for recorder in recorders:
        try:
            recorder.process.wait(30)
        except subprocess.TimeoutExpired:
            recorder.process.kill()
            recorder.process.wait()


def classify(path: Path, role: str) -> Counter[str]:
    samples: Counter[str] = Counter()
    if not path.exists():
        return samples
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        if any(wait in stack.rpartition(";")[2] for wait in WAITS):
            continue
        stage = "other"
        for label, patterns in STAGES[role]:
            if any(pattern in stack for pattern in patterns):
                stage = label
                break
        samples[stage] += int(count)
    return samples


def stage_table(directory: Path, level: int, cpu_per_reply: dict[str, float]) -> dict[str, Any]:
    """Per process: the measured CPU ms per reply spread over the stages by sample share."""
    table: dict[str, Any] = {}
    for role, key in (("web", "daphne"), ("worker", "worker")):
        samples = classify(directory / f"{level}-{role}.txt", role)
        total = sum(samples.values())
        per_reply = cpu_per_reply[key]
        table[role] = {
            "cpu_ms_per_reply": per_reply * 1000,
            "samples": total,
            "stages": {
                stage: per_reply * 1000 * count / total for stage, count in samples.most_common()
            }
            if total
            else {},
        }
    return table


def profile_markdown(profiles: dict[str, Any]) -> str:
    lines = []
    for level, table in profiles.items():
        for role, label in (("web", "Daphne"), ("worker", "worker")):
            entry = table[role]
            lines.append(
                f"\n{label}, {level} conv.: {entry['cpu_ms_per_reply']:.1f} ms CPU per reply "
                f"({entry['samples']} samples)\n"
            )
            lines.append("| stage | CPU ms per reply | share |")
            lines.append("|---|---:|---:|")
            for stage, value in entry["stages"].items():
                share = value / entry["cpu_ms_per_reply"] if entry["cpu_ms_per_reply"] else 0
                lines.append(f"| {stage} | {value:.1f} | {share:.0%} |")
    return "\n".join(lines)
