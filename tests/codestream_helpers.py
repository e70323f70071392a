"""DICOM files whose Pixel Data holds codestreams made here (JPEG 2000, HTJ2K, JPEG-LS,
lossless JPEG)."""

from __future__ import annotations

import copy
from pathlib import Path

import imagecodecs
import numpy as np
from dicomprep_testdata import synthetic
from pydicom import Dataset
from pydicom.encaps import encapsulate

J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
J2K = "1.2.840.10008.1.2.4.91"
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
HTJ2K = "1.2.840.10008.1.2.4.203"
JPEGLS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.57"


def encode_frame(frame: np.ndarray, syntax: str, bits_stored: int) -> bytes:
    """One frame's codestream in ``syntax`` (lossless unless the syntax is a lossy one)."""
    if syntax == J2K_LOSSLESS:
        return imagecodecs.jpeg2k_encode(
            frame, level=0, codecformat="j2k", reversible=True, bitspersample=bits_stored
        )
    if syntax == J2K:
        return imagecodecs.jpeg2k_encode(
            frame, level=60, codecformat="j2k", reversible=False, bitspersample=bits_stored
        )
    if syntax == HTJ2K_LOSSLESS:
        return imagecodecs.htj2k_encode(frame)
    if syntax == JPEGLS_LOSSLESS:
        return imagecodecs.jpegls_encode(frame)
    if syntax == JPEG_LOSSLESS:
        return imagecodecs.ljpeg_encode(frame, bitspersample=bits_stored)
    raise ValueError(f"no encoder for {syntax}")


def frames_of(ds: Dataset) -> np.ndarray:
    """The stored frames of an uncompressed dataset as (frames, rows, columns)."""
    values = ds.pixel_array
    return values.reshape((-1,) + values.shape[-2:])


def write_encapsulated(ds: Dataset, path: str | Path, syntax: str) -> Path:
    """``ds`` (uncompressed) written to ``path`` with its frames encoded in ``syntax``."""
    out = copy.deepcopy(ds)
    codestreams = [encode_frame(f, syntax, int(ds.BitsStored)) for f in frames_of(ds)]
    out.PixelData = encapsulate(codestreams)
    out["PixelData"].VR = "OB"
    out["PixelData"].is_undefined_length = True
    out.file_meta.TransferSyntaxUID = syntax
    if syntax == J2K:
        out.LossyImageCompression = "01"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save_as(path, enforce_file_format=True)
    return path


def write_uncompressed(ds: Dataset, path: str | Path) -> Path:
    """``ds`` as an Explicit VR Little Endian file."""
    return synthetic.write(ds, path)
