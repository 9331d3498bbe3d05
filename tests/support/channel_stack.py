"""A stack of real processes for the channels: Daphne, a Celery worker and a Celery beat as child
processes, their settings pointing at loopback fakes of the channel providers' APIs (started
first, by the test module), and the helpers a test drives it with: `manage.py` commands
(`tenant_create`, `channel_add`), webhook posts, and reads of the rows the processes committed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from supportbot.devstack.__main__ import DAPHNE_OPTIONS
from tests.support.stack import (
    LOG_DIR,
    REPO,
    ChildProcess,
    database_url_of,
    wait_until,
)

DEADLINE = 60.0  # generous: a busy 2-core machine runs the whole suite alongside
STARTUP = 120.0  # a process's start (Django, Celery) on such a machine


@dataclass
class ChannelStack:
    base_url: str
    env: dict[str, str]
    providers: Any  # the fakes the stack's settings point at
    blocker: Any
    processes: list[ChildProcess] = field(default_factory=list)
    tenant: str = ""
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)

    def manage(self, *args: str) -> str:
        """Run a management command against the stack's database; its standard output."""
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            check=False,
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"manage.py {args[0]} failed: {done.stderr[-2000:]}"
        return done.stdout

    def tenant_create(self, name: str) -> str:
        out = self.manage("tenant_create", "--name", f"{name} {uuid.uuid4().hex[:8]}", "--json")
        return str(json.loads(out)["tenant"])

    def channel_add(self, tenant: str, kind: str, **settings: str) -> dict[str, Any]:
        pairs = [arg for name, value in settings.items() for arg in ("--set", f"{name}={value}")]
        out = self.manage("channel_add", "--tenant", tenant, "--kind", kind, *pairs, "--json")
        return dict(json.loads(out))

    def webhook(self, kind: str) -> str:
        return str(self.channels[kind]["webhook_url"])

    def post(self, url: str, body: bytes, content_type: str, **headers: str) -> httpx.Response:
        return httpx.post(
            url, content=body, headers={"Content-Type": content_type, **headers}, timeout=30
        )

    def orm(self) -> Any:
        """`with stack.orm():` lets the test read the rows the processes committed."""
        return self.blocker.unblock()

    def alive_check(self) -> None:
        for process in self.processes:
            assert process.alive(), f"{process.name} died: {process.log_text()[-3000:]}"

    def wait(self, condition: Callable[[], Any], message: str, timeout: float = DEADLINE) -> Any:
        """`wait_until` with a generous deadline, failing at once if a process died."""

        def checked() -> Any:
            self.alive_check()
            return condition()

        return wait_until(checked, timeout=timeout, message=message)


def channel_child(name: str, args: list[str], env: dict[str, str]) -> ChildProcess:
    return ChildProcess(
        name=name, args=args, env=env, log_path=LOG_DIR / f"channels-{name}-{os.getpid()}.log"
    ).start()


def channel_stack_env(port: int, llm_url: str, api_bases: dict[str, str]) -> dict[str, str]:
    """The env `live_stack` gives its processes, plus the providers' API bases (`api_bases`:
    setting name -> URL), the public URL the channels' webhook URLs are made from, a quick email
    poll, and Celery queues of the stack's own."""
    from django.conf import settings as django_settings
    from django.db import connection

    return {
        **os.environ,
        "DATABASE_URL": database_url_of(connection.settings_dict),
        "REDIS_URL": str(django_settings.REDIS_URL),
        "LLM_PROVIDER": "openai",
        "LLM_BASE_URL": llm_url,
        "LLM_API_KEY": "sk-test-secret",
        "LLM_MODEL": "scripted-model",
        "LLM_READ_TIMEOUT": "5",
        "LLM_DEADLINE": "30",
        "LLM_MAX_RETRIES": "1",
        "CELERY_VISIBILITY_TIMEOUT": "4",
        "CELERY_UNACKED_RESTORE_INTERVAL": "1",
        "REPLY_LEASE_SECONDS": "3",
        "PYTHONUNBUFFERED": "1",
        "TRUSTED_PROXIES": "127.0.0.1/32",
        "APP_LOG_LEVEL": "DEBUG",  # the most talkative logs, for the secrets check at the end
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        **api_bases,
        "EMAIL_POLL_SECONDS": "2",
        # Queues of its own: a session stack's worker on the same Redis (`live_stack`, started
        # by an earlier module) must not take these jobs to the real providers' addresses.
        "CELERY_KEY_PREFIX": f"channels-e2e-{port}:",
    }


def channel_processes_start(stack: ChannelStack, port: int, beat_dir: str) -> None:
    """Daphne (once it answers /healthz), a Celery worker (once ready) and a Celery beat."""
    web = channel_child(
        "web",
        [sys.executable, "-m", "daphne", *DAPHNE_OPTIONS, "-b", "127.0.0.1", "-p", str(port),
         "supportbot.asgi:application"],
        stack.env,
    )  # fmt: skip
    stack.processes.append(web)

    def healthy() -> bool:
        stack.alive_check()
        try:
            return httpx.get(stack.base_url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, timeout=STARTUP, message="Daphne to answer /healthz")
    celery = [sys.executable, "-m", "celery", "-A", "supportbot"]
    worker = channel_child(
        "worker",
        [*celery, "worker", "-Q", "replies,default,summaries", "--pool", "threads",
         "--concurrency", "4", "--prefetch-multiplier", "1", "-n", f"channels-{port}@%h",
         "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        stack.env,
    )  # fmt: skip
    stack.processes.append(worker)
    stack.wait(
        lambda: "ready." in worker.log_text(),
        "the Celery worker to be ready",
        timeout=STARTUP,
    )
    beat = channel_child(
        "beat",
        [*celery, "beat", "--schedule", str(Path(beat_dir) / "schedule"), "--loglevel", "INFO"],
        stack.env,
    )
    stack.processes.append(beat)


def database_flush(blocker: Any) -> None:
    """Leave the database as a transactional test does: empty, for the modules after this."""
    from django.core.management import call_command

    with blocker.unblock():
        call_command("flush", interactive=False, verbosity=0)
