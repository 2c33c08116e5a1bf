"""src/ is a library in layers: each package imports only from its own layer or the ones below it,
no module imports itself back through a cycle, and nothing in src/ is a command (tools/ and the
top-level entry points are)."""
import ast
import glob
import os

from tests.conftest import REPO

# lower number = lower layer; a module may import from its own layer and below
LAYERS = {"utils": 0, "config": 1, "device": 1, "device_env": 1, "checkpoint": 2, "model": 3, "data": 3, "eval": 4,
          "deploy": 4, "methods": 5, "train": 6}


def _modules():
    for path in glob.glob(os.path.join(REPO, "src", "**", "*.py"), recursive=True):
        name = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".").removesuffix(".__init__")
        yield name, path


def _imports(path):
    tree = ast.parse(open(path, encoding="utf-8").read())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "src":
            for alias in node.names:
                yield f"{node.module}.{alias.name}"  # a submodule or a name in the module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == "src")


def _package(module):
    parts = module.split(".")
    return parts[1].removesuffix(".py") if len(parts) > 1 else None


def _resolve(name, known):
    while name not in known and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def test_every_package_imports_only_its_own_layer_and_below():
    modules = dict(_modules())
    assert set(LAYERS) == {_package(m) for m in modules if _package(m)}  # every package has a layer
    upward = []
    for module, path in modules.items():
        for name in _imports(path):
            target = _resolve(name, modules)
            if _package(target) and LAYERS[_package(target)] > LAYERS[_package(module)]:
                upward.append(f"{module} -> {target}")
    assert not upward, upward


def test_no_import_cycles():
    modules = dict(_modules())
    graph = {m: {_resolve(n, modules) for n in _imports(p)} - {m, "src"} for m, p in modules.items()}
    state = {}

    def visit(node, trail):
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", " -> ".join(trail + [node])
        state[node] = "open"
        for nxt in graph.get(node, ()):
            visit(nxt, trail + [node])
        state[node] = "done"

    for module in graph:
        visit(module, [])


def test_nothing_in_src_is_a_command():
    commands = [m for m, p in _modules() if "__main__" in open(p, encoding="utf-8").read()]
    assert not commands, commands


MAX_FUNCTION_LINES = 50  # a function longer than this does more than one job
MAX_PARAMETERS = 6  # beyond this a call site cannot be read without the signature; constructors excepted


def test_functions_in_src_are_short_and_take_few_parameters():
    long_or_wide = []
    for module, path in _modules():
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            args = node.args
            params = [a for a in args.posonlyargs + args.args + args.kwonlyargs if a.arg not in ("self", "cls")]
            params += [a for a in (args.vararg, args.kwarg) if a]
            lines = node.end_lineno - node.lineno + 1
            if lines > MAX_FUNCTION_LINES or (len(params) > MAX_PARAMETERS and node.name != "__init__"):
                long_or_wide.append(f"{module}.{node.name}: {lines} lines, {len(params)} parameters")
    assert not long_or_wide, long_or_wide
