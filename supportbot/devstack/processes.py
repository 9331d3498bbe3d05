"""A small process supervisor: named children, prefixed output, clean shutdown.

Each child runs in its own session (so a Ctrl-C in the terminal reaches only the supervisor,
which then stops the children in order) and gets SIGTERM if the supervisor itself dies.
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
from collections.abc import Mapping, Sequence
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

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass
class Supervisor:
    children: list[Child] = field(default_factory=list)
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
        process = subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=child_env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_child_setup,  # noqa: PLW1509 - one prctl call, no locks taken
        )
        reader = threading.Thread(
            target=self._pump, args=(name, process.stdout), name=f"out-{name}", daemon=True
        )
        reader.start()
        child = Child(name=name, args=args, process=process, reader=reader, essential=essential)
        self.children.append(child)
        say(f"started {name} (pid {process.pid})")
        return child

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
        """Block until a signal arrives or a child dies. 0 for a signal, 1 for a death."""
        while not self.stop_requested.wait(0.5):
            self.report_nonessential_exits()
            dead = self.dead_child()
            if dead is not None:
                dead.reader.join(timeout=2)
                say(
                    f"{dead.name} exited unexpectedly with code {dead.process.returncode}; "
                    "stopping everything"
                )
                return 1
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
