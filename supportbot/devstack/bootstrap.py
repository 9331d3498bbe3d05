"""Install uv if missing and sync the project's virtualenv (.venv).

Runs with any Python 3.11 as a plain script, before the virtualenv exists:

    python3 supportbot/devstack/bootstrap.py [--extra local-llm] [--inexact]

Standard library only, and no imports from the project (its package needs the virtualenv).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON_VERSION = "3.11"
# From this version on, uv keys its cache of built wheels on `extra-build-variables` (the
# llama.cpp compile flags in pyproject.toml): older ones could hand out a wheel built elsewhere.
MIN_UV_VERSION = (0, 8, 10)
LLAMA_PACKAGE = "llama-cpp-python"
LLAMA_STAMP = ".llama-cpp-build"  # in the venv: the build variables its llama.cpp was built with


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


def uv_version(uv: list[str]) -> tuple[int, ...]:
    """uv's version as numbers, (0,) when it cannot tell."""
    probe = subprocess.run([*uv, "--version"], capture_output=True, text=True, check=False)
    words = probe.stdout.split()
    if probe.returncode != 0 or len(words) < 2:
        return (0,)
    numbers = []
    for part in words[1].split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        numbers.append(int(digits) if digits else 0)
    return tuple(numbers)


def ensure_uv() -> list[str]:
    uv = find_uv()
    if uv and uv_version(uv) >= MIN_UV_VERSION:
        return uv
    if uv:
        wanted = ".".join(map(str, MIN_UV_VERSION))
        _say(f"{' '.join(uv)} is older than {wanted}: installing a newer uv with pip")
        if _pip_install_uv(f"uv>={wanted}"):
            newer = _uv_from_python(sys.executable)
            if newer and uv_version(newer) >= MIN_UV_VERSION:
                return newer
        raise SystemExit(f"devstack | could not install uv >= {wanted}; upgrade uv and run again")
    _say("uv not found: installing it with pip (user install)")
    if _pip_install_uv("uv"):
        uv = find_uv()
        if uv:
            _say(f"uv installed: {' '.join(uv)}")
            return uv
    raise SystemExit("devstack | could not install uv with pip; install it and run again")


def _pip_install_uv(requirement: str) -> bool:
    attempts = [
        [sys.executable, "-m", "pip", "install", "--user", "--quiet", requirement],
        # Distributions that mark their Python as externally managed (PEP 668).
        [
            *(sys.executable, "-m", "pip", "install", "--user", "--quiet"),
            *("--break-system-packages", requirement),
        ],
        [sys.executable, "-m", "pip", "install", "--quiet", requirement],
    ]
    return any(subprocess.run(attempt, check=False).returncode == 0 for attempt in attempts)


def llama_cpp_installed(venv: Path | None = None) -> bool:
    venv = venv or REPO_ROOT / ".venv"
    return any(venv.glob("lib/python3*/site-packages/llama_cpp/server/__init__.py"))


def llama_build_variables(pyproject: Path | None = None) -> str:
    """The build variables pyproject.toml sets for llama-cpp-python, as one stable string."""
    data = tomllib.loads((pyproject or REPO_ROOT / "pyproject.toml").read_text())
    variables = data.get("tool", {}).get("uv", {}).get("extra-build-variables", {})
    return repr(sorted(variables.get(LLAMA_PACKAGE, {}).items()))


def llama_build_stale(venv: Path | None = None) -> bool:
    """True when the venv's llama-cpp-python was built with other variables (or unknown ones):
    uv would keep it, as the version is the same, so it must be reinstalled."""
    venv = venv or REPO_ROOT / ".venv"
    if not llama_cpp_installed(venv):
        return False
    stamp = venv / LLAMA_STAMP
    wanted = hashlib.sha256(llama_build_variables().encode()).hexdigest()
    return not stamp.exists() or stamp.read_text().strip() != wanted


def _write_llama_stamp(venv: Path | None = None) -> None:
    venv = venv or REPO_ROOT / ".venv"
    if llama_cpp_installed(venv):
        digest = hashlib.sha256(llama_build_variables().encode()).hexdigest()
        (venv / LLAMA_STAMP).write_text(digest + "\n")


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
    if "local-llm" in extras and llama_build_stale():
        # Out of the venv; the sync then takes the wheel built with these flags from uv's cache
        # (keyed on them), or builds it. `--reinstall-package` would throw the cache away.
        _say("llama-cpp-python in .venv was built with other compile flags: replacing it")
        uninstall = [*uv, "pip", "uninstall", "--python", str(REPO_ROOT / ".venv"), LLAMA_PACKAGE]
        subprocess.run(uninstall, cwd=REPO_ROOT, env=env, check=False)
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
    if "local-llm" in extras:
        _write_llama_stamp()


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
