"""Real processes for the socket fault cases: one or more Daphne processes on ports of their
own (same database, same Redis) and a Celery worker with as many threads as a case needs, all
killable by the test that started them."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from django.conf import settings as django_settings
from django.db import connection

from supportbot.devstack.__main__ import DAPHNE_OPTIONS
from tests.support.stack import (
    LOG_DIR,
    ChildProcess,
    LiveStack,
    database_url_of,
    free_port,
    wait_until,
)


@dataclass
class SocketStack(LiveStack):
    webs: list[ChildProcess] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)

    def env_of(self, name: str) -> dict[str, str]:
        """The stack's environment, with the process's name as its Postgres application_name
        (so a test can count one process's connections in pg_stat_activity)."""
        url = self.env["DATABASE_URL"]
        joiner = "&" if "?" in url else "?"
        return {**self.env, "DATABASE_URL": f"{url}{joiner}application_name={name}"}

    def application_name(self, process: ChildProcess) -> str:
        return f"{process.name}-{os.getpid()}"

    def ws_url_of(self, n: int) -> str:
        return f"ws://127.0.0.1:{self.ports[n]}/ws/widget/"

    def start_web(self) -> ChildProcess:
        """Another Daphne process on a port of its own; waits until it answers /healthz."""
        n, port = len(self.webs) + 1, free_port()
        web = ChildProcess(
            name=f"web{n}",
            args=[
                sys.executable,
                "-m",
                "daphne",
                *DAPHNE_OPTIONS,
                *("-b", "127.0.0.1", "-p", str(port), "supportbot.asgi:application"),
            ],
            env=self.env_of(f"web{n}-{os.getpid()}"),
            log_path=LOG_DIR / f"fault-web{n}-{os.getpid()}.log",
        ).start()
        self.webs.append(web)
        self.ports.append(port)

        def healthy() -> bool:
            assert web.alive(), web.log_text()[-3000:]
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, timeout=60, message=f"Daphne {n} to answer /healthz")
        return web

    def start_worker(self, concurrency: int = 4) -> ChildProcess:  # type: ignore[override]
        n = len(self.workers) + 1
        worker = ChildProcess(
            name=f"worker{n}",
            args=[
                *(sys.executable, "-m", "celery", "-A", "supportbot", "worker"),
                *("-Q", "replies,default,summaries", "--pool", "threads"),
                *("--concurrency", str(concurrency), "--prefetch-multiplier", "1"),
                *("-n", f"faults{n}-{os.getpid()}@%h", "--loglevel", "INFO"),
                *("--without-gossip", "--without-mingle", "--without-heartbeat"),
            ],
            env=self.env_of(f"worker{n}-{os.getpid()}"),
            log_path=LOG_DIR / f"fault-worker{n}-{os.getpid()}.log",
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
        for web in self.webs:
            web.stop()


@contextmanager
def socket_stack(
    django_db_blocker: Any,
    llm_server: Any,
    *,
    webs: int = 1,
    worker_concurrency: int = 4,
    **settings: str,
) -> Iterator[SocketStack]:
    """`webs` Daphne processes and one worker against the test database and Redis; `settings`
    are extra environment variables of every process."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url_of(connection.settings_dict),
        "REDIS_URL": django_settings.REDIS_URL,
        "LLM_PROVIDER": "openai",
        "LLM_BASE_URL": llm_server.base_url,
        "LLM_API_KEY": "sk-test-secret",
        "LLM_MODEL": "scripted-model",
        "LLM_READ_TIMEOUT": "10",
        "LLM_DEADLINE": "120",
        "LLM_MAX_RETRIES": "1",
        "CELERY_VISIBILITY_TIMEOUT": "30",
        "CELERY_UNACKED_RESTORE_INTERVAL": "1",
        "PYTHONUNBUFFERED": "1",
        "TRUSTED_PROXIES": "127.0.0.1/32",
        **settings,
    }
    stack = SocketStack(
        base_url="",
        ws_url="",
        llm=llm_server,
        env=env,
        web=None,  # type: ignore[arg-type]
        _blocker=django_db_blocker,
    )
    try:
        for _ in range(webs):
            stack.start_web()
        stack.web = stack.webs[0]
        stack.base_url = f"http://127.0.0.1:{stack.ports[0]}"
        stack.ws_url = stack.ws_url_of(0)
        stack.start_worker(worker_concurrency)
        yield stack
    finally:
        stack.stop()
