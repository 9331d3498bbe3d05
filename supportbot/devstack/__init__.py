"""Local development stack: embedded Postgres and Redis, the local demo model, a supervisor.

Plain Python on purpose: nothing here imports Django, so the same code serves ``make run``,
``make test`` and the tests of the stack itself. Entry point: ``python -m supportbot.devstack``.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
VAR_DIR = REPO_ROOT / "var"
STATE_FILE = VAR_DIR / "devstack.json"
