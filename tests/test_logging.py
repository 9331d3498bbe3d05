"""What the logs may hold: the redaction filter, the loggers kept above DEBUG, no access log
(the end-to-end check of a whole conversation is tests/e2e/test_log_privacy.py)."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from supportbot.compliance.log_redaction import PersonalDataFilter, redact
from supportbot.devstack.__main__ import DAPHNE_OPTIONS

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("mail jane.doe+x@example.co.uk now", "mail [email] now"),
        ("client 203.0.113.7:5432 at 05:21:28,471", "client [ip]:5432 at 05:21:28,471"),
        ("from 2001:db8::1 and fe80::a:b", "from [ip] and [ip]"),
        ("bound to 127.0.0.1:8000, 0.0.0.0 and ::1", "bound to 127.0.0.1:8000, 0.0.0.0 and ::1"),
        ("Authorization: Bearer abcdefghijklmnop", "Authorization: Bearer [token]"),
        ("key sk-proj-abcdefgh12 and ids_0123456789abc", "key [secret] and [secret]"),
        ("token eyJ0IjoxLCJjIjoi:1tABCd:Zx9y8w7v6u5t", "token [token]"),
        ("jwt eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl", "jwt [token]"),
        # Ids, versions, times and counts stay readable.
        (
            "conversation 3fa85f64-5717-4562-b3fc-2c963f66afa6 seq 12, version 8.3.1, 09:00-17:00",
            "conversation 3fa85f64-5717-4562-b3fc-2c963f66afa6 seq 12, version 8.3.1, 09:00-17:00",
        ),
    ],
)
def test_personal_data_is_masked(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_the_filter_masks_arguments_and_exceptions() -> None:
    try:
        raise ValueError("duplicate key: jane@example.com")
    except ValueError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "visitor at %s", ("198.51.100.9",), sys.exc_info()
        )
    assert PersonalDataFilter().filter(record) is True
    text = logging.Formatter().format(record)
    assert "198.51.100.9" not in text
    assert "jane@example.com" not in text
    assert "visitor at [ip]" in text
    assert "duplicate key: [email]" in text


def _logging_of(**variables: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k not in {"LOG_LEVEL", "APP_LOG_LEVEL"}}
    env.update(variables)
    code = (
        "import json, os, logging; os.environ['DJANGO_SETTINGS_MODULE'] = 'supportbot.settings';"
        "import django; django.setup();"
        "names = ['', 'daphne', 'django.db.backends', 'django.channels.server', 'conversations',"
        " 'supportbot', 'knowledge'];"
        "print(json.dumps({n: logging.getLevelName(logging.getLogger(n).getEffectiveLevel())"
        " for n in names}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_debug_never_reaches_the_loggers_that_name_clients_or_sql_parameters() -> None:
    levels = _logging_of(LOG_LEVEL="DEBUG")
    assert levels[""] == "DEBUG"
    for name in ("daphne", "django.db.backends", "django.channels.server"):
        assert levels[name] == "INFO", name
    app = _logging_of(LOG_LEVEL="WARNING", APP_LOG_LEVEL="DEBUG")
    assert {app[n] for n in ("conversations", "supportbot", "knowledge")} == {"DEBUG"}
    assert app[""] == app["daphne"] == "WARNING"


def test_every_web_process_runs_without_an_access_log() -> None:
    """Daphne's access log names each visitor's address: every way of starting it turns it
    off (the Procfile, the Dockerfile, docker-compose.yml, `make run` and the test stack)."""
    assert DAPHNE_OPTIONS == ("--access-log", "/dev/null", "--websocket_connect_timeout", "30")
    for path in ("Procfile", "Dockerfile", "docker-compose.yml"):
        lines = (REPO / path).read_text().splitlines()
        commands = [line for line in lines if re.search(r"\bdaphne -", line)]
        assert commands, path
        for line in commands:
            assert "daphne --access-log /dev/null " in line, (path, line)
            assert "--websocket_connect_timeout 30 " in line, (path, line)
    for path in ("supportbot/devstack/__main__.py", "tests/support/stack.py"):
        source = (REPO / path).read_text()
        assert re.search(r'"daphne",\s*\*DAPHNE_OPTIONS', source), path
