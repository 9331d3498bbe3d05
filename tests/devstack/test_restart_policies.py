"""The production equivalents of `make run`'s restarts: docker-compose and the systemd units."""

from __future__ import annotations

import configparser
from pathlib import Path

import yaml

from supportbot.devstack import REPO_ROOT

UNITS = REPO_ROOT / "deploy" / "systemd"


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser


def test_every_long_running_compose_service_is_restarted_unless_stopped() -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    restart = {name: service.get("restart") for name, service in compose["services"].items()}
    assert restart.pop("migrate") == "no"
    assert {"web", "worker", "summaries", "knowledge", "beat", "postgres", "redis"} <= set(restart)
    assert set(restart.values()) == {"unless-stopped"}


def test_every_systemd_service_restarts_on_failure_within_a_start_limit() -> None:
    long_running = sorted(p for p in UNITS.glob("*.service") if "migrate" not in p.name)
    names = {path.name for path in long_running}
    assert {"supportbot-web@.service", "supportbot-worker.service"} <= names
    assert "supportbot-beat.service" in names
    for path in long_running:
        unit = _unit(path)
        assert unit["Service"]["Restart"] == "on-failure", path.name
        assert unit["Service"]["RestartSec"], path.name
        assert int(unit["Unit"]["StartLimitBurst"]) > 1, path.name
        assert int(unit["Unit"]["StartLimitIntervalSec"]) > 0, path.name
        assert unit["Install"]["WantedBy"] == "supportbot.target", path.name
        assert "--without-gossip" in unit["Service"]["ExecStart"] or "worker" not in path.name
