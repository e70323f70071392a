"""Broken and hostile files made from good ones: truncated, short pixel data, invalid UIDs,
a deflate bomb."""

from __future__ import annotations

import copy
import io
import warnings
import zlib
from pathlib import Path

import pydicom
from pydicom import config
from pydicom.dataset import Dataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, DeflatedExplicitVRLittleEndian

from dicomprep_testdata.encoding import encode, write_bytes
from dicomprep_testdata.mammography import mammogram


def deflate_bomb(
    path: str | Path, inflated_bytes: int = 256 * 2**20, rows: int = 64, columns: int = 64
) -> Path:
    """A small deflated file whose Pixel Data inflates to ``inflated_bytes`` zero bytes
    although its header describes a ``rows x columns`` 16-bit image.

    Written in a stream: the zeros are never held in memory.
    """
    ds = mammogram(rows=rows, columns=columns, label=False)
    del ds.PixelData
    data = encode(ds, DeflatedExplicitVRLittleEndian)
    from pydicom.filereader import _read_file_meta_info, read_preamble

    f = io.BytesIO(data)
    read_preamble(f, force=False)
    _read_file_meta_info(f)
    start = f.tell()
    dataset = zlib.decompress(data[start:], -zlib.MAX_WBITS)
    length = inflated_bytes + inflated_bytes % 2
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    zeros = bytes(2**20)
    with open(path, "wb") as out:
        out.write(data[:start])
        out.write(deflater.compress(dataset))
        out.write(deflater.compress(b"\xe0\x7f\x10\x00OW\x00\x00" + length.to_bytes(4, "little")))
        for done in range(0, length, len(zeros)):
            out.write(deflater.compress(zeros[: min(len(zeros), length - done)]))
        out.write(deflater.flush())
    return path


def _pixel_data_offset(data: bytes) -> int | None:
    """Byte offset where the top-level Pixel Data value starts, if it can be found."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(data), defer_size=64)
    elem = ds.get_item(0x7FE00010)
    if elem is None:
        return None
    # pydicom 3: DataElement.file_tell; older: RawDataElement.value_tell.
    tell = getattr(elem, "file_tell", None)
    return tell if tell is not None else getattr(elem, "value_tell", None)


def truncated_copy(src: str | Path, dest: str | Path, keep_fraction: float = 0.6) -> Path:
    """Copy the first ``keep_fraction`` of ``src``'s bytes to ``dest``, cutting inside the pixel
    data (at least 16 bytes of it kept and at least 16 bytes missing)."""
    data = Path(src).read_bytes()
    cut = int(len(data) * keep_fraction)
    start = _pixel_data_offset(data)
    if start is not None:
        cut = min(max(cut, start + 16), len(data) - 16)
    if not 0 < cut < len(data):
        raise ValueError(f"{src}: too small to truncate")
    return write_bytes(dest, data[:cut])


def with_uids(
    src_or_ds: str | Path | Dataset,
    dest: str | Path,
    *,
    study_uid: str | None = None,
    sop_uid: str | None = None,
) -> Path:
    """Write ``src_or_ds`` to ``dest`` (same transfer syntax) with other Study/SOP Instance UIDs.

    The values are written exactly as given, even when they are not valid UIDs (``"../x"``,
    ``"1.2/3"``, ``"1.2 3"``, ``"1..2"``, longer than 64 characters, empty): that is the point.
    ``None`` keeps the current value.
    """
    ds = copy.deepcopy(src_or_ds) if isinstance(src_or_ds, Dataset) else pydicom.dcmread(src_or_ds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with config.disable_value_validation():
            if study_uid is not None:
                ds.StudyInstanceUID = study_uid
            if sop_uid is not None:
                ds.SOPInstanceUID = sop_uid
                ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
            buf = io.BytesIO()
            if ds.file_meta.get("MediaStorageSOPInstanceUID"):
                ds.save_as(buf, enforce_file_format=True)
            else:
                # pydicom refuses an empty SOP Instance UID in the file meta when it enforces the
                # file format: complete the meta by hand and write it as it is (pydicom still
                # recomputes a group length that is present).
                meta = ds.file_meta
                meta.FileMetaInformationGroupLength = 0
                if "FileMetaInformationVersion" not in meta:
                    meta.FileMetaInformationVersion = b"\x00\x01"
                if "ImplementationClassUID" not in meta:
                    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
                if "ImplementationVersionName" not in meta:
                    meta.ImplementationVersionName = f"PYDICOM {pydicom.__version__}"
                ds.preamble = b"\0" * 128
                ds.save_as(buf, enforce_file_format=False)
    return write_bytes(dest, buf.getvalue())


def short_pixel_data(src: str | Path | Dataset, dest: str | Path) -> Path:
    """Write ``src`` (native transfer syntax) with Pixel Data holding only half the bytes that
    Rows × Columns × frames × samples need."""
    ds = copy.deepcopy(src) if isinstance(src, Dataset) else pydicom.dcmread(src)
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        raise ValueError("short_pixel_data needs a native (uncompressed) transfer syntax")
    data = ds.PixelData
    keep = len(data) // 2
    keep -= keep % 2
    ds.PixelData = data[:keep]
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(buf, enforce_file_format=True)
    return write_bytes(dest, buf.getvalue())
