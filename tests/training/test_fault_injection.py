"""The fault-injection script: SIGKILL at random points, during writes too, leaves only whole
files, and every resume equals an uninterrupted run (slow: about two minutes for 10 kills)."""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "fault_injection.py"


@pytest.mark.slow
def test_ten_kills_leave_loadable_files_and_identical_resumes():
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--kills", "10"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith("10 kills (") and "0 left an unloadable file" in summary
    assert "0 resumes failed, 0 resumed runs differ" in summary
