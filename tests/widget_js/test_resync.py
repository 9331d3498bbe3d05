"""The widget resyncs a reply after lost deltas: its protocol module (static/widget/protocol.js)
under Node with a fake socket (tests/widget_js/resync.mjs)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).with_name("resync.mjs")


def test_a_reply_start_after_a_gap_resyncs_the_streamed_text() -> None:
    node = shutil.which("node")
    assert node is not None, "Node.js is required for the widget's protocol tests"
    done = subprocess.run(
        [node, str(SCRIPT)], capture_output=True, text=True, timeout=60, check=True
    )
    report = json.loads(done.stdout)
    assert report["atGap"] == {"id": "r1", "text": "Your parcel ", "phase": "gap"}
    assert report["after"] == {
        "id": "r1",
        "text": "Your parcel arrives today, not tomorrow.",
        "phase": "streaming",
    }
