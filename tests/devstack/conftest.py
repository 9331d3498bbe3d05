"""Fixtures shared by the devstack tests."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from supportbot.devstack.postgres import EmbeddedPostgres
from supportbot.devstack.redis import EmbeddedRedis


@pytest.fixture
def stack_dir() -> Iterator[Path]:
    """A directory for embedded servers of the test's own; they are stopped afterwards."""
    # Not pytest's tmp_path: its base directory is private to root (0700), and as root the
    # server runs as another user that must be able to reach its data directory.
    path = Path(tempfile.mkdtemp(prefix="supportbot-devstack-test-"))
    try:
        yield path
    finally:
        for server in (EmbeddedRedis(path / "redis"), EmbeddedPostgres(path / "postgres")):
            if server.base_dir.exists():
                server.stop_server()
        shutil.rmtree(path, ignore_errors=True)
