"""A local run: the workflow's own plan -> shard -> collect in one process.

``dicom-preprocess SOURCE OUTPUT`` (a folder or a ``.txt`` list) and dicom-validate run
exactly what the workflow runs: :func:`~dicomprep.run.plan.plan_shards` (one shard, this
machine), :func:`~dicomprep.run.shard.run_shard` with a pool of worker processes and
:func:`~dicomprep.run.collect.collect_run`, so for the same options their TIFFs and
tables are the workflow's.  The run's state (catalog, shard list, journal, results,
summary, ``removed.txt``) lives in a work folder, by default ``{output}/.dicomprep``: a
rerun converts only new or changed files.

The workflow's safety checks hold here too: the output is probed for writing before
anything else, an empty source is an error, the output belongs to one work folder
(``{output}/.dicomprep-work``), one live run holds a work folder, and removals are
bounded (:mod:`dicomprep.run.removal`; the command line keeps orphaned outputs unless
asked to remove them).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dicomprep.options import Options
from dicomprep.run.collect import Collected, collect_run
from dicomprep.run.discover import save_catalog
from dicomprep.run.guards import check_owner, claim_output, probe_writable
from dicomprep.run.lock import lock_work_folder, release_work_folder
from dicomprep.run.plan import WorkPaths, non_dicom_paths, plan_shards, run_started_ns
from dicomprep.run.shard import ShardEnvironmentError, run_shard
from dicomprep.run.shard_list import read_shard_list

WORK_FOLDER = ".dicomprep"  # the default work folder, inside the output


class NotDicomRefused(RuntimeError):
    """``strict``: some inputs are not DICOM (``paths``); nothing was converted."""

    def __init__(self, paths: list[str]):
        super().__init__("not DICOM (--strict): " + ", ".join(paths))
        self.paths = paths


def default_work(output: str | os.PathLike) -> Path:
    """The work folder of a local run on ``output`` when none is named."""
    return Path(output) / WORK_FOLDER


@dataclass
class LocalRun:
    """What a local run did: the collected tables and counts (:class:`Collected`), its
    work folder, and the first environment error (a file that could not be written)."""

    collected: Collected
    work: Path
    environment_error: str = ""

    @property
    def numbers(self) -> dict:
        return self.collected.numbers


@dataclass(frozen=True)
class RunSettings:
    """How a local run walks the source, removes orphans and reports: the flags of
    dicom-preprocess's run (keyword arguments of :func:`run_local`)."""

    follow_symlinks: bool = False
    follow_links_outside_source: bool = False
    keep_orphans: bool = True
    allow_removal: bool | int = False
    manifest: bool = False
    strict: bool = False
    progress: bool = False


@dataclass(frozen=True)
class TablePaths:
    """Where a local run writes its tables: failures.csv always in the output; the
    manifest there when asked (else in the work folder); slices and the series report
    there for stacks (else in the work folder's ``tables/``)."""

    output: Path
    work: Path
    manifest: bool
    stacks: bool

    def _folder(self, in_output: bool) -> Path:
        return self.output if in_output else self.work / "tables"

    def collect_arguments(self) -> dict:
        """The output paths :func:`collect_run` takes, by keyword."""
        tables = self._folder(self.manifest)
        series = self._folder(self.stacks)
        return {
            "manifest_csv": tables / "manifest.csv",
            "manifest_parquet": tables / "manifest.parquet",
            "failures_csv": self.output / "failures.csv",
            "slices_csv": series / "slices.csv",
            "slices_parquet": series / "slices.parquet",
            "series_report_csv": series / "series_report.csv",
        }


def run_local(
    source: str | os.PathLike,
    output: str | os.PathLike,
    options: Options,
    *,
    work: str | os.PathLike | None = None,
    workers: int = 1,
    follow_symlinks: bool = False,
    follow_links_outside_source: bool = False,
    keep_orphans: bool = True,
    allow_removal: bool | int = False,
    manifest: bool = False,
    strict: bool = False,
    progress: bool = False,
) -> LocalRun:
    """Convert ``source`` (a folder or a ``.txt`` list) into ``output`` as the workflow
    does, in ``workers`` processes; only what is new or changed since the last run in
    ``work`` (default :func:`default_work`).

    Raises, before any conversion: :class:`~dicomprep.run.guards.OutputError` (the output
    cannot be written or belongs to another work folder),
    :class:`~dicomprep.run.discover.SourceError` (a missing or empty source),
    :class:`~dicomprep.run.lock.WorkFolderLocked`,
    :class:`~dicomprep.run.removal.RemovalRefused` (only without ``keep_orphans``) and,
    with ``strict``, :class:`NotDicomRefused`.  ``progress`` shows a bar on stderr.
    """
    output = Path(output)
    work = Path(work) if work is not None else default_work(output)
    settings = RunSettings(
        follow_symlinks,
        follow_links_outside_source,
        keep_orphans,
        allow_removal,
        manifest,
        strict,
        progress,
    )
    probe_writable(output)  # first: the default work folder is inside it
    lock_work_folder(work)
    try:
        return _plan_and_run(source, output, options, work, workers, settings)
    finally:
        release_work_folder(work)


def _plan_and_run(
    source, output: Path, options: Options, work: Path, workers: int, run: RunSettings
) -> LocalRun:
    """:func:`run_local` once the work folder is locked."""
    check_owner(output, work)
    shards, catalog = plan_shards(
        source,
        work,
        "auto",
        series=options.series,
        local=True,
        follow_symlinks=run.follow_symlinks,
        follow_links_outside_source=run.follow_links_outside_source,
        processes=max(1, workers),
        output_root=output,
        allow_removal=run.allow_removal,
        keep_orphans=run.keep_orphans,
        volume_format=options.volume_format,
    )
    if run.strict and non_dicom_paths(catalog):
        raise NotDicomRefused(non_dicom_paths(catalog))
    claim_output(output, work)
    tables = TablePaths(output, work, run.manifest, options.series == "stack")
    keep = run.keep_orphans
    return convert_and_collect(shards, work, tables, options, workers, keep, run.progress)


def convert_catalog(
    catalog: pd.DataFrame, output: str | os.PathLike, options: Options, workers: int = 1
) -> tuple[pd.DataFrame, int]:
    """Convert the images of a ``catalog`` (discovery's table) under ``output`` as a local
    run does, with its work folder inside ``output``; return the failures table (one row
    per input that did not become an output) and the number of outputs written.
    dicom-validate gives its verdicts from it."""
    output = Path(output)
    work = default_work(output)
    lock_work_folder(work)
    try:
        return _convert_saved(catalog, output, options, work, workers)
    finally:
        release_work_folder(work)


def _convert_saved(catalog, output: Path, options: Options, work: Path, workers: int):
    """:func:`convert_catalog` once the work folder is locked."""
    save_catalog(catalog, WorkPaths(work).catalog)
    shards, _ = plan_shards(
        output,  # not walked: the saved catalog is the plan's
        work,
        "auto",
        series=options.series,
        local=True,
        rediscover=False,
        output_root=output,
        keep_orphans=True,
        volume_format=options.volume_format,
    )
    tables = TablePaths(output, work, manifest=False, stacks=False)
    run = convert_and_collect(shards, work, tables, options, workers, keep_orphans=True)
    return run.collected.failures, run.numbers["processed"]


def convert_and_collect(
    shards: list[str],
    work: Path,
    tables: TablePaths,
    options: Options,
    workers: int,
    keep_orphans: bool,
    progress: bool = False,
) -> LocalRun:
    """Run every planned shard (each skips what its journal says is done: options
    changed since are in every file's fingerprint) and collect the run."""
    paths = WorkPaths(work)
    (work / "logs").mkdir(parents=True, exist_ok=True)
    environment_error = ""
    for shard in shards:
        with open(work / "logs" / f"{shard}.log", "w", encoding="utf-8") as log:
            bar = _ProgressLog(log, _units(paths.shard_list(shard))) if progress else log
            try:
                run_shard(
                    paths.shard_list(shard),
                    str(tables.output),
                    options,
                    journal=paths.journal(shard),
                    results=paths.shard_results(shard),
                    log=bar,
                    workers=max(1, workers),
                    keep_orphans=keep_orphans,
                )
            except ShardEnvironmentError as exc:  # its results are written: collect them
                environment_error = environment_error or str(exc)
            finally:
                if bar is not log:
                    bar.close()
    collected = collect_run(
        [paths.shard_results(shard) for shard in shards],
        paths.catalog,
        str(tables.output),
        summary_json=work / "summary.json",
        run_started_ns=run_started_ns(work),
        series_report=paths.series_report,
        **tables.collect_arguments(),
    )
    return LocalRun(collected, work, environment_error)


def _units(shard_list: Path) -> int:
    """The units of work in a shard list: its files, a stack's slices counting once."""
    entries = read_shard_list(shard_list)
    return sum(1 for e in entries if not e["stack"]) + len({e["stack"] for e in entries} - {""})


# Lines a shard writes to its log that are not a unit's result.
_NOT_RESULTS = ("removed\t", "kept orphan\t", "a worker process died")


class _ProgressLog:
    """A shard's log file that also advances a progress bar on stderr by one for each
    result line; on close the bar is full (the units the journal had done count)."""

    def __init__(self, log, total: int):
        import sys

        from tqdm import tqdm

        self.log = log
        self.bar = tqdm(total=total, unit="file", file=sys.stderr)

    def write(self, text: str) -> int:
        if text.strip() and not text.startswith(_NOT_RESULTS):
            self.bar.update(1)
        return self.log.write(text)

    def flush(self) -> None:
        self.log.flush()

    def close(self) -> None:
        self.bar.update(max(0, self.bar.total - self.bar.n))
        self.bar.close()
