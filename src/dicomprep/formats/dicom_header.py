"""Reading DICOM headers: recognition by content (preamble, meta, or a bare data set
whose transfer syntax is inferred), headers without pixel data, and deflated files
inflated within bounds."""

from __future__ import annotations

import io
import os
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path

from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.filereader import (
    _at_pixel_data,
    _read_file_meta_info,
    read_dataset,
    read_partial,
    read_preamble,
)
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from dicomprep.core.errors import (
    DicomError,
    ErrorType,
    NotDicomError,
)
from dicomprep.formats.header_checks import (
    check_byte_order,
    check_truncated_elements,
    header_failure,
)
from dicomprep.formats.image_info import PIXEL_KEYWORDS, image_info, native_pixel_bytes

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
        if not syntax_of(ds):
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
    value = meta_transfer_syntax(head)
    if value is None:
        return _file_transfer_syntax(path) == DeflatedExplicitVRLittleEndian
    return value == DeflatedExplicitVRLittleEndian


def meta_transfer_syntax(head: bytes) -> str | None:
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


def syntax_of(ds: Dataset) -> str:
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


def is_deflated(ds: Dataset) -> bool:
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
