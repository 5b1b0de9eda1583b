"""The package's import graph runs one way: no module imports, directly or through others, a
module that imports it (lower layers never import higher ones, not even inside a function).

The graph is read from the source with ``ast`` (Python modules) and from the Python-level
``import`` lines of the Cython modules, counting imports inside functions too: a late import
is still a dependency, and none is exempt.

The layers, bottom to top: validation and the runtime (the compiled boundary); the network's
parts (layers, losses, init, sparse, dense, network, forward, derivatives); the optimizers;
training (engine, data preparation, trainer); the MLP, which inherits the training methods as
Keras' Model inherits its Trainer; the file format and the interchange formats; the ensembles,
the estimators and the command.  The MLP's save / export methods call functions that the
package's __init__ registers (fastnn.nn.model.provide), so that the model imports none of them.
"""
import ast
import os
import re

import fastnn

PACKAGE_DIR = os.path.dirname(fastnn.__file__)

def _modules():
    """{module name: source path} of every Python and Cython module of the package and its
    subpackages (a package is its ``__init__.py``)."""
    found = {}
    for folder, dirs, files in os.walk(PACKAGE_DIR):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        package = ".".join(["fastnn"] + os.path.relpath(folder, PACKAGE_DIR).split(os.sep))
        package = package.replace("fastnn..", "fastnn").rstrip(".")
        if package.endswith("."):
            package = package[:-1]
        for name in sorted(files):
            stem, ext = os.path.splitext(name)
            if ext in (".py", ".pyx"):
                module = package if stem == "__init__" else f"{package}.{stem}"
                found[module] = os.path.join(folder, name)
    return found


def _target(modules, base, name=None):
    """The module an import of `name` from `base` runs: a submodule when there is one."""
    if name is not None and f"{base}.{name}" in modules:
        return f"{base}.{name}"
    return base


def _parents(module):
    """The packages Python runs before `module` (fastnn.a.b -> fastnn.a), fastnn excluded."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(2, len(parts))]


def _imports(modules, path):
    """[(imported module, top_level)] of fastnn modules imported by the file at `path`."""
    with open(path, encoding="utf-8") as fh:
        source = fh.read()
    if path.endswith(".pyx"):  # Cython: its Python-level imports (cimports are C-level)
        edges = []
        for m in re.finditer(r"^\s*from\s+(fastnn[\w.]*)\s+import\s+([\w, ]+)", source,
                             re.MULTILINE):
            for name in m.group(2).split(","):
                edges.append((_target(modules, m.group(1), name.strip()), True))
        return edges
    tree = ast.parse(source, path)
    top_level = {id(node) for node in tree.body}
    edges = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "fastnn":
                    edges.append((_target(modules, alias.name), id(node) in top_level))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and \
                node.module.split(".")[0] == "fastnn":
            for alias in node.names:
                edges.append((_target(modules, node.module, alias.name),
                              id(node) in top_level))
    return edges


def _graph():
    modules = _modules()
    graph, late = {m: set() for m in modules}, set()
    for module, path in modules.items():
        for direct, top in _imports(modules, path):
            if not top and direct != module and direct in modules:
                late.add((module, direct))
            for imported in _parents(direct) + [direct]:  # a.b runs the package a first
                if imported in modules and imported != module and \
                        not module.startswith(imported + "."):
                    graph[module].add(imported)
    return graph, late


def _cycle(graph):
    """A list of modules forming a cycle, or None (depth-first search with colours)."""
    colour, stack = {}, []

    def visit(node):
        colour[node] = "grey"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if colour.get(nxt) == "grey":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in colour:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        colour[node] = "black"
        return None

    for node in sorted(graph):
        if node not in colour:
            found = visit(node)
            if found:
                return found
    return None


def test_the_import_graph_has_no_cycle():
    graph, _ = _graph()
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def _reached(graph, module):
    """Every module that importing `module` imports, directly or through others."""
    seen, todo = set(), [module]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


#: (module, modules above it that it must not reach, counting imports inside functions)
LAYERS = [
    ("fastnn._validation", {"fastnn.nn.model", "fastnn.nn.network", "fastnn.training.trainer",
                            "fastnn.optim.optimizers", "fastnn.runtime.boundary"}),
    ("fastnn.nn.losses", {"fastnn.nn.network", "fastnn.nn.model", "fastnn.optim.optimizers",
                          "fastnn.training.engine"}),
    ("fastnn.nn.network", {"fastnn.nn.model", "fastnn.optim.optimizers",
                           "fastnn.training.trainer"}),
    ("fastnn.optim.optimizers", {"fastnn.nn.model", "fastnn.training.engine",
                                 "fastnn.training.trainer"}),
    ("fastnn.optim.lbfgs", {"fastnn.nn.model", "fastnn.training.trainer"}),
    ("fastnn.training.engine", {"fastnn.nn.model", "fastnn.training.trainer"}),
    ("fastnn.training.trainer", {"fastnn.nn.model", "fastnn.io.saving"}),
    ("fastnn.nn.model", {"fastnn", "fastnn.io.saving", "fastnn.interop.onnx_export",
                         "fastnn.interop.torch_interop", "fastnn.interop.sklearn",
                         "fastnn.ensemble", "fastnn.cli.command"}),
]


def test_every_import_points_down_the_layers():
    graph, late = _graph()
    for lower, higher in LAYERS:
        assert not _reached(graph, lower) & higher, (lower, sorted(_reached(graph, lower) & higher))
    # the training methods reach the model by inheritance, with no import of the model
    import fastnn.nn.model as model_module
    from fastnn.training.trainer import Trainer
    assert issubclass(fastnn.MLP, Trainer) and fastnn.MLP.__module__ == "fastnn.nn.model"
    assert "fastnn.training.trainer" in graph["fastnn.nn.model"]
    # and the save / export methods call what the package registered
    assert model_module._PROVIDED["save"] is fastnn.io.saving.save_model
    assert ("fastnn.nn.model", "fastnn.io.saving") not in late


def test_the_cycle_finder_finds_cycles():
    # the checker itself: a graph with a cycle is reported, one without is not
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    # and a known edge of the real package is seen (the graph is not trivially empty)
    graph, _ = _graph()
    assert "fastnn.nn.model" in graph["fastnn.io.saving"]
    assert "fastnn.training.engine" in graph["fastnn.training.trainer"]


def test_the_flat_layouts_public_names_still_import_the_same_modules():
    import importlib
    import pickle
    import subprocess
    import sys

    from fastnn import _moved
    for old, new in _moved.MOVED.items():
        if "sklearn" in old and importlib.util.find_spec("sklearn") is None:
            continue  # the optional dependency is missing: both names fail alike
        assert importlib.import_module(old) is importlib.import_module(new), old
    # a pickle naming the old module path (as files pickled before the move do) loads
    model = fastnn.MLP([2, 3, 1], seed=0)
    old_style = pickle.dumps(model, protocol=0).replace(b"fastnn.nn.model\n", b"fastnn.model\n")
    assert b"fastnn.model" in old_style
    assert pickle.loads(old_style).params.tobytes() == model.params.tobytes()
    # and in a fresh interpreter, `import fastnn.sklearn` imports scikit-learn only then
    code = ("import sys, fastnn; assert 'sklearn' not in sys.modules; "
            "import fastnn.threads, fastnn.model, fastnn.trainer; "
            "assert 'sklearn' not in sys.modules; print('ok')")
    env_path = os.path.dirname(PACKAGE_DIR)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=env_path), cwd=env_path)
    assert out.stdout.strip() == "ok", out.stderr


# ------------------------------------------------------------------ the compiled boundary

#: the only modules outside fastnn._core that may import from a compiled module, and what
#: each may import.  fastnn.runtime.boundary is the door every compiled call goes through
#: (it resolves the thread count and floating-point mode and holds OpenBLAS at one thread);
#: the others run no compiled arithmetic.
COMPILED_IMPORTERS = {
    "fastnn.runtime.boundary": None,     # anything: it is the boundary
    # the build check: imports the modules to report a missing build, calls nothing
    "fastnn": {"fastnn._core._arrays", "fastnn._core._blas", "fastnn._core._epoch", "fastnn._core._layers",
               "fastnn._core._loop", "fastnn._core._losses", "fastnn._core._network",
               "fastnn._core._sensitivity", "fastnn._core._sgd", "fastnn._core._sparse",
               "fastnn._core._tiling"},
    # a capability query (the boundary reads fpmode's setting, so fpmode sits below it)
    "fastnn.runtime.fpmode": {"fastnn._core._network._fpmode_supported"},
    # the pool's thread limit, which threadpoolctl reads and sets (no arithmetic)
    "fastnn.runtime.threads": {"fastnn._core._pool"},
    # the one finiteness check (a vectorized read: no product, no rounding that OpenBLAS's
    # threads or the floating-point mode could change); the boundary sits above _validation
    "fastnn._validation": {"fastnn._core._arrays.finite_array"},
}


def _compiled_modules():
    """The compiled modules' names: the .pyx files of fastnn._core."""
    return {m for m, path in _modules().items() if path.endswith(".pyx")}


def _compiled_imports(path, compiled):
    """[(line, what)] of every import of a compiled module (or of a name from one) in the
    Python file at `path`, and every string naming one (importlib.import_module)."""
    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if any(alias.name == c or alias.name.startswith(c + ".") for c in compiled):
                    found.append((node.lineno, alias.name))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if node.module in compiled or full in compiled:
                    found.append((node.lineno, full))
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            found.append((node.lineno, "a relative import (not checked: use absolute ones)"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                node.value in compiled:
            found.append((node.lineno, f"the string {node.value!r}"))
    return found


def test_only_the_boundary_imports_the_compiled_modules():
    """No module outside fastnn._core and fastnn.runtime.boundary imports a compiled module's
    functions, so no call site can reach compiled arithmetic without the boundary's thread
    count, BLAS hold and floating-point mode."""
    compiled = _compiled_modules()
    assert "fastnn._core._network" in compiled and "fastnn._core._sparse" in compiled
    leaks = []
    for module, path in _modules().items():
        if module.startswith("fastnn._core") or not path.endswith(".py"):
            continue
        allowed = COMPILED_IMPORTERS.get(module, set())
        for line, what in _compiled_imports(path, compiled):
            if allowed is not None and what not in allowed:
                leaks.append(f"{os.path.relpath(path, PACKAGE_DIR)}:{line} imports {what}")
    assert not leaks, ("compiled code is called through fastnn.runtime.boundary only:\n"
                       + "\n".join(leaks))


def test_the_compiled_import_checker_sees_each_form(tmp_path):
    compiled = {"fastnn._core._network", "fastnn._core._sgd"}
    source = tmp_path / "m.py"
    source.write_text("import fastnn._core._network\n"
                      "from fastnn._core import _sgd\n"
                      "from fastnn._core._network import forward_into\n"
                      "from fastnn._core import _reference\n"           # not compiled
                      "import importlib\n"
                      "importlib.import_module('fastnn._core._sgd')\n"
                      "def f():\n"
                      "    from fastnn._core import _network as n\n")
    found = sorted(_compiled_imports(str(source), compiled))
    assert found == [(1, "fastnn._core._network"), (2, "fastnn._core._sgd"),
                     (3, "fastnn._core._network.forward_into"),
                     (6, "the string 'fastnn._core._sgd'"), (8, "fastnn._core._network")]


#: classes that moved to a module of their own when their module was split: (the module that
#: pickles written before the split name, the class)
SPLIT_HOMES = [
    ("fastnn.nn.model", "Dense"),
    ("fastnn.training.engine", "History"),
    ("fastnn.training.engine", "EarlyStopping"),
    ("fastnn.nn.init", "KaimingNormal"),
    ("fastnn.nn.init", "GlorotUniform"),
    ("fastnn.io.saving", "ModelFileError"),
]


def test_pickles_written_before_the_splits_still_load():
    import importlib
    import pickle

    import numpy as np
    for old, name in SPLIT_HOMES:  # the old path names the very class
        cls = getattr(importlib.import_module(old), name)
        assert cls.__module__ != old and getattr(importlib.import_module(cls.__module__),
                                                 name) is cls, (old, name)
    # a fitted model (history_, its layers' initializers) and an optimizer carrying an
    # early-stopping record, pickled as before the split: every class under its old path
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 3)), rng.integers(0, 2, 40)
    model = fastnn.MLP([3, 5, 2], seed=0)
    optimizer = fastnn.Adam(lr=0.01)
    model.history_ = model.fit(X, y, "cross_entropy", optimizer, epochs=3, validation_split=0.25,
                               early_stopping=fastnn.EarlyStopping(patience=1))
    objects = (model, optimizer, fastnn.Dense(2, 3), fastnn.io.ModelFileError("m.npz", "bad"))
    data = pickle.dumps(objects, protocol=0)
    for old, name in SPLIT_HOMES:
        new = getattr(importlib.import_module(old), name).__module__
        data = data.replace(f"{new}\n{name}\n".encode(), f"{old}\n{name}\n".encode())
    for old, name in SPLIT_HOMES[:4]:  # (those the objects above hold)
        assert f"{old}\n{name}\n".encode() in data, (old, name)
    model2, optimizer2, dense, error = pickle.loads(data)
    assert model2.params.tobytes() == model.params.tobytes()
    assert model2.history_.as_dict() == model.history_.as_dict()
    assert [la.init for la in model2.layers] == [la.init for la in model.layers]
    assert repr(optimizer2) == repr(optimizer) and dense.n_out == 3
    assert str(error) == str(fastnn.io.ModelFileError("m.npz", "bad"))
