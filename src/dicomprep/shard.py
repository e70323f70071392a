"""Shards: many files processed by one job, resumable file by file.

A shard list is a small TSV (one input per line: path, size, mtime, UIDs and an estimate
of the work) written by discovery only when its content changes, so the workflow reruns
exactly the shards whose files changed.  :func:`run_shard` converts the files of one list
and appends one line per finished file to the shard's journal.  A file is skipped when
its journal line has the same fingerprint (source path, size, mtime, options and code)
and its TIFF is still there unchanged, so a killed or repeated shard redoes only what is
not done.

Files are converted in worker processes (``workers`` of them, each file handed to
whichever worker is free; in path order, which reads the disk sequentially, except that
files costing far more than the typical one go first, so that no large volume is left
running alone at the end), so a decoder that crashes or a process the kernel
kills for memory costs that file only: it is retried alone in a fresh process and, if its
process dies again, recorded as failed.  The journal is written by the parent alone.

Errors of the data (decode, transform) are recorded and the shard goes on.  Errors of the
environment (the disk is full, the output folder is not writable) make the shard fail
after its other files are done, so the workflow reports it and a rerun retries it.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from .options import Options
from .pipeline import output_path_for, process_file
from .records import FAILED, OK, FileResult, write_results
from .shard_list import read_shard_list


class ShardEnvironmentError(RuntimeError):
    """Some files could not be written for reasons outside the data (disk, permissions)."""


# -- journal ----------------------------------------------------------------------


def file_fingerprint(entry: dict, options_fingerprint: str) -> str:
    """What a finished output depends on: the source file's identity, options and code."""
    key = f"{entry['path']}\0{entry['size']}\0{entry['mtime_ns']}\0{options_fingerprint}"
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def read_journal(path: Path) -> dict[str, dict]:
    """The last complete journal record of each source path (torn lines are ignored)."""
    records: dict[str, dict] = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    record = json.loads(line)
                    records[record["source"]] = record
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue
    except FileNotFoundError:
        pass
    return records


def _still_done(record: dict | None, fingerprint: str) -> bool:
    if not record or record.get("fingerprint") != fingerprint or record.get("status") != OK:
        return False
    try:
        st = os.stat(record["output"])
    except OSError:
        return False
    return st.st_size == record.get("output_size") and st.st_mtime_ns == record.get(
        "output_mtime_ns"
    )


def remove_stale_temporaries(output: Path) -> None:
    """Delete temporaries an interrupted write of ``output`` may have left behind."""
    for stale in output.parent.glob(f".{output.name}.*.tmp"):
        stale.unlink(missing_ok=True)


# -- running ----------------------------------------------------------------------


@dataclass
class ShardSummary:
    processed: int = 0
    reused: int = 0
    failed: int = 0


def run_shard(
    shard_list: str | os.PathLike,
    output_root: str | os.PathLike,
    options: Options,
    journal: str | os.PathLike,
    results: str | os.PathLike,
    log=None,
    workers: int = 1,
) -> ShardSummary:
    """Convert the files of one shard list in ``workers`` processes; write their results
    (JSON lines, one per file in list order) to ``results``."""
    entries = read_shard_list(shard_list)
    journal = Path(journal)
    journal.parent.mkdir(parents=True, exist_ok=True)
    done = read_journal(journal)
    options_fp = options.fingerprint()
    fingerprints = [file_fingerprint(entry, options_fp) for entry in entries]
    rows: list[dict | None] = [None] * len(entries)
    summary, environment_errors, todo = ShardSummary(), [], []
    for index, entry in enumerate(entries):
        record = done.get(entry["path"])
        if _still_done(record, fingerprints[index]):
            rows[index] = {**record["result"], "reused": True}
            summary.reused += 1
        else:
            todo.append(index)
    todo = outliers_first(todo, [entries[index]["cost"] for index in todo])
    with open(journal, "a", encoding="utf-8") as out:
        jobs = [(index, entries[index]) for index in todo]
        for index, result in convert_in_workers(jobs, output_root, options, workers, log):
            entry = entries[index]
            rows[index] = {**result.to_dict(), "reused": False}
            if result.status == OK:
                summary.processed += 1
                st = os.stat(result.output)
                line = {
                    "source": entry["path"],
                    "fingerprint": fingerprints[index],
                    "status": OK,
                    "output": result.output,
                    "output_size": st.st_size,
                    "output_mtime_ns": st.st_mtime_ns,
                    "result": result.to_dict(),
                }
                out.write(json.dumps(line, sort_keys=True) + "\n")
                out.flush()
            else:
                summary.failed += 1
                if result.stage == "write":
                    environment_errors.append(f"{entry['path']}: {result.message}")
            if log is not None:
                print(_log_line(result), file=log, flush=True)
    write_results(rows, Path(results))
    if environment_errors:
        raise ShardEnvironmentError(
            f"{len(environment_errors)} file(s) could not be written; first: "
            + environment_errors[0]
        )
    return summary


OUTLIER_COST = 8  # times the median cost of a shard's files


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


def convert_in_workers(
    jobs: list[tuple[int, dict]],
    output_root: str | os.PathLike,
    options: Options,
    workers: int,
    log=None,
) -> Iterator[tuple[int, FileResult]]:
    """Convert the ``(key, shard list entry)`` pairs of ``jobs`` in up to ``workers``
    forked processes; yield ``(key, result)`` in the order the files finish.

    Files go to whichever worker is free, in the order given.  When a worker process dies
    (a crashing decoder, the out-of-memory killer), the files it and its siblings had not
    finished are converted again one at a time, each in a process of its own, and a file
    whose own process dies is recorded as failed.
    """
    if not jobs:
        return
    entries = dict(jobs)
    unfinished = []
    for key, result in _pool_results(jobs, output_root, options, workers):
        if result is None:
            unfinished.append(key)
        else:
            yield key, result
    if unfinished and log is not None:
        print(f"a worker process died; converting {len(unfinished)} file(s) one by one", file=log)
    for key in unfinished:
        [(_, result)] = _pool_results([(key, entries[key])], output_root, options, 1)
        yield key, result if result is not None else _died(entries[key], output_root)


def _pool_results(jobs, output_root, options, workers):
    """``(key, FileResult)`` per job, ``(key, None)`` when its worker process died."""
    context = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(max(1, min(workers, len(jobs))), mp_context=context)
    try:
        pending: dict[Future, int] = {}
        for position, (key, entry) in enumerate(jobs):
            try:
                pending[pool.submit(_convert, entry, output_root, options)] = key
            except BrokenProcessPool:  # a worker died already
                for late_key, _ in jobs[position:]:
                    yield late_key, None
                break
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                key = pending.pop(future)
                try:
                    yield key, future.result()
                except BrokenProcessPool:
                    yield key, None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _died(entry: dict, output_root) -> FileResult:
    """The result of a file whose process died; removes what its write left behind."""
    study, sop = entry["study_instance_uid"], entry["sop_instance_uid"]
    if study and sop:
        remove_stale_temporaries(output_path_for(output_root, study, sop))
    return FileResult(
        source=entry["path"],
        status=FAILED,
        stage="decode",
        error_type="WorkerDied",
        message="the process converting this file died (a decoder crash or out of memory)",
        study_instance_uid=entry["study_instance_uid"],
        sop_instance_uid=entry["sop_instance_uid"],
    )


def _convert(entry: dict, output_root, options: Options) -> FileResult:
    study, sop = entry["study_instance_uid"], entry["sop_instance_uid"]
    if study and sop:
        remove_stale_temporaries(output_path_for(output_root, study, sop))
    return process_file(entry["path"], output_root, options)


def _log_line(result: FileResult) -> str:
    if result.status == OK:
        return f"ok\t{result.seconds * 1000:.0f} ms\t{result.source}"
    return (
        f"{result.status}\t{result.stage}\t{result.error_type}: {result.message}\t{result.source}"
    )
