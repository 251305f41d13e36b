"""``python -m attnlab ...`` runs the ``attnlab`` command (torchrun needs it: ``-m attnlab``)."""

from attnlab.cli import main

raise SystemExit(main())
