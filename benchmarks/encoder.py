"""Moved to ``attnlab bench encoder`` (same cases, same method); this script forwards to it."""

import sys

from attnlab.cli import main

raise SystemExit(main(["bench", "encoder", *sys.argv[1:]]))
