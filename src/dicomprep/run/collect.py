"""Collecting a run: shard results to the manifest, the failures table and a summary.

Incremental: each shard's results are turned into a table (with every output's inode and
path relative to the dataset root) once, and cached beside the results file, keyed by
its size and mtime; a run re-reads only the shards that ran.  So adding a few studies
to a large dataset costs the new shards' rows plus writing the manifest, not a re-read
and a stat of every output.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dicomprep.core.durable import atomic_write_bytes, atomic_write_text
from dicomprep.core.records import OK, REMOVED, RESULT_COLUMNS
from dicomprep.core.records import read_results as read_shard_results
from dicomprep.formats.manifest import (
    MANIFEST_COLUMNS,
    manifest_frame,
    manifest_from_table,
    write_manifest,
)
from dicomprep.run.discover import load_catalog
from dicomprep.run.failures import (
    catalog_failures,
    counts,
    failures_frame,
    result_failures,
    write_failures,
)
from dicomprep.run.removal import record_removed
from dicomprep.storage.urls import is_url, relative_to_root


def output_exists(url: str) -> bool:
    """Whether an output object is still there (from a listing of its folder)."""
    from dicomprep.storage.transfer import output_exists as listed

    return listed(url)


# The cached table of one shard: its results plus where each output is and its inode.
SHARD_TABLE_COLUMNS = RESULT_COLUMNS + ["path", "inode"]
_TABLE_KEY = b"dicomprep.results"


def _table_cache(results_file: Path) -> Path:
    return results_file.with_name(results_file.name.replace(".jsonl", ".table.parquet"))


def cached_shard_table(
    results_file: str | os.PathLike,
    columns: list[str] | None = None,
    output_root: str | os.PathLike | None = None,
) -> pd.DataFrame | None:
    """The table :func:`shard_table` cached for ``results_file`` while it is current
    (made with ``output_root``, or with any output root when it is None), else None;
    only ``columns`` if given.  Planning reads it to check the last run's outputs
    without parsing every results line again."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    results_file = Path(results_file)
    try:
        st = results_file.stat()
        key = json.loads(pq.read_schema(_table_cache(results_file)).metadata[_TABLE_KEY])
        wanted = [st.st_size, st.st_mtime_ns]
        if output_root is not None:
            wanted.append(str(output_root))
        if key[: len(wanted)] == wanted:
            return pd.read_parquet(_table_cache(results_file), columns=columns)
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException):
        pass
    return None


def shard_table(results_file: str | os.PathLike, output_root: str | os.PathLike) -> pd.DataFrame:
    """The results of one shard as a table with ``path`` (relative to ``output_root``)
    and ``inode`` (-1 when the output is missing) for finished files; cached beside the
    results file (``.table.parquet``) and read from there while the results file and
    the output root are unchanged."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    results_file = Path(results_file)
    st = results_file.stat()
    key = json.dumps([st.st_size, st.st_mtime_ns, str(output_root)]).encode()
    cached = cached_shard_table(results_file, output_root=output_root)
    if cached is not None:
        return cached
    rows = read_shard_results(results_file)
    table = pd.DataFrame(rows, columns=RESULT_COLUMNS, dtype=object)  # ints stay exact
    paths, inodes = [], []
    for status, output in zip(table["status"], table["output"], strict=True):
        path, inode = "", -1
        if status == OK and output and is_url(output):  # an object: no inode (left empty)
            path = relative_to_root(output, output_root)
            inode = None if output_exists(output) else -1
        elif status == OK and output:
            path = relative_to_root(output, output_root)
            with contextlib.suppress(OSError):  # else removed since: not a finished TIFF
                inode = os.stat(output).st_ino
        paths.append(path)
        inodes.append(inode)
    table["path"], table["inode"] = paths, pd.array(inodes, dtype="Int64")
    for column in (
        "width",
        "height",
        "channels",
        "num_frames",
        "output_size",
        "output_mtime_ns",
        "page",
        "slices",
    ):
        # fill before converting: a column with gaps would pass through float64 and lose
        # the last digits of nanosecond mtimes
        numbers = pd.to_numeric(table[column].fillna(0), errors="coerce")
        table[column] = numbers.fillna(0).astype("int64")
    table["slices"] = table["slices"].clip(lower=1)
    for column in ("seconds", "position"):
        table[column] = pd.to_numeric(table[column], errors="coerce").fillna(0.0)
    table["reused"] = table["reused"].fillna(False).astype(bool)
    text = [c for c in SHARD_TABLE_COLUMNS if table[c].dtype == object]
    table[text] = table[text].fillna("").astype(str)
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), _TABLE_KEY: key})
    sink = pa.BufferOutputStream()
    pq.write_table(arrow, sink)
    atomic_write_bytes(_table_cache(results_file), sink.getvalue().to_pybytes())
    return table


def read_results(
    files: Iterable[str | os.PathLike], output_root: str | os.PathLike, since_ns: int = 0
) -> pd.DataFrame:
    """All shard results in one table (:func:`shard_table` of each file), with ``fresh``
    telling the rows of results files written after ``since_ns`` (a time in ns; by
    default always).

    Rows of other files are marked ``reused``: their shard did not run since then.  A
    damaged file raises :class:`~dicomprep.core.records.DamagedStateFile` naming it (the next
    run's planning makes that shard run again).
    """
    tables = []
    for f in files:
        fresh = os.stat(f).st_mtime_ns > since_ns
        table = shard_table(f, output_root)
        table["reused"] = table["reused"].fillna(False).astype(bool) | (not fresh)
        table["fresh"] = fresh
        tables.append(table)
    tables = [t for t in tables if len(t)]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def converted_outputs(results: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``results`` that finished an output, one per output: a stack's volume is
    the row of its first slice (the lowest position); the other slices' rows repeat its
    outcome (output, size, seconds) and are left out, so that each output counts once."""
    if not len(results):  # possibly without columns: no shard has results yet
        return results
    done = results[results["status"] == OK]
    if "stack" not in done.columns:  # a table of files only (results older than stacks)
        return done
    if "position" in done.columns:
        done = done.sort_values("position", kind="stable")
    return done[(done["stack"].fillna("") == "") | ~done.duplicated(subset="output")]


def manifest_table(results: pd.DataFrame) -> pd.DataFrame:
    """The manifest of the finished TIFFs in ``results`` (a :func:`read_results` table
    read with an output root)."""
    if not len(results):
        return manifest_frame([])
    done = converted_outputs(results)
    done = done[done["inode"].fillna(0) >= 0]
    table = pd.DataFrame(
        {
            "study_instance_uid": done["study_instance_uid"],
            "sop_instance_uid": done["sop_instance_uid"],
            "path": done["path"],
            "inode": done["inode"],
            "width": done["width"],
            "height": done["height"],
            "channels": done["channels"],
            "num_frames": done["num_frames"],
            "series_instance_uid": done["series_instance_uid"],
            "slices": done["slices"],
            "source": done["key"],
            # results from before the column (a cached shard table) have no warnings
            "warnings": done["warnings"] if "warnings" in done.columns else "",
        },
        columns=MANIFEST_COLUMNS,
    )
    return manifest_from_table(table)


def series_failures(series_report: str | os.PathLike) -> list[dict]:
    """Failures rows for the slices left out of their stack because another slice lies
    at the same position (they are in no shard list, so no shard reports them)."""
    from dicomprep.core.errors import ErrorType
    from dicomprep.series.stacks import DUPLICATE_POSITION

    report = pd.read_csv(series_report, dtype=str, keep_default_na=False)
    if "kind" not in report.columns:
        return []
    left_out = report[(report["kind"] == DUPLICATE_POSITION) & (report["paths"] != "")]
    return [
        {
            "path": record.paths,  # one path: the slice left out
            "status": "duplicate",
            "stage": "transform",
            "error_type": ErrorType.DUPLICATE_POSITION,
            "message": record.message,
        }
        for record in left_out.itertuples()
    ]


SLICES_COLUMNS = ["sop_instance_uid", "path", "page", "position", "source"]


def slices_table(results: pd.DataFrame) -> pd.DataFrame:
    """Where every slice of a stack went (``slices.csv``): its SOP Instance UID, the
    output's path relative to the dataset root, the page nearest to it and its position
    (mm along the slice normal), sorted by path then page."""
    if not len(results):
        return pd.DataFrame(columns=SLICES_COLUMNS)
    slices = results[(results["status"] == OK) & (results["stack"] != "")]
    table = pd.DataFrame(
        {
            "sop_instance_uid": slices["sop_instance_uid"],
            "path": slices["path"],
            "page": slices["page"],
            "position": slices["position"],
            "source": slices["key"],
        },
        columns=SLICES_COLUMNS,
    )
    return table.sort_values(["path", "page", "position"], kind="stable", ignore_index=True)


def _write_table(table: pd.DataFrame, csv_path, parquet_path=None) -> None:
    """A table as CSV (and Parquet), each written atomically."""
    atomic_write_text(csv_path, table.to_csv(index=False, lineterminator="\n"))
    if parquet_path is not None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pandas(table, preserve_index=False), sink)
        atomic_write_bytes(parquet_path, sink.getvalue().to_pybytes())


@dataclass
class Collected:
    """What collecting a run wrote, as tables (the QC report is built from them in the
    same process, without reading the files back)."""

    numbers: dict[str, int]
    results: pd.DataFrame  # every shard's results (:func:`read_results`)
    catalog: pd.DataFrame | None
    manifest: pd.DataFrame
    failures: pd.DataFrame
    summary: dict


def collect_run(
    results_files: Iterable[str | os.PathLike],
    catalog_path: str | os.PathLike,
    output_root: str | os.PathLike,
    manifest_csv: str | os.PathLike,
    manifest_parquet: str | os.PathLike,
    failures_csv: str | os.PathLike,
    summary_json: str | os.PathLike,
    run_started_ns: int = 0,
    *,
    slices_csv: str | os.PathLike | None = None,
    slices_parquet: str | os.PathLike | None = None,
    series_report: str | os.PathLike | None = None,
    series_report_csv: str | os.PathLike | None = None,
) -> Collected:
    """Write manifest (CSV + Parquet), failures, slices, series report and a JSON
    summary; return them as tables with the counts.

    The outputs this run's shards removed are appended to ``removed.txt`` beside the
    summary (the work folder, see :mod:`dicomprep.run.removal`); ``removed_now`` counts
    them.  ``converted_now`` and ``seconds_now`` count the outputs (a stack's volume once) written
    by shard jobs whose results were written after ``run_started_ns`` (when this run was
    planned), and the seconds they took; ``reused`` the outputs kept from earlier runs.
    """
    results = read_results(results_files, output_root, since_ns=run_started_ns)
    catalog = load_catalog(catalog_path)
    manifest = manifest_table(results)
    write_manifest(manifest, manifest_csv, normalised=True)
    write_manifest(manifest, manifest_parquet, normalised=True)
    if slices_csv is not None:
        _write_table(slices_table(results), slices_csv, slices_parquet)
    report_rows = []
    if series_report_csv is not None:
        text = Path(series_report).read_text() if series_report else ""
        atomic_write_text(series_report_csv, text or "kind\n")
        report_rows = series_failures(series_report) if series_report else []
    records = results[results["status"] != OK].to_dict("records") if len(results) else []
    removed = [
        r
        for r in records
        if r["status"] == REMOVED and r["fresh"] and r.get("message") != KEPT_ORPHAN
    ]
    failures = failures_frame(
        (catalog_failures(catalog) if catalog is not None else [])
        + result_failures(records)
        + report_rows
    )
    write_failures(failures, failures_csv)
    numbers = counts(len(manifest), failures)
    fresh = converted_outputs(results)
    fresh = fresh[~fresh["reused"]] if len(fresh) else fresh
    numbers["converted_now"] = len(fresh)
    numbers["reused"] = numbers["processed"] - numbers["converted_now"]
    numbers["seconds_now"] = round(float(fresh["seconds"].sum()), 3) if len(fresh) else 0.0
    numbers["removed_now"] = record_removed(
        Path(summary_json).parent, [r["output"] for r in removed], run_started_ns
    )
    summary = {
        **numbers,
        "output": str(output_root),
        "failures": str(failures_csv),
        "removed": [r["output"] for r in removed[:SUMMARY_REMOVED_SHOWN]],
    }
    atomic_write_text(summary_json, json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return Collected(numbers, results, catalog, manifest, failures, summary)


KEPT_ORPHAN = "kept (keep_orphans)"  # the results row of an orphan kept on disk
SUMMARY_REMOVED_SHOWN = 20  # removed outputs named in the summary (all are in the logs)


def current_summary(summary_json: str | os.PathLike, run_started_ns: int) -> dict | None:
    """The run summary to report at the end of a run (None before the first collect).

    When collect did not run in this run (Snakemake found nothing to do), the summary
    collect wrote last still counts that run's conversions and removals; it is rewritten
    with nothing converted or removed now, so the summary always speaks of the run that
    just ended.
    """
    path = Path(summary_json)
    try:
        written = path.stat().st_mtime_ns
        numbers = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if (
        run_started_ns
        and written < run_started_ns
        and (numbers.get("converted_now") or numbers.get("removed_now"))
    ):
        numbers.update(converted_now=0, seconds_now=0.0, removed_now=0, removed=[])
        numbers["reused"] = numbers.get("processed", 0)
        atomic_write_text(path, json.dumps(numbers, indent=2, sort_keys=True) + "\n")
    return numbers
