"""The package is typed: it ships py.typed and a stub of the compiled module that matches it, and
mypy passes on it."""

import ast
import importlib.resources
import inspect
import os
import subprocess
import sys

from bpfast import _core

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)


def test_the_package_ships_its_types():
    files = importlib.resources.files("bpfast")
    assert files.joinpath("py.typed").is_file()
    assert files.joinpath("_core.pyi").is_file()


def test_the_stub_names_what_the_compiled_module_has():
    with open(os.path.join(ROOT, "src", "bpfast", "_core.pyi")) as f:
        tree = ast.parse(f.read())
    names = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    names |= {node.target.id for node in tree.body
              if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)}
    assert names - set(dir(_core)) == set()
    public = {name for name in dir(_core) if not name.startswith("_")
              and (callable(getattr(_core, name)) or name.isupper())}
    assert public - names - {"CompiledTopology"} == set()  # an internal type, never returned


def test_the_stub_gives_each_function_the_compiled_parameters():
    with open(os.path.join(ROOT, "src", "bpfast", "_core.pyi")) as f:
        tree = ast.parse(f.read())
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    assert functions
    for node in functions:
        args = node.args
        stub = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
        stub += [a.arg for a in (args.vararg, args.kwarg) if a is not None]
        compiled = inspect.signature(getattr(_core, node.name)).parameters
        assert sorted(stub) == sorted(compiled), node.name


def test_mypy_passes(tmp_path):
    out = subprocess.run([sys.executable, "-m", "mypy", "-p", "bpfast", "--cache-dir",
                          str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "MYPYPATH": os.path.join(ROOT, "src")})
    assert out.returncode == 0, out.stdout + out.stderr
