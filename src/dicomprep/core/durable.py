"""Writing state files so that a crash, a killed job or a node failure never leaves a
file that lies: whole-file writes go to a temporary name, are flushed to disk, renamed
into place and the folder entry flushed too; appends to a journal start on a fresh line,
so a line torn by a crash never swallows the next record.

Kept free of pandas and the imaging libraries (shard jobs and the planner use it).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def fsync_folder(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename in it) to disk; a no-op where not supported."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def temporary_path(path: Path) -> Path:
    """A hidden temporary name beside ``path``, unique to this process."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a closed file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(
    path: str | os.PathLike, *, sync_file: bool = True, sync_folder: bool = True
) -> Iterator[Path]:
    """The one way files are replaced: yields a hidden temporary path beside ``path``
    (:func:`temporary_path`) to write and close; when the block ends it is flushed to
    disk (``sync_file``), renamed over ``path`` and the folder entry flushed
    (``sync_folder``), so readers see the old or the new file, never a part.  On any
    error the temporary is removed and the error re-raised, ``path`` untouched.

    Outputs that can always be made again (the report's images, the catalog) skip the
    flushes; what a rerun trusts (state files, outputs) keeps them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        yield tmp
        if sync_file:
            fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # never mask the original error
            os.unlink(tmp)
        raise
    if sync_folder:
        fsync_folder(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, sync: bool = True) -> None:
    """Replace ``path`` by ``data`` (durably unless ``sync`` is False): readers see the
    old or the new file, never a part, even after a power loss."""
    with atomic_file(path, sync_file=sync, sync_folder=sync) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def open_for_append(path: str | os.PathLike):
    """Open a line-based file for appending, first ending a torn last line (left by a
    crash mid-write) so that the next record starts on a line of its own."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "ab+")  # noqa: SIM115 - returned to the caller
    if handle.tell() > 0:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) != b"\n":
            handle.write(b"\n")
    return handle


def iter_lines(path: str | os.PathLike):
    """The lines of a text file as str, decoding invalid bytes as U+FFFD instead of
    failing (a damaged state file must be readable enough to be judged)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        yield from f
