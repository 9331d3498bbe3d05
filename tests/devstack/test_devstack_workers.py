"""Every Celery queue has a worker, replies never share theirs with summaries, and knowledge
uploads are parsed by a prefork worker (the pool that enforces time limits): in `make run` (the
devstack supervisor), the Procfile and docker-compose.yml."""

from __future__ import annotations

import re
import shlex

from django.conf import settings

from supportbot.devstack import REPO_ROOT
from supportbot.devstack.__main__ import celery_processes


def _every_queue() -> set[str]:
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    return routed | {settings.CELERY_TASK_DEFAULT_QUEUE}


def _worker_queues(command: list[str]) -> set[str] | None:
    if "worker" not in command:
        return None
    return set(command[command.index("-Q") + 1].split(","))


def _check(workers: dict[str, set[str]]) -> None:
    assert set().union(*workers.values()) == _every_queue()
    assert {"replies", "summaries", "knowledge"} <= _every_queue()
    for name, queues in workers.items():
        assert not {"replies", "summaries"} <= queues, f"{name} consumes replies and summaries"
        assert "knowledge" not in queues or queues == {"knowledge"}, f"{name} shares knowledge"


def _pool(command: list[str]) -> str:
    return command[command.index("--pool") + 1]


def test_make_run_starts_a_worker_for_each_queue() -> None:
    processes = celery_processes("python", {"CELERY_SUMMARY_CONCURRENCY": "3"})
    workers = {
        name: queues
        for name, command in processes
        if (queues := _worker_queues(command)) is not None
    }
    _check(workers)
    assert [name for name, _ in processes] == ["worker", "summaries", "knowledge", "beat"]
    summaries = dict(processes)["summaries"]
    assert summaries[summaries.index("--concurrency") + 1] == "3"
    assert _pool(dict(processes)["knowledge"]) == "prefork"
    threads = celery_processes("python", {"CELERY_POOL": "solo"})
    assert [_pool(c) for n, c in threads if n != "beat"] == ["solo", "solo", "prefork"]


def test_procfile_and_docker_compose_run_a_worker_for_each_queue() -> None:
    procfile = {}
    for line in (REPO_ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        queues = _worker_queues(shlex.split(command))
        if queues is not None:
            procfile[name] = queues
            if "knowledge" in queues:
                assert _pool(shlex.split(command)) == "prefork"
    _check(procfile)

    services: dict[str, set[str]] = {}
    service = ""
    for line in (REPO_ROOT / "docker-compose.yml").read_text().splitlines():
        if re.fullmatch(r"  [\w-]+:", line):
            service = line.strip().rstrip(":")
        elif found := re.search(r"\bworker -Q (\S+)", line):
            services[service] = set(found.group(1).split(","))
        elif service == "knowledge" and "--pool" in line:
            assert "--pool prefork" in line
    _check(services)
    assert services["knowledge"] == {"knowledge"}
