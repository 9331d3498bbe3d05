"""The shape of the code, checked like behaviour: no import cycles between the project's modules
(imports inside functions count: a lazy import does not hide a cycle), and the openai SDK only
behind `supportbot/llm/`; small functions in `conversations/` and small modules in its `reply/`
package. The layers themselves are import-linter contracts (pyproject.toml,
`make imports`)."""

from __future__ import annotations

import ast
from pathlib import Path

import grimp

PACKAGES = ("conversations", "knowledge", "supportbot")
MAX_FUNCTION_LINES = 60
MAX_REPLY_MODULE_LINES = 300


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, include_external_packages=True, cache_dir=None)


def _project_imports(graph: grimp.ImportGraph, module: str) -> list[str]:
    imported = graph.find_modules_directly_imported_by(module)
    return sorted(m for m in imported if m.split(".")[0] in PACKAGES)


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Groups of project modules that import each other, directly or not (Tarjan's SCCs)."""
    modules = sorted(m for m in graph.modules if m.split(".")[0] in PACKAGES)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(root: str) -> None:
        # Iterative DFS: (module, iterator over what it imports).
        work = [(root, iter(_project_imports(graph, root)))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            module, imported = work[-1]
            for other in imported:
                if other not in index:
                    index[other] = low[other] = len(index)
                    stack.append(other)
                    on_stack.add(other)
                    work.append((other, iter(_project_imports(graph, other))))
                    break
                if other in on_stack:
                    low[module] = min(low[module], index[other])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[module])
                if low[module] == index[module]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == module:
                            break
                    if len(group) > 1:
                        cycles.append(sorted(group))

    for module in modules:
        if module not in index:
            visit(module)
    return cycles


def test_no_import_cycles_between_modules() -> None:
    assert import_cycles(_graph()) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for module in ("conversations.a", "conversations.b", "conversations.c", "knowledge.d"):
        graph.add_module(module)
    graph.add_import(importer="conversations.a", imported="conversations.b")
    graph.add_import(importer="conversations.b", imported="conversations.c")
    graph.add_import(importer="conversations.c", imported="conversations.a")
    graph.add_import(importer="conversations.c", imported="knowledge.d")
    assert import_cycles(graph) == [["conversations.a", "conversations.b", "conversations.c"]]


def test_only_the_llm_layer_imports_openai() -> None:
    graph = _graph()
    importers = {
        module
        for module in graph.find_modules_that_directly_import("openai")
        if module.split(".")[0] in PACKAGES
    }
    assert importers, "the LLM layer is expected to import openai"
    assert {m for m in importers if not m.startswith("supportbot.llm")} == set()


def _python_files(package: str) -> list[Path]:
    root = Path(__file__).resolve().parents[1] / package
    return sorted(p for p in root.rglob("*.py") if "migrations" not in p.parts)


def test_conversations_functions_fit_on_a_screen() -> None:
    """No function in conversations/ is over 60 lines: a longer one holds several concerns."""
    too_long = []
    for path in _python_files("conversations"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.name}:{node.lineno} {node.name} ({lines} lines)")
    assert too_long == []


def test_reply_modules_stay_small() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in _python_files("conversations/reply")}
    assert sizes, "conversations/reply/ holds the reply path"
    assert {name: n for name, n in sizes.items() if n >= MAX_REPLY_MODULE_LINES} == {}
