"""Shards: many files processed by one job, resumable file by file.

A shard list is a small TSV (one input per line: path, key, size, mtime, UIDs and an
estimate of the work) written by planning only when its content changes, so the workflow
reruns exactly the shards whose files changed.  Every file of a study lands in the same
shard, and so does every copy of a SOP Instance UID.  :func:`run_shard` converts the files
of one list and journals each finished file (:mod:`.journal`: a file whose journal line
has the same fingerprint and whose TIFF is still there unchanged is skipped, so a killed
or repeated shard redoes only what is not done; intent lines written before conversion
let a later run remove what a killed one left).

The shard's units (:mod:`.units`: files, copies of one SOP Instance UID tried in path
order, stacks) are converted in worker processes with crash retry (:mod:`.scheduling`).
When the shard ends, its journal is compacted to one record per listed file, and outputs
whose source is gone are removed (:mod:`.orphans`), so the dataset folder follows the
source.

Errors of the data (decode, transform) are recorded (and journaled, so an unchanged
broken file is not decoded again) and the shard goes on.  Errors of the environment (the
disk is full, the output folder is not writable) make the shard fail after its other
files are done, so the workflow reports it and a rerun retries it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from dicomprep.core.records import OK, write_results
from dicomprep.options import Options
from dicomprep.run.journal import (  # noqa: F401 - the journal's names, imported from here
    JournalWriter,
    file_fingerprint,
    is_data_failure,
    known_failure,
    read_journal,
    still_done,
)
from dicomprep.run.orphans import (  # noqa: F401
    remove_orphans,
    remove_shard_temporaries,
    remove_stale_temporaries,
)
from dicomprep.run.removal import removal_refused
from dicomprep.run.scheduling import convert_copies, convert_in_workers  # noqa: F401
from dicomprep.run.shard_list import read_shard_list
from dicomprep.run.units import (  # noqa: F401
    copy_groups,
    mark_copies,
    mark_report_samples,
    result_row,
    stack_rows,
    stack_units,
)
from dicomprep.storage.urls import is_url


class ShardEnvironmentError(RuntimeError):
    """Some files could not be written for reasons outside the data (disk, permissions)."""


@dataclass
class ShardSummary:
    """What one shard run did: files converted now, reused (done before or known to
    fail), not converted, and the outputs removed because their source is gone."""

    processed: int = 0
    reused: int = 0
    failed: int = 0
    removed: list[str] = field(default_factory=list)


@dataclass
class ShardRun:
    """One shard run's state: its entries and their fingerprints, the journal, the
    results row of each entry so far, the counts and the environment errors met."""

    entries: list[dict]
    fingerprints: list[str]
    output_root: str | os.PathLike
    journal: JournalWriter
    log: object = None
    rows: list = field(default_factory=list)
    summary: ShardSummary = field(default_factory=ShardSummary)
    environment_errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rows = [None] * len(self.entries)

    def finished(self, unit: dict, fingerprint: str, result) -> dict | None:
        """Count a conversion's result and journal it (when it is worth keeping)."""
        if result.status == OK:
            self.summary.processed += 1
        else:
            self.summary.failed += 1
            if result.stage == "write":
                self.environment_errors.append(f"{unit['path']}: {result.message}")
        if self.log is not None:
            print(log_line(result), file=self.log, flush=True)
        if result.status != OK and not is_data_failure(result):
            return None
        return self.journal.record(unit, fingerprint, result, self.output_root)

    def settled(self, index: int) -> str | None:
        """The status of a file the journal says is done or known to fail, else None;
        a stack's slice is settled by its stack (its copies are duplicates)."""
        entry = self.entries[index]
        if entry["stack"]:
            return OK
        record = self.journal.previous.get(entry["key"])
        if still_done(record, self.fingerprints[index], self.output_root):
            self.summary.reused += 1
        elif known_failure(record, self.fingerprints[index]):
            self.summary.failed += 1
        else:
            return None
        self.rows[index] = result_row(record["result"], entry, record, reused=True)
        self.journal.keep(entry["key"], record)
        return record["status"]

    def stacks_to_convert(self, stacks: dict) -> list[tuple[str, dict]]:
        """The stacks not done before (nor known to fail); the others' rows are filled."""
        todo = []
        for name, unit in stacks.items():
            record = self.journal.previous.get(unit["key"])
            fingerprint = unit["fingerprint"]
            if still_done(record, fingerprint, self.output_root) or known_failure(
                record, fingerprint
            ):
                self.summary.reused += 1
                self.journal.keep(unit["key"], record)
                stack_rows(self.rows, self.entries, unit, record["result"], record, True)
            else:
                todo.append((name, unit))
        return todo

    def convert(self, stacks: dict, options: Options, workers: int) -> None:
        """Convert the stacks, then the files (each SOP Instance UID's first copy that
        converts), intents journaled before each batch is handed to the workers."""
        todo = self.stacks_to_convert(stacks)
        self.journal.write_intents([unit for _, unit in todo], self.output_root)
        for name, result in convert_in_workers(todo, self.output_root, options, workers, self.log):
            unit = stacks[name]
            record = self.finished(unit, unit["fingerprint"], result)
            stack_rows(self.rows, self.entries, unit, result.to_dict(), record, False)
        converted = convert_copies(
            self.entries,
            self.output_root,
            options,
            workers,
            settled=self.settled,
            starting=self.write_intents_of,
            log=self.log,
        )
        for index, result in converted:
            entry = self.entries[index]
            record = self.finished(entry, self.fingerprints[index], result)
            self.rows[index] = result_row(result.to_dict(), entry, record, reused=False)

    def write_intents_of(self, indices: list[int]) -> None:
        """Journal the intents of the entries at ``indices`` (about to be converted)."""
        self.journal.write_intents([self.entries[i] for i in indices], self.output_root)


def run_shard(
    shard_list: str | os.PathLike,
    output_root: str | os.PathLike,
    options: Options,
    journal: str | os.PathLike,
    results: str | os.PathLike,
    log=None,
    workers: int = 1,
    keep_orphans: bool = False,
    report_images: str | os.PathLike | None = None,
    samples_per_modality: int = 0,
    thumbnails=None,
) -> ShardSummary:
    """Convert the files of one shard list in ``workers`` processes; write their results
    (JSON lines, one per file in list order, then one per removed output) to ``results``.

    With ``report_images`` (the QC report's ``img/`` folder) and ``thumbnails`` (what
    chooses and draws them, e.g. :class:`dicomprep.report.images.ShardThumbnails`), the
    files of this shard the report may show (its first ``samples_per_modality`` of each
    modality) get their thumbnails rendered by the worker that converts them, while the
    file is at hand: the report then decodes nothing.
    """
    entries = read_shard_list(shard_list)
    options_fp = options.fingerprint()
    fingerprints = [file_fingerprint(entry, options_fp) for entry in entries]
    remove_shard_temporaries(output_root, entries)
    stacks = stack_units(entries, output_root, options, fingerprints)
    if thumbnails is not None and report_images is not None and not is_url(output_root):
        mark_report_samples(entries, thumbnails, samples_per_modality, report_images)
    with JournalWriter(journal) as writer:
        shard = ShardRun(entries, fingerprints, output_root, writer, log)
        shard.convert(stacks, options, workers)
    mark_copies(entries, shard.rows)
    refused = removal_refused(Path(journal).parent.parent)  # {work}/journal/{shard}.jsonl
    before, after = writer.previous, writer.kept
    removed = remove_orphans(before, after, output_root, keep_orphans or refused, log)
    shard.summary.removed = [row["output"] for row in removed]
    writer.compact()  # when it holds superseded, torn or orphaned lines
    write_results([row for row in shard.rows if row is not None] + removed, Path(results))
    if shard.environment_errors:
        raise ShardEnvironmentError(
            f"{len(shard.environment_errors)} file(s) could not be written; first: "
            + shard.environment_errors[0]
        )
    return shard.summary


def log_line(result) -> str:
    """The shard log's line of one finished unit (a file or a stack)."""
    if hasattr(result, "sources"):  # a stack
        what = f"stack of {len(result.sources)}\t{result.output or result.sources[0]}"
        if result.status == OK:
            return f"ok\t{result.seconds * 1000:.0f} ms\t{what}"
        return f"{result.status}\t{result.stage}\t{result.error_type}: {result.message}\t{what}"
    if result.status == OK:
        return f"ok\t{result.seconds * 1000:.0f} ms\t{result.source}"
    return (
        f"{result.status}\t{result.stage}\t{result.error_type}: {result.message}\t{result.source}"
    )
