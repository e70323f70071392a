"""Reading DICOM files: recognition by content, headers, per-frame attributes, frames.

Headers are read by :mod:`.dicom_header` and described by :mod:`.image_info` (their
names are importable from here too); this module decodes the frames.  Headers are read
without pixel data; frames are decoded one at a time (``pydicom.pixels.iter_pixels``) so
a volume is never held whole unless a step needs it.  Uncompressed little-endian greyscale
frames, the bulk of a mammography archive, are read straight into their array
(:func:`read_native_frames`), which gives the same values as pydicom at a fifth of the
cost.  Attributes that enhanced multi-frame objects keep in functional groups (rescale,
window, pixel spacing, plane position) are looked up per frame.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator

import numpy as np
import pydicom
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.pixels import apply_color_lut, iter_pixels

from dicomprep.core.errors import (  # noqa: F401 - importable from here
    DicomError,
    ErrorType,
    NoPixelDataError,
    NotDicomError,
)
from dicomprep.formats.codestream_checks import bounded_decoding, decoder_panic, frame_checker
from dicomprep.formats.dicom_header import (  # noqa: F401 - importable from here
    DEFLATE_HEADER_LIMIT,
    META_PEEK_BYTES,
    is_deflated,
    meta_transfer_syntax,
    read_deflated,
    read_header,
    syntax_of,
)
from dicomprep.formats.image_info import (  # noqa: F401 - importable from here
    PIXEL_KEYWORDS,
    ImageInfo,
    check_plausible,
    check_rescale,
    frame_intensity,
    frame_order,
    functional_group_item,
    image_info,
    native_pixel_bytes,
    pixel_keyword,
)
from dicomprep.formats.luts import check_palette

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
    if is_deflated(ds):
        yield from _pydicom_frames(read_deflated(path)[0], indices, **read_as)
        return
    syntax = {"transfer_syntax_uid": syntax_of(ds)} if _assumed(ds) else {}
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
        whole.file_meta.TransferSyntaxUID = syntax_of(ds)
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
