"""The image a DICOM header describes: its size, samples and bits
(:class:`ImageInfo`), the plausibility of those against the file, and the attributes
enhanced multi-frame objects keep per frame in functional groups (rescale, window,
pixel spacing, plane position)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom import Dataset
from pydicom.uid import (
    UID,
)

from dicomprep.core.errors import (
    DicomError,
    ErrorType,
)
from dicomprep.formats.geometry_tags import pixel_spacing
from dicomprep.formats.lenient import stored_bits
from dicomprep.pixels.intensity import (
    LINEAR,
    FrameIntensity,
    rescaled_range,
    stored_value_range,
)

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


# -- image description ------------------------------------------------------------


@dataclass(frozen=True)
class ImageInfo:
    """The header facts the pixel pipeline needs."""

    rows: int
    columns: int
    num_frames: int
    samples_per_pixel: int
    photometric: str
    bits_stored: int
    bits_allocated: int
    pixel_representation: int
    transfer_syntax: str
    pixel_spacing: tuple[float, float] | None  # (row spacing, column spacing) in mm
    # why the spacing the header has is not valid ("Pixel Spacing is [0, 0.5]: ..."): the
    # spacing is then None, which fails only the conversions that need one
    pixel_spacing_problem: str = ""
    # The header defects the image is read despite (formats/lenient.py), one text each.
    warnings: tuple[str, ...] = ()

    @property
    def is_color(self) -> bool:
        return self.samples_per_pixel > 1 or self.photometric == "PALETTE COLOR"

    @property
    def inverted(self) -> bool:
        """MONOCHROME1: larger stored values are darker."""
        return self.photometric == "MONOCHROME1"


def pixel_keyword(ds: Dataset) -> str:
    """Which pixel element the image has: PixelData, FloatPixelData or DoubleFloatPixelData
    (as :func:`read_header` found it; else the one ``ds`` holds; else PixelData)."""
    found = getattr(ds, "pixel_keyword", None)
    return found or next((k for k in PIXEL_KEYWORDS if k in ds), PIXEL_KEYWORDS[0])


def image_info(ds: Dataset) -> ImageInfo:
    """Describe the image in ``ds``; raises DicomError for impossible geometry and for a
    bit depth the samples cannot be read by (formats/lenient.py: what is read anyway is
    named in ``warnings``)."""
    rows, columns = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    if rows <= 0 or columns <= 0:
        raise DicomError(
            "decode", f"Rows is {rows} and Columns is {columns}", ErrorType.EMPTY_IMAGE
        )
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames <= 0:
        raise DicomError("decode", f"Number of Frames is {frames}", ErrorType.EMPTY_IMAGE)
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    spacing, spacing_problem = pixel_spacing(ds)
    bits_allocated = int(ds.get("BitsAllocated") or 8)
    bits_stored, read_despite = stored_bits(
        bits_allocated,
        ds.get("BitsStored"),
        ds.get("HighBit"),
        float_pixels=pixel_keyword(ds) != PIXEL_KEYWORDS[0],
    )
    return ImageInfo(
        rows=rows,
        columns=columns,
        num_frames=frames,
        samples_per_pixel=int(ds.get("SamplesPerPixel") or 1),
        photometric=str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper(),
        bits_stored=bits_stored,
        bits_allocated=bits_allocated,
        pixel_representation=int(ds.get("PixelRepresentation") or 0),
        transfer_syntax=syntax,
        pixel_spacing=spacing,
        pixel_spacing_problem=spacing_problem,
        warnings=read_despite,
    )


def check_plausible(info: ImageInfo, file_size: int) -> None:
    """Reject headers that promise more pixels than the file can hold, before decoding.

    Native pixel data must fit in the file; encapsulated frames need at least an item
    header (8 bytes) each.  This keeps a hostile header (65535 x 65535, two billion
    frames) from making the decoder allocate what it describes.
    """
    if info.bits_stored > info.bits_allocated or info.bits_allocated not in (1, 8, 16, 32, 64):
        raise DicomError(
            "decode",
            f"Bits Stored {info.bits_stored} with Bits Allocated {info.bits_allocated}: Bits "
            "Allocated must be 1, 8, 16, 32 or 64 and at least Bits Stored",
            ErrorType.INVALID_IMAGE_DESCRIPTION,
        )
    if not info.transfer_syntax:
        raise DicomError(
            "decode",
            "the file has no file meta information, so its transfer syntax is unknown, and its "
            "pixel data is not uncompressed data of the size the header describes",
            ErrorType.UNKNOWN_TRANSFER_SYNTAX,
        )
    syntax = UID(info.transfer_syntax)
    if not syntax.is_transfer_syntax:
        raise DicomError(
            "decode",
            f"Transfer Syntax UID {info.transfer_syntax} is not a transfer syntax this tool "
            "decodes",
            ErrorType.UNSUPPORTED_SYNTAX,
        )
    if not syntax.is_compressed:
        needed = native_pixel_bytes(info)
        if needed > file_size:
            raise DicomError(
                "decode",
                f"pixel data shorter than the header's image size (truncated?): "
                f"{needed} bytes needed, the file has {file_size}",
                ErrorType.SHORT_PIXEL_DATA,
            )
    elif info.num_frames * 8 > file_size:
        raise DicomError(
            "decode",
            f"Number of Frames {info.num_frames} cannot fit in the file's {file_size} bytes",
            ErrorType.SHORT_PIXEL_DATA,
        )


def native_pixel_bytes(info: ImageInfo) -> int:
    """Bytes of uncompressed Pixel Data the header describes (padding byte excluded).

    YBR_FULL_422 shares one Cb and one Cr sample between two horizontal pixels: two
    samples per pixel instead of three.
    """
    samples = info.samples_per_pixel
    if info.photometric == "YBR_FULL_422" and samples == 3:
        samples = 2
    bits = info.rows * info.columns * info.num_frames * samples * info.bits_allocated
    return (bits + 7) // 8


def functional_group_item(ds: Dataset, index: int, sequence: str) -> Dataset | None:
    """The first item of a functional-group ``sequence`` for frame ``index``.

    Per-frame groups take precedence over shared ones; None when neither has it.
    """
    for groups_keyword, position in (
        ("PerFrameFunctionalGroupsSequence", index),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        groups = ds.get(groups_keyword)
        if groups and position < len(groups):
            seq = groups[position].get(sequence)
            if seq:
                return seq[0]
    return None


def _pixel_spacing(ds: Dataset) -> tuple[float, float] | None:
    """(row, column) spacing in mm when the header has a valid one (two numbers > 0,
    :mod:`dicomprep.formats.geometry_tags`), else None."""
    return pixel_spacing(ds)[0]


def _first_number(value) -> float | None:
    if value is None:
        return None
    try:
        return (
            float(value[0])
            if isinstance(value, (list, tuple, pydicom.multival.MultiValue))
            else float(value)
        )
    except (TypeError, ValueError, IndexError):
        return None


def frame_intensity(ds: Dataset, index: int = 0) -> FrameIntensity:
    """Rescale, modality LUT, window and VOI LUT that apply to frame ``index``.

    Raises DicomError (stage ``transform``) for a Rescale Slope of 0 (every pixel would
    get one value), a slope or intercept that is not a finite number, or one that takes
    the stored values Bits Stored allows beyond finite numbers.
    """
    pvt = functional_group_item(ds, index, "PixelValueTransformationSequence")
    slope = _first_number((pvt or ds).get("RescaleSlope"))
    intercept = _first_number((pvt or ds).get("RescaleIntercept"))
    if "ModalityLUTSequence" not in ds:
        check_rescale(slope, intercept, _stored_value_range(ds))
    modality_lut = ds if "ModalityLUTSequence" in ds else None

    voi_item = functional_group_item(ds, index, "FrameVOILUTSequence")
    holder = voi_item if voi_item is not None else ds
    voi_lut = ds if "VOILUTSequence" in ds else None
    window = None
    center, width = (
        _first_number(holder.get("WindowCenter")),
        _first_number(holder.get("WindowWidth")),
    )
    if center is not None and width is not None and width > 0:
        function = str(holder.get("VOILUTFunction", LINEAR) or LINEAR).strip().upper()
        window = (center, width, function)
    return FrameIntensity(
        slope=1.0 if slope is None else slope,
        intercept=0.0 if intercept is None else intercept,
        modality_lut=modality_lut,
        window=window,
        voi_lut=voi_lut,
    )


def check_rescale(
    slope: float | None,
    intercept: float | None,
    stored_range: tuple[float, float] | None = None,
) -> None:
    """Refuse a Rescale Slope of 0 or a non-finite slope or intercept (None: absent), and
    one whose modality values for the stored values ``stored_range`` (low, high) are not
    finite in float64 (a slope of 1e308 times 4095 is infinite)."""
    for keyword, value in (("RescaleSlope", slope), ("RescaleIntercept", intercept)):
        if value is not None and not np.isfinite(value):
            raise DicomError(
                "transform", f"{keyword} is {value}, not a finite number", ErrorType.INVALID_RESCALE
            )
    if slope == 0:
        raise DicomError(
            "transform",
            "RescaleSlope is 0: every pixel would get the same value",
            ErrorType.INVALID_RESCALE,
        )
    if stored_range is None:
        return
    slope, intercept = 1.0 if slope is None else slope, 0.0 if intercept is None else intercept
    ends = rescaled_range(stored_range, slope, intercept)
    if not all(np.isfinite(ends)):
        low, high = stored_range
        raise DicomError(
            "transform",
            f"RescaleSlope {slope:g} and RescaleIntercept {intercept:g} take the stored values "
            f"{low:g}..{high:g} to {ends[0]:g}..{ends[1]:g}, beyond finite numbers",
            ErrorType.INVALID_RESCALE,
        )


def _stored_value_range(ds: Dataset) -> tuple[float, float] | None:
    """The stored values Bits Stored and Pixel Representation allow (Bits Stored 0 or
    absent: Bits Allocated's); None for float pixel data, which has no such range."""
    if pixel_keyword(ds) != PIXEL_KEYWORDS[0]:
        return None
    try:
        bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
        signed = int(ds.get("PixelRepresentation") or 0) == 1
    except (TypeError, ValueError):
        return None  # image_info names the bad value
    return stored_value_range(bits, signed)


def frame_order(ds: Dataset, num_frames: int) -> list[int]:
    """Frame indices ordered by position along the slice normal, else stored order.

    Uses per-frame Plane Position (Patient) projected on the normal of the Image
    Orientation; frames without positions keep their stored order.
    """
    if num_frames <= 1:
        return list(range(num_frames))
    orientation_item = functional_group_item(ds, 0, "PlaneOrientationSequence")
    orientation = (orientation_item or ds).get("ImageOrientationPatient")
    try:
        row, col = np.array(orientation[:3], float), np.array(orientation[3:6], float)
        normal = np.cross(row, col)
    except (TypeError, ValueError, IndexError):
        normal = np.array([0.0, 0.0, 1.0])
    groups = ds.get("PerFrameFunctionalGroupsSequence")
    if not groups or len(groups) != num_frames:
        return list(range(num_frames))
    positions = []
    for item in groups:
        plane = item.get("PlanePositionSequence")
        try:
            positions.append(float(np.dot(normal, np.array(plane[0].ImagePositionPatient, float))))
        except (TypeError, ValueError, IndexError, AttributeError):
            return list(range(num_frames))
    return sorted(range(num_frames), key=lambda i: (positions[i], i))
