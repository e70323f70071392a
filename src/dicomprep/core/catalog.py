"""The columns of the header catalog (``catalog.parquet``): one row per input, written
by discovery and read by planning, the report and ``dicomprep-validate``."""

from __future__ import annotations

# Columns holding whole numbers (0 when a header lacks them); the others hold text.
INT_COLUMNS = ["size", "mtime_ns", "rows", "columns", "number_of_frames", "instance_number"]
CATALOG_COLUMNS = [
    "path",
    "key",
    "size",
    "mtime_ns",
    "etag",  # objects only: ETag or version ('' for local files)
    "status",
    "reason",
    "error_type",
    "study_instance_uid",
    "series_instance_uid",
    "sop_instance_uid",
    "modality",
    "rows",
    "columns",
    "number_of_frames",
    "transfer_syntax",
    "photometric_interpretation",
    # where the image lies, for stacking the slices of a series (numbers joined by "\\",
    # as in DICOM; empty when absent)
    "sop_class_uid",
    "image_orientation",
    "image_position",
    "instance_number",
    "pixel_spacing",
]
TEXT_COLUMNS = [c for c in CATALOG_COLUMNS if c not in INT_COLUMNS]
