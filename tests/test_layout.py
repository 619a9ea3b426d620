"""The boundaries the design promises: gan_core is a library of its own, without the orchestrator
or the tracking server; no module imports itself back through another; no function or file too
long to read."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest


def test_importing_gan_core_loads_neither_dagster_nor_mlflow():
    modules = ["gan_core.data", "gan_core.train", "gan_core.metrics", "gan_core.export", "gan_core.sample", "gan_core.distributed", "gan_core.demo"]
    probe = f"import json, sys\nfor name in {modules!r}:\n    __import__(name)\nprint(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('dagster', 'mlflow'))))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
    # The probe sees them where they are imported.
    done = subprocess.run(
        [sys.executable, "-c", probe.replace(repr(modules), repr(["dagster", "mlflow.tracking"]))], capture_output=True, text=True, check=True
    )
    assert {"dagster", "mlflow"} <= set(json.loads(done.stdout.strip().splitlines()[-1]))


ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("gan_core", "pipelines")
MAX_FUNCTION_LINES = 80
MAX_FILE_LINES = 400


def _modules() -> dict[str, Path]:
    """Every module of our packages by dotted name (a package by its __init__)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Our modules that `name` imports anywhere in its file, at the top or inside a function (a
    deferred import still ties the two modules together)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)  # `from . import x` names a module
    # A module's own packages are imported before it in any case: an edge to them is no cycle.
    return {target for target in targets if target in modules and target != name and not name.startswith(f"{target}.")}


def import_cycles() -> list[list[str]]:
    """Cycles in the graph of our modules' imports, each as the modules along it."""
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    cycles, state = [], {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(trail[trail.index(target) :] + [target])
            elif target not in state:
                visit(target, trail + [target])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return cycles


def test_no_function_or_file_too_long_to_read():
    too_long = []
    for name, path in _modules().items():
        source = path.read_text()
        if source.count("\n") > MAX_FILE_LINES:
            too_long.append(f"{path.relative_to(ROOT)}: {source.count(chr(10))} lines (at most {MAX_FILE_LINES})")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                too_long.append(
                    f"{path.relative_to(ROOT)}:{node.lineno} {node.name}(): {node.end_lineno - node.lineno + 1} lines (at most {MAX_FUNCTION_LINES})"
                )
    assert too_long == []


def test_no_import_cycle():
    assert import_cycles() == []


def test_the_checks_find_what_they_look_for(tmp_path, monkeypatch):
    """The two checks above, pointed at a package made to fail them."""
    package = tmp_path / "gan_core"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from .b import g\n")
    (package / "b.py").write_text("from gan_core.a import f\n\n\ndef g():\n" + "    x = 1\n" * MAX_FUNCTION_LINES)
    (package / "c.py").write_text("from . import a\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGES", ("gan_core",))
    assert import_cycles() == [["gan_core.a", "gan_core.b", "gan_core.a"]]
    with pytest.raises(AssertionError, match=r"b\.py:4 g\(\): 81 lines"):
        test_no_function_or_file_too_long_to_read()
