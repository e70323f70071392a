"""The failures table and the run summary (docs/output-format.md).

Every input that did not become a TIFF gets one row: its path, a ``status`` (``skipped``
for non-DICOM and image-less files, ``duplicate``, ``failed``), the stage where that was
decided (discover, decode, transform, write), the error type and a one-line message.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping

import pandas as pd

from dicomprep.core.durable import atomic_write_text
from dicomprep.core.errors import ErrorType
from dicomprep.core.records import OK, REMOVED
from dicomprep.run.discover import (
    DICOM,
    DUPLICATE,
    INVALID_UID,
    MISSING,
    NO_PIXELS,
    NOT_DICOM,
    REPORT_STATUS,
    UNREADABLE,
)

FAILURE_COLUMNS = ["path", "status", "stage", "error_type", "message"]


def catalog_failures(catalog: pd.DataFrame) -> list[dict]:
    """Rows for catalog entries that are not converted (found at discovery).

    Duplicates are not among them: every copy goes to its shard, which reports the
    copies that did not become the image (a failing first copy does not cost it)."""
    rows = []
    for entry in catalog[~catalog["status"].isin([DICOM, DUPLICATE])].itertuples(index=False):
        rows.append(
            {
                "path": entry.path,
                "status": REPORT_STATUS.get(entry.status, "failed"),
                "stage": "discover",
                "error_type": catalog_error_type(entry.error_type, entry.status),
                "message": entry.reason,
            }
        )
    return rows


def result_failures(results: Iterable[Mapping]) -> list[dict]:
    """Rows for processing results that did not end in a TIFF."""
    return [
        {
            "path": r["source"],
            "status": r["status"],
            "stage": r["stage"],
            "error_type": r["error_type"],
            "message": r["message"],
        }
        for r in results
        if r["status"] not in (OK, REMOVED)
    ]


def failures_frame(rows: Iterable[Mapping]) -> pd.DataFrame:
    """The failures table: one row per path (first record wins), sorted by path."""
    df = pd.DataFrame(list(rows), columns=FAILURE_COLUMNS).fillna("").astype(str)
    df = df.drop_duplicates("path", keep="first")
    return df.sort_values("path", kind="stable").reset_index(drop=True)


def write_failures(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write the failures table as CSV, atomically."""
    text = df.to_csv(index=False, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    atomic_write_text(path, text)


def counts(processed: int, failures: pd.DataFrame) -> dict[str, int]:
    """Processed / skipped / duplicate / failed counts."""
    by_status = failures["status"].value_counts().to_dict() if len(failures) else {}
    return {
        "processed": int(processed),
        "skipped": int(by_status.get("skipped", 0)),
        "duplicate": int(by_status.get("duplicate", 0)),
        "failed": int(by_status.get("failed", 0)),
    }


def summary_line(numbers: Mapping[str, int], output: str | os.PathLike) -> str:
    """One line for the end of a run, saying what this run did: the outputs it converted
    (``converted_now``; all of ``processed`` when not given), those kept from earlier
    runs (``reused``), the outputs it removed (``removed_now``), and the inputs that
    failed, were skipped or were duplicates."""
    now = numbers.get("converted_now", numbers["processed"])
    reused = numbers.get("reused", numbers["processed"] - now)
    return (
        f"dicomprep: {now} converted now, {reused} reused, {numbers.get('removed_now', 0)} "
        f"removed, {numbers['failed']} failed, {numbers['skipped']} skipped, "
        f"{numbers['duplicate']} duplicate; outputs in {output}"
    )


def strict_violations(failures_csv: str | os.PathLike) -> list[str]:
    """Lines naming every failed or non-DICOM input (what `strict` refuses).

    Duplicates and DICOM objects without pixel data are not violations."""
    df = pd.read_csv(failures_csv, dtype=str, keep_default_na=False)
    return [
        f"{r.status}: {r.path} [{r.stage}] {r.error_type}: {r.message}"
        for r in df.itertuples(index=False)
        if r.status == "failed" or r.error_type in NOT_DICOM_TYPES
    ]


NOT_DICOM_TYPES = (ErrorType.NOT_DICOM, ErrorType.EMPTY_FILE)

#: The error type a catalog status implies, for a row without one of the vocabulary (a
#: catalog saved by an earlier version, whose rows are reused for unchanged files).
STATUS_ERROR_TYPES = {
    NOT_DICOM: ErrorType.NOT_DICOM,
    NO_PIXELS: ErrorType.NO_PIXEL_DATA,
    INVALID_UID: ErrorType.INVALID_UID,
    UNREADABLE: ErrorType.INVALID_HEADER,
    MISSING: ErrorType.FILE_NOT_FOUND,
    DUPLICATE: ErrorType.DUPLICATE_SOP_INSTANCE_UID,
}
_VOCABULARY = frozenset(ErrorType)


def catalog_error_type(error_type: str, status: str) -> ErrorType:
    """A catalog row's error type: its own when it is one of :class:`ErrorType`, else the
    one its ``status`` implies (:data:`STATUS_ERROR_TYPES`; InvalidHeader otherwise)."""
    if error_type in _VOCABULARY:
        return ErrorType(error_type)
    return STATUS_ERROR_TYPES.get(status, ErrorType.INVALID_HEADER)
