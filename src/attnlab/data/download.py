"""Find a data set on disk, or download its official archive, verify it and unpack it.

Where a loader looks, in order:

1. ``--data-dir DIR``: the folder holding the data set's own files;
2. ``$ATTNLAB_DATA_DIR/<name>/``: a root holding one folder per data set;
3. the download cache (``$ATTNLAB_CACHE``, default ``~/.cache/attnlab``), filled by
   downloading the official archive and checking its sha256 before it is unpacked.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from attnlab.errors import DataError
from attnlab.files import read_text

CHUNK = 1 << 20


def cache_dir() -> Path:
    """``$ATTNLAB_CACHE`` or, when it is unset or empty, ``~/.cache/attnlab``."""
    return Path(os.environ.get("ATTNLAB_CACHE") or Path.home() / ".cache" / "attnlab")


def staging_dir(folder: Path, hint: str) -> tempfile.TemporaryDirectory[str]:
    """A temporary folder inside the cache's ``folder`` (made if missing), where a download
    is checked before it takes its place. A cache that cannot be written (``$ATTNLAB_CACHE``
    or ``$HOME`` a file, missing or read-only) is a DataError naming it, with ``hint``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return tempfile.TemporaryDirectory(dir=folder)
    except OSError as e:
        in_the_way = isinstance(e, (FileExistsError, NotADirectoryError))
        reason = "it or a folder above it is a file" if in_the_way else e.strerror or str(e)
        raise DataError(
            f"cannot write the download cache {folder}: {reason}; set ATTNLAB_CACHE to a "
            f"writable folder, or {hint}"
        ) from e


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_data_text(path: Path) -> str:
    """The UTF-8 text of a data set's file ``path``.

    Anything that is not a regular file (a directory of that name, a FIFO that would block
    for ever, a device) and any file that cannot be read or decoded is a DataError naming it.
    """
    return read_text(path, error=DataError)


def fetch_archive(url: str, sha256: str, name: str, hint: str) -> Path:
    """Download the zip at ``url`` into the cache, verify ``sha256``, unpack it; return the folder.

    Unpacked folders are reused. A download that fails names ``hint`` (how to pass the data
    by hand); an archive whose sha256 differs is deleted and refused.
    """
    target = cache_dir() / name
    if (target / ".verified").is_file():
        return target
    with staging_dir(target.parent, hint) as tmp:
        archive = Path(tmp) / "archive.zip"
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(archive, "wb") as f:
                shutil.copyfileobj(response, f, CHUNK)
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise DataError(f"could not download {url} ({reason}); {hint}") from e
        unpack_verified(archive, sha256, Path(tmp) / "unpacked")
        (Path(tmp) / "unpacked" / ".verified").write_text(sha256 + "\n")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(Path(tmp) / "unpacked", target)
    return target


def unpack_verified(archive: Path, sha256: str, destination: Path) -> None:
    """Unpack ``archive`` into ``destination`` only if its sha256 is ``sha256``."""
    actual = sha256_of(archive)
    if actual != sha256:
        raise DataError(
            f"{archive.name} failed its checksum (sha256 {actual[:16]}..., expected "
            f"{sha256[:16]}...): the download is corrupt or not the official file"
        )
    try:
        with zipfile.ZipFile(archive) as z:
            z.extractall(destination)
    except zipfile.BadZipFile as e:
        raise DataError(f"{archive.name} is not a valid zip archive ({e})") from e


def hint_for(name: str, marker: str, hint: str) -> str:
    """``hint`` (how to pass data set ``name`` by hand), saying why a set
    ``$ATTNLAB_DATA_DIR`` was passed over, so that a failed download does not just ask
    for the variable to be set."""
    root = os.environ.get("ATTNLAB_DATA_DIR")
    if not root:
        return hint
    if not Path(root).is_dir():
        problem = "which is not a folder" if Path(root).exists() else "which does not exist"
    elif not (Path(root) / name).is_dir():
        problem = f"which holds no {name}/ folder"
    else:
        problem = f"whose {name}/ folder holds no {marker} file"
    return f"{hint} (it is {root}, {problem})"


def locate(name: str, data_dir: str | Path | None, marker: str) -> Path | None:
    """The folder of data set ``name`` given by ``data_dir`` or ``$ATTNLAB_DATA_DIR``, if any.

    ``marker`` is a glob that the folder must match (e.g. ``"*.txt"``); a ``data_dir`` that
    does not exist or lacks it is an error, since the user named it.
    """
    if data_dir:
        folder = Path(data_dir)
        if not folder.is_dir():
            raise DataError(f"--data-dir {folder} does not exist or is not a folder")
        if not any(folder.glob(marker)):
            raise DataError(f"--data-dir {folder} holds no {marker} file of the {name} data set")
        return folder
    root = os.environ.get("ATTNLAB_DATA_DIR")
    if root and any((Path(root) / name).glob(marker)):
        return Path(root) / name
    return None
