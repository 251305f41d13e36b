"""``python -m attnlab.cli``."""

from attnlab.cli import main

raise SystemExit(main())
