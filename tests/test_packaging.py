"""The wheel ships every file the package needs: each file under src/attnlab that is not
Python source is named by pyproject.toml's package-data (setuptools leaves out the rest)."""

from fnmatch import fnmatch
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "attnlab"


def _data_files() -> list[Path]:
    """Every file under src/attnlab other than Python source and bytecode."""
    return [
        path
        for path in PACKAGE.rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts
    ]


def _shipped(path: Path, package_data: dict[str, list[str]]) -> bool:
    """Whether a pattern of ``path``'s package (or a package above it) matches it."""
    relative = path.relative_to(PACKAGE.parent)  # attnlab/viz/explorer_assets/explorer.js
    for package, patterns in package_data.items():
        folder = Path(*package.split("."))
        if folder in relative.parents:
            inside = relative.relative_to(folder).as_posix()
            if any(fnmatch(inside, pattern) for pattern in patterns):
                return True
    return False


def test_every_data_file_is_in_package_data():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_data = config["tool"]["setuptools"]["package-data"]
    files = _data_files()
    assert PACKAGE / "py.typed" in files  # the PEP 561 marker exists
    assert PACKAGE / "viz" / "explorer_assets" / "explorer.js" in files
    missing = [str(path) for path in files if not _shipped(path, package_data)]
    assert missing == [], f"not in [tool.setuptools.package-data]: {missing}"
