"""The package's import graph follows the data flow (docs/ARCHITECTURE.md).

Each module belongs to a stage with a rank; a module may import only modules
of its own or a lower rank, never the package root, and only the edge
(``api``, ``cli``, ``pyxspec``) reaches the PyXspec adapter. Module-level
imports must not form a cycle. Imports under ``if TYPE_CHECKING:`` are not
executed and are left out.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "xspec_sbi"

#: Stage of each top-level module or folder -> rank; docs/ARCHITECTURE.md lists the same.
RANKS = {
    "_version": 0, "files": 0,
    "model": 1, "data": 1,
    "forward": 2,
    "inference": 3,
    "checks": 4,
    "baseline": 5,
    "presets": 6,
    "session": 7, "result": 7, "amortized": 7,
    "options": 8, "refine": 8, "pipeline": 8,
    "report": 9, "pyxspec": 9,
    "api": 10,
    "cli": 11, "demo": 11,
}
#: Reaching upward on purpose, each for a reason given in docs/ARCHITECTURE.md.
ALLOWED_UPWARD = {
    ("result", "report"),   # SBIResult.plot_corner / plot_spectrum: conveniences, imported when called
}
EDGE = {"api", "cli", "pyxspec"}


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "<root>"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG.parent).with_suffix("")
        name = ".".join(rel.parts)
        out[name[: -len(".__init__")] if name.endswith(".__init__") else name] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or \
        (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(path: Path, modules: dict) -> list[tuple[str, bool]]:
    """(imported module, at module level) for every runtime import of the package in ``path``."""
    tree = ast.parse(path.read_text())
    found = []

    def visit(node, top):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            nested = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            if isinstance(child, ast.Import):
                found.extend((a.name, top) for a in child.names if a.name.startswith("xspec_sbi"))
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0 \
                    and child.module.startswith("xspec_sbi"):
                for a in child.names:
                    sub = f"{child.module}.{a.name}"
                    found.append((sub if sub in modules else child.module, top))
            visit(child, nested)

    visit(tree, True)
    return found


MODULES = _modules()
GRAPH = {m: _imports(p, MODULES) for m, p in MODULES.items()}


def test_every_stage_has_a_rank():
    stages = {_stage(m) for m in MODULES} - {"<root>"}
    assert stages <= set(RANKS), f"stages without a rank in this test: {sorted(stages - set(RANKS))}"


def test_relative_imports_are_not_used():
    # absolute imports keep the layer check (and a reader) from guessing
    for m, p in MODULES.items():
        tree = ast.parse(p.read_text())
        rel = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level > 0]
        assert not rel, f"{p}: relative import at line(s) {rel}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_upward_import(module):
    src = _stage(module)
    if src == "<root>":
        return
    for target, _ in GRAPH[module]:
        dst = _stage(target)
        assert dst != "<root>", f"{module} imports the package root (import its module instead)"
        if dst == src:
            continue
        if dst == "pyxspec":
            assert src in EDGE, f"{module} imports the PyXspec adapter {target}: only {sorted(EDGE)} may"
        if (src, dst) in ALLOWED_UPWARD:
            continue
        assert RANKS[dst] <= RANKS[src], (f"{module} (stage {src}, rank {RANKS[src]}) imports {target} "
                                          f"(stage {dst}, rank {RANKS[dst]}): upward")


def test_no_cycle_at_module_level():
    graph = {m: sorted({t for t, top in GRAPH[m] if top and t in MODULES and t != m}) for m in MODULES}
    state: dict[str, int] = {}

    def dfs(node, stack):
        state[node] = 1
        for nxt in graph[node]:
            if nxt.startswith(node + "."):
                continue   # a package importing its own submodule is not a cycle
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack + [nxt]))
            if state.get(nxt) is None:
                dfs(nxt, stack + [nxt])
        state[node] = 2

    for m in sorted(graph):
        if state.get(m) is None:
            dfs(m, [m])


def test_checker_catches_an_upward_import(tmp_path):
    # the rules above can fail: an engine module importing the pipeline is caught
    fake = tmp_path / "xspec_sbi" / "forward"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text("from xspec_sbi.pipeline import run\n")
    found = _imports(fake / "bad.py", dict(MODULES))
    assert found == [("xspec_sbi.pipeline", True)]
    assert RANKS[_stage(found[0][0])] > RANKS["forward"]


def test_architecture_document_lists_every_module():
    # docs/ARCHITECTURE.md must match the code: one line per module
    doc = (PKG.parent / "docs" / "ARCHITECTURE.md").read_text()
    missing = [str(p.relative_to(PKG)) for p in sorted(PKG.rglob("*.py"))
               if p.name not in ("__init__.py", "__main__.py") and f"`{p.relative_to(PKG)}`" not in doc]
    assert not missing, f"modules without a line in docs/ARCHITECTURE.md: {missing}"
