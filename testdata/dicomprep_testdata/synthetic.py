"""Deterministic generators of realistic DICOM test files: the names tests and benchmarks use.

The DICOM test data that installs offline (pydicom, pydicom-data) holds no mammograms and no
breast tomosynthesis volumes, so the tests and the bundled sample synthesise them. Everything
is deterministic: the same arguments give byte-identical files (pixels from
``numpy.random.default_rng(seed)``, UIDs derived from the arguments with
:func:`pydicom.uid.generate_uid` and fixed entropy, fixed dates and times).

Where they live: :mod:`.layout` (where the breast, label and frame marker are, the window),
:mod:`.mammography` (mammograms, tomosynthesis), :mod:`.ct` (CT slices), :mod:`.encoding`
(files in every transfer syntax), :mod:`.broken` (truncated, short, hostile files),
:mod:`.datasets` (SOP classes, UIDs and the identifying values in :data:`PATIENT_VALUES`).
"""

from __future__ import annotations

from dicomprep_testdata.broken import deflate_bomb, short_pixel_data, truncated_copy, with_uids
from dicomprep_testdata.ct import ct_slice
from dicomprep_testdata.datasets import (
    BREAST_TOMOSYNTHESIS_IMAGE_STORAGE,
    CT_IMAGE_STORAGE,
    DIGITAL_MAMMOGRAPHY_FOR_PRESENTATION,
    PATIENT_VALUES,
    derived_uid,
)
from dicomprep_testdata.encoding import (
    LOSSLESS_TRANSFER_SYNTAXES,
    SUPPORTED_TRANSFER_SYNTAXES,
    encode,
    encode_without_meta,
    write,
)
from dicomprep_testdata.layout import (
    Box,
    MammogramLayout,
    frame_marker_box,
    frame_marker_value,
    mammogram_layout,
    mammogram_window,
)
from dicomprep_testdata.mammography import mammogram, tomosynthesis, tomosynthesis_frame_order

__all__ = [
    "CT_IMAGE_STORAGE",
    "DIGITAL_MAMMOGRAPHY_FOR_PRESENTATION",
    "BREAST_TOMOSYNTHESIS_IMAGE_STORAGE",
    "PATIENT_VALUES",
    "SUPPORTED_TRANSFER_SYNTAXES",
    "LOSSLESS_TRANSFER_SYNTAXES",
    "Box",
    "MammogramLayout",
    "mammogram",
    "mammogram_layout",
    "mammogram_window",
    "tomosynthesis",
    "frame_marker_value",
    "frame_marker_box",
    "tomosynthesis_frame_order",
    "ct_slice",
    "encode",
    "encode_without_meta",
    "write",
    "truncated_copy",
    "with_uids",
    "short_pixel_data",
    "deflate_bomb",
    "derived_uid",
]
