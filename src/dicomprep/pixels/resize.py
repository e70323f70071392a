"""Resizing with separable, anti-aliased convolution filters (docs/configuration.md: size, filter).

The convention is the one of image-rs ``imageops::resize``; it is applied to each axis
separately.  For an axis of ``n_in`` input and ``n_out`` output pixels::

    ratio = n_in / n_out            sratio = max(ratio, 1)      src_support = support * sratio
    center = (o + 0.5) * ratio                                  (output pixel o, input units)
    left   = clamp(floor(center - src_support), 0, n_in - 1)
    right  = clamp(ceil(center + src_support), left + 1, n_in)
    w_i    = kernel((i - (center - 0.5)) / sratio)   for i in [left, right), normalised to sum 1

Pixel ``i`` covers ``[i, i + 1)`` and its centre is ``i + 0.5``, the convention of
:mod:`dicomprep.formats.geometry`.  When shrinking, the kernel is stretched by the reduction factor
(``sratio``), so every input pixel contributes: the result is anti-aliased, like Pillow's
``Image.resize`` and unlike spline interpolation of the unfiltered image.  As in image-rs,
``ratio`` and ``center`` are computed in single precision, so the chosen input pixels are the
same as image-rs's.

The kernels and their support (in output pixels) are:

============  =======  ===========================================================
filter        support  kernel
============  =======  ===========================================================
nearest       0        box: the single input pixel ``floor(center)`` (an index gather)
triangle      1        ``max(0, 1 - |x|)`` (bilinear)
catmull-rom   2        cubic convolution, Keys ``a = -0.5`` (Mitchell-Netravali B=0, C=0.5)
gaussian      3        ``exp(-x^2 / (2 sigma^2)) / sqrt(2 pi sigma^2)``, ``sigma = 0.5``
lanczos3      3        ``sinc(x) sinc(x / 3)`` for ``|x| < 3``
============  =======  ===========================================================

Each axis is one sparse weight matrix (cached per size and filter).  The image is resized by
two sparse matrix products, the vertical pass first as in image-rs, with an intermediate that is
neither rounded nor clipped.  8- and 16-bit integer and float32 images are computed in single
precision like image-rs; int32 and float64 images in double precision so that their values
survive the trip.  Integer results are clipped to the range of their type and rounded half away
from zero (as image-rs does).  The results agree with image-rs to within one unit of the last
place (float32 summation order).

Two details follow image-rs on purpose: the same size returns an unfiltered copy, although the
gaussian (the only kernel that is not zero at the neighbouring pixels) blurs an axis whose size
does not change when the other one does; and a centre that is exactly on a pixel boundary in
exact arithmetic may fall just below it in float32, which decides the pixel ``nearest`` picks.
Unlike image-rs, float results are not clipped to ``[0, 1]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # imported where the first matrix is built (0.2-0.4 s of start-up)
    import scipy.sparse

__all__ = ["FILTERS", "KERNELS", "check_filter", "fit_size", "resample_swapped", "resize"]

FILTERS: tuple[str, ...] = ("nearest", "triangle", "catmull-rom", "gaussian", "lanczos3")

_SUPPORTED_DTYPES = tuple(
    np.dtype(t) for t in (np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64)
)


# -- kernels -------------------------------------------------------------------------------


def _box(x: np.ndarray) -> np.ndarray:
    """Box kernel: every pixel inside the (zero) support counts fully."""
    return np.ones_like(x)


def _triangle(x: np.ndarray) -> np.ndarray:
    """Triangle (tent) kernel, support 1: linear interpolation."""
    return np.maximum(0.0, 1.0 - np.abs(x))


def _catmull_rom(x: np.ndarray) -> np.ndarray:
    """Catmull-Rom cubic (Mitchell-Netravali B=0, C=0.5; Keys a=-0.5), support 2."""
    a = np.abs(x)
    inner = (1.5 * a - 2.5) * a * a + 1.0
    outer = ((-0.5 * a + 2.5) * a - 4.0) * a + 2.0
    return np.where(a < 1.0, inner, np.where(a < 2.0, outer, 0.0))


def _gaussian(x: np.ndarray, sigma: float = 0.5) -> np.ndarray:
    """Gaussian with standard deviation ``sigma`` (0.5 as in image-rs), used with support 3."""
    return np.exp(-(x * x) / (2.0 * sigma * sigma)) / (math.sqrt(2.0 * math.pi) * sigma)


def _lanczos3(x: np.ndarray) -> np.ndarray:
    """Lanczos window of three lobes: ``sinc(x) sinc(x/3)`` inside ``|x| < 3``, else 0."""
    return np.where(np.abs(x) < 3.0, np.sinc(x) * np.sinc(x / 3.0), 0.0)


KERNELS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], float]] = {
    "nearest": (_box, 0.0),
    "triangle": (_triangle, 1.0),
    "catmull-rom": (_catmull_rom, 2.0),
    "gaussian": (_gaussian, 3.0),
    "lanczos3": (_lanczos3, 3.0),
}


# -- sizes and sampling positions ----------------------------------------------------------


def fit_size(width: int, height: int, max_width: int, max_height: int) -> tuple[int, int]:
    """The size of ``width x height`` scaled by one factor to fit ``max_width x max_height``.

    ``s = min(max_width / width, max_height / height)`` scales both axes; the new size is
    ``(round(width * s), round(height * s))``, never smaller than 1 pixel.  Both enlarging and
    shrinking are possible: one side always ends up equal to its maximum.
    """
    for name, value in (
        ("width", width),
        ("height", height),
        ("max_width", max_width),
        ("max_height", max_height),
    ):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    s = min(max_width / width, max_height / height)
    return max(1, round(width * s)), max(1, round(height * s))


def check_filter(filter: str) -> None:
    """Raise ValueError unless ``filter`` is one of :data:`FILTERS`."""
    if filter not in KERNELS:
        raise ValueError(f"unknown resize filter {filter!r}; valid filters: {', '.join(FILTERS)}")


def _positions(
    n_in: int, n_out: int, support: float, offset: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.float32]:
    """Sampling positions of one axis: ``(center, left, right, sratio)`` per output pixel.

    Computed in float32 as image-rs does; ``left``/``right`` are int64 slice bounds with
    ``0 <= left < right <= n_in``.  ``offset`` (input pixels) moves every centre: the input
    samples lie that far left of the pixel centres the convention puts them at.
    """
    ratio = np.float32(n_in) / np.float32(n_out)
    sratio = max(ratio, np.float32(1.0))
    src_support = np.float32(support) * sratio
    center = (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * ratio
    if offset:
        center += np.float32(offset)
    left = np.clip(np.floor(center - src_support).astype(np.int64), 0, n_in - 1)
    right = np.clip(np.ceil(center + src_support).astype(np.int64), left + 1, n_in)
    return center, left, right, sratio


@lru_cache(maxsize=64)
def _nearest_indices(n_in: int, n_out: int, offset: float = 0.0) -> np.ndarray:
    """The input index ``floor(center)`` that nearest-neighbour picks for each output index.

    With zero support the window ``[left, right)`` holds exactly one pixel, ``left``.
    """
    _, left, _, _ = _positions(n_in, n_out, 0.0, offset)
    left.flags.writeable = False
    return left


@lru_cache(maxsize=64)
def _weights(
    n_in: int, n_out: int, filter: str, dtype: type = np.float32, offset: float = 0.0
) -> scipy.sparse.csr_array:
    """The ``n_out x n_in`` resampling matrix of one axis, in ``dtype`` (rows sum to 1)."""
    import scipy.sparse

    kernel, support = KERNELS[filter]
    center, left, right, sratio = _positions(n_in, n_out, support, offset)
    taps = int((right - left).max())
    index = left[:, None] + np.arange(taps)
    inside = index < right[:, None]
    # The window comes from single-precision centres (as in image-rs); the distances and the
    # kernel are double precision, so that int32 and float64 images keep their precision.
    x = (index - (center.astype(np.float64) - 0.5)[:, None]) / float(sratio)
    w = np.where(inside, kernel(x), 0.0)
    w /= w.sum(axis=1, keepdims=True)
    rows = np.broadcast_to(np.arange(n_out)[:, None], index.shape)
    matrix = scipy.sparse.csr_array(
        (w[inside].astype(dtype), (rows[inside], index[inside])), shape=(n_out, n_in)
    )
    matrix.sort_indices()
    return matrix


# -- resampling ----------------------------------------------------------------------------

#: Columns per block of a pass; a block and its result stay in the CPU caches while they are
#: converted, multiplied and transposed (a whole-image transpose is several times slower on
#: widths such as 2048 or 2560, whose row strides alias in the caches).
_BLOCK_COLUMNS = 128


def _round_to(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Cast float ``values`` (overwritten) to ``dtype``.

    Integers are clipped to the range of the type and rounded half away from zero, the rule
    of image-rs; floats are only cast.
    """
    if dtype.kind == "f":
        return values.astype(dtype, copy=False)
    info = np.iinfo(dtype)
    np.clip(values, info.min, info.max, out=values)
    if info.min == 0:
        values += 0.5
        np.floor(values, out=values)
    else:
        sign = np.sign(values)
        np.abs(values, out=values)
        values += 0.5
        np.floor(values, out=values)
        values *= sign
    return values.astype(dtype)


def resample_swapped(
    data: np.ndarray, matrix: scipy.sparse.csr_array, dtype: np.dtype | None = None
) -> np.ndarray:
    """Resample axis 0 of ``data`` with ``matrix`` and return it with axes 0 and 1 swapped.

    ``data`` is ``n_in x M [x C]``; the result is C-contiguous ``M x n_out [x C]``, in ``dtype``
    (rounded by :func:`_round_to`) or, without ``dtype``, in the promoted float type of the
    matrix and the data (scipy converts integer data on the fly).  Two such passes, one per
    axis, resize an image and give back its orientation.
    """
    n_out = matrix.shape[0]
    columns = data.shape[1]
    work = np.result_type(matrix.dtype, data.dtype)
    out = np.empty((columns, n_out) + data.shape[2:], dtype=work if dtype is None else dtype)
    for start in range(0, columns, _BLOCK_COLUMNS):
        block = np.ascontiguousarray(data[:, start : start + _BLOCK_COLUMNS])
        values = matrix @ block.reshape(block.shape[0], -1)
        if dtype is not None:
            values = _round_to(values, dtype)
        values = values.reshape((n_out,) + block.shape[1:])
        out[start : start + _BLOCK_COLUMNS] = values.swapaxes(0, 1)
    return out


def resize(
    image: np.ndarray,
    width: int,
    height: int,
    filter: str = "triangle",
    offset: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Resize ``image`` to ``width x height`` pixels with one of :data:`FILTERS`.

    ``image`` is ``H x W`` or ``H x W x C`` of dtype uint8, uint16, int16, int32, float32 or
    float64 (any byte order; the result is in native order).  The result has the same dtype and
    shape ``(height, width[, C])``.  Integer results are rounded to the nearest value and clipped
    to the range of the dtype.  The same size returns a copy; ``nearest`` only picks pixels, so
    it is exact for every dtype.

    ``offset`` (x, y), in input pixels, says that the input's samples lie that far left of
    (above) the pixel centres of the convention: a frame decoded at a reduced JPEG 2000
    resolution, whose pixel ``k`` is centred on the first source pixel of its block
    (:func:`reduced_sample_offset`).  The output is then resampled where the convention's
    pixels are, even at the same size.

    Raises ValueError for an unknown filter, a size below 1 x 1, an empty image or a shape that
    is not an image, and TypeError for an unsupported dtype.
    """
    check_filter(filter)
    image = np.asarray(image)
    if not image.dtype.isnative:
        image = image.astype(image.dtype.newbyteorder("="))
    if image.ndim not in (2, 3):
        raise ValueError(f"expected an H x W or H x W x C image, got shape {image.shape}")
    if image.dtype not in _SUPPORTED_DTYPES:
        raise TypeError(
            f"unsupported image dtype {image.dtype}; "
            "expected uint8, uint16, int16, int32, float32 or float64"
        )
    if width < 1 or height < 1:
        raise ValueError(f"the new size must be at least 1 x 1, got {width} x {height}")
    in_height, in_width = image.shape[:2]
    if in_height == 0 or in_width == 0:
        raise ValueError(f"cannot resize an empty image of shape {image.shape}")
    dx, dy = (float(v) for v in offset)
    if (width, height) == (in_width, in_height) and dx == dy == 0.0:
        return image.copy()

    if filter == "nearest":
        rows = _nearest_indices(in_height, height, dy)
        columns = _nearest_indices(in_width, width, dx)
        return np.take(np.take(image, rows, axis=0), columns, axis=1)

    precision = np.float64 if image.dtype in (np.int32, np.float64) else np.float32
    wy = _weights(in_height, height, filter, precision, dy)
    wx = _weights(in_width, width, filter, precision, dx)
    # Vertical pass, then horizontal pass, as image-rs does; each pass also swaps the axes.
    transposed = resample_swapped(image, wy)
    return resample_swapped(transposed, wx, image.dtype)


def reduced_sample_offset(level: int) -> float:
    """How far (in pixels of ``level``) a pixel of a frame decoded at wavelet ``level`` lies
    left of (above) its block's centre: it is centred on the block's first source pixel,
    ``2^level / 2 - 1/2`` source pixels from the centre (0 at full resolution)."""
    block = 1 << level
    return (block / 2 - 0.5) / block
