"""Collecting a run: shard results to the manifest, the failures table and a summary."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from .discover import load_catalog
from .durable import atomic_write_text
from .failures import catalog_failures, counts, failures_frame, result_failures, write_failures
from .manifest import manifest_frame, write_manifest
from .records import OK, REMOVED, RESULT_COLUMNS
from .records import read_results as read_shard_results


def read_results(files: Iterable[str | os.PathLike], since_ns: int = 0) -> pd.DataFrame:
    """All shard results in one table, with ``fresh`` telling the rows of results
    files written after ``since_ns`` (a time in ns; by default always).

    Rows of other files are marked ``reused``: their shard did not run since then.  A
    damaged file raises :class:`~dicomprep.records.DamagedStateFile` naming it (the next
    run's planning makes that shard run again).
    """
    rows = []
    for f in files:
        fresh = os.stat(f).st_mtime_ns > since_ns
        for row in read_shard_results(f):
            row["reused"] = bool(row.get("reused")) or not fresh
            row["fresh"] = fresh
            rows.append(row)
    return pd.DataFrame(rows, columns=RESULT_COLUMNS + ["fresh"]) if rows else pd.DataFrame()


def manifest_rows(results: pd.DataFrame, output_root: str | os.PathLike) -> list[dict]:
    """Manifest records of the finished TIFFs (inode read from the file)."""
    root = Path(output_root)
    rows = []
    if not len(results):
        return rows
    for r in results[results["status"] == OK].itertuples(index=False):
        output = Path(r.output)
        try:
            inode = os.stat(output).st_ino
        except OSError:
            continue  # removed since: not a finished TIFF any more
        rows.append(
            {
                "study_instance_uid": r.study_instance_uid,
                "sop_instance_uid": r.sop_instance_uid,
                "path": Path(os.path.relpath(output, root)).as_posix(),
                "inode": inode,
                "width": int(r.width),
                "height": int(r.height),
                "channels": int(r.channels),
                "num_frames": int(r.num_frames),
                "series_instance_uid": r.series_instance_uid or "",
                "slices": 1,
                "source": r.key or "",
            }
        )
    return rows


def collect(
    results_files: Iterable[str | os.PathLike],
    catalog_path: str | os.PathLike,
    output_root: str | os.PathLike,
    manifest_csv: str | os.PathLike,
    manifest_parquet: str | os.PathLike,
    failures_csv: str | os.PathLike,
    summary_json: str | os.PathLike,
    run_started_ns: int = 0,
) -> dict[str, int]:
    """Write manifest (CSV + Parquet), failures and a JSON summary; return the counts.

    ``converted_now`` and ``seconds_now`` count the files converted by shard jobs whose
    results were written after ``run_started_ns`` (when this run was planned).
    """
    results = read_results(results_files, since_ns=run_started_ns)
    catalog = load_catalog(catalog_path)
    manifest = manifest_frame(manifest_rows(results, output_root))
    write_manifest(manifest, manifest_csv)
    write_manifest(manifest, manifest_parquet)
    records = results.to_dict("records") if len(results) else []
    removed = [r for r in records if r["status"] == REMOVED and r["fresh"]]
    failures = failures_frame(
        (catalog_failures(catalog) if catalog is not None else []) + result_failures(records)
    )
    write_failures(failures, failures_csv)
    numbers = counts(len(manifest), failures)
    fresh = results[(results["status"] == OK) & ~results["reused"]] if len(results) else results
    numbers["converted_now"] = len(fresh)
    numbers["reused"] = numbers["processed"] - numbers["converted_now"]
    numbers["seconds_now"] = round(float(fresh["seconds"].sum()), 3) if len(fresh) else 0.0
    numbers["removed_now"] = len(removed)
    summary = {
        **numbers,
        "output": str(output_root),
        "failures": str(failures_csv),
        "removed": [r["output"] for r in removed[:SUMMARY_REMOVED_SHOWN]],
    }
    atomic_write_text(summary_json, json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return numbers


SUMMARY_REMOVED_SHOWN = 20  # removed outputs named in the summary (all are in the logs)
