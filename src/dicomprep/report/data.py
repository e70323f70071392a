"""The run's tables for the QC report: what a workflow run left behind, as pandas tables.

:func:`load_run` reads the manifest, the failures table, the run summary, the header catalog
and the shard results; :func:`instance_table` joins them into one row per input;
the other functions summarise that table (counts per modality, sizes, studies) or pick the
files the report shows (:func:`choose_samples`).  No function here reads a header value that
names or identifies a patient: the catalog holds UIDs, modalities and sizes only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dicomprep.formats.manifest import read_manifest
from dicomprep.report.sampling import NO_MODALITY, sample_key, volume_label
from dicomprep.run.collect import read_results
from dicomprep.run.discover import DICOM, REPORT_STATUS, empty_catalog, load_catalog

__all__ = [
    "NO_MODALITY",
    "STATUSES",
    "Run",
    "choose_samples",
    "common_folder",
    "first_by_key",
    "in_sample_order",
    "instance_table",
    "load_run",
    "modality_counts",
    "relative_to",
    "run_tables",
    "sample_key",
    "size_distribution",
    "source_size_distribution",
    "study_series",
    "volume_label",
]

# Statuses of an input in the report, in display order ("pending": found by discovery but
# not converted yet, e.g. a report built while shards are missing).
STATUSES = ("processed", "skipped", "duplicate", "failed", "pending")

# The order of the "not converted" table: the problems first.
FAILURE_ORDER = ("failed", "pending", "duplicate", "skipped")


RESULT_COLUMNS = ["source", "status", "output", "seconds", "reused"]
# What the report reads of the shard results and of the catalog (the rest is not copied).
RESULT_COLUMNS_USED = {*RESULT_COLUMNS, "path", "output_size"}
CATALOG_COLUMNS_USED = {
    "path",
    "status",
    "modality",
    "study_instance_uid",
    "series_instance_uid",
    "sop_instance_uid",
    "rows",
    "columns",
    "number_of_frames",
    "size",
}
FAILURE_COLUMNS = ["path", "status", "stage", "error_type", "message"]


@dataclass
class Run:
    """The tables of one finished run."""

    output_root: Path
    catalog: pd.DataFrame
    results: pd.DataFrame
    manifest: pd.DataFrame
    failures: pd.DataFrame
    summary: dict


def load_run(
    output_root: str | os.PathLike,
    *,
    manifest_csv: str | os.PathLike,
    failures_csv: str | os.PathLike,
    summary_json: str | os.PathLike | None,
    catalog: str | os.PathLike | None,
    results: Iterable[str | os.PathLike] = (),
    results_root: str | None = None,
) -> Run:
    """Read the manifest, failures, summary, catalog and shard results of a run.

    ``results_root`` is the output root collect was given (a bucket URL when the TIFFs went
    to object storage; by default ``output_root``): the shard results' output paths are
    taken relative to it, and the tables collect cached beside each results file for it
    are read instead of the results themselves."""
    manifest = read_manifest(manifest_csv)
    failures = pd.read_csv(failures_csv, dtype=str, keep_default_na=False)
    summary = {}
    if summary_json is not None and Path(summary_json).exists():
        summary = json.loads(Path(summary_json).read_text())
    return run_tables(
        output_root,
        manifest=manifest,
        failures=failures,
        summary=summary,
        catalog=load_catalog(catalog) if catalog is not None else None,
        results=read_results(list(results), output_root if results_root is None else results_root),
    )


def run_tables(
    output_root: str | os.PathLike,
    *,
    manifest: pd.DataFrame,
    failures: pd.DataFrame,
    summary: dict,
    catalog: pd.DataFrame | None,
    results: pd.DataFrame,
) -> Run:
    """A :class:`Run` of tables already in memory (those collect has just written)."""
    failures = failures.reindex(columns=FAILURE_COLUMNS).fillna("")
    table = catalog if catalog is not None else empty_catalog()
    table = table[[c for c in table.columns if c in CATALOG_COLUMNS_USED]]
    if not len(results):
        results = pd.DataFrame(columns=RESULT_COLUMNS)
    res = results[[c for c in results.columns if c in RESULT_COLUMNS_USED]].copy()
    res["seconds"] = pd.to_numeric(res["seconds"], errors="coerce").fillna(0.0)
    res["reused"] = res["reused"].fillna(False).astype(bool)
    return Run(
        Path(output_root),
        _plain_strings(table),
        _plain_strings(res),
        _plain_strings(manifest),
        _plain_strings(failures),
        dict(summary),
    )


def _plain_strings(df: pd.DataFrame) -> pd.DataFrame:
    """Text columns as Python strings (object dtype): faster to look up in bulk."""
    text = [c for c in df.columns if isinstance(df[c].dtype, pd.StringDtype)]
    return df.astype({c: object for c in text}) if text else df


def instance_table(run: Run) -> pd.DataFrame:
    """One row per input path: its modality, status, UIDs, source and output facts.

    The status comes from the failures table when the path is listed there, else
    ``processed`` when its SOP Instance UID is in the manifest, else ``pending``.
    """
    cat = run.catalog
    failed_status = dict(zip(run.failures["path"], run.failures["status"], strict=True))
    done = set(run.manifest["sop_instance_uid"])
    is_dicom = cat["status"] == DICOM
    fallback = np.where(
        is_dicom,
        np.where(cat["sop_instance_uid"].isin(done), "processed", "pending"),
        cat["status"].map(REPORT_STATUS).fillna("failed"),
    )
    status = cat["path"].map(failed_status)
    status = status.where(status.notna(), pd.Series(fallback, index=cat.index))
    table = pd.DataFrame(
        {
            "path": cat["path"],
            "status": status.astype(str),
            "modality": cat["modality"].replace("", NO_MODALITY),
            "study_instance_uid": cat["study_instance_uid"],
            "series_instance_uid": cat["series_instance_uid"],
            "sop_instance_uid": cat["sop_instance_uid"],
            "source_width": cat["columns"],
            "source_height": cat["rows"],
            "source_frames": np.where(cat["rows"] > 0, cat["number_of_frames"].clip(lower=1), 0),
            "source_bytes": cat["size"],
        }
    )
    extra = run.failures[~run.failures["path"].isin(set(cat["path"]))]
    if len(extra):  # failures of paths the catalog does not know (catalog missing)
        rows = pd.DataFrame({"path": extra["path"], "status": extra["status"]})
        rows["modality"] = NO_MODALITY
        table = pd.concat([table, rows], ignore_index=True)
    table = table.fillna({c: "" for c in table.columns if table[c].dtype == object})
    for column in ("source_width", "source_height", "source_frames", "source_bytes"):
        table[column] = pd.to_numeric(table[column], errors="coerce").fillna(0).astype("int64")

    out = run.manifest.rename(columns={"path": "tiff"})[
        ["sop_instance_uid", "tiff", "width", "height", "channels", "num_frames"]
    ].drop_duplicates("sop_instance_uid")
    processed = table["status"] == "processed"
    merged = table[processed].merge(out, on="sop_instance_uid", how="left")
    merged.index = table.index[processed]
    for column in ("tiff", "width", "height", "channels", "num_frames"):
        table[column] = merged[column]
    table["tiff"] = table["tiff"].fillna("")
    for column in ("width", "height", "channels", "num_frames"):
        table[column] = table[column].fillna(0).astype("int64")
    table["tiff_bytes"] = _file_sizes(run.output_root, table["tiff"], _recorded_sizes(run))
    seconds = dict(zip(run.results["source"], run.results["seconds"], strict=True))
    table["seconds"] = table["path"].map(seconds).fillna(0.0).astype(float)
    return table


def _recorded_sizes(run: Run) -> dict[str, int]:
    """The byte sizes of the outputs as the shards recorded them (by path relative to
    the output root; planning makes a shard run again when one of its outputs changed)."""
    res = run.results
    if "output_size" not in res or "path" not in res:
        return {}
    sizes = pd.to_numeric(res["output_size"], errors="coerce").fillna(0).astype("int64")
    done = (res["status"] == "ok") & (sizes > 0)
    return dict(zip(res["path"][done], sizes[done], strict=True))


def _file_sizes(root: Path, relatives: Iterable[str], recorded: dict[str, int]) -> list[int]:
    """Sizes of the files ``root/relative``: as recorded, else from the file system (0
    for '' and for missing files)."""
    base = os.fspath(root) + os.sep
    sizes = []
    for relative in relatives:
        size = recorded.get(relative)
        if size is None:
            try:
                size = os.stat(base + relative).st_size if relative else 0
            except OSError:
                size = 0
        sizes.append(int(size))
    return sizes


def modality_counts(instances: pd.DataFrame) -> pd.DataFrame:
    """Inputs per modality and status, with TIFF bytes, output frames and seconds."""
    if not len(instances):
        return pd.DataFrame(columns=["modality", *STATUSES, "tiff_bytes", "frames", "seconds"])
    counts = pd.crosstab(instances["modality"], instances["status"])
    counts = counts.reindex(columns=list(STATUSES), fill_value=0)
    sums = instances.groupby("modality")[["tiff_bytes", "num_frames", "seconds"]].sum()
    table = counts.join(sums).rename(columns={"num_frames": "frames"})
    table = table.reset_index().rename(columns={"index": "modality"})
    return table.sort_values("modality", kind="stable").reset_index(drop=True)


def size_distribution(manifest: pd.DataFrame) -> pd.DataFrame:
    """Output files per (width, height, channels), most frequent first."""
    columns = ["width", "height", "channels", "files", "frames"]
    if not len(manifest):
        return pd.DataFrame(columns=columns)
    grouped = manifest.groupby(["width", "height", "channels"])
    table = grouped.agg(files=("sop_instance_uid", "size"), frames=("num_frames", "sum"))
    table = table.reset_index()
    order = table.sort_values(["files", "width", "height"], ascending=[False, True, True])
    return order.reset_index(drop=True)[columns]


def source_size_distribution(instances: pd.DataFrame) -> pd.DataFrame:
    """Processed inputs per (modality, source width, source height), most frequent first."""
    done = instances[instances["status"] == "processed"]
    columns = ["modality", "source_width", "source_height", "files"]
    if not len(done):
        return pd.DataFrame(columns=columns)
    table = done.groupby(["modality", "source_width", "source_height"]).size()
    table = table.reset_index(name="files")
    table = table.sort_values(["files", "modality"], ascending=[False, True], kind="stable")
    return table.reset_index(drop=True)[columns]


# -- which files the report looks at ----------------------------------------------------


def in_sample_order(instances: pd.DataFrame) -> pd.DataFrame:
    """The rows that became a TIFF, in :func:`sample_key` order."""
    if not len(instances):
        return instances
    done = instances[(instances["status"] == "processed") & (instances["tiff"] != "")]
    uids = done["sop_instance_uid"].tolist()
    return done.iloc[sorted(range(len(uids)), key=lambda i: sample_key(uids[i]))]


def choose_samples(
    instances: pd.DataFrame, per_modality: int, *, ordered: bool = False
) -> dict[str, pd.DataFrame]:
    """Per modality (sorted by name), the processed rows with the smallest
    :func:`sample_key` values, in that order.  ``ordered``: ``instances`` already is
    :func:`in_sample_order`'s result (saves hashing again)."""
    if per_modality <= 0 or not len(instances):
        return {}
    done = instances if ordered else in_sample_order(instances)
    return {
        str(modality): group.head(per_modality)
        for modality, group in done.groupby("modality", sort=True)
    }


def first_by_key(instances: pd.DataFrame, limit: int, *, ordered: bool = False) -> pd.DataFrame:
    """Up to ``limit`` processed rows (all modalities) with the smallest :func:`sample_key`:
    a fixed subsample, the same on every run (``ordered`` as for :func:`choose_samples`)."""
    done = instances if ordered else in_sample_order(instances)
    return done.head(max(limit, 0))


# -- studies -----------------------------------------------------------------------------


@dataclass
class SeriesFacts:
    """What one series of a study holds: modalities, statuses, frames and sizes."""

    modalities: set = field(default_factory=set)
    statuses: dict = field(default_factory=dict)
    instances: int = 0
    source_frames: int = 0
    source_sizes: set = field(default_factory=set)
    output_frames: int = 0
    output_sizes: set = field(default_factory=set)


def study_series(instances: pd.DataFrame, studies: Iterable[str]) -> dict[str, dict]:
    """Per study (of ``studies``) and series: a :class:`SeriesFacts`."""
    wanted = set(studies)
    rows = instances[instances["study_instance_uid"].isin(wanted)]
    table: dict[str, dict[str, SeriesFacts]] = {}
    columns = [
        "study_instance_uid",
        "series_instance_uid",
        "modality",
        "status",
        "source_frames",
        "source_width",
        "source_height",
        "num_frames",
        "width",
        "height",
    ]
    for study, series, modality, status, frames, sw, sh, out_frames, w, h in zip(
        *(rows[c].tolist() for c in columns), strict=True
    ):
        entry = table.setdefault(study, {}).setdefault(series, SeriesFacts())
        entry.modalities.add(modality)
        entry.statuses[status] = entry.statuses.get(status, 0) + 1
        entry.instances += 1
        entry.source_frames += int(frames)
        entry.source_sizes.add((int(sw), int(sh)))
        if status == "processed":
            entry.output_frames += int(out_frames)
            entry.output_sizes.add((int(w), int(h)))
    return table


# -- paths shown in the report -----------------------------------------------------------


def common_folder(paths: Iterable[str]) -> str:
    """The deepest folder that holds every path ('' when they share none)."""
    paths = [str(p) for p in paths if p]
    if not paths:
        return ""
    prefix = os.path.commonprefix([min(paths), max(paths)])  # shared by all paths
    return prefix[: prefix.rfind("/")] if "/" in prefix else ""


def relative_to(path: str, folder: str) -> str:
    """``path`` relative to ``folder`` when inside it, else unchanged."""
    if folder and path.startswith(folder.rstrip("/") + "/"):
        return path[len(folder.rstrip("/")) + 1 :]
    return path


def strip_folder(text: str, folder: str) -> str:
    """``text`` (an error message) with every ``folder/`` prefix removed."""
    if not folder or folder == "/":
        return text
    return text.replace(folder.rstrip("/") + "/", "")
