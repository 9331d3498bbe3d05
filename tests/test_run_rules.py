"""The rules of a test run (tests/support/run_rules.py), on small suites of their own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]

SUITE = """
import pytest

@pytest.mark.browser
def test_needs_a_browser():
    pytest.skip("Chromium not found at /nowhere")

@pytest.mark.browser
def test_needs_it_too():
    pytest.skip("Chromium not found at /nowhere")

def test_plain():
    assert True
"""

ARGS = ("-p", "tests.support.run_rules", "-p", "no:django", "-p", "no:cacheprovider")


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: Any) -> pytest.Pytester:
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    pytester.makeini("[pytest]\nmarkers =\n    browser: x\n    pgvector: x\n")
    pytester.makepyfile(test_suite=SUITE)
    return pytester


def test_browser_tests_that_did_not_run_are_named_last(
    suite: pytest.Pytester, monkeypatch: Any
) -> None:
    monkeypatch.delenv("CI", raising=False)
    result = suite.runpytest_subprocess(*ARGS)
    result.assert_outcomes(passed=1, skipped=2)
    last = result.outlines[-3:]
    assert "2 BROWSER TESTS DID NOT RUN: Chromium not found at /nowhere" in last[0]
    assert "sudo apt-get install chromium" in last[1]


def test_under_ci_a_skip_is_a_failure(suite: pytest.Pytester, monkeypatch: Any) -> None:
    monkeypatch.setenv("CI", "true")
    result = suite.runpytest_subprocess(*ARGS)
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*skipped under CI, which counts a skip as a failure*"])
