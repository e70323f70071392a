"""Writing synthetic data sets as DICOM files in every transfer syntax pydicom can encode."""

from __future__ import annotations

import copy
import io
import warnings
from pathlib import Path

import numpy as np
import pydicom
from pydicom import config
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

_NATIVE = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
)
LOSSLESS_TRANSFER_SYNTAXES: tuple[UID, ...] = (
    *_NATIVE,
    RLELossless,
    JPEGLSLossless,
    JPEG2000Lossless,
)
"""Transfer syntaxes :func:`write` supports that reproduce the stored values exactly."""

SUPPORTED_TRANSFER_SYNTAXES: tuple[UID, ...] = (
    *LOSSLESS_TRANSFER_SYNTAXES,
    JPEGLSNearLossless,
    JPEG2000,
)
"""All transfer syntaxes :func:`write` can produce (JPEG baseline/lossless need an encoder
pydicom does not have; the bundled sample takes those from pydicom's own test files)."""


def encode(ds: Dataset, transfer_syntax: str = ExplicitVRLittleEndian) -> bytes:
    """The bytes of ``ds`` as a DICOM file (preamble + meta) in ``transfer_syntax``.

    ``ds`` itself is not modified. Native syntaxes are written directly (big endian with the
    pixel words byte-swapped); RLE Lossless uses pylibjpeg-rle when available, JPEG-LS uses
    pyjpegls, JPEG 2000 uses pylibjpeg-openjpeg (lossy: compression ratio 10).
    """
    ts = UID(transfer_syntax)
    if ts not in SUPPORTED_TRANSFER_SYNTAXES:
        raise ValueError(f"unsupported transfer syntax {ts} ({ts.name})")
    if ts.is_compressed and "PixelData" not in ds:
        raise ValueError("cannot compress a dataset without Pixel Data")
    out = copy.deepcopy(ds)
    if not hasattr(out, "file_meta"):
        out.file_meta = FileMetaDataset()
    if ts.is_compressed:
        kwargs: dict[str, object] = {"generate_instance_uid": False}
        if ts == RLELossless:
            from pydicom.pixels.encoders import RLELosslessEncoder

            if "pylibjpeg" in RLELosslessEncoder.available_plugins:
                kwargs["encoding_plugin"] = "pylibjpeg"
        elif ts == JPEG2000:
            kwargs["j2k_cr"] = [10]
        elif ts == JPEGLSNearLossless:
            kwargs["jls_error"] = 2
        out.compress(ts, **kwargs)
        out.LossyImageCompression = "01" if ts in (JPEG2000, JPEGLSNearLossless) else "00"
        if ts in (JPEG2000, JPEGLSNearLossless):
            out.LossyImageCompressionMethod = "ISO_15444_1" if ts == JPEG2000 else "ISO_14495_1"
    else:
        out.file_meta.TransferSyntaxUID = ts
        if ts == ExplicitVRBigEndian and "PixelData" in out and out.get("BitsAllocated", 8) > 8:
            # pydicom writes OW pixel bytes as they are: swap them to big endian ourselves.
            dtype = np.dtype(f"<u{out.BitsAllocated // 8}")
            words = np.frombuffer(out.PixelData, dtype=dtype)
            out.PixelData = words.astype(dtype.newbyteorder(">")).tobytes()
            out["PixelData"].VR = "OW"
    out.file_meta.MediaStorageSOPClassUID = out.SOPClassUID
    out.file_meta.MediaStorageSOPInstanceUID = out.SOPInstanceUID
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with config.disable_value_validation():
            out.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def encode_without_meta(ds: Dataset, implicit_vr: bool = True) -> bytes:
    """The bytes of ``ds`` as a bare dataset: no preamble, no file meta information (the
    pre-Part-10 layout of old archives), little endian, implicit or explicit VR."""
    out = copy.deepcopy(ds)
    out.file_meta = FileMetaDataset()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with config.disable_value_validation():
            pydicom.dcmwrite(
                buf, out, implicit_vr=implicit_vr, little_endian=True, enforce_file_format=False
            )
    return buf.getvalue()


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` (parents created) and return ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write(ds: Dataset, path: str | Path, transfer_syntax: str = ExplicitVRLittleEndian) -> Path:
    """Write ``ds`` to ``path`` (parents created) in ``transfer_syntax``; see :func:`encode`."""
    return write_bytes(path, encode(ds, transfer_syntax))
