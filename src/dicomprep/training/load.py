"""Reading output TIFFs (and stacks' NIfTI volumes) for training: chosen pages, one array
type, shape (frames, H, W, C).

:func:`load` decodes only the requested pages and converts the stored values to the type
the training code asks for.  The conversions are exact, fixed per stored type (never per
image, so equal stored values always give equal results):

=============  ==================  =====================  ==========================
stored         ``"uint8"``         ``"uint16"``           ``"float32"`` (in [0, 1])
=============  ==================  =====================  ==========================
uint8          v                   v * 257                v / 255
uint16         round(v / 257)      v                      v / 65535
int16          round(u / 257)      u = v + 32768          u / 65535
int32          round(u / 16843009) round(u / 65537)       u / 4294967295, u = v + 2**31
=============  ==================  =====================  ==========================

int16 and int32 are the modality values of ``voi: none`` (Hounsfield units for CT).  They
are shifted by half the type's range so that the type's minimum maps to 0 and its maximum
to the top of the requested type: the mapping is linear and the same for every file, but
it spends almost all of [0, 1] on values a CT never holds (-1024 HU becomes 0.4844,
3071 HU 0.5469).  Training code that normalises Hounsfield units itself should ask for
``dtype="native"``, which returns the stored values unchanged.  float32 TIFFs (``voi:
none`` on non-integer modality values) have no fixed range and load only as ``"native"``.
Integer results round to nearest (no tie can occur: the divisors are odd).  float32
results are the correctly rounded quotient (for every uint8, uint16 and int16 value this
equals computing in float64 and rounding to float32).
"""

from __future__ import annotations

import os

import numpy as np
import tifffile

from dicomprep.formats.geometry import Geometry
from dicomprep.formats.outputs import is_nifti
from dicomprep.formats.tiff import page_geometry

__all__ = ["DTYPES", "convert", "load", "load_with_geometry"]

DTYPES = ("uint8", "uint16", "float32", "native")

# stored type -> (offset added to reach 0..top, top of the unsigned range)
_RANGES = {
    np.dtype(np.uint8): (0, 2**8 - 1),
    np.dtype(np.uint16): (0, 2**16 - 1),
    np.dtype(np.int16): (2**15, 2**16 - 1),
    np.dtype(np.int32): (2**31, 2**32 - 1),
}


def load(path, dtype: str = "uint8", frames=None) -> np.ndarray:
    """Pages of a dicomprep TIFF as an array of shape (frames, H, W, C) of ``dtype``.

    ``dtype`` is ``"uint8"``, ``"uint16"``, ``"float32"`` (in [0, 1]) or ``"native"``
    (the stored values); see the module documentation for the exact conversions.
    ``frames`` is None (all pages), one page index, or a sequence of page indices (in
    that order, repeats allowed; negative indices count from the end).  Only those pages
    are decoded.  ``C`` is 1 for greyscale, 3 for RGB.
    """
    return load_with_geometry(path, dtype, frames)[0]


def load_with_geometry(path, dtype: str = "uint8", frames=None) -> tuple[np.ndarray, Geometry]:
    """:func:`load` and the file's :class:`~dicomprep.formats.geometry.Geometry`, in one open.

    A stack's NIfTI volume (``.nii.gz``, ``volume_format: nifti``) loads the same way, page
    by page, with the geometry recorded in it."""
    _check_dtype(dtype)
    if is_nifti(path):
        from dicomprep.formats.nifti import NiftiVolume

        volume = NiftiVolume(os.fspath(path))
        pages = volume.read(_page_indices(frames, volume.pages))[..., None]
        return convert(pages, dtype), volume.geometry()
    with tifffile.TiffFile(os.fspath(path)) as tif:
        pages = tif.pages
        total = len(pages)
        indices = _page_indices(frames, total)
        first = pages[indices[0]] if indices else pages.first
        geometry = page_geometry(pages.first, path).with_description(pages.first.description)
        height, width = int(first.imagelength), int(first.imagewidth)
        channels = int(first.samplesperpixel)
        stored = np.empty((len(indices), height, width, channels), dtype=first.dtype)
        for slot, index in enumerate(indices):
            page = pages[index]
            if page.shape != first.shape or page.dtype != first.dtype:
                raise ValueError(f"{path}: page {index} differs in shape or type from page 0")
            page.asarray(out=stored[slot].reshape(page.shape))
    return convert(stored, dtype), geometry


def _check_dtype(dtype: str) -> None:
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")


def _page_indices(frames, total: int) -> list[int]:
    if frames is None:
        return list(range(total))
    wanted = [frames] if isinstance(frames, (int, np.integer)) else list(frames)
    out = []
    for value in wanted:
        index = int(value)
        if not -total <= index < total:
            raise IndexError(f"page {index} is out of range for a file of {total} pages")
        out.append(index % total)
    return out


def convert(stored: np.ndarray, dtype: str) -> np.ndarray:
    """Stored TIFF values to ``dtype`` by the fixed per-type mapping of this module."""
    _check_dtype(dtype)
    if dtype == "native":
        return stored
    if stored.dtype not in _RANGES:
        raise ValueError(
            f"{stored.dtype} pixels have no fixed range to convert to {dtype}; "
            "load them with dtype='native'"
        )
    offset, top = _RANGES[stored.dtype]
    if dtype == "float32":
        if top < 2**24:  # exact in float32, and one correctly rounded division
            unit = stored.astype(np.float32)
            if offset:
                unit += np.float32(offset)
            unit /= np.float32(top)
            return unit
        return ((stored.astype(np.float64) + offset) / top).astype(np.float32)
    target_top = 2**8 - 1 if dtype == "uint8" else 2**16 - 1
    target = np.dtype(dtype)
    if stored.dtype == target:
        return stored
    shifted = stored.astype(np.int64) + offset
    if top == target_top:
        return shifted.astype(target)
    if top < target_top:  # widening: an exact multiple (255 * 257 = 65535)
        return (shifted * (target_top // top)).astype(target)
    divisor = top // target_top  # 257, 65537 or 16843009: exact divisors of top
    return ((shifted + divisor // 2) // divisor).astype(target)
