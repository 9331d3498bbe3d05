"""Rules for a test run as a whole (a pytest plugin, loaded by tests/conftest.py).

- Under CI (`CI` set), a skipped test fails: a skip is not a pass, and CI has every part
  (Chromium, the local model, pgvector) that a test could miss.
- Tests marked `pgvector` are deselected, with a line saying so, where the database server has
  no `vector` extension (the machine's own Postgres, say); `make test`'s embedded Postgres has it.
- Browser tests that did not run (no Chromium) are named in the run's last lines, loudly, with
  the command that fixes it.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

FIX_CHROMIUM = "sudo apt-get install chromium   (or set CHROMIUM_PATH), then make test again"


def _in_ci() -> bool:
    return bool(os.environ.get("CI"))


def _database_has_pgvector() -> bool:
    import psycopg

    url = os.environ.get("DATABASE_URL", "")
    if not url:
        return False
    with psycopg.connect(url, connect_timeout=5) as connection:
        row = connection.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"
        ).fetchone()
    return row is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    needing = [item for item in items if item.get_closest_marker("pgvector")]
    if not needing or _database_has_pgvector():
        return
    config.hook.pytest_deselected(items=needing)
    items[:] = [item for item in items if not item.get_closest_marker("pgvector")]
    config.stash[_PGVECTOR_DESELECTED] = len(needing)


_PGVECTOR_DESELECTED = pytest.StashKey[int]()
_BROWSER_SKIPPED = pytest.StashKey[list[str]]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    reason = reason.removeprefix("Skipped: ")
    if _in_ci():
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, which counts a skip as a failure: {reason}"
    elif item.get_closest_marker("browser"):
        item.config.stash.setdefault(_BROWSER_SKIPPED, []).append(reason)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    deselected = config.stash.get(_PGVECTOR_DESELECTED, 0)
    if deselected:
        terminalreporter.write_line(
            f"{deselected} tests need pgvector and were not selected: this Postgres has no "
            "`vector` extension (make test's embedded Postgres has it)."
        )


def pytest_unconfigure(config: pytest.Config) -> None:
    skipped = config.stash.get(_BROWSER_SKIPPED, [])
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if not skipped or reporter is None:
        return
    rule = "!" * 78
    reporter.write_line(rule, red=True, bold=True)
    reporter.write_line(
        f"{len(skipped)} BROWSER TESTS DID NOT RUN: {skipped[0]}", red=True, bold=True
    )
    reporter.write_line(f"Fix: {FIX_CHROMIUM}", red=True, bold=True)
    reporter.write_line(rule, red=True, bold=True)
