"""Catalog rows: the statuses an input can have and the row of one input read from its
header (stat, status, the header facts users filter on, where the image lies).

Discovery (:mod:`.discover`, :mod:`.object_discovery`) builds the catalog from these
rows; only the header is read (parsing stops at the pixel data element).
"""

from __future__ import annotations

import errno
import os
import stat as stat_mode
import warnings
from pathlib import Path

import pandas as pd

from dicomprep.core.errors import (
    DicomError,
    ErrorType,
    NotDicomError,
    one_line,
    with_detail,
)
from dicomprep.core.records import DUPLICATE
from dicomprep.formats.failures import os_error_type
from dicomprep.formats.uids import describe_invalid_uid, is_valid_uid
from dicomprep.run.walk import BROKEN_LINK, LINK_SKIPPED, LOOP_FIELDS, SPECIAL, not_regular_fields

# Statuses of catalog rows.  Only DICOM rows are converted.
DICOM = "dicom"
NOT_DICOM = "not_dicom"
NO_PIXELS = "no_pixels"
INVALID_UID = "invalid_uid"
UNREADABLE = "unreadable"
MISSING = "missing"
# and SPECIAL, LINK_SKIPPED, BROKEN_LINK: what the walk of a folder passes over (run.walk)

# The status column of the failures table for each catalog status.
REPORT_STATUS = {
    NOT_DICOM: "skipped",
    NO_PIXELS: "skipped",
    DUPLICATE: "duplicate",
    INVALID_UID: "failed",
    UNREADABLE: "failed",
    MISSING: "failed",
    SPECIAL: "skipped",
    LINK_SKIPPED: "skipped",
    BROKEN_LINK: "failed",
}
# Rows that are made again on every walk, never reused from the previous catalog.
NOT_REUSED = (MISSING, SPECIAL, LINK_SKIPPED, BROKEN_LINK)

HEADER_FIELDS = {
    "study_instance_uid": "StudyInstanceUID",
    "series_instance_uid": "SeriesInstanceUID",
    "sop_instance_uid": "SOPInstanceUID",
    "modality": "Modality",
    "rows": "Rows",
    "columns": "Columns",
    "number_of_frames": "NumberOfFrames",
    "photometric_interpretation": "PhotometricInterpretation",
}


class SourceError(ValueError):
    """The source itself is unusable (missing, or a non-DICOM input under `strict`)."""


# -- reading one header -------------------------------------------------------------


def catalog_entry(path: str | os.PathLike) -> dict:
    """One catalog row for ``path``: stat, status, and header fields when DICOM."""
    # pydicom is imported where headers are read, not by everything that reads the catalog
    from dicomprep.formats.decode import read_header

    path = Path(path)
    row: dict = {"path": str(path), "status": DICOM, "reason": "", "error_type": ""}
    try:
        stat = path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a listed link that leads back to itself
            return {**row, **LOOP_FIELDS}
        kind = os_error_type(exc)
        return {**row, "status": MISSING, "reason": _reason(exc), "error_type": kind}
    row["size"], row["mtime_ns"] = stat.st_size, stat.st_mtime_ns
    if not stat_mode.S_ISREG(stat.st_mode):  # a listed FIFO, device or folder: never opened
        return {**row, **not_regular_fields(stat.st_mode)}
    return header_row(row, lambda: read_header(path))


def header_row(row: dict, read) -> dict:
    """``row`` (path, size, mtime...) completed with the status and header fields that
    ``read()`` (returning ``read_header``'s dataset and has-pixels flag) gives."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds, has_pixels = read()
            header = _checked_header_fields(ds)
    except NotDicomError as exc:
        return {**row, "status": NOT_DICOM, "reason": str(exc), "error_type": exc.error_type}
    except DicomError as exc:
        return {**row, "status": UNREADABLE, "reason": str(exc), "error_type": exc.error_type}
    except OSError as exc:
        kind = os_error_type(exc)
        return {**row, "status": UNREADABLE, "reason": _reason(exc), "error_type": kind}
    except Exception as exc:  # noqa: BLE001 - a malformed value must not stop discovery
        reason, kind = with_detail("the header cannot be read", exc), ErrorType.INVALID_HEADER
        return {**row, "status": UNREADABLE, "reason": reason, "error_type": kind}
    row.update(header)
    if has_pixels and not row["number_of_frames"]:
        row["number_of_frames"] = "1"  # a single-frame image has one frame, not zero
    if not has_pixels:
        row.update(status=NO_PIXELS, reason="no pixel data (not an image object)")
        row["error_type"] = ErrorType.NO_PIXEL_DATA
    else:
        for name, column in (
            ("SOPInstanceUID", "sop_instance_uid"),
            ("StudyInstanceUID", "study_instance_uid"),
        ):
            if not is_valid_uid(row[column]):
                row.update(status=INVALID_UID, reason=describe_invalid_uid(name, row[column]))
                missing = not row[column]
                row["error_type"] = ErrorType.MISSING_UID if missing else ErrorType.INVALID_UID
                break
    for column in ("sop_instance_uid", "study_instance_uid", "series_instance_uid"):
        if not is_valid_uid(row[column]):
            row[column] = ""  # hostile strings never travel further
    return row


_PATH_UIDS = (("SOPInstanceUID", "sop_instance_uid"), ("StudyInstanceUID", "study_instance_uid"))


def _checked_header_fields(ds) -> dict[str, str]:
    """:func:`_header_fields`, or DicomError (InvalidHeader) naming the element whose value
    cannot be read."""
    from dicomprep.formats.header_checks import check_image_numbers, check_readable_values

    try:
        return _header_fields(ds)
    except Exception as exc:  # noqa: BLE001 - named by the element when it can be found
        check_readable_values(ds)
        check_image_numbers(ds)
        message = with_detail("a header value cannot be read", exc)
        raise DicomError("discover", message, ErrorType.INVALID_HEADER) from exc


def _header_fields(ds) -> dict[str, str]:
    """The catalog's header columns (values are converted here, so errors surface here)."""
    fields = {}
    for column, keyword in HEADER_FIELDS.items():
        value = ds.get(keyword)
        fields[column] = "" if value is None else str(value).strip()
    meta = getattr(ds, "file_meta", None)
    fields["transfer_syntax"] = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    fields.update(_placement_fields(ds))
    return fields


def _placement_fields(ds) -> dict[str, str]:
    """Where an image lies (what stacking a series needs), as catalog text."""
    from dicomprep.series.stacks import stack_facts

    facts = stack_facts(ds)

    def joined(values) -> str:
        return "" if values is None else "\\".join(repr(float(v)) for v in values)

    return {
        "sop_class_uid": facts["sop_class_uid"],
        "image_orientation": joined(facts["image_orientation"]),
        "image_position": joined(facts["image_position"]),
        "instance_number": "" if facts["instance_number"] is None else facts["instance_number"],
        "pixel_spacing": joined(facts["pixel_spacing"]),
    }


def placement_facts(rows: pd.DataFrame) -> list[dict]:
    """The header facts of catalog rows in the form stacking wants (numbers parsed)."""

    def floats(text: str):
        return tuple(float(v) for v in text.split("\\")) if text else None

    facts = []
    for r in rows.itertuples(index=False):
        facts.append(
            {
                "path": r.path,
                "sop_instance_uid": r.sop_instance_uid,
                "series_instance_uid": r.series_instance_uid,
                "rows": int(r.rows),
                "columns": int(r.columns),
                "photometric_interpretation": r.photometric_interpretation,
                "sop_class_uid": r.sop_class_uid,
                "image_orientation": floats(r.image_orientation),
                "image_position": floats(r.image_position),
                "instance_number": int(r.instance_number),
                "pixel_spacing": floats(r.pixel_spacing),
                "number_of_frames": max(1, int(r.number_of_frames)),
            }
        )
    return facts


def _reason(exc: OSError) -> str:
    return exc.strerror or one_line(exc) or "the file cannot be read"
