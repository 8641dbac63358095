"""The package's shape: imports go one way, Keras internals stay in one module,
`import keras_sparse` is cheap and side-effect free, and every public package
declares its API."""

import ast
import importlib
import json
import os
import pkgutil
import textwrap

import pytest

import keras_sparse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "keras_sparse")
COMPAT = "keras_sparse.utils.keras_compat"

# Floors, lowest first: a module may import only from its own floor or below.
# Modules not listed (new feature packages) sit on the callbacks floor.
FLOORS = [
    ("keras_sparse.utils",),
    ("keras_sparse.masks", "keras_sparse.structures", "keras_sparse.optimizer_slots",
     "keras_sparse.data",
     "keras_sparse.applications"),
    ("keras_sparse.layers",),
    ("keras_sparse.distributions", "keras_sparse.model", "keras_sparse.capture_steps"),
    ("keras_sparse.pruning",),
    ("keras_sparse.conversion",),
    ("keras_sparse.schedules", "keras_sparse.diagnostics", "keras_sparse.export"),
    ("keras_sparse.callbacks",),
]
DEFAULT_FLOOR = 7


def _modules():
    """`{module name: path}` of every module of the package."""
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                found[".".join(parts)] = path
    return found


def _imports(name, path, modules):
    """Package modules `name` imports anywhere in its file (functions too)."""
    tree = ast.parse(open(path).read(), path)
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in modules else base)
    return {t for t in targets if t in modules and t != name}


def _graph():
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _floor(name):
    if name == "keras_sparse":
        return len(FLOORS)
    for level, prefixes in enumerate(FLOORS):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return level
    return DEFAULT_FLOOR


def test_the_import_graph_is_read():
    graph = _graph()
    assert "keras_sparse.callbacks.dynamic" in graph["keras_sparse.callbacks"]
    assert "keras_sparse.layers.registry" in graph["keras_sparse.distributions"]
    # Imports inside functions count too.
    assert "tensorflow_datasets" not in graph["keras_sparse.data.pipelines"]


def test_no_import_cycles():
    graph = _graph()
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for child in sorted(graph[node]):
            if state.get(child) == "open":
                cycles.append(stack[stack.index(child):] + [child])
            elif child not in state:
                visit(child)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_imports_only_go_down_the_floors():
    upward = [f"{name} (floor {_floor(name)}) imports {target} (floor {_floor(target)})"
              for name, targets in _graph().items() for target in sorted(targets)
              if _floor(target) > _floor(name)]
    assert upward == []


def _private_names_defined_here():
    """Every `_name` keras_sparse itself defines (functions, attributes, ...)."""
    names = set()
    for path in _modules().values():
        for node in ast.walk(ast.parse(open(path).read(), path)):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
    return {n for n in names if n.startswith("_")}


def test_keras_internals_only_in_the_compat_module():
    ours = _private_names_defined_here()
    found = []
    for name, path in _modules().items():
        if name == COMPAT:
            continue
        source = open(path).read()
        if "keras.src" in source:
            found.append(f"{name}: keras.src")
        for node in ast.walk(ast.parse(source, path)):
            attr = None
            if isinstance(node, ast.Attribute):
                attr = node.attr
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                  and node.func.id in ("getattr", "hasattr", "setattr")
                  and len(node.args) > 1 and isinstance(node.args[1], ast.Constant)
                  and isinstance(node.args[1].value, str)):
                attr = node.args[1].value
            if (attr and attr.startswith("_") and not attr.startswith("__")
                    and attr not in ours):
                found.append(f"{name}:{node.lineno}: {attr}")
    assert found == []


def test_the_compat_module_is_the_one_with_internals():
    # The check above must see internals where they are.
    source = open(_modules()[COMPAT]).read()
    assert "keras.src" in source and "_tracker" in source


def test_every_public_package_declares_all():
    missing, wrong = [], []
    for info in pkgutil.walk_packages(keras_sparse.__path__, "keras_sparse."):
        if not info.ispkg:
            continue
        module = importlib.import_module(info.name)
        names = getattr(module, "__all__", None)
        if names is None:
            missing.append(info.name)
            continue
        wrong += [f"{info.name}.{n}" for n in names if not hasattr(module, n)]
    assert missing == [] and wrong == []
    assert all(hasattr(keras_sparse, n) for n in keras_sparse.__all__)


_FRESH_IMPORT = textwrap.dedent("""
    import importlib.abc, json, os, sys

    class Block(importlib.abc.MetaPathFinder):
        # Proves keras_sparse does not need them: an import would fail.
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("matplotlib", "tensorflow_datasets"):
                raise ImportError(f"blocked: {name}")
            return None

    sys.meta_path.insert(0, Block())
    import tensorflow, keras  # their own environment changes are not ours
    before = dict(os.environ)
    import keras_sparse as ks
    ks.sparsify  # touch the API
    print(json.dumps({
        "loaded": sorted(m for m in ("matplotlib", "tensorflow_datasets")
                         if m in sys.modules),
        "env": {k: (before.get(k), os.environ.get(k)) for k in set(before) | set(os.environ)
                if before.get(k) != os.environ.get(k)},
    }))
""")


def test_import_is_lean_and_changes_no_environment(run_python):
    result = json.loads(run_python(_FRESH_IMPORT).splitlines()[-1])
    assert result == {"loaded": [], "env": {}}


def test_data_loads_tensorflow_datasets_on_first_use(run_python):
    code = textwrap.dedent("""
        import sys
        import keras_sparse as ks
        assert "tensorflow_datasets" not in sys.modules
        ks.data.info("cifar10")
        print("tensorflow_datasets" in sys.modules)
    """)
    assert run_python(code).splitlines()[-1] == "True"


def test_the_unreleased_models_alias_is_gone():
    # `ks.models` (renamed `ks.applications` before any release) has no alias.
    assert not hasattr(keras_sparse, "models")
    assert "keras_sparse.models" not in _modules()
