"""The package's structure: imports go one way, the network knows nothing of the runtime, and only
internals.py touches MindSpore's private API, environment variables and the working directory."""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "whisperms"
# What the network (model.py) may import from the package: the attention kernels and the device's
# conv kernels.
NETWORK_IMPORTS = {"attention", "device"}
# Who may build the runtime (compiled entry points) and who may wire a loaded model.
RUNTIME_USERS = {"loading"}
# The longest a module may grow (DESIGN: files stay small, one concern each); a module past it is
# split by concern.
MAX_MODULE_LINES = 600
# Private MindSpore API, its environment variables and process-wide state: internals.py's business
# alone.
PRIVATE = re.compile(
    r"mindspore\._|from mindspore[\w.]* import "
    r"_|\b_cell_graph_executor\b|\bms_compile_cache\b|\bJitExecutor_\b"
    r"|\bmind_ir_pb2\b|\._get_logger\b|\bos\.chdir\b|\"MS_[A-Z_]+\"|\"AKG_[A-Z_]+\""
)


def modules():
    """Module name ("model", "vad.runner", "__init__") -> parsed source, for every module of the
    package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        found[name] = (path, ast.parse(path.read_text()))
    return found


def imports(name, tree):
    """The package modules `name` imports, at any depth (function-level imports included)."""
    package = name.split(".")[:-1]
    out = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or node.level == 0:
            continue
        base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
        target = ".".join(base + ([node.module] if node.module else []))
        if node.module is None:  # from . import x: a submodule, or a name of the package's __init__
            for alias in node.names:
                sub = ".".join(base + [alias.name])
                out.add(
                    sub
                    if (PACKAGE / (sub.replace(".", "/") + ".py")).exists()
                    else target or "__init__"
                )
        else:
            out.add(target)
    return {m if m else "__init__" for m in out}


GRAPH = {name: imports(name, tree) for name, (_, tree) in modules().items()}


def test_the_network_imports_only_its_kernels():
    assert GRAPH["model"] <= NETWORK_IMPORTS, GRAPH["model"]


def test_only_the_loader_builds_the_runtime():
    users = {name for name, targets in GRAPH.items() if "inference" in targets}
    assert users <= RUNTIME_USERS, users


def test_imports_have_no_cycle():
    """Depth-first search over every package import (function-level ones too): a cycle is reported
    as its path."""
    state = {}

    def visit(name, path):
        state[name] = "open"
        for target in sorted(GRAPH.get(name, ())):
            if target == "__init__" or target.endswith(".__init__"):
                continue  # the package front door re-exports; it is no layer of its own
            if state.get(target) == "open":
                pytest.fail("import cycle: " + " -> ".join(path + [target]))
            if target not in state:
                visit(target, path + [target])
        state[name] = "done"

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])


@pytest.mark.parametrize("name", sorted(n for n in modules() if n != "internals"))
def test_mindspore_internals_only_in_internals(name):
    path, _ = modules()[name]
    hits = [
        f"{path.name}:{i}: {line.strip()}"
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if PRIVATE.search(line)
    ]
    assert not hits, "\n".join(hits)


def test_modules_stay_small():
    long = {
        name: n
        for name, (path, _) in modules().items()
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"
