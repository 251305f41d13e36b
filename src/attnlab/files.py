"""Reading and writing the user's files: one sentence for every way a path can be wrong.

Every file attnlab writes goes to a temporary file beside its destination and is renamed over
it (``os.replace`` is atomic), so a failure never leaves a half-written file where a good one
was. Paths to read must be regular files: a directory, a FIFO or a device is refused before it
is opened (reading a FIFO with no writer would wait for ever). Imports no torch.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from attnlab.errors import AttnlabError, InputError, OutputError


def _reason(e: OSError) -> str:
    return e.strerror or str(e)


def parse_json(text: str) -> Any:
    """``json.loads(text)``, refusing every text it cannot read with a ``ValueError`` of one
    line: a ``JSONDecodeError``, or JSON nested deeper than Python's recursion limit, or an
    integer of more digits than Python converts (4,300), which ``json`` raises otherwise."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except RecursionError as e:
        raise ValueError("nested too deep") from e
    except ValueError as e:
        digits = sys.get_int_max_str_digits()
        raise ValueError(f"it holds a number of more than {digits:,} digits") from e


def check_output_file(path: Path) -> None:
    """Refuse, before any work, an output path that cannot become a file."""
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a directory; give a file name")
    if path.exists() and not path.is_file():
        raise OutputError(
            f"cannot write {path}: it is not a regular file (a device, a FIFO or a socket), "
            "which attnlab would replace; give a file name"
        )
    parent = next((p for p in (path.parent, *path.parent.parents) if p.exists()), Path("."))
    if not parent.is_dir():
        raise OutputError(f"cannot write {path}: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: {parent} is not writable")


def atomic_write(path: Path, write: Callable[[Path], object], replace: bool = True) -> None:
    """Call ``write(tmp)`` on a temporary path beside ``path``, flush it, then rename it.

    The temporary file keeps ``path``'s suffix, so writers that pick a format from it (e.g.
    matplotlib) still can. An OSError (not writable, a directory, disk full) becomes an
    :class:`~attnlab.errors.OutputError`, and the temporary file is removed. With
    ``replace=False`` a file that another process gave the name ``path`` meanwhile is never
    replaced: ``FileExistsError`` is raised instead (the finished file is given its name by
    ``os.link``, which fails on an existing name, in the same atomic step).
    """
    path = Path(path)
    check_output_file(path)
    if path.is_symlink():  # replace the file it points to, and keep the link
        path = Path(os.path.realpath(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        kept_mode = stat.S_IMODE(path.stat().st_mode) if path.is_file() else None
        tmp = _new_temporary_file(path)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {_reason(e)}") from e
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if kept_mode is not None:  # a file replaced keeps its permissions (a shared CSV)
            os.chmod(tmp, kept_mode)
        if replace:
            os.replace(tmp, path)
        else:
            _name_if_new(tmp, path)
    except FileExistsError:
        raise
    except OSError as e:
        raise OutputError(f"cannot write {path}: {_reason(e)}") from e
    finally:
        tmp.unlink(missing_ok=True)


def _new_temporary_file(path: Path) -> Path:
    """A new empty file beside ``path``, named ``.NAME.RANDOM.tmpSUFFIX``, with the permissions
    of a new file (0o666 less the umask, as ``open`` gives; ``tempfile.mkstemp`` gives 0o600,
    so that a grades CSV or an attention page could be read by no one else)."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix}"
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return tmp
        except FileExistsError:  # a 1 in 4 billion clash with another writer: draw again
            continue


def _name_if_new(tmp: Path, path: Path) -> None:
    """Give the file ``tmp`` the name ``path`` unless a file has it (``FileExistsError``)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: check, then rename (almost atomic)
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None
        os.replace(tmp, path)


def write_text(path: Path, text: str, replace: bool = True) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path. With
    ``replace=False``, raises ``FileExistsError`` rather than replace a file (see
    :func:`atomic_write`)."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), replace)
    return Path(path)


def printable(name: str) -> str:
    r"""``name`` (a file name, say) with each byte that is not UTF-8 written as ``\xNN``.

    Python reads such a byte of a file name as a lone surrogate (byte 0xff becomes
    ``"\udcff"``), which no UTF-8 file or terminal accepts: ``printable`` turns it into the
    four characters ``\xff``, which a reader can see, copy and search for.
    """
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def missing(path: Path) -> str:
    """Why ``path`` is not there, for a sentence: ``does not exist``, or, where ``ls`` shows a
    symbolic link (``Path.exists`` is False for one that loops or points nowhere), that."""
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "leads through a symbolic link that loops"
        if os.path.islink(path):
            return f"is a symbolic link to {os.readlink(path)}, which does not exist"
    return "does not exist"


def refuse_non_file(path: Path, error: type[AttnlabError], role: str) -> None:
    """Refuse, with an ``error`` naming ``role`` (e.g. "the run keeps a file"), a path that
    is there but is a folder, a FIFO or a device, which a reader would call missing, or wait
    on for ever; a missing path is left to the caller."""
    if path.exists() and not path.is_file():
        kind = "a directory" if path.is_dir() else "not a regular file"
        raise error(f"cannot read {path}: it is {kind}, where {role}")


def read_text(path: Path, error: type[AttnlabError] = InputError) -> str:
    """The UTF-8 text of a regular file (a leading byte-order mark removed); anything else
    (a directory, a FIFO, a device, bytes that are not UTF-8) is an ``error`` naming it."""
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
            raise error(f"cannot read {path}: it is {kind}")
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise error(f"cannot read {path}: it is not UTF-8 text") from e
    except OSError as e:
        raise error(f"cannot read {path}: {_reason(e)}") from e
