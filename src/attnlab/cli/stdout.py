"""Standard output that reports a failed write (a full disk, ``> /dev/full``) in one sentence."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from attnlab.errors import OutputError
from attnlab.files import printable


class GuardedStdout:
    """``stream``, whose write errors become an :class:`OutputError`; a reader that went away
    (``BrokenPipeError``) is left to the caller, which stops quietly. Text holding a byte of
    a file name that is not UTF-8 is written with that byte as ``\\xNN``."""

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        stream = self._open_stream()
        try:
            return self._guarded(stream.write, text)
        except UnicodeEncodeError:  # a file name of bytes that are not UTF-8 (see printable)
            return self._guarded(stream.write, printable(text))

    def flush(self) -> None:
        self._guarded(self._open_stream().flush)

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ...
        return getattr(self.stream, name)

    def _open_stream(self) -> TextIO:
        if self.stream is None:  # Python's sys.stdout when the command started with it closed
            raise OutputError("cannot write to standard output: it is closed")
        return self.stream

    def _guarded(self, call: Callable[..., Any], *args: Any) -> Any:
        try:
            return call(*args)
        except BrokenPipeError:
            raise
        except OSError as e:
            if self.stream is not None:  # always so: call came from _open_stream's stream
                discard(self.stream)
            raise OutputError(f"cannot write to standard output: {e.strerror or e}") from e


def discard(stream: TextIO) -> None:
    """Point ``stream``'s file descriptor at /dev/null, so that what is still buffered for it
    is dropped quietly when Python flushes at exit, instead of failing a second time."""
    with contextlib.suppress(OSError, ValueError):  # a stream without a descriptor (tests)
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


@contextlib.contextmanager
def guarded_stdout() -> Iterator[None]:
    """``sys.stdout`` guarded by :class:`GuardedStdout` inside the block."""
    original = sys.stdout
    sys.stdout = GuardedStdout(original)
    try:
        yield
    finally:
        sys.stdout = original
