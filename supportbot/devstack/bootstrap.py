"""Install uv if missing and sync the project's virtualenv (.venv).

Runs with any Python 3.11 as a plain script, before the virtualenv exists:

    python3 supportbot/devstack/bootstrap.py [--extra local-llm] [--inexact]

Standard library only, and no imports from the project (its package needs the virtualenv).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON_VERSION = "3.11"


def _say(message: str) -> None:
    print(f"devstack | {message}", flush=True)


def _uv_from_python(python: str) -> list[str] | None:
    probe = subprocess.run(
        [python, "-c", "import uv, sys; sys.stdout.write(uv.find_uv_bin())"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode == 0 and probe.stdout.strip():
        return [probe.stdout.strip()]
    return None


def find_uv() -> list[str] | None:
    """The uv command: $UV, uv on PATH, ~/.local/bin/uv, or the uv package of this Python."""
    configured = os.environ.get("UV")
    if configured:
        return configured.split()
    on_path = shutil.which("uv")
    if on_path:
        return [on_path]
    user_bin = Path.home() / ".local" / "bin" / "uv"
    if user_bin.exists():
        return [str(user_bin)]
    return _uv_from_python(sys.executable)


def ensure_uv() -> list[str]:
    uv = find_uv()
    if uv:
        return uv
    _say("uv not found: installing it with pip (user install)")
    attempts = [
        [sys.executable, "-m", "pip", "install", "--user", "--quiet", "uv"],
        # Distributions that mark their Python as externally managed (PEP 668).
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--user",
            "--quiet",
            "--break-system-packages",
            "uv",
        ],
        [sys.executable, "-m", "pip", "install", "--quiet", "uv"],
    ]
    for attempt in attempts:
        if subprocess.run(attempt, check=False).returncode == 0:
            uv = find_uv()
            if uv:
                _say(f"uv installed: {' '.join(uv)}")
                return uv
    raise SystemExit("devstack | could not install uv with pip; install it and run again")


def llama_cpp_installed(venv: Path | None = None) -> bool:
    venv = venv or REPO_ROOT / ".venv"
    return any(venv.glob("lib/python3*/site-packages/llama_cpp/server/__init__.py"))


def _heartbeat(message: str, done: threading.Event, every: float = 30.0) -> None:
    started = time.monotonic()
    while not done.wait(every):
        elapsed = int(time.monotonic() - started)
        _say(f"{message} ({elapsed // 60}m{elapsed % 60:02d}s so far)")


def sync(extras: list[str], *, inexact: bool = False, locked: bool = False) -> None:
    uv = ensure_uv()
    args = [*uv, "sync", "--python", PYTHON_VERSION]
    for extra in extras:
        args += ["--extra", extra]
    if inexact:
        args.append("--inexact")
    if locked:
        args.append("--locked")
    env = dict(os.environ, UV_PYTHON_DOWNLOADS="never")
    env.pop("VIRTUAL_ENV", None)
    compiling = "local-llm" in extras and not llama_cpp_installed()
    if compiling:
        _say(
            "installing the local model server (llama-cpp-python): unless uv has it cached, "
            "this compiles llama.cpp from source, about 5 minutes on 2 cores, once"
        )
    _say("$ " + " ".join(args[len(uv) - 1 :]))
    done = threading.Event()
    if compiling:
        threading.Thread(
            target=_heartbeat,
            args=("still building llama-cpp-python", done),
            daemon=True,
        ).start()
    try:
        code = subprocess.run(args, cwd=REPO_ROOT, env=env, check=False).returncode
    finally:
        done.set()
    if code != 0:
        raise SystemExit(f"devstack | `uv sync` failed with exit code {code}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extra", action="append", default=[], help="optional extra to install")
    parser.add_argument("--inexact", action="store_true", help="keep packages not asked for")
    parser.add_argument("--locked", action="store_true", help="fail if uv.lock is out of date")
    args = parser.parse_args(argv)
    if sys.version_info[:2] != (3, 11):
        _say(f"note: bootstrapping with Python {sys.version.split()[0]}; the venv uses 3.11")
    sync(args.extra, inexact=args.inexact, locked=args.locked or bool(os.environ.get("CI")))


if __name__ == "__main__":
    main()
