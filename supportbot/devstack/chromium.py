"""Debian's Chromium for the browser tests: installed by ``make test`` where it can be.

Playwright's own browser download does not work on every machine; the tests drive the
distribution's Chromium (``/usr/bin/chromium``, or ``CHROMIUM_PATH``). As root on a Debian-like
system it is installed with apt-get (about a minute, once). Elsewhere nothing is installed: the
browser tests then do not run, and the run's last lines say so and how to fix it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from ._util import say

DEFAULT_PATH = "/usr/bin/chromium"
INSTALL_COMMAND = "sudo apt-get install chromium"


def chromium_path() -> Path:
    return Path(os.environ.get("CHROMIUM_PATH") or DEFAULT_PATH)


def _can_install() -> bool:
    return (
        hasattr(os, "geteuid")
        and os.geteuid() == 0
        and shutil.which("apt-get") is not None
        and not os.environ.get("CHROMIUM_PATH")
    )


def ensure_chromium() -> str | None:
    """Make Chromium available; None when it is, else why it is not."""
    if chromium_path().exists():
        return None
    if not _can_install():
        return f"Chromium is not at {chromium_path()} and this user cannot install it"
    say("installing Debian's Chromium for the browser tests (apt-get; about a minute, once)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    steps = [
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"],
    ]
    for step in steps:
        result = subprocess.run(step, env=env, stdin=subprocess.DEVNULL, check=False)
        if result.returncode != 0:
            return f"`{' '.join(step)}` failed with exit code {result.returncode}"
    if not chromium_path().exists():
        return f"apt-get installed chromium, but not at {chromium_path()}"
    return None
