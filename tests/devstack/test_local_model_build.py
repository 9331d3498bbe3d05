"""The local model's llama.cpp is built for a portable baseline, never for the build machine.

A build for the build machine's own CPU (GGML_NATIVE) answers `/v1/models` on another machine,
then dies on the first completion (SIGILL or a general-protection fault in libggml-cpu).
"""

import platform
import re

import pytest

from supportbot.devstack import bootstrap

pytestmark = pytest.mark.local_llm

_BEYOND_BASELINE = ("AVX512", "AVX_VNNI", "AMX")


def _features() -> dict[str, bool]:
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode()
    return {name: value == "1" for name, value in re.findall(r"([A-Z0-9_]+) = (\d)", info)}


def test_llama_cpp_uses_the_baseline_and_nothing_beyond_it() -> None:
    features = _features()
    if platform.machine() not in ("x86_64", "AMD64"):  # arm64: NEON is its baseline
        assert features.get("NEON"), features
        return
    assert [name for name in ("AVX2", "FMA", "F16C") if not features.get(name)] == [], features
    beyond = [name for name, on in features.items() if on and name.startswith(_BEYOND_BASELINE)]
    assert beyond == [], f"built with instructions beyond the AVX2 baseline: {beyond}"


def test_the_build_flags_turn_the_native_build_off() -> None:
    variables = bootstrap.llama_build_variables()
    assert "-DGGML_NATIVE=OFF" in variables
    assert "-DGGML_AVX2=ON" in variables


def test_a_venv_built_with_other_flags_is_rebuilt(tmp_path) -> None:
    site = tmp_path / "lib" / "python3.11" / "site-packages" / "llama_cpp" / "server"
    site.mkdir(parents=True)
    (site / "__init__.py").write_text("")
    assert bootstrap.llama_build_stale(tmp_path)  # no record of its flags: rebuild
    bootstrap._write_llama_stamp(tmp_path)
    assert not bootstrap.llama_build_stale(tmp_path)
    (tmp_path / bootstrap.LLAMA_STAMP).write_text("flags of another build\n")
    assert bootstrap.llama_build_stale(tmp_path)
