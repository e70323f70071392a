"""The work folder's lock: one live run plans and runs in a work folder at a time."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class WorkFolderLocked(RuntimeError):
    """Another live process plans or runs in the same work folder."""


_HELD_LOCKS: dict[str, object] = {}


def lock_work_folder(work: str | os.PathLike) -> None:
    """Hold an exclusive lock on the work folder for the rest of this process.

    Planning rewrites the catalog and shard lists, so it must not run while another run
    uses them.  The lock is an ``flock`` that the kernel releases when the process ends,
    however it ends, so a killed run never leaves a stale lock behind.
    """
    path = Path(work) / ".dicomprep.lock"
    if str(path) in _HELD_LOCKS:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115 - held open until the process exits
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        process = f" (process {holder})" if holder else ""
        raise WorkFolderLocked(
            f"Directory cannot be locked: another dicomprep run{process} is using the work "
            f"folder {work}; wait for it to finish. Nothing needs unlocking: this lock is "
            f"released when that process ends, however it ends"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()} on {os.uname().nodename}\n")
    handle.flush()
    _HELD_LOCKS[str(path)] = handle


def release_work_folder(work: str | os.PathLike) -> None:
    """Release this process's lock on ``work`` (nothing when it holds none), for a
    process that runs in many work folders one after another (a local run, each of
    dicom-validate's batches)."""
    handle = _HELD_LOCKS.pop(str(Path(work) / ".dicomprep.lock"), None)
    if handle is not None:
        handle.close()  # closing the file releases the flock
