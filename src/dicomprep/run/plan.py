"""Planning a workflow run: update the catalog and split the DICOM files into shards.

Called once per run by the workflow's main process.  Files are bucketed by study (every
copy of a SOP Instance UID by the study of its first copy), so all files of a study, and
of a series, are in one shard and new studies touch few shards.  Shard lists are
rewritten only when their content changes, so Snakemake reruns exactly the shards that
gained, lost or changed files.  A shard that lost all its files still runs once, to
remove the outputs of its deleted sources.  The results of the last run are checked
against the dataset folder: a shard whose results file is damaged, or one of whose
outputs was deleted or changed since, runs again (and redoes exactly those files).  The
list of shards is saved beside them so that cluster jobs never walk the source again.
A source with no file stops planning, and so do more removals than a run may make
(:mod:`dicomprep.run.removal`), before any shard list changes.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from math import ceil
from pathlib import Path

import pandas as pd

from dicomprep.core.durable import atomic_write_text, iter_lines
from dicomprep.core.records import REMOVED, RESULT_COLUMNS, DamagedStateFile, read_results
from dicomprep.run.collect import cached_shard_table
from dicomprep.run.discover import (
    DICOM,
    DUPLICATE,
    MISSING,
    NOT_DICOM,
    build_catalog,
    load_catalog,
    placement_facts,
    save_catalog,
    shard_of,
)
from dicomprep.run.guards import require_files
from dicomprep.run.lock import WorkFolderLocked, lock_work_folder  # noqa: F401 - re-exported
from dicomprep.run.removal import guard_shard_removals, planned_outputs
from dicomprep.run.shard_list import SHARD_COLUMNS, shard_list_text, write_if_changed
from dicomprep.storage.urls import is_url


@dataclass(frozen=True)
class WorkPaths:
    """Where a run keeps its state (all under the work folder)."""

    root: Path

    @property
    def catalog(self) -> Path:
        return self.root / "catalog.parquet"

    @property
    def shard_index(self) -> Path:
        return self.root / "shards" / "index.json"

    def shard_list(self, shard: str) -> Path:
        return self.root / "shards" / f"{shard}.tsv"

    def shard_results(self, shard: str) -> Path:
        return self.root / "shards" / f"{shard}.results.jsonl"

    @property
    def series_report(self) -> Path:
        """What did not fit a stack (``series: stack``), copied to the dataset by collect."""
        return self.root / "series_report.csv"

    def shard_rerun(self, shard: str) -> Path:
        """An input of the shard's job whose content planning changes to make it run
        again (Snakemake does not redo a job for a missing or damaged intermediate file
        when the final outputs exist)."""
        return self.root / "shards" / f"{shard}.rerun"

    @property
    def run_started(self) -> Path:
        """When the current (or last) run was planned, in ns since the epoch."""
        return self.root / "run_started_ns"

    @property
    def journals(self) -> Path:
        return self.root / "journal"

    def journal(self, shard: str) -> Path:
        return self.journals / f"{shard}.jsonl"

    @property
    def journal_shards(self) -> Path:
        """How the journals are bucketed (the shard count and the key)."""
        return self.journals / "shards.txt"


def shard_name(index: int, shards: int) -> str:
    """``s0007``-style names, zero-padded to the width of the shard count."""
    return f"s{index:0{max(4, len(str(shards - 1)))}d}"


FILES_PER_CLUSTER_SHARD = 2000


def shard_count(setting: int | str, files: int, local: bool) -> int:
    """The number of shards for ``setting`` (a number, or ``"auto"``): on one machine one
    shard (its job runs a worker per core, and every extra job costs a start); on a
    cluster the power of two at or above ``files`` / 2,000, so the count (and with it
    every shard list) changes only when the data doubles."""
    if setting != "auto":
        return int(setting)
    if local:
        return 1
    return 1 << max(0, ceil(files / FILES_PER_CLUSTER_SHARD) - 1).bit_length()


def plan_shards(
    source: str | os.PathLike,
    work: str | os.PathLike,
    shards: int | str,
    *,
    series: str = "files",
    local: bool = True,
    check_outputs: bool = True,
    follow_symlinks: bool = False,
    follow_links_outside_source: bool = False,
    rediscover: bool = True,
    processes: int = 1,
    output_root: str | os.PathLike | None = None,
    allow_removal: bool | int = False,
    keep_orphans: bool = False,
    volume_format: str = "tiff",
) -> tuple[list[str], pd.DataFrame]:
    """Update the catalog and shard lists; return the shards to run and the catalog.

    ``shards`` is a count or ``"auto"`` (see :func:`shard_count`; ``local``: jobs run on
    this machine).  With ``series="stack"`` the slices of each series are formed into
    stacks (see :func:`plan_stacks`), each converted as one volume by its shard.

    A source that holds no file is a :class:`~dicomprep.run.discover.SourceError`.
    Before any shard list changes, the outputs the changed shards would remove are
    counted (see :mod:`dicomprep.run.removal`; ``output_root`` and ``volume_format``
    name them, ``allow_removal`` bounds them, ``keep_orphans`` removes none): too many
    raise :class:`~dicomprep.run.removal.RemovalRefused` and leave the plan as it was.

    With ``check_outputs``, the last run's results of unchanged shards are checked
    against the dataset folder (see :func:`stale_results`).  Takes the work folder's
    lock first (see :func:`lock_work_folder`).
    """
    lock_work_folder(work)
    paths = WorkPaths(Path(work))
    write_if_changed(paths.run_started, f"{time.time_ns()}\n")
    catalog = updated_catalog(
        source,
        paths,
        rediscover,
        follow_symlinks=follow_symlinks,
        follow_links_outside_source=follow_links_outside_source,
        processes=processes,
    )
    images = catalog[catalog["status"].isin([DICOM, DUPLICATE])]
    images = plan_stacks(images, paths, series)
    shards = shard_count(shards, len(images), local)
    rebucket_journals(paths, shards)
    texts, index = shard_texts(images, shards, paths)
    changing = [name for name, text in texts.items() if _saved_text(paths.shard_list(name)) != text]
    guarded = changing if not keep_orphans else []  # only changed shards remove outputs
    guard_shard_removals(
        paths.root,
        [paths.journal(name) for name in guarded],
        sum(facts["files"] for name, facts in index.items() if name not in guarded),
        planned_outputs(images, volume_format) if guarded else set(),
        output_root,
        allow_removal,
    )
    rewritten = {name for name in changing if write_if_changed(paths.shard_list(name), texts[name])}
    index = dict(sorted(index.items()))
    write_if_changed(paths.shard_index, json.dumps(index, indent=1, sort_keys=True) + "\n")
    for name in index:
        if not paths.shard_rerun(name).exists():
            atomic_write_text(paths.shard_rerun(name), "0\n")
    if check_outputs:
        unchanged = {name: facts for name, facts in index.items() if name not in rewritten}
        for shard, reason in stale_results(paths, unchanged).items():
            print(f"dicomprep: shard {shard} runs again: {reason}", file=sys.stderr)
            atomic_write_text(paths.shard_rerun(shard), f"{time.time_ns()} {reason}\n")
    return list(index), catalog


def updated_catalog(source, paths: WorkPaths, rediscover: bool, **discovery) -> pd.DataFrame:
    """The catalog of ``source``: walked again (headers of unchanged files reused from the
    saved catalog, which is rewritten when it changed) unless ``rediscover`` is off and a
    saved one exists.  A source that holds no file is a SourceError."""
    previous = load_catalog(paths.catalog)
    if not rediscover and previous is not None:
        return previous
    catalog = build_catalog(source, previous, **discovery)
    require_files(source, int((catalog["status"] != MISSING).sum()))
    if previous is None or not catalog.equals(previous):
        save_catalog(catalog, paths.catalog)
    return catalog


def shard_texts(
    images: pd.DataFrame, shards: int, paths: WorkPaths
) -> tuple[dict[str, str], dict[str, dict]]:
    """The shard lists' texts and the shard index (files, image_mb per shard) of
    ``images`` bucketed into ``shards``; a shard that only the journals name (all its
    sources gone) gets an empty list, so that it runs once to remove their outputs."""
    images = images.assign(bucket_key=bucket_keys(images))
    keys = images["bucket_key"].tolist()
    buckets = pd.Series([shard_of(k, shards) for k in keys], index=images.index)
    index: dict[str, dict] = {}
    texts: dict[str, str] = {}
    for bucket, rows in images.groupby(buckets, sort=True):
        name = shard_name(int(bucket), shards)
        texts[name] = shard_list_text(rows.assign(cost=work_cost(rows)))
        index[name] = {"files": len(rows), "image_mb": estimate_image_mb(rows)}
    for name in journaled_shards(paths):
        if name not in index:
            texts[name] = "\t".join(SHARD_COLUMNS) + "\n"
            index[name] = {"files": 0, "image_mb": 0}
    return texts, index


def _saved_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def plan_stacks(images: pd.DataFrame, paths: WorkPaths, series: str) -> pd.DataFrame:
    """``images`` with the ``stack`` and ``slice`` of each file, and without the slices
    that repeat a position in their stack; writes ``series_report.csv`` (what did not
    fit a stack) to the work folder.  With ``series="files"`` no file is a stack's."""
    records = []
    images = images.assign(stack="", slice=0)
    if series == "stack":
        from dicomprep.series.stacks import DUPLICATE_POSITION, form_stacks

        first_copies = images[images["status"] == DICOM]
        stacks, records = form_stacks(placement_facts(first_copies))
        names, slices = {}, {}
        for stack in stacks:
            for index, path in enumerate(stack.paths):
                names[path], slices[path] = stack.name, index
        images["stack"] = images["path"].map(names).fillna("")
        images["slice"] = images["path"].map(slices).fillna(0).astype("int64")
        left_out = {p for r in records if r.kind == DUPLICATE_POSITION for p in r.paths}
        images = images[~images["path"].isin(left_out)]
    write_if_changed(paths.series_report, series_report_text(records))
    return images


def series_report_text(records) -> str:
    """``series_report.csv``: one row per thing about a series a user should know."""
    from dicomprep.series.stacks import REPORT_COLUMNS

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, REPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(record.to_row() for record in records)
    return buffer.getvalue()


def bucket_keys(images: pd.DataFrame) -> pd.Series:
    """The key each image is bucketed by: its study, except that every copy of a SOP
    Instance UID follows the first copy's study, and every slice of a stack its first
    slice's (so all copies, and all slices, meet in one shard)."""
    ordered = images.sort_values("path", kind="stable")
    first_study = ordered.groupby("sop_instance_uid", sort=False)["study_instance_uid"].transform(
        "first"
    )
    keys = first_study.reindex(images.index)
    stacked = images["stack"] != ""
    if stacked.any():
        heads = images[stacked & (images["slice"] == 0)]
        head_study = pd.Series(heads["study_instance_uid"].to_numpy(), index=heads["stack"])
        keys[stacked] = images.loc[stacked, "stack"].map(head_study)
    return keys


def shards_to_run(work: str | os.PathLike, shards: list[str]) -> list[str]:
    """The shards among ``shards`` whose job will run (by file times, as Snakemake sees
    them): no results yet, or a shard list or rerun token newer than the results."""
    paths = WorkPaths(Path(work))
    running = []
    for shard in shards:
        try:
            done = paths.shard_results(shard).stat().st_mtime_ns
        except OSError:
            running.append(shard)
            continue
        for newer in (paths.shard_list(shard), paths.shard_rerun(shard)):
            try:
                if newer.stat().st_mtime_ns > done:
                    running.append(shard)
                    break
            except OSError:
                pass
    return running


def journaled_shards(paths: WorkPaths) -> list[str]:
    """Shards whose journal records finished files."""
    if not paths.journals.is_dir():
        return []
    return sorted(j.stem for j in paths.journals.glob("*.jsonl") if j.stat().st_size > 0)


# What planning checks of the last results: every listed file, the outputs' size and mtime.
CHECKED_COLUMNS = ["status", "output", "output_size", "output_mtime_ns"]


def stale_results(paths: WorkPaths, index: dict) -> dict[str, str]:
    """Shards whose results file cannot be trusted any more, with the reason: the file
    is damaged (a torn or corrupt line, empty or short after a crash), or an output it
    lists was deleted or changed since it was written (compared by size and mtime, no
    TIFF is read)."""
    stale: dict[str, str] = {}
    for shard, facts in index.items():
        results = paths.shard_results(shard)
        if not results.exists():
            if not paths.journal(shard).exists():
                continue  # never ran yet: it runs anyway
            stale[shard] = f"its results file {results} is missing"
            continue
        table = cached_shard_table(results, columns=CHECKED_COLUMNS)
        if table is None:
            try:
                rows = read_results(results)
                table = pd.DataFrame(rows, columns=RESULT_COLUMNS, dtype=object)
            except DamagedStateFile as exc:
                stale[shard] = f"its results file is damaged ({exc})"
                continue
        listed = table[table["status"] != REMOVED]
        if len(listed) != facts["files"]:
            stale[shard] = (
                f"its results file {results} holds {len(listed)} of its {facts['files']} files"
            )
            continue
        done = listed[listed["status"] == "ok"]
        changed = [
            output
            for output, size, mtime_ns in zip(
                done["output"].tolist(),
                done["output_size"].tolist(),
                done["output_mtime_ns"].tolist(),
                strict=True,
            )
            if not _intact(output, size, mtime_ns)
        ]
        if changed:
            stale[shard] = (
                f"{len(changed)} output(s) deleted or changed since the last run, e.g. {changed[0]}"
            )
    return stale


def _intact(output, size, mtime_ns) -> bool:
    """True while an output is the one its shard wrote (same size and mtime)."""
    if "://" in str(output) and is_url(output):  # an object: size and LastModified
        from dicomprep.storage.transfer import output_intact

        return output_intact(output, size, mtime_ns)
    try:
        st = os.stat(output)
    except (OSError, TypeError):
        return False
    return st.st_size == size and st.st_mtime_ns == mtime_ns


NATIVE_TRANSFER_SYNTAXES = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}


def work_cost(rows: pd.DataFrame) -> pd.Series:
    """A relative estimate of each file's conversion work: its pixel count, times 4 when
    the pixels are compressed (decoding dominates then).  Shard jobs start files that
    cost far more than is typical first, so that no large volume is left running alone
    at the end."""
    frames = rows["number_of_frames"].fillna(1).clip(lower=1)
    pixels = rows["rows"].fillna(0) * rows["columns"].fillna(0) * frames
    compressed = ~rows["transfer_syntax"].isin(NATIVE_TRANSFER_SYNTAXES)
    return (pixels * (1 + 3 * compressed)).astype("int64")


JOURNAL_BUCKETING = "study"  # what journals are bucketed by, after the shard count


def rebucket_journals(paths: WorkPaths, shards: int) -> None:
    """Move journal records to the journals of their new shards when ``shards`` (or the
    bucketing key) changed, so that changing the shard count does not convert finished
    files again.

    The new journals are written in a folder beside the old ones (the bucketing last,
    marking it complete) and then swapped in; a planner killed at any point leaves either
    the old or the new journals, and the next run finishes or repeats the move.
    """
    journals = paths.journals
    fresh, retired = journals.with_name("journal.rebucket"), journals.with_name("journal.old")
    if not journals.exists() and retired.exists():  # killed while swapping
        complete = (fresh / "shards.txt").exists()
        (fresh if complete else retired).rename(journals)
    shutil.rmtree(retired, ignore_errors=True)
    bucketing = f"{shards} {JOURNAL_BUCKETING}\n"
    try:
        if paths.journal_shards.read_text() == bucketing:
            return
    except (OSError, UnicodeDecodeError):
        pass
    old = sorted(journals.glob("*.jsonl")) if journals.is_dir() else []
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir(parents=True)
    for journal in old:
        moved: dict[str, list[str]] = {}
        for line in iter_lines(journal):
            try:
                record = json.loads(line)
                key = record.get("bucket_key") or record["result"]["study_instance_uid"]
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # a torn or damaged line: that file is converted again
            if not key:
                continue
            name = shard_name(shard_of(key, shards), shards)
            moved.setdefault(name, []).append(line if line.endswith("\n") else line + "\n")
        for name, lines in moved.items():
            with open(fresh / f"{name}.jsonl", "a", encoding="utf-8") as out:
                out.writelines(lines)
    (fresh / "shards.txt").write_text(bucketing)
    if journals.exists():
        journals.rename(retired)
    fresh.rename(journals)
    shutil.rmtree(retired, ignore_errors=True)


def estimate_image_mb(rows: pd.DataFrame) -> int:
    """Memory one worker needs beyond the interpreter and libraries: the working copies of
    the shard's largest frame (decoded, mapped, resampled in float32)."""
    pixels = (rows["rows"] * rows["columns"]).max() if len(rows) else 0
    colour = rows["photometric_interpretation"].isin(["MONOCHROME1", "MONOCHROME2"])
    channels = 1 if bool(colour.all()) else 3
    return int(ceil(24 * int(pixels) * channels / 2**20))


BASE_MEM_MB = 300  # the job's own process (pandas-free imports)
BASE_WORKER_MEM_MB = 300  # one worker process
PARENT_KB_PER_FILE = 3  # the shard list entry, fingerprint and results row the parent holds


def run_started_ns(work: str | os.PathLike) -> int:
    """When the current run was planned (0 when unknown): shard results written after it
    come from this run."""
    try:
        return int(WorkPaths(Path(work)).run_started.read_text())
    except (OSError, ValueError):
        return 0


def _saved_index(work: str | os.PathLike) -> dict[str, dict]:
    try:
        return json.loads(WorkPaths(Path(work)).shard_index.read_text())
    except (OSError, ValueError):
        return {}


def saved_shards(work: str | os.PathLike) -> list[str]:
    """The shard names of the last plan (for processes that must not rediscover)."""
    return sorted(_saved_index(work))


def shard_resources(
    work: str | os.PathLike, shard: str, minimum_mem_mb: int, workers: int = 1
) -> dict[str, int]:
    """Resources of one shard job with ``workers`` processes: the interpreter and
    libraries, what the parent holds per file, and each worker's room for the shard's
    largest image; at least ``minimum_mem_mb``."""
    facts = _saved_index(work).get(shard, {})
    image_mb, files = int(facts.get("image_mb", 0)), int(facts.get("files", 0))
    estimate = (
        BASE_MEM_MB
        + ceil(files * PARENT_KB_PER_FILE / 1024)
        + workers * (BASE_WORKER_MEM_MB + image_mb)
    )
    return {"mem_mb": max(int(minimum_mem_mb), estimate)}


def non_dicom_paths(catalog: pd.DataFrame) -> list[str]:
    """Inputs that are not DICOM (what `strict` refuses)."""
    return catalog.loc[catalog["status"] == NOT_DICOM, "path"].tolist()
