"""One writer per run directory: an operating-system file lock held while a run trains.

``attnlab train --out DIR`` and ``--resume DIR`` hold an exclusive ``flock`` on ``DIR/.lock``
for the whole run, its test report included, and ``eval DIR --save`` while it writes the
report into the run; the operating system releases it when the process ends, however it ends
(even ``kill -9``), so a crashed run never leaves a stale lock. A second writer gets one
sentence naming the holder's PID. Readers (``eval`` without ``--save``, ``predict``,
``attention``) take no lock: every file is replaced atomically, so they read whole files.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from attnlab.errors import RunDirError

LOCK = ".lock"
LEFTOVERS = ".*.tmp*"  # the temporary files of attnlab.files.atomic_write


class RunLock:
    """The exclusive lock on ``run_dir``; ``acquire()`` (or ``with``) takes it or refuses."""

    def __init__(
        self, run_dir: str | Path, hint: str = "wait for it to finish, or choose another --out"
    ):
        self.run_dir = Path(run_dir)
        self.hint = hint  # what to do when another process holds the lock
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock, record this PID in it, and remove the temporary files that a killed
        writer may have left (``.NAME.*.tmp*``: never a finished file)."""
        try:
            fd = os.open(self.run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RunDirError(f"cannot lock the run directory {self.run_dir}: {e.strerror}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise RunDirError(
                f"{self.run_dir} is in use by another attnlab process (PID {holder}): {self.hint}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        for leftover in self.run_dir.glob(LEFTOVERS):
            leftover.unlink(missing_ok=True)
        return self

    def release(self) -> None:
        """Give the lock back, if this object holds it (a second call does nothing)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def _holder(fd: int) -> str:
    """The PID that the lock's holder records in it, or ``"unknown"``. The holder writes it
    just after taking the lock, so a process refused in between finds the file empty: it
    reads again for up to a second before giving up."""
    deadline = time.monotonic() + 1.0
    while True:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if holder or time.monotonic() > deadline:
            return holder or "unknown"
        time.sleep(0.01)
