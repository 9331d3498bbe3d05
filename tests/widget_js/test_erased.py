"""The widget forgets an erased visitor: its protocol module (static/widget/protocol.js), run
under Node with a fake socket and storage (tests/widget_js/erased.mjs)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("erased.mjs")


@pytest.fixture(scope="module")
def report() -> dict[str, dict[str, object]]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed")
    done = subprocess.run(
        [node, str(SCRIPT)], capture_output=True, text=True, timeout=60, check=True
    )
    result: dict[str, dict[str, object]] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize("when", ["open", "atHello"])
def test_an_erased_frame_clears_the_stored_session_and_starts_afresh(
    report: dict[str, dict[str, object]], when: str
) -> None:
    run = report[when]
    assert run["firstHello"]["visitor_token"] == "token-of-the-erased-visitor"  # type: ignore[index]
    assert run["stored"] is None  # localStorage entry removed
    assert run["shown"] == 0
    assert run["resets"] == 1
    assert run["sockets"] == 2
    assert run["lastHello"]["visitor_token"] is None  # type: ignore[index]
    assert run["lastHello"]["conversation_id"] is None  # type: ignore[index]


def test_an_erased_frame_of_another_conversation_is_ignored(
    report: dict[str, dict[str, object]],
) -> None:
    run = report["other"]
    assert run["sockets"] == 1
    assert run["stored"] is not None
    assert run["shown"] == 1
