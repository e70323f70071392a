"""What ``dicom-validate`` warns about: header values a file converts with, but whose
output may not be what you expect.

Warnings never decide a verdict (the run does: :mod:`dicomprep.training.validate`); each
names an :class:`~dicomprep.formats.errors.ErrorType`:

``NoWindow``
    greyscale of more than 8 bits without window or VOI LUT: each image is scaled by its
    own min-max.
``InvalidWindow``
    width <= 0, values that are not numbers, more centers than widths, an unknown VOI LUT
    Function.
``InvalidRescale``
    slope or intercept not a number, a slope without intercept or the reverse.
``NoPixelSpacing`` / ``InvalidPixelSpacing``
    no Pixel Spacing or Imager Pixel Spacing (the TIFF has no resolution), or one that is
    not two positive numbers.
``InvalidImageDescription``
    a Photometric Interpretation the standard does not define.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pydicom

from dicomprep.formats.errors import ErrorType

__all__ = ["Finding", "header_warnings"]

PHOTOMETRICS = (
    "MONOCHROME1",
    "MONOCHROME2",
    "RGB",
    "PALETTE COLOR",
    "YBR_FULL",
    "YBR_FULL_422",
    "YBR_ICT",
    "YBR_RCT",
)
VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")
COLOR = ("RGB", "PALETTE COLOR", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT")


@dataclass(frozen=True)
class Finding:
    """One warning: its error type (an :class:`ErrorType` value) and a one-line message."""

    error_type: str
    message: str

    def to_dict(self) -> dict:
        return {"error_type": self.error_type, "message": self.message}


def header_warnings(ds) -> list[Finding]:
    """The warnings of one header (a dataset read without its pixel data)."""
    found: list[Finding] = []
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if photometric and photometric not in PHOTOMETRICS:
        found.append(
            Finding(ErrorType.INVALID_IMAGE_DESCRIPTION, f"PhotometricInterpretation {photometric}")
        )
    if photometric not in COLOR:
        found += _window_warnings(ds, _int(ds.get("BitsStored")))
        found += _rescale_warnings(ds)
    found += _spacing_warnings(ds)
    return found


def _int(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _numbers(value) -> list[float] | None:
    """All values of a (multi-valued) numeric element, or None when one does not parse."""
    if value is None:
        return None
    values = value if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [value]
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        return None
    return numbers if numbers and all(math.isfinite(v) for v in numbers) else None


def _frame_group(ds, sequence: str):
    """The first functional group item of ``sequence`` (shared, else of frame 0)."""
    for keyword in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        groups = ds.get(keyword)
        if groups and sequence in groups[0] and groups[0][sequence]:
            return groups[0][sequence][0]
    return None


def _window_warnings(ds, bits_stored: int) -> list[Finding]:
    holder = _frame_group(ds, "FrameVOILUTSequence") or ds
    center_raw, width_raw = holder.get("WindowCenter"), holder.get("WindowWidth")
    if "VOILUTSequence" in ds:
        return []
    if center_raw is None and width_raw is None:
        if bits_stored <= 8:
            return []
        message = "no Window Center/Width or VOI LUT: each image is scaled by its own min-max"
        return [Finding(ErrorType.NO_WINDOW, message)]
    centers, widths = _numbers(center_raw), _numbers(width_raw)
    if centers is None or widths is None:
        return [Finding(ErrorType.INVALID_WINDOW, "Window Center/Width missing or not numbers")]
    found = []
    if len(centers) != len(widths):
        message = f"{len(centers)} window centers but {len(widths)} widths (the first pair is used)"
        found.append(Finding(ErrorType.INVALID_WINDOW, message))
    if widths[0] <= 0:
        found.append(
            Finding(ErrorType.INVALID_WINDOW, f"Window Width {widths[0]:g} is not positive")
        )
    function = str(holder.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    if function not in VOI_FUNCTIONS:
        found.append(Finding(ErrorType.INVALID_WINDOW, f"unknown VOI LUT Function {function}"))
    return found


def _rescale_warnings(ds) -> list[Finding]:
    holder = _frame_group(ds, "PixelValueTransformationSequence") or ds
    slope_raw, intercept_raw = holder.get("RescaleSlope"), holder.get("RescaleIntercept")
    if slope_raw is None and intercept_raw is None:
        return []
    found = []
    if (slope_raw is None) != (intercept_raw is None):
        present = "Rescale Slope" if intercept_raw is None else "Rescale Intercept"
        found.append(Finding(ErrorType.INVALID_RESCALE, f"{present} without its partner"))
    slope = _numbers(slope_raw) if slope_raw is not None else [1.0]
    intercept = _numbers(intercept_raw) if intercept_raw is not None else [0.0]
    if slope is None or intercept is None:
        found.append(Finding(ErrorType.INVALID_RESCALE, "Rescale Slope/Intercept are not numbers"))
    return found  # (a slope of 0 fails the run: a blocker, not a warning)


def _spacing_warnings(ds) -> list[Finding]:
    measures = _frame_group(ds, "PixelMeasuresSequence")
    candidates = [
        (name, holder.get(name))
        for holder, name in (
            (ds, "PixelSpacing"),
            (measures, "PixelSpacing"),
            (ds, "ImagerPixelSpacing"),
        )
        if holder is not None and holder.get(name) is not None
    ]
    if not candidates:
        message = "no Pixel Spacing or Imager Pixel Spacing: no TIFF resolution"
        return [Finding(ErrorType.NO_PIXEL_SPACING, message)]
    found = []
    for name, value in candidates:
        numbers = _numbers(value)
        if numbers is None or len(numbers) != 2 or min(numbers) <= 0:
            message = f"{name} {_shown(value)} is not two positive numbers"
            found.append(Finding(ErrorType.INVALID_PIXEL_SPACING, message))
    return found


def _shown(value) -> str:
    """A header value in a message: short, on one line."""
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."
