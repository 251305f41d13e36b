"""Makes packages look absent, as on the GPU machine (used by ``gpu_check.py --dry-run``).

With this folder on PYTHONPATH, Python runs this module at start-up. Every package named in
``$GPU_CHECK_ABSENT_PACKAGES`` (comma-separated) then cannot be found: ``import`` raises
ModuleNotFoundError and ``importlib.util.find_spec`` returns None, exactly as when it is not
installed. Everything else is found as before.
"""

import os
import sys
from importlib.machinery import PathFinder

ABSENT = frozenset(filter(None, os.environ.get("GPU_CHECK_ABSENT_PACKAGES", "").split(",")))


class PathFinderWithoutAbsentPackages(PathFinder):
    """The standard path finder, blind to the packages in ABSENT and their modules."""

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname.partition(".")[0] in ABSENT:
            return None
        return super().find_spec(fullname, path, target)


sys.meta_path[:] = [
    PathFinderWithoutAbsentPackages if finder is PathFinder else finder for finder in sys.meta_path
]
