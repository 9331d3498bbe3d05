"""A whole stack of real processes whose servers a test may kill: the fault harness.

`FaultStack` owns a Postgres and a Redis of its own (the embedded servers of the dev stack, on
free ports), so a test can SIGKILL them and start them again on the SAME port, whatever servers
the rest of the suite uses. The project is migrated into that Postgres once per module, then
Daphne and Celery workers run as child processes against it (the options of `make run`), with
the scripted model server standing in for the provider.

The test process's own Django database is the suite's test database, not this one: read the
stack's rows with `stack.rows(...)` (psycopg), and create tenants with `stack.create_tenant()`
(`manage.py tenant_create --json` against the stack's database; a Django process starts slowly
on a loaded machine, so the stack creates one tenant while it migrates: `stack.widget_key`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from supportbot.devstack.__main__ import DAPHNE_OPTIONS
from supportbot.devstack.postgres import EmbeddedPostgres
from supportbot.devstack.redis import EmbeddedRedis, ping
from tests.support.llm_server import ScriptedLLMServer
from tests.support.stack import LOG_DIR, REPO, ChildProcess, free_port, wait_until
from tests.support.widget_client import CUSTOMER

DATABASE = "supportbot_faults"

# Migrate and create the stack's tenant in one Django process (each start costs seconds).
_PREPARE = f"""
import json, django
django.setup()
from django.core.management import call_command
from supportbot.tenants.services import tenant_create
call_command("migrate", interactive=False, verbosity=0)
tenant, key = tenant_create(name="Fault tenant", allowed_origins=[{CUSTOMER!r}])
print(json.dumps({{"tenant": tenant.slug, "widget_key": key.public_key}}))
"""


@dataclass
class KillablePostgres:
    """A Postgres of the stack's own: `kill()` is a crash (SIGKILL to every process of the
    cluster), `start()` brings it back on the same port with the same data."""

    server: EmbeddedPostgres

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> None:
        self.server.start()

    def _processes(self) -> list[int]:
        return self.server._orphans()  # every process working in the data directory

    def kill(self) -> None:
        for pid in self._processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not self._processes(), timeout=15, message="Postgres to be gone")

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.server.stop_server()


@dataclass
class KillableRedis:
    """A Redis of the stack's own, killed with SIGKILL and started again on the same port
    (it reloads its append-only file, as a production Redis would)."""

    server: EmbeddedRedis

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port

    def url(self, db: int = 0) -> str:
        return self.server.url_for_db(db)

    def start(self) -> None:
        self.server.start()

    def kill(self) -> None:
        pid = self.server.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not ping(self.port), timeout=15, message="Redis to be gone")

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.server.stop_server()


@dataclass
class FaultStack:
    postgres: KillablePostgres
    redis: KillableRedis
    llm: ScriptedLLMServer
    env: dict[str, str]
    base_url: str = ""
    ws_url: str = ""
    widget_key: str = ""  # the stack's own tenant, made when it was prepared
    web: ChildProcess | None = None
    workers: list[ChildProcess] = field(default_factory=list)

    # -- processes -------------------------------------------------------------------------

    def manage(self, *args: str, timeout: float = 120) -> str:
        """Run `manage.py ARGS` against the stack's database and Redis; its stdout."""
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert result.returncode == 0, f"manage.py {args}: {result.stdout}{result.stderr}"
        return result.stdout

    def prepare(self) -> None:
        """Migrate the stack's database and create its tenant."""
        result = subprocess.run(
            [sys.executable, "-c", _PREPARE],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert result.returncode == 0, f"preparing the stack: {result.stdout}{result.stderr}"
        self.widget_key = json.loads(result.stdout.strip().splitlines()[-1])["widget_key"]

    def start_web(self, *, wait: bool = True) -> ChildProcess:
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}/ws/widget/"
        web = ChildProcess(
            name="web",
            args=[
                *(sys.executable, "-m", "daphne", *DAPHNE_OPTIONS),
                *("-b", "127.0.0.1", "-p", str(port), "supportbot.asgi:application"),
            ],
            env=self.env,
            log_path=LOG_DIR / f"faults-web-{port}.log",
        ).start()
        self.web = web
        if wait:
            self.wait_web()
        return web

    def wait_web(self) -> None:
        web = self.web
        assert web is not None

        def healthy() -> bool:
            assert web.alive(), web.log_text()[-3000:]
            try:
                return httpx.get(self.base_url + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, timeout=180, message="Daphne to answer /healthz")

    def start_worker(self, *, wait: bool = True) -> ChildProcess:
        """One more Celery worker, with the options of `make run` (threads pool, no gossip,
        no mingle), consuming every queue a reply needs."""
        n = len(self.workers) + 1
        worker = ChildProcess(
            name=f"worker{n}",
            args=[
                *(sys.executable, "-m", "celery", "-A", "supportbot", "worker"),
                *("-Q", "replies,default,summaries", "--pool", "threads", "--concurrency", "4"),
                *("--prefetch-multiplier", "1", "-n", f"faults{n}-{os.getpid()}@%h"),
                *("--loglevel", "INFO", "--without-gossip", "--without-mingle"),
            ],
            env=self.env,
            log_path=LOG_DIR / f"faults-worker{n}-{os.getpid()}.log",
        ).start()
        self.workers.append(worker)
        if wait:
            self.wait_worker(worker)
        return worker

    def wait_worker(self, worker: ChildProcess) -> None:
        wait_until(
            lambda: "ready." in worker.log_text() or not worker.alive(),
            timeout=180,
            message=f"celery {worker.name} to be ready",
        )
        assert worker.alive(), worker.log_text()[-3000:]

    def ensure_workers(self, n: int) -> None:
        """At least `n` live workers (started side by side: each takes long to boot)."""
        missing = n - len(self.live_workers())
        started = [self.start_worker(wait=False) for _ in range(max(missing, 0))]
        for worker in started:
            self.wait_worker(worker)

    def crashed_workers(self) -> list[str]:
        """Workers that logged an unrecoverable error (exiting or not)."""
        return [w.name for w in self.workers if "Unrecoverable error" in w.log_text()]

    def live_workers(self) -> list[ChildProcess]:
        return [worker for worker in self.workers if worker.alive()]

    def pids(self) -> dict[str, int]:
        """The pid of every live child process, by name (to show none was restarted)."""
        children = [self.web, *self.workers] if self.web else list(self.workers)
        return {c.name: c.process.pid for c in children if c.process and c.alive()}

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        if self.web is not None:
            self.web.stop()

    # -- data ------------------------------------------------------------------------------

    def create_tenant(self, allowed_origins: tuple[str, ...] = (CUSTOMER,)) -> tuple[str, str]:
        """A new tenant in the stack's database: (slug, widget public key)."""
        args = ["tenant_create", "--name", f"Fault tenant {os.urandom(4).hex()}", "--json"]
        for origin in allowed_origins:
            args += ["--allowed-origin", origin]
        created = json.loads(self.manage(*args).strip().splitlines()[-1])
        return created["tenant"], created["widget_key"]

    def rows(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        """Rows of a query on the stack's database (a fresh connection each time, so a
        restarted server is no concern)."""
        with psycopg.connect(self.postgres.url, connect_timeout=5, row_factory=dict_row) as conn:
            return list(conn.execute(sql, params).fetchall())  # type: ignore[arg-type]

    def database_answers(self) -> bool:
        try:
            self.rows("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True

    def transcript(self, conversation_id: str) -> list[dict[str, Any]]:
        """The conversation's messages in `seq` order."""
        return self.rows(
            "SELECT id::text, seq, role, status, text FROM conversations_message "
            "WHERE conversation_id = %s ORDER BY seq",
            conversation_id,
        )


def fault_stack_env(
    postgres: KillablePostgres, redis: KillableRedis, llm: ScriptedLLMServer
) -> dict[str, str]:
    """The child processes' environment: the stack's servers, the scripted model, short
    leases and visibility timeouts so a lost job comes back within a test's patience."""
    return {
        **os.environ,
        "DATABASE_URL": postgres.url,
        "REDIS_URL": redis.url(0),
        "CELERY_KEY_PREFIX": "",
        "LLM_PROVIDER": "openai",
        "LLM_BASE_URL": llm.base_url,
        "LLM_API_KEY": "sk-test-secret",
        "LLM_MODEL": "scripted-model",
        "LLM_READ_TIMEOUT": "5",
        "LLM_DEADLINE": "30",
        "LLM_MAX_RETRIES": "1",
        "CELERY_VISIBILITY_TIMEOUT": "10",
        "CELERY_UNACKED_RESTORE_INTERVAL": "1",
        "REPLY_LEASE_SECONDS": "3",
        "PYTHONUNBUFFERED": "1",
        "APP_LOG_LEVEL": "INFO",
    }


@contextlib.contextmanager
def fault_stack_running(base_dir: Path, llm: ScriptedLLMServer) -> Iterator[FaultStack]:
    """Start the stack's own servers under `base_dir`, migrate, start Daphne and one worker;
    stop everything on the way out."""
    postgres = KillablePostgres(EmbeddedPostgres(base_dir / "postgres", database=DATABASE))
    redis = KillableRedis(EmbeddedRedis(base_dir / "redis"))
    stack: FaultStack | None = None
    try:
        postgres.start()
        redis.start()
        stack = FaultStack(postgres, redis, llm, fault_stack_env(postgres, redis, llm))
        stack.prepare()
        stack.start_web(wait=False)
        stack.ensure_workers(2)
        stack.wait_web()
        yield stack
    finally:
        if stack is not None:
            stack.stop()
        redis.stop()
        postgres.stop()


@pytest.fixture(scope="session")
def fault_stack(
    tmp_path_factory: pytest.TempPathFactory, llm_server: ScriptedLLMServer
) -> Iterator[FaultStack]:
    """A killable stack, started once for the session (its servers and processes are shared:
    each test leaves them running, see `faults`)."""
    with fault_stack_running(tmp_path_factory.mktemp("fault-stack"), llm_server) as stack:
        yield stack


@pytest.fixture
def faults(fault_stack: FaultStack) -> Iterator[FaultStack]:
    """The module's stack for one test: the scripted model reset, and every server and a
    worker up again afterwards, whatever the test left killed or stopped."""
    fault_stack.llm.reset()
    yield fault_stack
    for worker in fault_stack.workers:
        if worker.process is not None and worker.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.process.pid, signal.SIGCONT)
    if not ping(fault_stack.redis.port):
        fault_stack.redis.start()
    if not fault_stack.database_answers():
        fault_stack.postgres.start()
    if not fault_stack.live_workers():
        fault_stack.start_worker()
