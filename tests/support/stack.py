"""Real processes for end-to-end tests: Daphne and Celery workers against the test database.

`live_stack` (session) starts Daphne and one Celery worker as child processes, pointed at the
test database, the test Redis and the scripted LLM server. `celery_worker` (module) runs a
real Celery worker inside the test process instead, for tests that drive consumers directly.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from supportbot.devstack.__main__ import DAPHNE_OPTIONS

REPO = Path(__file__).resolve().parents[2]
LOG_DIR = REPO / "var" / "test-logs"


def wait_until(
    condition: Callable[[], Any], *, timeout: float, message: str, interval: float = 0.05
) -> Any:
    """Poll `condition` until it returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def database_url_of(settings_dict: dict[str, Any]) -> str:
    user = quote(settings_dict.get("USER") or "")
    password = quote(settings_dict.get("PASSWORD") or "")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or ""
    port = settings_dict.get("PORT") or ""
    if host.startswith("/"):
        return f"postgres://{auth}/{settings_dict['NAME']}?host={quote(host)}" + (
            f"&port={port}" if port else ""
        )
    return f"postgres://{auth}{host}{':' + str(port) if port else ''}/{settings_dict['NAME']}"


@dataclass
class ChildProcess:
    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> ChildProcess:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.args,
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash, no clean shutdown."""
        if self.process is not None and self.alive():
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is None or not self.alive():
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()


@dataclass
class LiveStack:
    base_url: str
    ws_url: str
    llm: Any
    env: dict[str, str]
    web: ChildProcess
    workers: list[ChildProcess] = field(default_factory=list)
    _blocker: Any = None

    def in_thread(self, work: Callable[[], Any]) -> Any:
        """Run ORM `work` on a thread of its own (writes committed) and return its result.

        Works whatever the main thread does: Playwright's sync API keeps an event loop running
        there, and Django refuses ORM calls from such a thread.
        """
        from concurrent.futures import ThreadPoolExecutor

        from django.db import connections

        def run() -> Any:
            try:
                with self._blocker.unblock():
                    return work()
            finally:
                connections.close_all()

        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(run).result(timeout=60)

    def create_tenant(
        self, allowed_origins: list[str] | None = None, **fields: Any
    ) -> tuple[str, str]:
        """A committed tenant the child processes can see: (slug, widget public key)."""
        from supportbot.tenants.models import Tenant
        from supportbot.tenants.services import tenant_create

        def create() -> tuple[str, str]:
            n = Tenant.objects.count() + 1
            tenant, key = tenant_create(
                name=f"Live tenant {n} {time.monotonic_ns()}",
                allowed_origins=allowed_origins or [],
            )
            for name, value in fields.items():
                setattr(tenant, name, value)
            if fields:
                tenant.save()
            return tenant.slug, key.public_key

        return self.in_thread(create)

    def orm(self) -> Any:
        """`with live_stack.orm():` lets the test read committed rows."""
        return self._blocker.unblock()

    def start_worker(self) -> ChildProcess:
        n = len(self.workers) + 1
        worker = ChildProcess(
            name=f"worker{n}",
            args=[
                sys.executable,
                "-m",
                "celery",
                "-A",
                "supportbot",
                "worker",
                "-Q",
                "replies,default,summaries",
                "--pool",
                "threads",
                "--concurrency",
                "4",
                "--prefetch-multiplier",
                "1",
                "-n",
                f"e2e{n}-{os.getpid()}@%h",
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            env=self.env,
            log_path=LOG_DIR / f"worker{n}-{os.getpid()}.log",
        ).start()
        self.workers.append(worker)
        wait_until(
            lambda: "ready." in worker.log_text() or not worker.alive(),
            timeout=60,
            message=f"celery worker {n} to be ready",
        )
        assert worker.alive(), worker.log_text()[-3000:]
        return worker

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.web.stop()


@pytest.fixture(scope="session")
def live_stack(
    django_db_setup: None, django_db_blocker: Any, llm_server: Any
) -> Iterator[LiveStack]:
    from django.conf import settings as django_settings
    from django.db import connection

    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url_of(connection.settings_dict),
        "REDIS_URL": django_settings.REDIS_URL,
        "LLM_PROVIDER": "openai",
        "LLM_BASE_URL": llm_server.base_url,
        "LLM_API_KEY": "sk-test-secret",
        "LLM_MODEL": "scripted-model",
        "LLM_READ_TIMEOUT": "5",
        "LLM_DEADLINE": "30",
        "LLM_MAX_RETRIES": "1",
        "CELERY_VISIBILITY_TIMEOUT": "4",
        "CELERY_UNACKED_RESTORE_INTERVAL": "1",
        "REPLY_LEASE_SECONDS": "3",
        "PYTHONUNBUFFERED": "1",
        # The application's loggers at their most talkative (tests/e2e/test_log_privacy.py
        # reads these processes' output), and loopback as the proxy, so a test can give the
        # visitor an address of its own (X-Forwarded-For).
        "APP_LOG_LEVEL": "DEBUG",
        "TRUSTED_PROXIES": "127.0.0.1/32",
    }
    web = ChildProcess(
        name="web",
        args=[
            sys.executable,
            "-m",
            "daphne",
            *DAPHNE_OPTIONS,
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "supportbot.asgi:application",
        ],
        env=env,
        log_path=LOG_DIR / f"web-{os.getpid()}.log",
    ).start()
    stack = LiveStack(
        base_url=f"http://127.0.0.1:{port}",
        ws_url=f"ws://127.0.0.1:{port}/ws/widget/",
        llm=llm_server,
        env=env,
        web=web,
        _blocker=django_db_blocker,
    )
    try:

        def healthy() -> bool:
            assert web.alive(), web.log_text()[-3000:]
            try:
                return httpx.get(stack.base_url + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, timeout=60, message="Daphne to answer /healthz")
        stack.start_worker()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def celery_worker(django_db_blocker: Any) -> Iterator[Any]:
    """A real Celery worker (threads) inside the test process, consuming the test Redis."""
    from celery.contrib.testing.worker import start_worker

    from supportbot.celery import app

    with start_worker(
        app,
        pool="threads",
        concurrency=4,
        perform_ping_check=False,
        queues=["replies", "default", "summaries", "knowledge"],
        shutdown_timeout=10,
    ) as worker:
        yield worker


@pytest.fixture
def celery_idle(celery_worker: Any) -> Iterator[Any]:
    """The in-process worker, and after the test: wait until it has finished every job, so no
    job of this test runs on while the next one cleans the database."""
    from celery.worker import state

    yield celery_worker
    wait_until(
        lambda: not state.active_requests and not state.reserved_requests,
        timeout=30,
        message="the in-process Celery worker to finish this test's jobs",
    )
