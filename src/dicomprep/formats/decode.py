"""Reading DICOM files: recognition by content, headers, per-frame attributes, frames.

See README.md.  Headers are read without pixel data; frames are decoded one at a
time (``pydicom.pixels.iter_pixels``) so a volume is never held whole unless a step
needs it.  Uncompressed little-endian greyscale frames, the bulk of a mammography
archive, are read straight into their array (:func:`read_native_frames`), which gives the
same values as pydicom at a fifth of the cost.  Attributes that enhanced multi-frame
objects keep in functional groups (rescale, window, pixel spacing, plane position) are
looked up per frame.
"""

from __future__ import annotations

import io
import os
import warnings
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.filereader import (
    _at_pixel_data,
    _read_file_meta_info,
    read_dataset,
    read_partial,
    read_preamble,
)
from pydicom.pixels import apply_color_lut, iter_pixels
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from dicomprep.core.errors import (
    DicomError,
    ErrorType,
    NoPixelDataError,  # noqa: F401 - importable from here too
    NotDicomError,
)
from dicomprep.formats.codestream_checks import bounded_decoding, decoder_panic, frame_checker
from dicomprep.formats.geometry_tags import pixel_spacing
from dicomprep.formats.header_checks import (
    check_byte_order,
    check_truncated_elements,
    header_failure,
)
from dicomprep.formats.lenient import stored_bits
from dicomprep.formats.luts import check_palette
from dicomprep.pixels.intensity import (
    LINEAR,
    FrameIntensity,
    rescaled_range,
    stored_value_range,
)

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


# -- recognition and headers -------------------------------------------------------


def read_header(path: str | os.PathLike) -> tuple[Dataset, bool]:
    """The dataset without pixel data, and whether pixel data follows it.

    Raises NotDicomError for non-DICOM content.  Files without a preamble are accepted
    when they parse as a dataset whose first element is a plausible group (0002/0008)
    holding a SOP Instance UID.  Parsing stops at the pixel data element, so the file
    position after the header says whether the object has an image.  Deflated files are
    inflated only up to their pixel data (:func:`read_deflated`).

    A file without file meta information has no Transfer Syntax UID; the syntax pydicom
    recognised while parsing it (implicit or explicit VR, byte order) is recorded as
    its transfer syntax when its Pixel Data is uncompressed data of exactly the header's
    size (``ds.transfer_syntax_assumed`` is then True); otherwise it stays unknown and
    :func:`check_plausible` refuses the image.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise NotDicomError("discover", "empty file (0 bytes)", ErrorType.EMPTY_FILE)
    with open(path, "rb") as f:
        head = f.read(132 + META_PEEK_BYTES)
    preamble = head[128:132] == b"DICM"
    if preamble and _meta_says_deflated(head, path):
        try:
            return read_deflated(path, header_only=True)
        except DicomError:
            raise
        except Exception as exc:  # noqa: BLE001 - any parser failure is a bad file
            raise header_failure(path, exc) from exc
    with warnings.catch_warnings(), open(path, "rb") as f:
        warnings.simplefilter("ignore")
        try:
            ds = read_partial(f, stop_when=_at_pixel_data, force=not preamble)
            position = f.tell()
            tag = f.read(4)
            has_pixels = tag in _PIXEL_TAGS
        except Exception as exc:  # noqa: BLE001 - any parser failure is a bad file
            if not preamble:
                raise NotDicomError("discover", "not a DICOM file", ErrorType.NOT_DICOM) from exc
            raise header_failure(path, exc) from exc
    if not preamble:
        first = next(iter(ds.keys()), None)
        if first is None or first.group not in (0x0002, 0x0008) or "SOPInstanceUID" not in ds:
            raise NotDicomError("discover", "not a DICOM file", ErrorType.NOT_DICOM)
    if not has_pixels:  # no image, or a defect that hid it from the parser
        check_byte_order(path)
        check_truncated_elements(ds)
    if has_pixels:
        ds.pixel_element_position = position  # where read_native_frames finds the pixels
        ds.pixel_keyword = _PIXEL_KEYWORD_OF_TAG[tag]  # Pixel Data, Float or Double Float
        if not _syntax_of(ds):
            _assume_transfer_syntax(path, ds)
    return ds, has_pixels


#: Bytes after the preamble read to find the Transfer Syntax UID without parsing the file
#: meta information with pydicom (real meta groups take a few hundred bytes).
META_PEEK_BYTES = 4096
# VRs whose explicit little-endian elements have a 4-byte length (after 2 reserved bytes).
_LONG_VRS = {
    b"OB",
    b"OD",
    b"OF",
    b"OL",
    b"OV",
    b"OW",
    b"SQ",
    b"SV",
    b"UC",
    b"UN",
    b"UR",
    b"UT",
    b"UV",
}


def _meta_says_deflated(head: bytes, path: Path) -> bool:
    """Whether the file meta information of a Part 10 file names the deflated transfer
    syntax, from ``head`` (the file's first bytes) when they settle it, else from
    pydicom's reading of the meta information (:func:`_file_transfer_syntax`)."""
    value = _meta_transfer_syntax(head)
    if value is None:
        return _file_transfer_syntax(path) == DeflatedExplicitVRLittleEndian
    return value == DeflatedExplicitVRLittleEndian


def _meta_transfer_syntax(head: bytes) -> str | None:
    """The Transfer Syntax UID (0002,0010) of the explicit VR little-endian file meta
    elements that follow the preamble in ``head``; '' when the group ends without it;
    None when ``head`` does not settle it (cut short, implicit VR, undefined lengths)."""
    pos = 132
    while pos + 8 <= len(head):
        group = int.from_bytes(head[pos : pos + 2], "little")
        element = int.from_bytes(head[pos + 2 : pos + 4], "little")
        if group != 2:
            return ""
        vr = head[pos + 4 : pos + 6]
        if not (vr.isalpha() and vr.isupper()):
            return None
        if vr in _LONG_VRS:
            length, start = int.from_bytes(head[pos + 8 : pos + 12], "little"), pos + 12
            if start > len(head) or length == 0xFFFFFFFF:
                return None
        else:
            length, start = int.from_bytes(head[pos + 6 : pos + 8], "little"), pos + 8
        if start + length > len(head):
            return None
        if element == 0x0010:
            return head[start : start + length].decode("ascii", "replace").rstrip("\0 ")
        pos = start + length
    return None


def _file_transfer_syntax(path: Path) -> str:
    """The Transfer Syntax UID of a Part 10 file's meta information ('' when absent)."""
    with warnings.catch_warnings(), open(path, "rb") as f:
        warnings.simplefilter("ignore")
        try:
            read_preamble(f, force=True)
            return str(_read_file_meta_info(f).get("TransferSyntaxUID", ""))
        except Exception:  # noqa: BLE001 - the full header read reports it
            return ""


def _syntax_of(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    return str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""


_NATIVE_SYNTAX_BY_ENCODING = {
    (True, True): ImplicitVRLittleEndian,
    (False, True): ExplicitVRLittleEndian,
    (False, False): ExplicitVRBigEndian,
}


def _assume_transfer_syntax(path: Path, ds: Dataset) -> None:
    """Record the syntax a file without meta information was parsed with, when its pixel
    element has a defined length equal to the header's uncompressed image size (so the
    data cannot be encapsulated)."""
    syntax = _NATIVE_SYNTAX_BY_ENCODING.get(tuple(ds.original_encoding[:2]))
    if syntax is None:
        return
    implicit, little = syntax.is_implicit_VR, syntax.is_little_endian
    with open(path, "rb") as f:
        f.seek(ds.pixel_element_position)
        header = f.read(12)
    order = "little" if little else "big"
    if implicit:
        length = int.from_bytes(header[4:8], order)
    elif header[4:6] in (b"OB", b"OW", b"OF", b"OD", b"UN"):
        length = int.from_bytes(header[8:12], order)
    else:
        length = int.from_bytes(header[6:8], order)
    try:
        needed = native_pixel_bytes(image_info(ds))
    except DicomError:
        return
    if length != 0xFFFFFFFF and needed <= length <= needed + 1:  # + 1: the padding byte
        if getattr(ds, "file_meta", None) is None:
            ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = syntax
        ds.transfer_syntax_assumed = True


# (7FE0,0010) Pixel Data, (7FE0,0008) Float, (7FE0,0009) Double Float, little/big endian.
_PIXEL_TAGS = {
    bytes.fromhex(h)
    for h in ("e07f1000", "e07f0800", "e07f0900", "7fe00010", "7fe00008", "7fe00009")
}
_PIXEL_KEYWORD_OF_TAG = {
    bytes.fromhex(h): keyword
    for keywords in (("e07f1000", "e07f0800", "e07f0900"), ("7fe00010", "7fe00008", "7fe00009"))
    for h, keyword in zip(keywords, PIXEL_KEYWORDS, strict=True)
}


def _is_deflated(ds: Dataset) -> bool:
    meta = getattr(ds, "file_meta", None)
    return meta is not None and meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian


# Deflated data is inflated a chunk at a time and never past a bound: a small file can
# inflate to gigabytes (a "deflate bomb").  Up to the Pixel Data element at most
# DEFLATE_HEADER_LIMIT bytes are accepted; after it, the pixel size the header describes
# (Rows x Columns x frames x samples x bits) plus DEFLATE_MARGIN for trailing elements.
DEFLATE_HEADER_LIMIT = 64 * 2**20
DEFLATE_MARGIN = 16 * 2**20
_INFLATE_CHUNK = 2**20
# Explicit VR little endian starts of (7FE0,0010) Pixel Data, (7FE0,0008) and (7FE0,0009).
_EXPLICIT_PIXEL_STARTS = (b"\xe0\x7f\x10\x00O", b"\xe0\x7f\x08\x00OF", b"\xe0\x7f\x09\x00OD")


def _inflated_chunks(f) -> Iterator[bytes]:
    """The raw-deflate stream from ``f``'s position, inflated in chunks of bounded size."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    pending = b""
    while not inflater.eof:
        if not pending:
            pending = f.read(2**16)
            if not pending:
                break
        chunk = inflater.decompress(pending, _INFLATE_CHUNK)
        pending = inflater.unconsumed_tail
        if chunk:
            yield chunk
    while not inflater.eof and (chunk := inflater.decompress(b"", _INFLATE_CHUNK)):
        yield chunk


def _pixel_element_offset(data: bytearray, search_from: int) -> int | None:
    """Where a top-level pixel data element starts in inflated explicit VR LE ``data``,
    when a candidate tag appears at or after ``search_from`` and parsing confirms it."""
    if not any(data.find(start, search_from) >= 0 for start in _EXPLICIT_PIXEL_STARTS):
        return None
    buffer = io.BytesIO(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            read_dataset(buffer, False, True, stop_when=_at_pixel_data, defer_size=256)
        except Exception:  # noqa: BLE001 - an element cut by the chunk end: read more
            return None
    position = buffer.tell()
    return position if bytes(data[position : position + 4]) in _PIXEL_TAGS else None


def _described_pixel_bytes(header: Dataset) -> int:
    try:
        return native_pixel_bytes(image_info(header))
    except DicomError:
        return 0


def read_deflated(path: str | os.PathLike, header_only: bool = False) -> tuple[Dataset, bool]:
    """A deflated file's dataset and whether it has pixel data, inflated within bounds.

    With ``header_only`` inflation stops at the pixel data element and the dataset holds
    the elements before it.  Raises DicomError (DecompressionBomb) when the data inflates
    past :data:`DEFLATE_HEADER_LIMIT` before its pixel data or past the header's pixel
    size plus :data:`DEFLATE_MARGIN` in all.
    """
    with open(path, "rb") as f:
        read_preamble(f, force=True)
        meta = _read_file_meta_info(f)
        data, limit, pixels_at = bytearray(), DEFLATE_HEADER_LIMIT, None
        for chunk in _inflated_chunks(f):
            searched = max(0, len(data) - 8)
            data += chunk
            if pixels_at is None:
                pixels_at = _pixel_element_offset(data, searched)
                if pixels_at is not None:
                    if header_only:
                        break
                    header = _read_explicit_le(bytes(data[:pixels_at]))
                    limit = pixels_at + _described_pixel_bytes(header) + DEFLATE_MARGIN
            if len(data) > limit:
                where = "in all" if pixels_at is not None else "before its pixel data"
                raise DicomError(
                    "decode",
                    f"deflated data inflates to more than {limit} bytes {where}, more than "
                    "the header's image size allows (a deflate bomb?)",
                    ErrorType.DECOMPRESSION_BOMB,
                )
    keyword = None if pixels_at is None else bytes(data[pixels_at : pixels_at + 4])
    if header_only and pixels_at is not None:
        del data[pixels_at:]
    ds = _read_explicit_le(bytes(data))
    del data
    ds.file_meta = meta
    if keyword in _PIXEL_KEYWORD_OF_TAG:
        ds.pixel_keyword = _PIXEL_KEYWORD_OF_TAG[keyword]
    return ds, pixels_at is not None or any(k in ds for k in PIXEL_KEYWORDS)


def _read_explicit_le(data: bytes) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_dataset(io.BytesIO(data), False, True)


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


# -- frames -------------------------------------------------------------------------


def iter_frames(
    path: str | os.PathLike, ds: Dataset, indices: Iterable[int], info: ImageInfo | None = None
) -> Iterator[np.ndarray]:
    """Decode the frames ``indices`` (in that order), one at a time.

    Colour data is returned as RGB (YBR converted by pydicom; palette applied here).
    Deflated files are inflated whole (within bounds, :func:`read_deflated`) first
    because they cannot be read frame-wise.  ``info`` is ``image_info(ds)`` when the
    caller has it.
    """
    indices = list(indices)
    native = read_native_frames(path, ds, indices, info)
    if native is not None:
        yield from native
        return
    palette = str(ds.get("PhotometricInterpretation", "")).upper() == "PALETTE COLOR"
    if palette:
        check_palette(ds)  # before pydicom applies it: its failures speak of NumPy types
    for frame in _decoded_frames(path, ds, indices, _read_as(ds, info), info):
        yield apply_color_lut(frame, ds) if palette else frame


def _read_as(ds: Dataset, info: ImageInfo | None) -> dict:
    """pydicom's overrides of the header where the image is read leniently
    (formats/lenient.py): Bits Stored 0 or absent is read as ``info``'s Bits Stored."""
    if pixel_keyword(ds) != PIXEL_KEYWORDS[0] or ds.get("BitsStored"):
        return {}
    return {"bits_stored": (info or image_info(ds)).bits_stored}


def _decoded_frames(
    path, ds: Dataset, indices: list[int], read_as: dict | None = None, info=None
) -> Iterator[np.ndarray]:
    """pydicom's frames, read from the file frame by frame (``read_as``: pydicom's
    overrides of header values, :func:`_read_as`), each compressed frame's own header
    checked against the header's image before it is decoded (:func:`frame_checker`).

    pydicom's path-based reader rejects some files its dataset reader accepts (an
    encapsulated file whose Basic Offset Table is malformed, for one): the frames not
    yet given are then decoded from the whole dataset, and when that fails too the
    first error is reported.
    """
    read_as = read_as or {}
    if _is_deflated(ds):
        yield from _pydicom_frames(read_deflated(path)[0], indices, **read_as)
        return
    syntax = {"transfer_syntax_uid": _syntax_of(ds)} if _assumed(ds) else {}
    info = info or image_info(ds)
    read_as = {**read_as, **bounded_decoding(info.transfer_syntax)}
    done = 0
    try:
        checks = frame_checker(path, ds, info)
        for frame in _pydicom_frames(path, indices, checks, **syntax, **read_as):
            yield frame
            done += 1
    except (MemoryError, DicomError):
        raise
    except Exception as first_error:  # noqa: BLE001 - try the dataset reader
        try:
            whole = _read_whole(path, ds)
            checks = frame_checker(whole, ds, info)
            rest = _pydicom_frames(whole, indices[done:], checks, **read_as)
            frame = next(rest, None)
        except DicomError:
            raise
        except Exception:  # noqa: BLE001
            raise first_error from None
        if frame is not None:
            yield frame
            yield from rest


def _assumed(ds: Dataset) -> bool:
    return bool(getattr(ds, "transfer_syntax_assumed", False))


def _read_whole(path, ds: Dataset) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole = pydicom.dcmread(path, force=_assumed(ds))
    if _assumed(ds):
        whole.file_meta = FileMetaDataset()
        whole.file_meta.TransferSyntaxUID = _syntax_of(ds)
    return whole


def _pydicom_frames(source, indices: list[int], check=None, **options) -> Iterator[np.ndarray]:
    """pydicom's frames ``indices`` of ``source``, ``check(index)`` called before each is
    decoded."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frames = iter_pixels(source, indices=indices, **options)
        for index in indices:
            if check is not None:
                check(index)
            try:
                frame = next(frames, None)
            except BaseException as exc:  # a Rust decoder's panic is no Exception
                failure = decoder_panic(exc, index)
                if failure is None:
                    raise
                raise failure from exc
            if frame is None:
                return
            yield frame


NATIVE_LITTLE_ENDIAN = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}


def read_native_frames(
    path: str | os.PathLike, ds: Dataset, indices: list[int], info: ImageInfo | None = None
) -> Iterator[np.ndarray] | None:
    """Frames of uncompressed little-endian greyscale Pixel Data read straight into
    arrays, or None when the file is not that simple case (pydicom decodes it then).

    The values are pydicom's: the unused high bits are cleared (unsigned) or filled with
    the sign (signed), as ``pydicom.pixels`` does.  ``ds`` must come from
    :func:`read_header`, which records where the Pixel Data element starts.
    """
    position = getattr(ds, "pixel_element_position", None)
    info = info or image_info(ds)
    if (
        position is None
        or info.transfer_syntax not in NATIVE_LITTLE_ENDIAN
        or info.samples_per_pixel != 1
        or info.bits_allocated not in (8, 16)
        or info.photometric not in ("MONOCHROME1", "MONOCHROME2")
    ):
        return None
    dtype = np.dtype(f"<{'i' if info.pixel_representation else 'u'}{info.bits_allocated // 8}")
    frame_bytes = info.rows * info.columns * dtype.itemsize
    with open(path, "rb") as f:
        f.seek(position)
        header = f.read(12)
    if len(header) < 8 or header[:4] != b"\xe0\x7f\x10\x00":  # (7FE0,0010) Pixel Data
        return None
    if header[4:6] in (b"OW", b"OB"):
        length, start = int.from_bytes(header[8:12], "little"), position + 12
    else:
        length, start = int.from_bytes(header[4:8], "little"), position + 8
    if length == 0xFFFFFFFF or length < frame_bytes * info.num_frames:
        return None  # undefined or short: pydicom reports or copes (padding is ignored)
    return _native_frames(path, start, frame_bytes, indices, info, dtype)


def _native_frames(path, start, frame_bytes, indices, info, dtype) -> Iterator[np.ndarray]:
    shift = info.bits_allocated - info.bits_stored
    with open(path, "rb", buffering=0) as f:
        for index in indices:
            frame = np.empty((info.rows, info.columns), dtype)
            f.seek(start + index * frame_bytes)
            if f.readinto(memoryview(frame).cast("B")) != frame_bytes:
                raise DicomError(
                    "decode", "the file ends inside the pixel data", ErrorType.TRUNCATED
                )
            if shift:
                np.left_shift(frame, shift, out=frame)
                np.right_shift(frame, shift, out=frame)
            yield frame
