"""Is a DICOM file ready for preprocessing?  ``dicom-validate FILE... [--format json]``.

:func:`validate_file` returns the findings for one file, each an ``error`` (a blocker:
the file would not become a TIFF) or a ``warning`` (it would, but the output may not be
what you expect):

errors
    ``not-dicom``, ``unreadable``, ``unreadable-header``, ``no-pixel-data``,
    ``missing-attribute`` (Rows, Columns, BitsAllocated, BitsStored, SamplesPerPixel,
    PhotometricInterpretation), ``implausible-image`` (sizes or bit depths the pixel data
    cannot hold, unknown transfer syntax), ``decode-failed`` (frame 0 does not decode).
warnings
    ``no-window`` (greyscale of more than 8 bits without window or VOI LUT: each image is
    scaled by its own min–max), ``invalid-window`` (width ≤ 0, unreadable values, unknown
    VOI LUT Function), ``invalid-rescale`` (slope 0 or unreadable, slope without intercept
    or the reverse), ``no-spacing`` (no Pixel Spacing or Imager Pixel Spacing: the TIFF has
    no resolution), ``invalid-spacing`` (not two positive finite numbers),
    ``unknown-photometric``.

The command prints one line per finding (``PATH: SEVERITY CODE: message``, or ``PATH:
ok``), or with ``--format json`` a list with one object per file.  Exit status: 0 when
no file has an error, 1 when some file has one, 2 when a file could not be examined at all
(missing, unreadable, an unexpected failure).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from dataclasses import asdict, dataclass, field

import pydicom
from pydicom.uid import DeflatedExplicitVRLittleEndian

from dicomprep.formats.decode import (
    DicomError,
    NotDicomError,
    check_plausible,
    image_info,
    iter_frames,
    read_header,
)

__all__ = ["Finding", "Validation", "main", "validate_file"]

ERROR, WARNING = "error", "warning"
REQUIRED = (
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "SamplesPerPixel",
    "PhotometricInterpretation",
)
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
    severity: str
    code: str
    message: str


@dataclass
class Validation:
    """The findings for one file; ``runtime_error`` when it could not be examined."""

    path: str
    findings: list[Finding] = field(default_factory=list)
    runtime_error: bool = False

    @property
    def valid(self) -> bool:
        return not self.runtime_error and not any(f.severity == ERROR for f in self.findings)

    def add(self, severity: str, code: str, message: str) -> None:
        self.findings.append(Finding(severity, code, " ".join(str(message).split())))

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "valid": self.valid,
            "runtime_error": self.runtime_error,
            "findings": [asdict(f) for f in self.findings],
        }


def validate_file(path) -> Validation:
    """Examine one file: header, required attributes, plausibility, frame 0, diagnostics."""
    result = Validation(os.fspath(path))
    try:
        _validate(path, result)
    except OSError as exc:
        result.runtime_error = True
        result.add(ERROR, "unreadable", f"{exc.strerror or exc}")
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
        result.runtime_error = True
        result.add(ERROR, "unreadable", f"{type(exc).__name__}: {exc}")
    return result


def _validate(path, result: Validation) -> None:
    try:
        ds, has_pixels = read_header(path)
    except NotDicomError as exc:
        result.add(ERROR, "not-dicom", str(exc))
        return
    except DicomError as exc:
        result.add(ERROR, "unreadable-header", str(exc))
        return
    if not has_pixels:
        result.add(ERROR, "no-pixel-data", "no pixel data (not an image object)")
        return
    missing = [keyword for keyword in REQUIRED if ds.get(keyword) in (None, "")]
    for keyword in missing:
        result.add(ERROR, "missing-attribute", f"{keyword} is missing")
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if photometric and photometric not in PHOTOMETRICS:
        result.add(WARNING, "unknown-photometric", f"PhotometricInterpretation {photometric}")
    try:
        info = image_info(ds)
        if info.transfer_syntax != DeflatedExplicitVRLittleEndian:
            check_plausible(info, os.path.getsize(path))
    except DicomError as exc:
        result.add(ERROR, "implausible-image", str(exc))
        return
    except (TypeError, ValueError) as exc:
        result.add(ERROR, "implausible-image", f"invalid header value: {exc}")
        return
    if not missing:
        try:
            frame = next(iter(iter_frames(path, ds, [0])))
            if frame.shape[:2] != (info.rows, info.columns):
                raise ValueError(f"frame 0 has shape {frame.shape}")
        except Exception as exc:  # noqa: BLE001 - any decoder failure is a blocker
            result.add(ERROR, "decode-failed", f"frame 0: {type(exc).__name__}: {exc}"[:300])
    if not info.is_color:
        _check_window(ds, info.bits_stored, result)
        _check_rescale(ds, result)
    _check_spacing(ds, result)


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
    for keyword in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        groups = ds.get(keyword)
        if groups and sequence in groups[0] and groups[0][sequence]:
            return groups[0][sequence][0]
    return None


def _check_window(ds, bits_stored: int, result: Validation) -> None:
    holder = _frame_group(ds, "FrameVOILUTSequence") or ds
    center_raw, width_raw = holder.get("WindowCenter"), holder.get("WindowWidth")
    if "VOILUTSequence" in ds:
        return
    if center_raw is None and width_raw is None:
        if bits_stored > 8:
            result.add(
                WARNING,
                "no-window",
                "no Window Center/Width or VOI LUT: each image is scaled by its own min-max",
            )
        return
    centers, widths = _numbers(center_raw), _numbers(width_raw)
    if centers is None or widths is None:
        result.add(WARNING, "invalid-window", "Window Center/Width missing or not numbers")
        return
    if len(centers) != len(widths):
        result.add(
            WARNING,
            "invalid-window",
            f"{len(centers)} window centers but {len(widths)} widths (the first pair is used)",
        )
    if widths[0] <= 0:
        result.add(WARNING, "invalid-window", f"Window Width {widths[0]:g} is not positive")
    function = str(holder.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    if function not in VOI_FUNCTIONS:
        result.add(WARNING, "invalid-window", f"unknown VOI LUT Function {function}")


def _check_rescale(ds, result: Validation) -> None:
    holder = _frame_group(ds, "PixelValueTransformationSequence") or ds
    slope_raw, intercept_raw = holder.get("RescaleSlope"), holder.get("RescaleIntercept")
    if slope_raw is None and intercept_raw is None:
        return
    if (slope_raw is None) != (intercept_raw is None):
        present = "Rescale Slope" if intercept_raw is None else "Rescale Intercept"
        result.add(WARNING, "invalid-rescale", f"{present} without its partner")
    slope = _numbers(slope_raw) if slope_raw is not None else [1.0]
    intercept = _numbers(intercept_raw) if intercept_raw is not None else [0.0]
    if slope is None or intercept is None:
        result.add(WARNING, "invalid-rescale", "Rescale Slope/Intercept are not numbers")
    elif slope[0] == 0:
        result.add(WARNING, "invalid-rescale", "Rescale Slope is 0: every pixel gets one value")


def _check_spacing(ds, result: Validation) -> None:
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
        result.add(
            WARNING, "no-spacing", "no Pixel Spacing or Imager Pixel Spacing: no TIFF resolution"
        )
        return
    for name, value in candidates:
        numbers = _numbers(value)
        if numbers is None or len(numbers) != 2 or min(numbers) <= 0:
            result.add(WARNING, "invalid-spacing", f"{name} {value!r} is not two positive numbers")


# -- command line ---------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dicom-validate",
        description="Check that DICOM files are ready for preprocessing.",
    )
    p.add_argument("files", nargs="+", help="DICOM files")
    p.add_argument("--format", choices=("text", "json"), default="text")
    return p


def main(argv: list[str] | None = None) -> int:
    """0: no blockers; 1: some file has a blocker; 2: some file could not be examined."""
    args = parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = [validate_file(path) for path in args.files]
    if args.format == "json":
        print(json.dumps([r.to_dict() for r in results], indent=1))
    else:
        for r in results:
            if not r.findings:
                print(f"{r.path}: ok")
            for f in r.findings:
                print(f"{r.path}: {f.severity} {f.code}: {f.message}")
    if any(r.runtime_error for r in results):
        return 2
    return 0 if all(r.valid for r in results) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
