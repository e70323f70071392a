"""Running a shard's units over a pool of worker processes, with crash retry.

Files are converted in worker processes (``workers`` of them, each file handed to
whichever worker is free, a bounded number in flight; in path order, which reads the disk
sequentially, except that files costing far more than the typical one go first, so that
no large volume is left running alone at the end), so a decoder that crashes or a process
the kernel kills for memory costs that file only: the files in flight when a worker died
are retried alone, each in a fresh process, and a file whose own process dies again is
recorded as failed.  Copies of one SOP Instance UID are tried in path order: the first
that converts is the image.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from dicomprep.core.errors import ErrorType
from dicomprep.core.records import FAILED, OK, FileResult
from dicomprep.options import Options
from dicomprep.pipeline import output_path_for, process_file
from dicomprep.run.orphans import remove_stale_temporaries
from dicomprep.run.processes import worker_pool
from dicomprep.run.units import REPORT_IMAGES, THUMBNAILS, copy_groups
from dicomprep.storage.urls import is_url

OUTLIER_COST = 8  # times the median cost of a shard's files
IN_FLIGHT_PER_WORKER = 2  # files handed to the pool ahead of the workers, per worker


def outliers_first(keys: list, costs: list[int]) -> list:
    """``keys`` in their order, except that those whose cost exceeds
    :data:`OUTLIER_COST` times the median come first (costliest first).

    Path order keeps reads sequential (measured: starting all compressed mammograms
    first was 5 % slower than path order); moving only the outliers, such as
    tomosynthesis volumes among mammograms, still keeps them out of the tail."""
    if not keys:
        return keys
    median = sorted(costs)[len(costs) // 2]
    outliers = [(c, k) for k, c in zip(keys, costs, strict=True) if c > OUTLIER_COST * median]
    front = {k for _, k in outliers}
    ordered = [k for _, k in sorted(outliers, key=lambda pair: -pair[0])]
    return ordered + [k for k in keys if k not in front]


def _next_round(groups: list[list[int]], position: list[int], settled) -> dict[int, int]:
    """The copy of each group to convert now (entry index -> group), advancing
    ``position`` past copies ``settled`` says are done (the image) or known to fail."""
    todo: dict[int, int] = {}
    for g, copies in enumerate(groups):
        while position[g] < len(copies):
            status = settled(copies[position[g]])
            if status is None:
                todo[copies[position[g]]] = g
                break
            if status == OK:
                position[g] = len(copies)  # this copy is the image
                break
            position[g] += 1  # a copy known to fail: try the next
    return todo


def convert_copies(
    entries: list[dict],
    output_root: str | os.PathLike,
    options: Options,
    workers: int,
    *,
    settled=lambda index: None,
    starting=lambda indices: None,
    log=None,
) -> Iterator[tuple[int, FileResult]]:
    """Convert ``entries`` (shard list entries, in path order) so that each SOP Instance
    UID becomes one image: the first copy that converts.  Yields ``(index, result)`` for
    each conversion, in the order they finish.

    ``settled(index)`` returns the status of an entry that need not be converted (done
    before, or known to fail), or None.  A copy that fails, or is known to, hands over to
    the next copy of its SOP Instance UID in a later round (rounds are rare and small:
    only damaged first copies have them).
    """
    groups = copy_groups(entries)
    position = [0] * len(groups)  # the copy of each group to try next
    while todo := _next_round(groups, position, settled):
        starting(list(todo))
        order = outliers_first(list(todo), [entries[i]["cost"] for i in todo])
        jobs = [(index, entries[index]) for index in order]
        for index, result in convert_in_workers(jobs, output_root, options, workers, log):
            g = todo[index]
            position[g] = len(groups[g]) if result.status == OK else position[g] + 1
            yield index, result


def convert_in_workers(
    jobs: list[tuple[int, dict]],
    output_root: str | os.PathLike,
    options: Options,
    workers: int,
    log=None,
) -> Iterator[tuple[int, FileResult]]:
    """Convert the ``(key, shard list entry)`` pairs of ``jobs`` in up to ``workers``
    forked processes; yield ``(key, result)`` in the order the files finish.

    Files go to whichever worker is free, in the order given, with at most
    :data:`IN_FLIGHT_PER_WORKER` per worker handed out ahead, so the parent's work per
    file does not grow with the number of files.  When a worker process dies (a crashing
    decoder, the out-of-memory killer), the files that were in flight are converted
    again one at a time, each in a process of its own (a file whose own process dies is
    recorded as failed), and the rest go on in a fresh pool.
    """
    remaining = deque(jobs)
    entries = dict(jobs)
    suspects: list = []
    while remaining:
        for key, result in _pool_results(remaining, output_root, options, workers):
            if result is None:
                suspects.append(key)
            else:
                yield key, result
    if suspects and log is not None:
        print(f"a worker process died; converting {len(suspects)} file(s) one by one", file=log)
    for key in suspects:
        [(_, result)] = _pool_results(deque([(key, entries[key])]), output_root, options, 1)
        yield key, result if result is not None else died_result(entries[key], output_root)


class _Feeder:
    """Hands jobs from ``remaining`` to a pool, at most ``window`` in flight, fetching
    the source objects of the next ones ahead when they are in object storage."""

    def __init__(self, pool, remaining: deque, window: int, convert_args: tuple):
        self.pool, self.remaining, self.window = pool, remaining, window
        self.convert_args = convert_args
        self.pending: dict = {}
        self.broken = False
        self.prefetcher = None

    def fill(self) -> None:
        """Submit jobs until the window is full, the jobs run out or the pool broke."""
        while self.remaining and not self.broken and len(self.pending) < self.window:
            key, entry = self.remaining[0]
            if self.prefetcher is not None:
                entry = self.prefetcher.take(key, entry)
            try:
                future = self.pool.submit(convert_unit, entry, *self.convert_args)
            except BrokenProcessPool:
                self.broken = True
                return
            self.remaining.popleft()
            self.pending[future] = key
            self._prefetch()

    def _prefetch(self) -> None:
        """Start fetching the objects of the next jobs (threads start after the fork)."""
        if self.prefetcher is None and self.remaining and is_url(self.remaining[0][1]["path"]):
            from dicomprep.storage.transfer import Prefetcher

            self.prefetcher = Prefetcher(self.window)
        if self.prefetcher is not None:
            for later_key, later_entry in itertools.islice(self.remaining, self.window):
                self.prefetcher.want(later_key, later_entry)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        if self.prefetcher is not None:
            self.prefetcher.close()


def _pool_results(remaining: deque, output_root, options, workers):
    """``(key, FileResult)`` per job taken from ``remaining``; ``(key, None)`` for the
    jobs in flight when a worker process died, after which it stops taking jobs.

    With fewer files than workers (a shard of a few tomosynthesis volumes), the spare
    cores decode frames inside each file (``decode_threads``): two levels of parallelism
    that together never exceed ``workers``.  Objects in object storage are fetched a few
    files ahead by the parent (:class:`~dicomprep.storage.transfer.Prefetcher`, started
    once the workers are forked, as threads must not be forked)."""
    decode_threads = max(1, workers // max(1, len(remaining)))
    pool = worker_pool(min(workers, len(remaining)))
    window = max(1, workers) * IN_FLIGHT_PER_WORKER
    feeder = _Feeder(pool, remaining, window, (output_root, options, decode_threads))
    try:
        while True:
            feeder.fill()
            if not feeder.pending:
                break
            finished, _ = wait(feeder.pending, return_when=FIRST_COMPLETED)
            for future in finished:
                key = feeder.pending.pop(future)
                try:
                    yield key, future.result()
                except BrokenProcessPool:
                    feeder.broken = True
                    yield key, None
    finally:
        feeder.close()


def died_result(entry: dict, output_root) -> FileResult:
    """The result of a file (or stack) whose process died; removes what its write left
    behind."""
    study, sop = entry["study_instance_uid"], entry["sop_instance_uid"]
    if "paths" in entry:
        remove_stale_temporaries(Path(entry["output"]))
    elif study and sop:
        remove_stale_temporaries(output_path_for(output_root, study, sop))
    return FileResult(
        source=entry["path"],
        status=FAILED,
        stage="decode",
        error_type=ErrorType.WORKER_DIED,
        message="the process converting this file died (a decoder crash or out of memory)",
        study_instance_uid=entry["study_instance_uid"],
        sop_instance_uid=entry["sop_instance_uid"],
    )


def convert_stack(unit: dict, options: Options):
    """The :class:`~dicomprep.core.records.StackResult` of one stack: its slices
    (``paths``, in order; ``copies`` of them for damaged ones) into one volume at
    ``output``, through local temporaries when the slices or the output are in object
    storage."""
    if is_url(unit["output"]) or any(is_url(p) for p in unit["paths"]):
        from dicomprep.run.remote import convert_stack_entry

        return convert_stack_entry(unit, options)
    from dicomprep.series.volume_file import process_stack

    return process_stack(unit["paths"], unit["output"], options, unit.get("copies"))


def convert_unit(entry: dict, output_root, options: Options, decode_threads: int = 1):
    """Convert one unit in a worker: a stack, a file in object storage, or a local file
    (drawing its QC thumbnails when it is marked as a report sample)."""
    if "paths" in entry:  # a stack: its slices become one volume
        return convert_stack(entry, options)
    if is_url(entry["path"]) or is_url(output_root):  # object storage: fetch / put
        from dicomprep.run.remote import convert_entry

        return convert_entry(entry, output_root, options, decode_threads)
    sample = bool(entry.get(REPORT_IMAGES))
    view: list | None = [] if sample else None
    result = process_file(
        entry["path"], output_root, options, decode_threads=decode_threads, source_view=view
    )
    if sample and result.status == OK:
        with contextlib.suppress(Exception):  # the report falls back to rendering it
            source = view[0] if view else None
            entry[THUMBNAILS].draw(
                entry, result, output_root, entry[REPORT_IMAGES], options, source
            )
    return result
