"""Validation of the geometry elements of a header: Pixel Spacing (or Imager Pixel
Spacing), Image Orientation (Patient) and Image Position (Patient) (docs/volumes.md).

One rule each, used by the single-file path (``spacing``), stack formation and volume
writing alike:

- **Pixel Spacing** / **Imager Pixel Spacing**: exactly two numbers within
  :data:`SPACING_RANGE_MM` (row spacing, column spacing in mm; 1e-300 or 1e300 mm is no
  physical pixel).
- **Image Orientation (Patient)**: six finite numbers, the row and the column direction
  cosines, each vector of unit length within :data:`UNIT_TOLERANCE` and the two orthogonal
  within :data:`ORTHOGONAL_TOLERANCE` (their dot product).
- **Image Position (Patient)**: three finite numbers (mm).

The ``*_problem`` functions take the numbers as parsed (:func:`numbers`) and return None
when they are valid, else the one-line message that names the element and its value,
e.g. ``Pixel Spacing is [0, 0.5]: expected two numbers > 0 (from 1e-06 to 1e+06 mm)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from dicomprep.core.errors import DicomError, ErrorType

#: The pixel spacings (mm) a detector can have: a nanometre to a kilometre.
SPACING_RANGE_MM = (1e-6, 1e6)
#: |1 - length| allowed for each direction vector of Image Orientation (Patient).
UNIT_TOLERANCE = 1e-3
#: |row . column| allowed between the two direction vectors.
ORTHOGONAL_TOLERANCE = 1e-3

#: Where a pixel spacing is looked for, in this order: the first present one is used.
SPACING_SOURCES = (
    ("PixelSpacing", "Pixel Spacing"),
    ("PixelMeasuresSequence", "Pixel Spacing"),  # enhanced objects' functional groups
    ("ImagerPixelSpacing", "Imager Pixel Spacing"),
)


def numbers(value) -> tuple[float, ...] | None:
    """The numbers of a header value (a multi-valued DS, one number, a list); None when
    the element is absent or empty.  An entry that is not a number becomes NaN, so that
    the value is invalid rather than absent."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    items = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    if not items:
        return None
    out = []
    for item in items:
        try:
            out.append(float(item))
        except (TypeError, ValueError):
            out.append(math.nan)
    return tuple(out)


def _shown(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"


def spacing_problem(values: Sequence[float] | None, name: str = "Pixel Spacing") -> str | None:
    """Why ``values`` (of the element ``name``) is not a pixel spacing; None when valid
    or absent."""
    if values is None:
        return None
    low, high = SPACING_RANGE_MM
    if len(values) == 2 and all(low <= v <= high for v in values):
        return None
    return f"{name} is {_shown(values)}: expected two numbers > 0 (from {low:g} to {high:g} mm)"


def orientation_problem(values: Sequence[float] | None) -> str | None:
    """Why ``values`` is not a valid Image Orientation (Patient); None when valid or
    absent."""
    if values is None:
        return None
    found = f"Image Orientation (Patient) is {_shown(values)}"
    if len(values) != 6 or not all(math.isfinite(v) for v in values):
        return f"{found}: expected six finite numbers"
    row, column = values[:3], values[3:]
    for which, vector in (("row", row), ("column", column)):
        length = math.sqrt(sum(v * v for v in vector))
        if abs(length - 1.0) > UNIT_TOLERANCE:
            return (
                f"{found}: the {which} direction has length {length:g}, expected 1 "
                f"(within {UNIT_TOLERANCE:g})"
            )
    dot = sum(a * b for a, b in zip(row, column, strict=True))
    if abs(dot) > ORTHOGONAL_TOLERANCE:
        return (
            f"{found}: the row and column directions are not orthogonal (dot product "
            f"{dot:g}, expected 0 within {ORTHOGONAL_TOLERANCE:g})"
        )
    return None


def position_problem(values: Sequence[float] | None) -> str | None:
    """Why ``values`` is not a valid Image Position (Patient); None when valid or absent."""
    if values is None:
        return None
    if len(values) == 3 and all(math.isfinite(v) for v in values):
        return None
    return f"Image Position (Patient) is {_shown(values)}: expected three finite numbers"


def raw_pixel_spacing(ds) -> tuple[tuple[float, ...] | None, str]:
    """(numbers, element name) of the first pixel spacing present in ``ds`` (Pixel
    Spacing, that of the first frame's Pixel Measures, Imager Pixel Spacing); (None, "")
    when there is none.  The numbers are as found: check them with :func:`spacing_problem`."""
    from dicomprep.formats.decode import functional_group_item

    for keyword, name in SPACING_SOURCES:
        if keyword == "PixelMeasuresSequence":
            item = functional_group_item(ds, 0, keyword)
            value = item.get("PixelSpacing") if item is not None else None
        else:
            value = ds.get(keyword)
        found = numbers(value)
        if found is not None:
            return found, name
    return None, ""


def pixel_spacing(ds) -> tuple[tuple[float, float] | None, str]:
    """((row, column) spacing in mm, "") of a valid spacing, (None, "") without one, and
    (None, message) when the spacing present is invalid (see :func:`spacing_problem`)."""
    values, name = raw_pixel_spacing(ds)
    problem = spacing_problem(values, name)
    if values is None or problem:
        return None, problem or ""
    return (values[0], values[1]), ""


def header_problem(ds) -> tuple[ErrorType, str] | None:
    """The first invalid geometry element of ``ds`` as (error type, message): Image
    Orientation (Patient), Image Position (Patient), then the pixel spacing; None when
    every one present is valid (absent elements are not judged here)."""
    return geometry_problem(
        numbers(ds.get("ImageOrientationPatient")),
        numbers(ds.get("ImagePositionPatient")),
        *raw_pixel_spacing(ds),
    )


def geometry_problem(
    orientation: Sequence[float] | None,
    position: Sequence[float] | None,
    spacing: Sequence[float] | None,
    spacing_name: str = "Pixel Spacing",
) -> tuple[ErrorType, str] | None:
    """:func:`header_problem` of values already parsed (a stack's header facts)."""
    for error_type, problem in (
        (ErrorType.INVALID_ORIENTATION, orientation_problem(orientation)),
        (ErrorType.INVALID_POSITION, position_problem(position)),
        (ErrorType.INVALID_PIXEL_SPACING, spacing_problem(spacing, spacing_name)),
    ):
        if problem:
            return error_type, problem
    return None


def check_header(ds, what: str = "") -> None:
    """Raise DicomError (stage ``transform``) for the first invalid geometry element of
    ``ds``; ``what`` (e.g. the slice's file name) starts the message."""
    found = header_problem(ds)
    if found is not None:
        error_type, message = found
        raise DicomError("transform", f"{what}: {message}" if what else message, error_type)
