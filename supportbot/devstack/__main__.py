"""``python -m supportbot.devstack {run,services,test}``: the local stack behind make run / test.

run       embedded Postgres + Redis (unless DATABASE_URL / REDIS_URL are set), the local model
          (unless an LLM is configured), migrate, collectstatic, seed the demo tenant, then Daphne,
          the Celery workers (replies, summaries, knowledge), Celery beat and the demo site,
          until Ctrl-C.
services  only the embedded servers (and with --llm the local model), until Ctrl-C.
test      the embedded servers where the variables are unset, then pytest with the given args.
exec      the same, then any one command (``exec manage.py makemigrations --check``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import REPO_ROOT, STATE_FILE, VAR_DIR, local_llm
from ._util import DevstackError, atomic_write_json, free_port, port_is_free, say
from .chromium import ensure_chromium
from .dovecot import ensure_dovecot
from .postgres import EmbeddedPostgres
from .processes import Child, Supervisor
from .redis import EmbeddedRedis, flushdb

# Daphne's access log would write each visitor's address: none (as in the Procfile). A websocket
# handshake may take up to 30 s (Daphne's default, 5 s, refuses sockets when hundreds of widgets
# reconnect at once, after a failover, on a busy machine).
DAPHNE_OPTIONS = ("--access-log", "/dev/null", "--websocket_connect_timeout", "30")
TEST_REDIS_DB = 1  # tests never share a Redis database (and so Celery queues) with `make run`


@dataclass
class Services:
    """The embedded servers this command uses, and which of them it started itself."""

    database_url: str
    redis_url: str
    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def started_any(self) -> bool:
        return bool(
            (self.postgres and self.postgres.started_here)
            or (self.redis and self.redis.started_here)
        )

    def watch(self, supervisor: Supervisor) -> None:
        """Have the supervisor restart the servers started here, on their ports, if they die."""
        if self.postgres is not None and self.postgres.started_here:
            supervisor.watch("postgres", self.postgres.alive, self.postgres.restart)
        if self.redis is not None and self.redis.started_here:
            supervisor.watch("redis", self.redis.alive, self.redis.restart)

    def stop(self) -> None:
        for server in (self.redis, self.postgres):
            if server is None:
                continue
            try:
                server.stop()
            except Exception as exc:  # keep stopping the others
                say(f"error while stopping: {exc}")


def ensure_services(var_dir: Path = VAR_DIR) -> Services:
    """Start (or reuse) embedded servers for whichever of DATABASE_URL / REDIS_URL is unset."""
    database_url = os.environ.get("DATABASE_URL", "").strip()
    redis_url = os.environ.get("REDIS_URL", "").strip()
    services = Services(database_url=database_url, redis_url=redis_url)
    try:
        if not database_url:
            services.postgres = EmbeddedPostgres(var_dir / "postgres")
            services.database_url = services.postgres.start()
            services.state["database_url"] = services.database_url
        else:
            say("postgres: using DATABASE_URL from the environment")
        if not redis_url:
            services.redis = EmbeddedRedis(var_dir / "redis")
            services.redis_url = services.redis.start()
            services.state["redis_url"] = services.redis_url
        else:
            say("redis: using REDIS_URL from the environment")
    except BaseException:
        services.stop()
        raise
    return services


def write_state(state: dict[str, Any]) -> None:
    atomic_write_json(STATE_FILE, state)
    say(f"wrote {STATE_FILE.relative_to(REPO_ROOT)}")


def clear_state(services: Services, wrote_llm: bool) -> None:
    if services.started_any:
        STATE_FILE.unlink(missing_ok=True)
    elif wrote_llm and STATE_FILE.exists():
        write_state({**services.state, "llm_base_url": None, "llm_model": None})
        # (llm_provider is dropped with them: services.state never holds it)


def redact(url: str) -> str:
    """Hide a password in a URL before printing it."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


# -- run ---------------------------------------------------------------------------------------


def _manage_start(
    args: list[str], env: dict[str, str], *, capture: bool = False
) -> subprocess.Popen[str]:
    say("$ manage.py " + " ".join(args))
    return subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if capture else None,
        text=True,
    )


def _manage_wait(process: subprocess.Popen[str]) -> str:
    output, _ = process.communicate()
    if process.returncode != 0:
        if output:
            print(output, end="", flush=True)
        command = " ".join(str(arg) for arg in process.args[2:])  # type: ignore[index]
        raise DevstackError(f"`manage.py {command}` failed with exit code {process.returncode}")
    return output or ""


def _manage(args: list[str], env: dict[str, str], *, capture: bool = False) -> str:
    return _manage_wait(_manage_start(args, env, capture=capture))


def _parse_seed(output: str) -> dict[str, Any]:
    for line in reversed(output.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                return dict(json.loads(line))
    raise DevstackError(f"`manage.py seed_demo --json` printed no JSON line:\n{output}")


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def _wait_ready(supervisor: Supervisor, checks: list[tuple[str, Any]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = list(checks)
    while pending:
        supervisor.check_stop()
        dead = supervisor.dead_child()
        if dead is not None:
            raise DevstackError(f"{dead.name} exited with code {dead.process.returncode}")
        pending = [(name, check) for name, check in pending if not check()]
        if not pending:
            return
        if time.monotonic() > deadline:
            names = ", ".join(name for name, _ in pending)
            raise DevstackError(f"not ready after {timeout:.0f}s: {names}")
        time.sleep(0.5)


def _banner(lines: list[tuple[str, str]], footer: str, seconds: float) -> None:
    width = max(len(label) for label, _ in lines)
    rule = "=" * 78
    out = ["", rule, f"  Supportbot is running (ready in {seconds:.0f} s)", ""]
    out += [f"  {label.ljust(width)} : {value}" for label, value in lines]
    out += ["", f"  {footer}", rule, ""]
    print("\n".join(out), flush=True)


def _prepare_local_model() -> tuple[local_llm.LocalLLMSpec, str | None]:
    """The local model server to start, and why it cannot run here (None when it can).

    Where llama-cpp-python or the model file is missing, the spec still names a port, where
    nothing answers: replies then degrade as they do when any provider is down.
    """
    try:
        return local_llm.prepare(), None
    except DevstackError as exc:
        return local_llm.LocalLLMSpec(model_path=Path(), port=free_port()), str(exc)


# Celery workers of `make run`, one per workload: (child name, queues, concurrency variable and
# default, pool: None for CELERY_POOL, default threads). Replies keep a worker of their own, so a
# long summary call never delays one; knowledge uploads are parsed by prefork processes (CPU-bound,
# and the only pool that enforces KNOWLEDGE_INGEST_SOFT_TIME_LIMIT).
CELERY_WORKERS: list[tuple[str, str, str, str, str | None]] = [
    ("worker", "replies,default", "CELERY_CONCURRENCY", "8", None),
    ("summaries", "summaries", "CELERY_SUMMARY_CONCURRENCY", "2", None),
    ("knowledge", "knowledge", "CELERY_KNOWLEDGE_CONCURRENCY", "1", "prefork"),
]


def celery_processes(python: str, env: Mapping[str, str]) -> list[tuple[str, list[str]]]:
    """(name, command) of each Celery process `make run` starts: the workers, then beat."""
    celery = [python, "-m", "celery", "-A", "supportbot.celery:app"]
    processes: list[tuple[str, list[str]]] = []
    for name, queues, concurrency_variable, concurrency, pool in CELERY_WORKERS:
        worker = [*celery, "worker", "-Q", queues, "-l", "info"]
        worker += ["--pool", pool or env.get("CELERY_POOL", "threads")]
        worker += ["--concurrency", env.get(concurrency_variable, concurrency)]
        worker += ["--prefetch-multiplier", "1", "--hostname", f"devstack-{name}@%h"]
        # No gossip or mingle: their restart after a lost broker connection kills the worker
        # (docs/operations.md, "Scaling"); the workers need neither.
        worker += ["--without-gossip", "--without-mingle"]
        processes.append((name, worker))
    schedule = VAR_DIR / "celerybeat-schedule"
    processes.append(
        ("beat", [*celery, "beat", "-l", "info", "--schedule", str(schedule), "--pidfile="])
    )
    return processes


def cmd_run(args: argparse.Namespace) -> int:
    port = int(os.environ.get("PORT") or args.port)
    site_port = port + 1
    host = "127.0.0.1"
    for wanted, what in ((port, "the web server"), (site_port, "the demo customer site")):
        if not port_is_free(wanted, host):
            raise DevstackError(
                f"port {wanted} ({what}) is already in use: stop what uses it, or run with "
                f"PORT=<another port> (the demo site takes PORT+1)"
            )

    started = time.monotonic()
    supervisor = Supervisor()
    supervisor.install_signal_handlers()
    app_url = f"http://{host}:{port}"
    services = ensure_services()
    services.watch(supervisor)
    wrote_llm = False
    try:
        state = dict(services.state)
        configured = local_llm.configured_llm()
        llm_spec = None
        llm_problem: str | None = None
        llm_child: Child | None = None
        if configured is None:
            llm_spec, llm_problem = _prepare_local_model()
            state.update(
                llm_base_url=llm_spec.base_url, llm_model=llm_spec.alias, llm_provider="local"
            )
            wrote_llm = True
        else:
            state.update(llm_base_url=None, llm_model=None)
        write_state(state)

        env = dict(os.environ)
        env.update(DATABASE_URL=services.database_url, REDIS_URL=services.redis_url)
        env.setdefault("SUPPORTBOT_ENV", "development")
        env["PORT"] = str(port)
        env.setdefault("PUBLIC_URL", app_url)
        env.setdefault(
            "DEMO_SITE_ORIGINS", f"http://localhost:{site_port},http://{host}:{site_port}"
        )
        env.setdefault("PYTHONUNBUFFERED", "1")
        if llm_spec is not None:
            env.update(
                LLM_PROVIDER="local", LLM_BASE_URL=llm_spec.base_url, LLM_MODEL=llm_spec.alias
            )
            if llm_problem is None:
                llm_child = supervisor.start(
                    "llm",
                    llm_spec.command,
                    env=local_llm.server_env(),
                    cwd=REPO_ROOT,
                    essential=False,  # without it, replies degrade; the product still serves
                )

        supervisor.check_stop()
        _manage(["migrate", "--noinput"], env)
        supervisor.check_stop()
        # With the schema in place, the rest starts side by side (2 cores, ~4 s per Django start).
        static = _manage_start(["collectstatic", "--noinput", "--verbosity", "0"], env)
        seeding = _manage_start(["seed_demo", "--json"], env, capture=True)

        python = sys.executable
        supervisor.start(
            "web",
            [
                *(python, "-m", "daphne", *DAPHNE_OPTIONS),
                *("-b", host, "-p", str(port), "supportbot.asgi:application"),
            ],
            env=env,
            cwd=REPO_ROOT,
        )
        for name, command in celery_processes(python, env):
            supervisor.start(name, command, env=env, cwd=REPO_ROOT)
        try:
            _manage_wait(static)
            seed = _parse_seed(_manage_wait(seeding))
        finally:
            for process in (static, seeding):
                if process.poll() is None:
                    process.kill()
                    process.wait()
        supervisor.check_stop()
        supervisor.start(
            "site",
            [
                *(python, "-m", "supportbot.devstack.demo_site", "--host", host),
                *("--port", str(site_port), "--app-url", env["PUBLIC_URL"]),
                *("--key", str(seed.get("widget_key", ""))),
            ],
            env=env,
            cwd=REPO_ROOT,
        )

        checks: list[tuple[str, Any]] = [("web /healthz", lambda: _healthy(f"{app_url}/healthz"))]
        _wait_ready(supervisor, checks, timeout=float(args.ready_timeout))
        if llm_spec is not None and llm_child is not None:
            say("checking that the local model answers (one short completion)")
            llm_problem = local_llm.answers_problem(llm_spec, llm_child.process)
        if llm_problem is not None:
            say(
                f"the local model cannot answer: {llm_problem}. Supportbot runs without it "
                "(replies fall back to help-centre quotes and an offer of a person); "
                + local_llm.UNAVAILABLE_HINT
                + "."
            )

        if llm_spec is not None and llm_problem is not None:
            llm_line = f"unavailable ({llm_problem}); {local_llm.UNAVAILABLE_HINT}"
        elif llm_spec is not None:
            llm_line = (
                f"{llm_spec.alias} on the local llama.cpp server {llm_spec.base_url} (demo-grade; "
                "set LLM_PROVIDER, LLM_API_KEY and LLM_MODEL to use a real provider)"
            )
        else:
            assert configured is not None
            parts = [configured["provider"], configured["model"] or "(default model)"]
            if configured["base_url"]:
                parts.append(f"at {configured['base_url']}")
            llm_line = " ".join(parts)
        admin_url = seed.get("admin_url") or f"{app_url}/admin/"
        _banner(
            [
                ("Demo customer site", f"http://{host}:{site_port}/"),
                ("Admin", str(admin_url)),
                ("Admin login", f"{seed.get('admin_user')} / {seed.get('admin_password')}"),
                ("Demo tenant", str(seed.get("tenant"))),
                ("Widget key", str(seed.get("widget_key"))),
                ("LLM", llm_line),
                ("Database", redact(services.database_url)),
                ("Redis", redact(services.redis_url)),
            ],
            "Press Ctrl-C to stop. `.venv/bin/python manage.py <command>` uses the same servers.",
            time.monotonic() - started,
        )
        code = supervisor.wait()
    except KeyboardInterrupt:
        code = 130
    except DevstackError as exc:
        say(f"error: {exc}")
        code = 1
    finally:
        supervisor.stop_all()
        clear_state(services, wrote_llm)
        services.stop()
    if code == 0:
        say("stopped")
    return code


# -- services ----------------------------------------------------------------------------------


def cmd_services(args: argparse.Namespace) -> int:
    supervisor = Supervisor()
    supervisor.install_signal_handlers()
    services = ensure_services()
    services.watch(supervisor)
    wrote_llm = False
    try:
        state = dict(services.state)
        lines = [("DATABASE_URL", services.database_url), ("REDIS_URL", services.redis_url)]
        spec = None
        if args.llm:
            spec = local_llm.prepare()
            supervisor.start("llm", spec.command, env=local_llm.server_env(), cwd=REPO_ROOT)
            _wait_ready(
                supervisor, [("local model", lambda: local_llm.is_ready(spec.base_url))], 120
            )
            state.update(llm_base_url=spec.base_url, llm_model=spec.alias, llm_provider="local")
            lines += [("LLM_PROVIDER", "local"), ("LLM_BASE_URL", spec.base_url)]
            lines += [("LLM_MODEL", spec.alias)]
            wrote_llm = True
        write_state(state)
        print("", flush=True)
        for name, value in lines:
            print(f"export {name}={value}", flush=True)
        print("\n(servers stay up until Ctrl-C)", flush=True)
        code = supervisor.wait()
    except KeyboardInterrupt:
        code = 130
    except DevstackError as exc:
        say(f"error: {exc}")
        code = 1
    finally:
        supervisor.stop_all()
        clear_state(services, wrote_llm)
        services.stop()
    return code


# -- test --------------------------------------------------------------------------------------


def cmd_test(pytest_args: list[str]) -> int:
    chromium_problem = ensure_chromium()
    if chromium_problem is not None:
        say(f"browser tests: {chromium_problem}")
    dovecot_problem = ensure_dovecot()
    if dovecot_problem is not None:
        say(f"email tests: {dovecot_problem}")
    services = ensure_services()
    process: subprocess.Popen[bytes] | None = None

    def forward(signum: int, _frame: object) -> None:
        if process is not None and process.poll() is None:
            process.send_signal(signum)

    try:
        env = dict(os.environ, DATABASE_URL=services.database_url)
        if services.redis is not None:
            # A database of its own: workers of a running `make run` never see test jobs.
            flushdb(services.redis.port or 0, TEST_REDIS_DB)
            env["REDIS_URL"] = services.redis.url_for_db(TEST_REDIS_DB)
        else:
            env["REDIS_URL"] = services.redis_url
        env.setdefault("SUPPORTBOT_ENV", "development")
        urls = f"DATABASE_URL={redact(env['DATABASE_URL'])} REDIS_URL={redact(env['REDIS_URL'])}"
        say(f"tests use {urls}")
        cmd = [sys.executable, "-m", "pytest", *pytest_args]
        say("$ pytest " + " ".join(pytest_args))
        # pytest, in the same process group, gets Ctrl-C from the terminal itself.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, forward)
        process = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env)
        code = process.wait()
    finally:
        services.stop()
    return code


def cmd_exec(command: list[str]) -> int:
    """Run one command with DATABASE_URL / REDIS_URL pointing at the (embedded) servers."""
    if not command:
        raise DevstackError("usage: python -m supportbot.devstack exec <command> [args...]")
    if command[0].endswith(".py"):
        command = [sys.executable, *command]
    services = ensure_services()
    try:
        env = dict(os.environ, DATABASE_URL=services.database_url, REDIS_URL=services.redis_url)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return subprocess.run(command, cwd=REPO_ROOT, env=env, check=False).returncode
    finally:
        services.stop()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("test", "exec"):
        # Everything after `test` belongs to pytest (after `exec`, to the command), options too.
        try:
            if argv[0] == "test":
                return cmd_test(argv[1:])
            return cmd_exec(argv[1:])
        except DevstackError as exc:
            say(f"error: {exc}")
            return 1

    parser = argparse.ArgumentParser(prog="python -m supportbot.devstack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="the whole stack with the demo tenant")
    run.add_argument("--port", type=int, default=8000, help="web port (PORT wins; default 8000)")
    run.add_argument("--ready-timeout", type=float, default=180.0)
    services = sub.add_parser("services", help="only the embedded servers")
    services.add_argument("--llm", action="store_true", help="also serve the local model")
    sub.add_parser("test", help="pytest against embedded servers (args go to pytest)")
    sub.add_parser("exec", help="one command (e.g. manage.py shell) against the same servers")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args)
        return cmd_services(args)
    except DevstackError as exc:
        say(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
