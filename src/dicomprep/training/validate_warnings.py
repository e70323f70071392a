"""What ``dicom-validate`` warns about: header values a file converts with, but whose
output may not be what you expect.

Warnings never decide a verdict (the run does: :mod:`dicomprep.training.validate`); each
names an :class:`~dicomprep.core.errors.ErrorType`:

``NoWindow``
    greyscale of more than 8 bits without a usable window or VOI LUT, with ``voi: auto``:
    each image is scaled by its own min-max.
``InvalidWindow``
    width <= 0 (the window is not used), values that are not numbers, more centers than
    widths, an unknown VOI LUT Function.
``InvalidRescale``
    slope or intercept not a number, a slope without intercept or the reverse.
``NoPixelSpacing`` / ``InvalidPixelSpacing``
    no Pixel Spacing or Imager Pixel Spacing (the TIFF has no resolution), or one the run
    finds invalid (its message).
``InvalidImageDescription``
    a header defect the run reads the image despite (the manifest's ``warnings`` column:
    Bits Stored 0 or absent, High Bit absent), or a Photometric Interpretation DICOM does
    not define.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pydicom

from dicomprep.core.errors import ErrorType

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


@dataclass(frozen=True)
class Finding:
    """One warning: its error type (an :class:`ErrorType` value) and a one-line message."""

    error_type: str
    message: str

    def to_dict(self) -> dict:
        return {"error_type": self.error_type, "message": self.message}


def header_warnings(ds, voi="auto") -> list[Finding]:
    """The warnings of one header (a dataset read without its pixel data) converted with
    the ``voi`` option; the run's own readings of the header where it has them."""
    from dicomprep.formats.decode import frame_intensity, image_info

    try:
        info = image_info(ds)
    except Exception:  # noqa: BLE001 - the run fails this file: its verdict says so
        return []
    # header defects the run reads the image despite (the manifest's warnings column)
    found = [Finding(ErrorType.INVALID_IMAGE_DESCRIPTION, text) for text in info.warnings]
    if info.photometric not in PHOTOMETRICS:
        message = f"PhotometricInterpretation {info.photometric}"
        found.append(Finding(ErrorType.INVALID_IMAGE_DESCRIPTION, message))
    if not info.is_color:
        found += _window_warnings(ds)
        found += _rescale_warnings(ds)
        try:
            frame = frame_intensity(ds, 0)
        except Exception:  # noqa: BLE001 - as above
            frame = None
        windowless = frame is not None and frame.window is None and frame.voi_lut is None
        if voi == "auto" and info.bits_stored > 8 and windowless:
            message = "no usable Window Center/Width or VOI LUT: each image is scaled by "
            found.append(Finding(ErrorType.NO_WINDOW, message + "its own min-max"))
    return found + _spacing_warnings(ds)


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


def _window_warnings(ds) -> list[Finding]:
    """Window values the run cannot use (it then scales by the image's min-max)."""
    holder = _frame_group(ds, "FrameVOILUTSequence") or ds
    center_raw, width_raw = holder.get("WindowCenter"), holder.get("WindowWidth")
    if "VOILUTSequence" in ds or (center_raw is None and width_raw is None):
        return []
    centers, widths = _numbers(center_raw), _numbers(width_raw)
    if centers is None or widths is None:
        return [Finding(ErrorType.INVALID_WINDOW, "Window Center/Width missing or not numbers")]
    found = []
    if len(centers) != len(widths):
        message = f"{len(centers)} window centers but {len(widths)} widths (the first pair is used)"
        found.append(Finding(ErrorType.INVALID_WINDOW, message))
    if widths[0] <= 0:
        message = f"Window Width {widths[0]:g} is not positive: the window is not used"
        found.append(Finding(ErrorType.INVALID_WINDOW, message))
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
    """No pixel spacing, or one the run finds invalid: the TIFF has no resolution (and
    options that need a spacing fail the file)."""
    from dicomprep.formats.geometry_tags import pixel_spacing

    spacing, problem = pixel_spacing(ds)
    if problem:
        return [Finding(ErrorType.INVALID_PIXEL_SPACING, problem)]
    if spacing is None:
        message = "no Pixel Spacing or Imager Pixel Spacing: no TIFF resolution"
        return [Finding(ErrorType.NO_PIXEL_SPACING, message)]
    return []
