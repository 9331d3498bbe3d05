"""`make run` asks the local model for one completion before its banner, and runs without it.

Listing models is not enough (a llama.cpp built for another CPU lists them, then dies on the
first completion), and a model that cannot answer must not take the product down with it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from supportbot.devstack import _util, local_llm
from supportbot.devstack.processes import Supervisor


class _ModelsButNoCompletions(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"object": "list", "data": [{"id": "m"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def lists_models_only() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ModelsButNoCompletions)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def _spec(base_url: str) -> local_llm.LocalLLMSpec:
    port = int(base_url.rsplit(":", 1)[1].split("/")[0])
    return local_llm.LocalLLMSpec(model_path=Path("model.gguf"), port=port)


def test_a_server_that_lists_models_but_cannot_complete_is_reported(
    lists_models_only: str,
) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        problem = local_llm.answers_problem(_spec(lists_models_only), sleeper, timeout=10)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert problem == "a test completion failed with HTTP 500"


def test_a_server_that_dies_while_loading_is_reported_with_its_exit_code() -> None:
    crashed = subprocess.Popen([sys.executable, "-c", "raise SystemExit(139)"])
    crashed.wait()
    spec = local_llm.LocalLLMSpec(model_path=Path("model.gguf"), port=_util.free_port())
    problem = local_llm.answers_problem(spec, crashed, timeout=10)
    assert problem == "the server exited with code 139 while loading the model"


def test_a_non_essential_child_exits_without_stopping_the_rest(
    capsys: pytest.CaptureFixture[str],
) -> None:
    supervisor = Supervisor()
    web = supervisor.start("web", [sys.executable, "-c", "import time; time.sleep(60)"])
    llm = supervisor.start("llm", [sys.executable, "-c", "raise SystemExit(3)"], essential=False)
    try:
        assert _util.wait_until(lambda: not llm.alive(), 10)
        assert supervisor.dead_child() is None  # what `wait()` stops everything for
        supervisor.report_nonessential_exits()
        supervisor.report_nonessential_exits()  # said once
        said = capsys.readouterr().out
        assert said.count("llm exited with code 3; the rest keeps running") == 1
        assert web.alive()
    finally:
        supervisor.stop_all(timeout=5)
