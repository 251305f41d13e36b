"""attnlab's exceptions for user mistakes: each carries one clear sentence.

The ``attnlab`` command prints the message of any :class:`AttnlabError` without a traceback
and exits with status 2. Shape mistakes in :mod:`attnlab.nn` raise plain ``ValueError``.
"""

import re


class AttnlabError(Exception):
    """Base class: a mistake the user can fix (bad input, missing data, wrong run directory)."""


class InputError(AttnlabError, ValueError):
    """An input to predict / attention / eval cannot be used (empty, out of vocabulary, ...)."""


class RunDirError(AttnlabError):
    """A run directory is missing, incomplete, truncated or belongs to another task."""


class DataError(AttnlabError):
    """A data set is missing, corrupt, or fails its checksum."""


class TrainingError(AttnlabError):
    """Training cannot go on (for example the loss became NaN or infinite)."""


class ConfigError(AttnlabError, ValueError):
    """A config value is of the wrong type, out of its range or not among its choices."""


class CompileError(AttnlabError):
    """``torch.compile`` cannot compile the model here (for example, no C++ compiler for its
    CPU backend)."""


class OutputError(AttnlabError):
    """A file cannot be written: a directory is in the way, no permission, or a full disk."""


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocation that failed: torch's ``OutOfMemoryError`` (CUDA),
    the CPU allocator's ``RuntimeError`` (under a memory limit such as ``ulimit -v``), MPS's,
    or Python's ``MemoryError``. Tells by name and message, so that it imports no torch."""
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return True
    message = str(error)
    return isinstance(error, RuntimeError) and (
        "can't allocate memory" in message or "out of memory" in message
    )


def out_of_memory_sentence(error: BaseException) -> str:
    """What ran out, in words (``the GPU ran out of memory (an allocation of 2.00 GiB
    failed)``), from torch's message, without its lines of advice on the CUDA allocator."""
    message = str(error)
    where = "the GPU" if "CUDA" in message else "the MPS device" if "MPS" in message else None
    size = re.search(r"[Tt]ried to allocate ([\d.]+ ?[KMGT]i?B|\d+ bytes)", message)
    size_text: str | None
    if size and size.group(1).endswith(" bytes"):
        size_text = f"{int(size.group(1).split()[0]) / 1024**3:.2f} GiB"
    else:
        size_text = size.group(1) if size else None
    failed = f" (an allocation of {size_text} failed)" if size_text else ""
    return f"{where or 'the machine'} ran out of memory{failed}"


class Stopped(BaseException):
    """A second stop signal (Ctrl-C, SIGTERM, SIGHUP) during training: stop at once.

    Like KeyboardInterrupt it is not an ``Exception``, so no ``except Exception`` swallows it;
    the ``attnlab`` command prints one line and exits with ``128 + signum``, the shell's code
    for a process ended by that signal (130 for Ctrl-C, 143 for SIGTERM).
    """

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP outside the training loop, raised where the program is, as Ctrl-C
    raises KeyboardInterrupt: the ``finally`` blocks and ``with`` exits on the way out run
    (temporary files removed, child processes killed, locks released). Being a
    KeyboardInterrupt, whatever handles Ctrl-C handles it too; the ``attnlab`` command
    prints one line, ending with ``note`` (what was kept, what to do next), and exits with
    ``128 + signum``.
    """

    def __init__(self, signum: int, note: str = ""):
        super().__init__(signum)
        self.signum = signum
        self.note = note
