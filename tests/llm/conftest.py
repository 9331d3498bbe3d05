"""Fixtures for the LLM layer tests: a scripted server on loopback and configs pointing at it.

These tests need no Django: run them with `pytest tests/llm -p no:django`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # without pytest-django nothing puts the project root on the path
    sys.path.insert(0, str(ROOT))

from supportbot.llm import CallRecord, ProviderConfig  # noqa: E402
from tests.support.llm_server import ScriptedLLMServer  # noqa: E402

API_KEY = "sk-test-0123456789abcdefSECRET"


@pytest.fixture
def server() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer() as s:
        yield s


@pytest.fixture
def make_config(server: ScriptedLLMServer) -> Callable[..., ProviderConfig]:
    def make(**overrides: object) -> ProviderConfig:
        values: dict = {
            "provider": "openai",
            "model": "test-model",
            "base_url": server.base_url,
            "api_key": API_KEY,
            "connect_timeout": 2.0,
            "read_timeout": 5.0,
            "deadline": 20.0,
            "max_retries": 3,
        }
        values.update(overrides)
        return ProviderConfig(**values)

    return make


class Records(list):
    """Collects CallRecords; `.one()` asserts there was exactly one."""

    def __call__(self, record: CallRecord) -> None:
        self.append(record)

    def one(self) -> CallRecord:
        assert len(self) == 1, f"expected exactly one CallRecord, got {self!r}"
        return self[0]


@pytest.fixture
def records() -> Records:
    return Records()
