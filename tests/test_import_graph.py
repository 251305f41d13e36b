"""The import rules of DESIGN.md: nn <- models <- tasks <- training <- evaluation/viz <- cli.

Two independent checks: a static walk of every module's ``import`` statements (what the code
*says* it imports), and fresh interpreters that import a module and list what got loaded (what
actually happens, including imports made by ``__init__`` files).
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import attnlab

SRC = Path(attnlab.__file__).parent
HEAVY = ("matplotlib", "sklearn", "tokenizers", "attnlab.tasks.reverse", "attnlab.runs")


def imported_modules(path: Path) -> set[str]:
    """The absolute module names a source file imports, at any depth (lazy ones included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def attnlab_imports(package: str) -> dict[str, set[str]]:
    """``{file: attnlab modules it imports}`` for every file of ``attnlab.<package>``."""
    files = sorted((SRC / package).rglob("*.py"))
    assert files, package
    return {
        str(f.relative_to(SRC)): {m for m in imported_modules(f) if m.startswith("attnlab")}
        for f in files
    }


@pytest.mark.parametrize(
    "package, allowed",
    [
        ("nn", ("attnlab.nn",)),
        ("models", ("attnlab.nn", "attnlab.models")),
        ("configs", ("attnlab.configs", "attnlab.options", "attnlab.errors")),
    ],
)
def test_a_package_imports_only_the_layers_below_it(package, allowed):
    for path, modules in attnlab_imports(package).items():
        strays = {m for m in modules if not m.startswith(allowed)}
        assert not strays, f"{path} imports {sorted(strays)}"


# Each part of attnlab may import only parts on its own level or below (DESIGN.md's flow).
LEVELS = {
    "attnlab.errors": 0, "attnlab.options": 0, "attnlab.files": 0, "attnlab.configs": 0,
    "attnlab.machine": 0,
    "attnlab.nn": 1,
    "attnlab.models": 2,
    "attnlab.data": 3, "attnlab.viz": 3, "attnlab.generation": 3, "attnlab.interop": 3,
    "attnlab.tasks": 4, "attnlab.pretrained": 4, "attnlab.exercises": 4,
    "attnlab.training": 5,
    "attnlab.runs": 6,
    "attnlab.evaluation": 7,
    "attnlab.experiments": 8, "attnlab.bench": 8,
    "attnlab.cli": 9,
}  # fmt: skip


def level(module: str) -> int:
    if module == "attnlab":
        return 0  # the package's face: __version__
    return next(lvl for prefix, lvl in LEVELS.items() if module.startswith(prefix))


def module_name(path: Path) -> str:
    """``attnlab.nn.attention`` for ``.../attnlab/nn/attention.py`` (``attnlab.nn`` for its
    ``__init__.py``, ``attnlab`` for the package's own files)."""
    module = "attnlab." + ".".join(path.relative_to(SRC).with_suffix("").parts)
    return module.removesuffix(".__init__").removesuffix(".__main__")


def test_imports_flow_one_way_through_the_levels():
    for path in sorted(SRC.rglob("*.py")):
        module = module_name(path)
        if module == "attnlab":
            continue  # attnlab/__init__.py names its lazy attributes as strings only
        own = level(module)
        for imported in imported_modules(path):
            if imported.startswith("attnlab"):
                assert level(imported) <= own, f"{module} (level {own}) imports {imported}"


# Standard-library modules that exist on Linux and macOS only. The attnlab command needs a
# POSIX system (run-directory locks, stop signals), and says so on Windows; the library below
# the training loop (attnlab.nn, attnlab.models, generation, data, interop) must not.
POSIX_ONLY = {"fcntl", "resource", "termios", "pwd", "grp", "posix", "pty", "tty"}


def test_the_library_below_the_training_loop_imports_nothing_posix_only():
    below = [
        path
        for path in sorted(SRC.rglob("*.py"))
        if level(module_name(path)) < LEVELS["attnlab.training"]
    ]
    assert len(below) > 40  # the walk found the library
    for path in below:
        strays = imported_modules(path) & POSIX_ONLY
        assert not strays, f"{path.relative_to(SRC)} imports {sorted(strays)}"


def loaded_after(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; which heavy modules did it load, and did it change
    the matplotlib backend or torch's thread count?"""
    probe = f"""
import json, os, sys
os.environ.pop("MPLBACKEND", None)
{code}
heavy = [m for m in {HEAVY!r} + ("torch",) if m in sys.modules]
print(json.dumps({{"heavy": heavy}}))
"""
    env = {k: v for k, v in __import__("os").environ.items() if k != "MPLBACKEND"}
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", ["attnlab", "attnlab.nn", "attnlab.models"])
def test_the_core_imports_torch_and_nothing_heavy(module):
    assert loaded_after(f"import {module}")["heavy"] in ([], ["torch"])


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["--version"], ["train", "--help"], ["train", "names", "--help"],
     ["compare", "names", "--help"], ["predict", "--help"], ["bench", "--help"]],
)  # fmt: skip
def test_help_and_version_answer_without_torch(argv):
    code = f"""
from attnlab.cli import main
try:
    status = main({argv!r})
except SystemExit as e:
    status = e.code
assert status in (0, None), status
"""
    assert loaded_after(code)["heavy"] == []


def test_importing_attnlab_nn_leaves_the_matplotlib_backend_alone():
    code = """
import matplotlib
before = matplotlib.get_backend()
import attnlab, attnlab.nn, attnlab.viz, attnlab.tasks
from attnlab.tasks import get_task
get_task("reverse")
assert matplotlib.get_backend() == before, (before, matplotlib.get_backend())
"""
    loaded_after(code)
