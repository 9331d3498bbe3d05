"""Debian's Dovecot for the email channel's IMAP tests: installed by ``make test`` where it can be.

The tests run ``dovecot -F`` as a child process with a configuration of their own (loopback,
a free port, a temporary Maildir); only the binary is needed (``/usr/sbin/dovecot``, or
``DOVECOT_PATH``). As root on a Debian-like system it is installed with apt-get (once);
elsewhere nothing is installed, and the run's last lines say so and how to fix it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from ._util import say

DEFAULT_PATH = "/usr/sbin/dovecot"
INSTALL_COMMAND = "sudo apt-get install dovecot-imapd"


def dovecot_path() -> Path:
    return Path(os.environ.get("DOVECOT_PATH") or DEFAULT_PATH)


def _can_install() -> bool:
    return (
        hasattr(os, "geteuid")
        and os.geteuid() == 0
        and shutil.which("apt-get") is not None
        and not os.environ.get("DOVECOT_PATH")
    )


def ensure_dovecot() -> str | None:
    """Make Dovecot available; None when it is, else why it is not."""
    if dovecot_path().exists():
        return None
    if not _can_install():
        return (
            f"Dovecot is not at {dovecot_path()} and this user cannot install it "
            f"({INSTALL_COMMAND})"
        )
    say("installing Debian's Dovecot for the email tests (apt-get; once)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    steps = [
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "dovecot-imapd"],
    ]
    for step in steps:
        result = subprocess.run(step, env=env, stdin=subprocess.DEVNULL, check=False)
        if result.returncode != 0:
            return f"`{' '.join(step)}` failed with exit code {result.returncode}"
    if not dovecot_path().exists():
        return f"apt-get installed dovecot-imapd, but not at {dovecot_path()}"
    return None
