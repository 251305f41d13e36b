"""Stop signals answered at once, even while the main thread is inside one long operation.

Python runs a signal handler only between two bytecodes of the main thread. While that thread
is inside one long PyTorch operation (attention over 100,000 positions takes minutes on a CPU),
Ctrl-C seems to do nothing, and so does a second Ctrl-C. The C-level handler still writes the
signal's number to the wakeup file descriptor (:func:`signal.set_wakeup_fd`); a thread that
reads it answers at once: it acknowledges the first stop signal, and calls ``stuck(signum)``
for a second one that the main thread's handler has not taken ``GRACE`` seconds later.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Container, Iterator

GRACE = 1.0  # seconds the main thread has to take a second signal itself
_QUIT = 0  # the byte that ends the watching thread (no signal has the number 0)


@contextlib.contextmanager
def watch_stop_signals(
    signals: Container[int],
    acknowledge: Callable[[int], None],
    taken: threading.Event,
    stuck: Callable[[int], None],
) -> Iterator[None]:
    """While inside, a thread reads the signals that reach this process: the first of
    ``signals`` calls ``acknowledge(signum)``; a second one calls ``stuck(signum)`` unless
    ``taken`` (set by the main thread's handler) is set within ``GRACE`` seconds.

    Must be entered in the main thread, after the Python handlers of ``signals`` are
    installed (only signals with a Python handler reach the wakeup descriptor)."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)  # the C handler must never wait on a full pipe
    try:
        previous = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    except ValueError:  # not the main thread: Python handlers only, as before
        os.close(read_end)
        os.close(write_end)
        yield
        return
    watcher = threading.Thread(
        target=_watch,
        args=(read_end, signals, acknowledge, taken, stuck),
        name="attnlab-stop-watch",
        daemon=True,
    )
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous)
        os.write(write_end, bytes([_QUIT]))
        watcher.join()
        os.close(read_end)
        os.close(write_end)


def _watch(
    read_end: int,
    signals: Container[int],
    acknowledge: Callable[[int], None],
    taken: threading.Event,
    stuck: Callable[[int], None],
) -> None:
    """The watching thread: one byte per signal, until the ``_QUIT`` byte."""
    seen = 0
    while True:
        for signum in os.read(read_end, 64):
            if signum == _QUIT:
                return
            if signum not in signals:
                continue
            seen += 1
            if seen == 1:
                acknowledge(signum)
            elif not taken.wait(GRACE):
                stuck(signum)
