"""Worker process pools that never outlive the process that started them.

A process killed with SIGKILL (the out-of-memory killer, a scheduler's hard limit, a
user) gets no chance to stop its workers, and a worker of
:class:`concurrent.futures.ProcessPoolExecutor` whose parent is gone waits for its next
task forever: it keeps its memory and the job's output pipes open, so whatever waits
for the job to end (Snakemake, a shell pipeline) waits too.  The workers of
:func:`worker_pool` ask the kernel to kill them when their parent dies (Linux
``PR_SET_PDEATHSIG``; elsewhere they behave as before).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor

__all__ = ["worker_pool"]

_PR_SET_PDEATHSIG = 1


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of up to ``workers`` forked processes that die with this process."""
    return ProcessPoolExecutor(
        max(1, workers),
        mp_context=multiprocessing.get_context("fork"),
        initializer=die_with_parent,
        initargs=(os.getpid(),),
    )


def die_with_parent(parent: int) -> None:
    """In a worker: have the kernel kill this process when ``parent`` (the process that
    forked it) ends; end now if it already has."""
    with contextlib.suppress(Exception):  # not Linux, or no C library to ask
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)
