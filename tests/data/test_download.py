import hashlib
import zipfile

import pytest

from attnlab.data import names, shakespeare
from attnlab.data.download import (
    cache_dir,
    fetch_archive,
    locate,
    read_data_text,
    unpack_verified,
)
from attnlab.errors import DataError


def make_zip(path, files):
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_verified_archive_is_unpacked_into_the_cache_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNLAB_CACHE", str(tmp_path / "cache"))
    archive = tmp_path / "data.zip"
    sha = make_zip(archive, {"data/names/Greek.txt": "Papadopoulos\n"})
    folder = fetch_archive(archive.as_uri(), sha, "tutorial", "hint")
    assert (folder / "data" / "names" / "Greek.txt").read_text() == "Papadopoulos\n"
    archive.unlink()  # the second call must not download again
    assert fetch_archive(archive.as_uri(), sha, "tutorial", "hint") == folder


def test_a_corrupted_archive_is_rejected_and_nothing_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNLAB_CACHE", str(tmp_path / "cache"))
    archive = tmp_path / "data.zip"
    sha = make_zip(archive, {"data/names/Greek.txt": "Papadopoulos\n"})
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    archive.write_bytes(bytes(data))
    with pytest.raises(DataError, match="failed its checksum"):
        fetch_archive(archive.as_uri(), sha, "tutorial", "hint")
    assert not (tmp_path / "cache" / "tutorial").exists()
    with pytest.raises(DataError, match="failed its checksum"):
        unpack_verified(archive, sha, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_no_network_names_the_way_to_pass_the_data(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNLAB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="could not download .*; pass --data-dir DIR"):
        fetch_archive("http://127.0.0.1:9/data.zip", "0" * 64, "x", "pass --data-dir DIR")


def test_locate_prefers_data_dir_then_environment(tmp_path, monkeypatch):
    (tmp_path / "root" / "names").mkdir(parents=True)
    (tmp_path / "root" / "names" / "Greek.txt").write_text("A\n")
    monkeypatch.setenv("ATTNLAB_DATA_DIR", str(tmp_path / "root"))
    assert locate("names", None, "*.txt") == tmp_path / "root" / "names"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "Irish.txt").write_text("B\n")
    assert locate("names", mine, "*.txt") == mine
    with pytest.raises(DataError, match="does not exist"):
        locate("names", tmp_path / "nowhere", "*.txt")
    with pytest.raises(DataError, match=r"holds no \*\.txt"):
        locate("names", tmp_path / "root", "*.txt")
    monkeypatch.setenv("ATTNLAB_DATA_DIR", str(tmp_path / "empty"))
    assert locate("names", None, "*.txt") is None


@pytest.mark.parametrize(
    "make, problem",
    [
        (lambda root: root.write_text(""), "which is not a folder"),
        (lambda root: None, "which does not exist"),
        (lambda root: root.mkdir(), "which holds no names/ folder"),
        (lambda root: (root / "names").mkdir(parents=True), r"names/ folder holds no \*\.txt"),
    ],
)
def test_a_failed_download_says_what_is_wrong_with_attnlab_data_dir(
    tmp_path, monkeypatch, make, problem
):
    """The message asked to set ATTNLAB_DATA_DIR to a folder holding names/ though it was set."""
    root = tmp_path / "root"
    make(root)
    monkeypatch.setenv("ATTNLAB_DATA_DIR", str(root))
    monkeypatch.setenv("ATTNLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(names, "URL", "http://127.0.0.1:9/data.zip")  # refused: no network
    with pytest.raises(DataError, match=rf"holding names/ \(it is {root}, .*{problem}"):
        names.names_dir()
    monkeypatch.setattr(shakespeare, "URL", "http://127.0.0.1:9/input.txt")
    with pytest.raises(DataError, match=rf"tinyshakespeare/input.txt \(it is {root}, "):
        shakespeare.shakespeare_path()


def test_a_data_file_that_is_not_a_regular_file_is_refused_by_name(tmp_path):
    (tmp_path / "folder.txt").mkdir()
    with pytest.raises(DataError, match=r"folder\.txt: it is a directory"):
        read_data_text(tmp_path / "folder.txt")
    (tmp_path / "device.txt").symlink_to("/dev/null")  # a FIFO here would block the reader
    with pytest.raises(DataError, match=r"device\.txt: it is not a regular file"):
        read_data_text(tmp_path / "device.txt")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.txt: it is not UTF-8 text"):
        read_data_text(tmp_path / "latin1.txt")


def test_an_empty_attnlab_cache_is_the_default_cache_not_the_current_folder(tmp_path, monkeypatch):
    """``ATTNLAB_CACHE="$CACHE"`` with CACHE unset: Path("") is ".", and the data sets were
    downloaded into whatever folder the command ran in."""
    monkeypatch.setenv("ATTNLAB_CACHE", "")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "attnlab"
