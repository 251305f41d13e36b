"""The real data sets (names, eng-fra, tinyshakespeare) for the tests that need them."""

import os

import pytest

DATA_ROOT = os.environ.get("ATTNLAB_DATA_DIR")
REASON = (
    "needs the real data sets: set ATTNLAB_DATA_DIR to a folder holding names/, eng-fra/ and "
    "tinyshakespeare/ (see docs/testing.md)"
)
needs_data = pytest.mark.skipif(not DATA_ROOT, reason=REASON)
