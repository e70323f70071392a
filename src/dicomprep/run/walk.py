"""The walk of a local source folder: loop-safe, bound to the source root, never opening
anything that is not a regular file (docs/limits.md, "Discovery limits").

- Each real folder is walked once, known by its device and inode: a link back to a
  folder already walked (or a bind mount of one) ends the descent instead of looping.
- Symbolic links are followed only with ``follow_symlinks``, and then only when their
  target lies inside the source folder, unless ``follow_links_outside_source``.
- FIFOs, sockets and devices are never opened.

Everything passed over is recorded as one :class:`PassedOver` entry (the catalog turns
each into one row, and failures.csv into one line).  Hidden names (starting with a dot)
are passed over without a record, as always.

The walk is on the hot path of planning (10^5-10^6 files): a regular file costs no
system call beyond the folder's listing (``os.scandir``'s entry type), a folder one
``lstat``, and only links and special files cost more.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from dicomprep.core.errors import ErrorType

# Catalog statuses of what a walk passes over (failures.csv: skipped, skipped, failed).
SPECIAL = "special"  # a FIFO, socket, device (or, in a .txt list, a folder): never opened
LINK_SKIPPED = "link_skipped"  # a link not followed: a loop, outside the source, or not asked
BROKEN_LINK = "broken_link"  # a link whose target does not exist or cannot be reached


@dataclass(frozen=True)
class PassedOver:
    """An entry the walk did not yield: its path (as joined to the source), what kind of
    thing it is (an :class:`ErrorType`), a one-line reason, and its own size and mtime
    (of the link itself for a link: ``lstat``; -1 when it vanished)."""

    path: str
    error_type: ErrorType
    reason: str
    size: int
    mtime_ns: int

    @property
    def status(self) -> str:
        """The catalog status: :data:`SPECIAL`, :data:`LINK_SKIPPED` or :data:`BROKEN_LINK`."""
        if self.error_type == ErrorType.SPECIAL_FILE:
            return SPECIAL
        if self.error_type in (ErrorType.LINK_LOOP, ErrorType.LINK_OUTSIDE_SOURCE):
            return LINK_SKIPPED
        return LINK_SKIPPED if self.error_type == ErrorType.LINK_NOT_FOLLOWED else BROKEN_LINK

    def row(self, key: str) -> dict:
        """The catalog row (``key``: the path relative to the source root); a name that
        tables cannot hold is shown escaped (see :func:`shown_name`)."""
        shown = str if is_plain_name(self.path) else shown_name
        return {
            "path": shown(self.path),
            "key": shown(key),
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "status": self.status,
            "reason": self.reason,
            "error_type": str(self.error_type),
        }


class SourceWalk:
    """One walk of ``folder``: iterating it yields the paths (str) of the regular files to
    catalog; :attr:`passed_over` then holds what the walk passed over.

    Folders are listed in sorted order; folders reached through links are walked after
    the real tree, so a file's path is its real path when it has one inside the source.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        follow_symlinks: bool = False,
        follow_links_outside_source: bool = False,
    ):
        self.folder = os.fspath(folder)
        self.follow_symlinks = follow_symlinks
        self.follow_links_outside_source = follow_links_outside_source
        self.passed_over: list[PassedOver] = []
        self._root = os.path.join(os.path.realpath(self.folder), "")
        self._real = RealPaths()
        self._visited: set[tuple[int, int]] = set()
        self._linked: deque[tuple[str, os.stat_result]] = deque()

    def __iter__(self) -> Iterator[str]:
        try:
            st = os.stat(self.folder)
        except OSError:
            return
        self._visited.add((st.st_dev, st.st_ino))
        yield from self._folder(self.folder)
        while self._linked:  # folders reached through links, after the real tree
            path, st = self._linked.popleft()
            if self._first_visit(path, st):
                yield from self._folder(path)

    def _folder(self, folder: str) -> Iterator[str]:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_file(follow_symlinks=False):
                yield entry.path
            elif entry.is_dir(follow_symlinks=False):
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue  # vanished since the listing
                if self._first_visit(entry.path, st):
                    yield from self._folder(entry.path)
            elif entry.is_symlink():
                if self._link(entry.path, folder):
                    yield entry.path
            else:
                self._pass(entry.path, ErrorType.SPECIAL_FILE, special_reason(entry.path))

    def _first_visit(self, path: str, st: os.stat_result) -> bool:
        """True (and the folder is marked walked) unless the folder ``st`` describes was
        walked already; then it is recorded as a loop."""
        identity = (st.st_dev, st.st_ino)
        if identity in self._visited:
            reason = "leads into a folder already walked (a loop of links or mounts)"
            self._pass(path, ErrorType.LINK_LOOP, reason)
            return False
        self._visited.add(identity)
        return True

    def _link(self, path: str, folder: str) -> bool:
        """True when the link at ``path`` (in ``folder``) is a file to yield; a link to a
        folder is queued (walked after the real tree); anything else is recorded as passed
        over."""
        if not self.follow_symlinks:
            reason = "a symbolic link (follow_symlinks is off)"
            self._pass(path, ErrorType.LINK_NOT_FOLLOWED, reason)
            return False
        try:
            st = os.stat(path)
        except OSError as exc:
            self._pass(path, *broken_link(path, exc))
            return False
        if not self.follow_links_outside_source:
            target = self._real.of_link(path, folder)
            if not os.path.join(target, "").startswith(self._root):
                reason = (
                    f"the link's target {target} lies outside the source folder "
                    "(follow_links_outside_source is off)"
                )
                self._pass(path, ErrorType.LINK_OUTSIDE_SOURCE, reason)
                return False
        if stat.S_ISDIR(st.st_mode):
            self._linked.append((path, st))
            return False
        if stat.S_ISREG(st.st_mode):
            return True
        reason = f"a symbolic link to a {special_kind(st.st_mode)}: never opened"
        self._pass(path, ErrorType.SPECIAL_FILE, reason)
        return False

    def _pass(self, path: str, error_type: ErrorType, reason: str) -> None:
        try:
            st = os.lstat(path)
            size, mtime_ns = st.st_size, st.st_mtime_ns
        except OSError:
            size, mtime_ns = -1, -1
        self.passed_over.append(PassedOver(path, error_type, reason, size, mtime_ns))


class RealPaths:
    """The real paths (every link resolved) of links whose target exists, as
    ``os.path.realpath`` gives them, with the real paths of folders cached: the links of a
    source lead into few folders, and ``realpath`` costs an ``lstat`` per component (six
    times the rest of the walk's time for a tree of links)."""

    LIMIT = 1 << 16  # folders cached (then the cache starts again)

    def __init__(self):
        self._folders: dict[str, str] = {}

    def of_link(self, link: str, folder: str) -> str:
        """The real path of the target of ``link`` (in ``folder``; its target exists)."""
        try:
            target = os.readlink(link)
            if not target.startswith("/"):
                real_folder = self._folders.get(folder) or self._walked(folder)
                target = _child(real_folder, target)
            return self._resolve(target)
        except (OSError, RecursionError):  # changed since it was stat'ed
            return os.path.realpath(link)

    def _walked(self, folder: str) -> str:
        """The real path of a folder as the walk names it (relative or absolute)."""
        real = self._folders[folder] = self.folder(os.path.abspath(folder))
        return real

    def folder(self, path: str) -> str:
        """The real path of the folder ``path`` (absolute)."""
        real = self._folders.get(path)
        if real is None:
            real = "/" if path.strip("/") == "" else self._resolve(path)
            if len(self._folders) >= self.LIMIT:
                self._folders.clear()
            self._folders[path] = real
        return real

    def _resolve(self, path: str) -> str:
        head, _, name = path.rpartition("/")
        real_head = self.folder(head or "/")
        if name in ("", "."):
            return real_head
        if name == "..":
            return os.path.dirname(real_head)
        candidate = _child(real_head, name)
        if os.path.islink(candidate):
            target = os.readlink(candidate)
            return self._resolve(target if target.startswith("/") else _child(real_head, target))
        return candidate


def _child(folder: str, name: str) -> str:
    """``name`` (a relative path) under the absolute ``folder``, by string (no ``join``)."""
    return folder + name if folder.endswith("/") else f"{folder}/{name}"


def broken_link(path: str, exc: OSError) -> tuple[ErrorType, str]:
    """The error type and reason of a link whose target cannot be reached."""
    if exc.errno == errno.ELOOP:
        return ErrorType.LINK_LOOP, "a loop of symbolic links (the link leads back to itself)"
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        return ErrorType.FILE_NOT_FOUND, f"a dangling symbolic link: {target} does not exist"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return ErrorType.ACCESS_DENIED, "the link's target is not reachable with the permissions"
    return ErrorType.READ_ERROR, f"the link's target cannot be reached: {exc.strerror}"


def special_kind(mode: int) -> str:
    """What a non-regular, non-folder file is, in words."""
    if stat.S_ISFIFO(mode):
        return "FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISDIR(mode):
        return "folder"
    return "special file"


def special_reason(path: str) -> str:
    """The reason a special file at ``path`` is passed over (never opened)."""
    try:
        return not_regular_reason(os.lstat(path).st_mode)
    except OSError:
        return not_regular_reason(0)


def not_regular_reason(mode: int) -> str:
    """The reason an input that is not a regular file (``mode``, as ``stat`` gives it) is
    passed over."""
    return f"a {special_kind(mode)}, not a regular file: never opened"


def not_regular_fields(mode: int) -> dict[str, str]:
    """The catalog's status, reason and error type of a listed path that is not a regular
    file (a FIFO, socket, device or folder named in a ``.txt`` list)."""
    error_type = str(ErrorType.SPECIAL_FILE)
    return {"status": SPECIAL, "reason": not_regular_reason(mode), "error_type": error_type}


#: The catalog's status, reason and error type of a listed link that leads back to itself.
LOOP_FIELDS = {
    "status": LINK_SKIPPED,
    "reason": "a loop of symbolic links (the link leads back to itself)",
    "error_type": str(ErrorType.LINK_LOOP),
}


def is_plain_name(path: str) -> bool:
    """True for a path that tables and shard lists can hold: valid UTF-8, without tabs or
    line breaks."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return not any(c in path for c in "\t\n\r")


def shown_name(path: str) -> str:
    """``path`` as text tables can hold: bytes that are not UTF-8 shown as ``\\xNN``, tabs
    and line breaks escaped."""
    shown = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return shown.encode("unicode_escape").decode("ascii") if not is_plain_name(shown) else shown
