"""A small process supervisor: named children, prefixed output, restarts, clean shutdown.

Each child runs in its own session (so a Ctrl-C in the terminal reaches only the supervisor,
which then stops the children in order) and gets SIGTERM if the supervisor itself dies.

An essential child that exits on its own is started again after a delay that doubles with each
crash in a row (1, 2, 4 ... 30 s) and starts over once the child has run stably for a minute.
Watched servers (the embedded Redis and Postgres, which run as daemons of their own) are
restarted the same way. Only Ctrl-C or SIGTERM stops everything.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from ._util import is_tty, say

_COLOURS = ["36", "33", "35", "32", "34", "91", "96", "93"]
_PR_SET_PDEATHSIG = 1


def _child_setup() -> None:  # pragma: no cover - runs in the forked child
    """Ask the kernel to SIGTERM this child when the supervisor dies (Linux only)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


@dataclass(frozen=True)
class RestartPolicy:
    """How long to wait before a restart: doubling per crash in a row, up to ``max_delay``."""

    first_delay: float = 1.0
    max_delay: float = 30.0
    # A child that ran this long before it exited starts a fresh series (1 s again).
    stable_after: float = 60.0

    def delay(self, crashes_in_a_row: int) -> float:
        return float(min(self.max_delay, self.first_delay * 2 ** max(0, crashes_in_a_row - 1)))


@dataclass
class Restarts:
    """The restart bookkeeping shared by children and watched servers."""

    policy: RestartPolicy
    started_at: float = field(default_factory=time.monotonic)
    in_a_row: int = 0
    total: int = 0
    due_at: float | None = None

    def schedule(self, now: float) -> float:
        """Plan the next restart after an exit at ``now``; return its delay in seconds."""
        if now - self.started_at >= self.policy.stable_after:
            self.in_a_row = 0
        self.in_a_row += 1
        self.total += 1
        delay = self.policy.delay(self.in_a_row)
        self.due_at = now + delay
        return delay

    def due(self, now: float) -> bool:
        return self.due_at is not None and now >= self.due_at

    def started(self, now: float) -> None:
        self.started_at = now
        self.due_at = None


def describe_exit(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-returncode).name}"
    return f"exited with code {returncode}"


def _seconds(delay: float) -> str:
    return f"{delay:g} s"


@dataclass
class Child:
    name: str
    args: Sequence[str]
    process: subprocess.Popen[bytes]
    reader: threading.Thread
    stopping: bool = False
    # A child the product can run without (the local model): its exit is reported, not fatal.
    essential: bool = True
    exit_reported: bool = False
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    restarts: Restarts = field(default_factory=lambda: Restarts(RestartPolicy()))

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass
class WatchedServer:
    """A server that runs outside the supervisor's children (a daemon) and is restarted by it."""

    name: str
    alive: Callable[[], bool]
    restart: Callable[[], None]
    restarts: Restarts


@dataclass
class Supervisor:
    children: list[Child] = field(default_factory=list)
    servers: list[WatchedServer] = field(default_factory=list)
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    stop_requested: threading.Event = field(default_factory=threading.Event)
    _print_lock: threading.Lock = field(default_factory=threading.Lock)
    _width: int = 8
    _signals_seen: int = 0

    # -- output -------------------------------------------------------------------------------

    def _prefix(self, name: str) -> str:
        label = name.ljust(self._width)
        if not is_tty():
            return f"{label} | "
        index = sum(map(ord, name)) % len(_COLOURS)
        return f"\033[{_COLOURS[index]}m{label} |\033[0m "

    def _pump(self, name: str, stream: object) -> None:
        prefix = self._prefix(name)
        for raw in iter(stream.readline, b""):  # type: ignore[attr-defined]
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            with self._print_lock:
                sys.stdout.write(f"{prefix}{line}\n")
                sys.stdout.flush()
        stream.close()  # type: ignore[attr-defined]

    # -- children -----------------------------------------------------------------------------

    def start(
        self,
        name: str,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        essential: bool = True,
    ) -> Child:
        self._width = max(self._width, len(name))
        child_env = dict(os.environ if env is None else env)
        child_env.setdefault("PYTHONUNBUFFERED", "1")
        process, reader = self._spawn(name, args, child_env, cwd)
        child = Child(
            name=name,
            args=args,
            process=process,
            reader=reader,
            essential=essential,
            env=child_env,
            cwd=cwd,
            restarts=Restarts(self.policy),
        )
        self.children.append(child)
        say(f"started {name} (pid {process.pid})")
        return child

    def _spawn(
        self, name: str, args: Sequence[str], env: dict[str, str], cwd: Path | None
    ) -> tuple[subprocess.Popen[bytes], threading.Thread]:
        process = subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_child_setup,  # noqa: PLW1509 - one prctl call, no locks taken
        )
        reader = threading.Thread(
            target=self._pump, args=(name, process.stdout), name=f"out-{name}", daemon=True
        )
        reader.start()
        return process, reader

    def watch(self, name: str, alive: Callable[[], bool], restart: Callable[[], None]) -> None:
        """Restart a server that runs on its own (``restart`` must bring it back as it was)."""
        self.servers.append(WatchedServer(name, alive, restart, Restarts(self.policy)))

    # -- restarts -----------------------------------------------------------------------------

    def restart_crashed(self, now: float | None = None) -> None:
        """One pass: plan a restart for each child or server found dead, and make the due ones."""
        for child in self.children:
            if child.essential and not child.stopping:
                self._restart_child(child, time.monotonic() if now is None else now)
        for server in self.servers:
            if self.stop_requested.is_set():
                return
            self._restart_server(server, time.monotonic() if now is None else now)

    def _restart_child(self, child: Child, now: float) -> None:
        if child.alive():
            return
        if child.restarts.due_at is None:
            child.reader.join(timeout=2)
            delay = child.restarts.schedule(now)
            say(
                f"{child.name} {describe_exit(child.process.returncode)}; restarting in "
                f"{_seconds(delay)} (restart {child.restarts.total})"
            )
        if child.restarts.due(now):
            child.process, child.reader = self._spawn(child.name, child.args, child.env, child.cwd)
            child.restarts.started(time.monotonic())
            say(f"restarted {child.name} (pid {child.pid})")

    def _restart_server(self, server: WatchedServer, now: float) -> None:
        if server.restarts.due_at is None:
            if server.alive():
                return
            delay = server.restarts.schedule(now)
            say(
                f"{server.name} is not running; restarting in {_seconds(delay)} "
                f"(restart {server.restarts.total})"
            )
        if not server.restarts.due(now):
            return
        try:
            server.restart()
        except Exception as exc:  # the next attempt waits longer
            delay = server.restarts.schedule(time.monotonic())
            say(f"{server.name} did not restart ({exc}); trying again in {_seconds(delay)}")
            return
        server.restarts.started(time.monotonic())
        say(f"restarted {server.name}")

    def dead_child(self) -> Child | None:
        """The first essential child that exited without being asked to."""
        for child in self.children:
            if child.essential and not child.stopping and not child.alive():
                return child
        return None

    def report_nonessential_exits(self) -> None:
        """Say once that a non-essential child exited; the others keep running."""
        for child in self.children:
            if child.essential or child.stopping or child.alive() or child.exit_reported:
                continue
            child.exit_reported = True
            child.reader.join(timeout=2)
            say(f"{child.name} exited with code {child.process.returncode}; the rest keeps running")

    # -- signals and waiting ---------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            self._signals_seen += 1
            if self._signals_seen == 1:
                with self._print_lock:
                    print(
                        f"\ndevstack | {signal.Signals(signum).name}: shutting down "
                        "(press Ctrl-C again to force)",
                        flush=True,
                    )
            else:
                for child in self.children:
                    self._signal(child, signal.SIGKILL)
            self.stop_requested.set()

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
        with contextlib.suppress(AttributeError, ValueError):
            signal.signal(signal.SIGHUP, handler)

    def check_stop(self) -> None:
        """Raise KeyboardInterrupt once a stop was requested (between set-up steps)."""
        if self.stop_requested.is_set():
            raise KeyboardInterrupt

    def wait(self) -> int:
        """Block until Ctrl-C or SIGTERM, restarting crashed children and servers meanwhile."""
        while not self.stop_requested.wait(0.5):
            self.report_nonessential_exits()
            self.restart_crashed()
        return 0

    # -- shutdown ------------------------------------------------------------------------------

    def _signal(self, child: Child, signum: int) -> None:
        if not child.alive():
            return
        try:
            os.killpg(child.pid, signum)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signum)

    def stop_all(self, timeout: float = 15.0) -> None:
        """SIGTERM every child (newest first), wait up to ``timeout``, then SIGKILL the rest."""
        live = [child for child in reversed(self.children) if child.alive()]
        for child in self.children:
            child.stopping = True
        if not live:
            return
        say("stopping " + ", ".join(child.name for child in live))
        for child in live:
            self._signal(child, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in live:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                child.process.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                say(f"{child.name} did not stop within {timeout:.0f}s: killing it")
                self._signal(child, signal.SIGKILL)
                child.process.wait(timeout=5)
        for child in live:
            # Whatever the child started in its own group goes too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
            child.reader.join(timeout=2)
