"""Shared pieces of the benchmark scripts: child processes, servers, the stack, statistics.

Nothing here is imported by the application. Every process a benchmark starts is registered in
one `Children` object and stopped (process group, SIGTERM then SIGKILL) when the script ends,
however it ends: normally, on an exception, on Ctrl-C or on SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

VAR_BENCH = REPO / "var" / "bench"
LOG_DIR = VAR_BENCH / "logs"
PYTHON = sys.executable


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    condition: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.1
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


# -- child processes -------------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path | None

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        if self.log_path is None:
            return ""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


@dataclass
class Children:
    """The processes this script started; `stop_all` ends each one's process group."""

    started: list[Child] = field(default_factory=list)

    def start(
        self,
        name: str,
        args: Sequence[str],
        env: dict[str, str],
        *,
        log: bool = True,
        stdout_pipe: bool = False,
    ) -> Child:
        log_path: Path | None = None
        stdout: Any = subprocess.DEVNULL
        if stdout_pipe:
            stdout = subprocess.PIPE
        elif log:
            LOG_DIR.mkdir(parents=True, exist_ok=True)
            log_path = LOG_DIR / f"{name}.log"
            stdout = log_path.open("wb")
        process = subprocess.Popen(
            list(args),
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT if not stdout_pipe else None,
            start_new_session=True,  # Ctrl-C reaches us only; we stop the group ourselves
        )
        if hasattr(stdout, "close"):
            stdout.close()
        child = Child(name, process, log_path)
        self.started.append(child)
        return child

    def stop_all(self) -> None:
        for child in reversed(self.started):
            try:
                child.stop()
            except Exception as exc:  # keep stopping the others
                say(f"could not stop {child.name}: {exc}")
        self.started.clear()


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so `finally` blocks clean up as they do on Ctrl-C."""

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


# -- the scripted LLM server -----------------------------------------------------------------------


def start_llm_server(
    children: Children,
    *,
    first_token_delay: float,
    tokens_per_second: float,
    text: str,
    moderation_delay: float = 0.0,
    tokens: int | None = None,
) -> str:
    """The scripted OpenAI-compatible server as a process of its own; returns its base URL.
    With `tokens`, the reply is `text`'s words repeated to that many tokens."""
    child = children.start(
        "llm",
        [
            PYTHON,
            "-m",
            "tests.support.llm_server",
            "--port",
            "0",
            "--first-token-delay",
            str(first_token_delay),
            "--tokens-per-second",
            str(tokens_per_second),
            "--text",
            text,
            "--moderation-delay",
            str(moderation_delay),
            *(("--tokens", str(tokens)) if tokens is not None else ()),
        ],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout_pipe=True,
    )
    assert child.process.stdout is not None
    line = child.process.stdout.readline().decode().strip()
    if not line.startswith("http"):
        raise RuntimeError(f"the scripted LLM server did not start (printed {line!r})")
    wait_until(lambda: http_ok(line + "/models"), timeout=10, what="the scripted LLM server")
    return line


# -- Postgres and Redis ----------------------------------------------------------------------------


@dataclass
class Servers:
    """A Postgres server (URL of any database on it) and a Redis URL; embedded ones if needed."""

    postgres_url: str
    redis_url: str
    redis_embedded: bool = False
    _embedded: list[Any] = field(default_factory=list)

    def stop(self) -> None:
        for server in reversed(self._embedded):
            try:
                server.stop()
            except Exception as exc:
                say(f"could not stop an embedded server: {exc}")
        self._embedded.clear()


def servers_from_env_or_embedded() -> Servers:
    """DATABASE_URL / REDIS_URL when set, else embedded Postgres / Redis under var/bench."""
    from supportbot.devstack.postgres import EmbeddedPostgres
    from supportbot.devstack.redis import EmbeddedRedis

    embedded: list[Any] = []
    try:
        database_url = os.environ.get("DATABASE_URL", "").strip()
        if not database_url:
            say("starting embedded Postgres under var/bench/postgres")
            postgres = EmbeddedPostgres(VAR_BENCH / "postgres")
            database_url = postgres.start()
            embedded.append(postgres)
        redis_url = os.environ.get("REDIS_URL", "").strip()
        if not redis_url:
            say("starting embedded Redis under var/bench/redis")
            redis_server = EmbeddedRedis(VAR_BENCH / "redis")
            redis_url = redis_server.start()
            embedded.append(redis_server)
    except BaseException:
        for server in reversed(embedded):
            with contextlib.suppress(Exception):
                server.stop()
        raise
    return Servers(
        postgres_url=database_url,
        redis_url=redis_url,
        redis_embedded=not os.environ.get("REDIS_URL", "").strip(),
        _embedded=embedded,
    )


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@contextlib.contextmanager
def fresh_database(server_url: str, name: str, *, keep: bool = False) -> Iterator[str]:
    """Create database `name` on the server of `server_url`; drop it afterwards."""
    import psycopg

    admin_url = with_database(server_url, "postgres")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(server_url, name)
    finally:
        if not keep:
            try:
                with psycopg.connect(admin_url, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except Exception as exc:
                say(f"could not drop database {name}: {exc}")


def manage(args: Sequence[str], env: dict[str, str]) -> str:
    result = subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"manage.py {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout[-2000:]}{result.stderr[-2000:]}"
        )
    return result.stdout


def last_json_line(output: str) -> dict[str, Any]:
    for line in reversed(output.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return dict(json.loads(line))
    raise RuntimeError(f"no JSON line in:\n{output}")


# -- the application as real processes -------------------------------------------------------------


@dataclass
class Stack:
    base_url: str
    ws_url: str
    env: dict[str, str]
    web: Child
    worker: Child


def start_stack(
    children: Children,
    env: dict[str, str],
    *,
    worker_concurrency: int = 64,
    launcher: Sequence[str] = (),
) -> Stack:
    """One Daphne process and one Celery worker (threads pool) with `env`.

    `launcher` is an optional prefix (e.g. ``[python, -m, bench._probe]``) run instead of
    ``python -m``; the module name and arguments follow it.
    """
    prefix = list(launcher) or [PYTHON, "-m"]
    port = free_port()
    web = children.start(
        "web",
        [*prefix, "daphne", "-b", "127.0.0.1", "-p", str(port), "supportbot.asgi:application"],
        env,
    )
    worker = children.start(
        "worker",
        [
            *prefix,
            "celery",
            "-A",
            "supportbot",
            "worker",
            "-Q",
            "replies,default,summaries",
            "--pool",
            "threads",
            "--concurrency",
            str(worker_concurrency),
            "--prefetch-multiplier",
            "1",
            "-n",
            f"bench-{os.getpid()}@%h",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        env,
    )
    base_url = f"http://127.0.0.1:{port}"

    def web_ready() -> bool:
        if not web.alive():
            raise RuntimeError(f"Daphne exited:\n{web.log_tail()}")
        return http_ok(base_url + "/healthz")

    def worker_ready() -> bool:
        if not worker.alive():
            raise RuntimeError(f"the Celery worker exited:\n{worker.log_tail()}")
        return "ready." in worker.log_tail(20000)

    wait_until(web_ready, timeout=90, what="Daphne to answer /healthz", interval=0.25)
    wait_until(worker_ready, timeout=90, what="the Celery worker to be ready", interval=0.25)
    return Stack(
        base_url=base_url,
        ws_url=f"ws://127.0.0.1:{port}/ws/widget/",
        env=env,
        web=web,
        worker=worker,
    )


# -- statistics ------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); q in [0, 100]."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.1f}"


def signed_ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:+.1f}"


_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def machine_summary() -> str:
    cores = os.cpu_count() or 0
    try:
        load = os.getloadavg()
        load_text = f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    except OSError:
        load_text = "load n/a"
    return f"{cores} cores, Python {sys.version.split()[0]}, {load_text}"


# -- load: descriptors, memory, load average -------------------------------------------------------


def raise_open_files_limit(wanted: int = 65536) -> int:
    """Raise RLIMIT_NOFILE (soft, and hard when allowed) towards `wanted`; children inherit it.
    Returns the soft limit now in force."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for limit in (max(wanted, hard), hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(wanted, limit)), limit))
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def process_rss_bytes(pid: int) -> int:
    """Resident set size of a process (VmRSS); 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def load_average() -> float:
    """The 1-minute load average (NaN where there is none)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return math.nan


def start_web(children: Children, env: dict[str, str], *, name: str = "web") -> tuple[Child, int]:
    """One Daphne process alone (no worker), ready to answer; returns it and its port."""
    port = free_port()
    web = children.start(
        name,
        [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "supportbot.asgi:application"],
        env,
    )

    def ready() -> bool:
        if not web.alive():
            raise RuntimeError(f"Daphne exited:\n{web.log_tail()}")
        return http_ok(f"http://127.0.0.1:{port}/healthz")

    wait_until(ready, timeout=90, what="Daphne to answer /healthz", interval=0.25)
    return web, port
