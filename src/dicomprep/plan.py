"""Planning a workflow run: update the catalog and split the DICOM files into shards.

Called once per run by the workflow's main process.  Shard lists are rewritten only
when their content changes, so Snakemake reruns exactly the shards that gained, lost or
changed files.  The list of non-empty shards is saved beside them so that cluster jobs
never walk the source again.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from dataclasses import dataclass
from math import ceil
from pathlib import Path

import pandas as pd

from .discover import (
    DICOM,
    NOT_DICOM,
    build_catalog,
    load_catalog,
    save_catalog,
    shard_key,
    shard_of,
)
from .shard_list import shard_list_text, write_if_changed


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
        """The shard count the journals are bucketed by."""
        return self.journals / "shards.txt"


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
    handle = open(path, "a")  # noqa: SIM115 - held open until the process exits
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise WorkFolderLocked(
            f"Directory cannot be locked: another dicomprep run is using the work folder "
            f"{work}; wait for it to finish (this lock is released when that process ends)"
        ) from None
    _HELD_LOCKS[str(path)] = handle


def shard_name(index: int, shards: int) -> str:
    """``s0007``-style names, zero-padded to the width of the shard count."""
    return f"s{index:0{max(4, len(str(shards - 1)))}d}"


def plan_shards(
    source: str | os.PathLike,
    work: str | os.PathLike,
    shards: int,
    *,
    follow_symlinks: bool = False,
    rediscover: bool = True,
    processes: int = 1,
) -> tuple[list[str], pd.DataFrame]:
    """Update the catalog and shard lists; return the non-empty shards and the catalog.

    Takes the work folder's lock first (see :func:`lock_work_folder`).
    """
    lock_work_folder(work)
    paths = WorkPaths(Path(work))
    write_if_changed(paths.run_started, f"{time.time_ns()}\n")
    previous = load_catalog(paths.catalog)
    if rediscover or previous is None:
        catalog = build_catalog(
            source, previous, follow_symlinks=follow_symlinks, processes=processes
        )
        if previous is None or not catalog.equals(previous):
            save_catalog(catalog, paths.catalog)
    else:
        catalog = previous
    rebucket_journals(paths, source, shards)
    dicom = catalog[catalog["status"] == DICOM]
    buckets = [shard_of(shard_key(p, source), shards) for p in dicom["path"]]
    index: dict[str, dict] = {}
    for bucket, rows in dicom.groupby(pd.Series(buckets, index=dicom.index), sort=True):
        name = shard_name(int(bucket), shards)
        write_if_changed(paths.shard_list(name), shard_list_text(rows.assign(cost=work_cost(rows))))
        index[name] = {"files": len(rows), "image_mb": estimate_image_mb(rows)}
    write_if_changed(paths.shard_index, json.dumps(index, indent=1, sort_keys=True) + "\n")
    return list(index), catalog


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


def rebucket_journals(paths: WorkPaths, source: str | os.PathLike, shards: int) -> None:
    """Move journal records to the journals of their new shards when ``shards`` changed,
    so that changing the shard count does not convert finished files again.

    The new journals are written in a folder beside the old ones (the shard count last,
    marking it complete) and then swapped in; a planner killed at any point leaves either
    the old or the new journals, and the next run finishes or repeats the move.
    """
    journals = paths.journals
    fresh, retired = journals.with_name("journal.rebucket"), journals.with_name("journal.old")
    if not journals.exists() and retired.exists():  # killed while swapping
        complete = (fresh / "shards.txt").exists()
        (fresh if complete else retired).rename(journals)
    shutil.rmtree(retired, ignore_errors=True)
    try:
        previous = int(paths.journal_shards.read_text())
    except (OSError, ValueError):
        previous = None
    if previous == shards:
        return
    old = sorted(journals.glob("*.jsonl")) if journals.is_dir() else []
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir(parents=True)
    for journal in old:
        moved: dict[str, list[str]] = {}
        with open(journal, encoding="utf-8") as f:
            for line in f:
                try:
                    key = shard_key(json.loads(line)["source"], source)
                except (ValueError, KeyError, TypeError):
                    continue  # a torn last line
                name = shard_name(shard_of(key, shards), shards)
                moved.setdefault(name, []).append(line if line.endswith("\n") else line + "\n")
        for name, lines in moved.items():
            with open(fresh / f"{name}.jsonl", "a", encoding="utf-8") as out:
                out.writelines(lines)
    (fresh / "shards.txt").write_text(f"{shards}\n")
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
    libraries plus each worker's room for the shard's largest image, at least
    ``minimum_mem_mb``."""
    image_mb = int(_saved_index(work).get(shard, {}).get("image_mb", 0))
    estimate = BASE_MEM_MB + workers * (BASE_WORKER_MEM_MB + image_mb)
    return {"mem_mb": max(int(minimum_mem_mb), estimate)}


def non_dicom_paths(catalog: pd.DataFrame) -> list[str]:
    """Inputs that are not DICOM (what `strict` refuses)."""
    return catalog.loc[catalog["status"] == NOT_DICOM, "path"].tolist()
