"""Resampling to a physical pixel spacing (docs/volumes.md: spacing).

``spacing: [sx, sy]`` (or ``[sx, sy, sz]``) in mm replaces ``size``: the scale of each axis is
*exactly* source spacing / target spacing, the output has ``round(crop * scale)`` pixels
(at least one) and output pixel ``o`` covers source pixels ``[o / s, (o + 1) / s)``, so the
mapping ``x' = (x - crop_x) * s`` of :mod:`dicomprep.formats.geometry` holds with the exact ``s``.
The kernels are those of :mod:`dicomprep.pixels.resize` (anti-aliased when shrinking).
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from dicomprep.core.errors import ErrorType
from dicomprep.formats.decode import DicomError
from dicomprep.pixels.resize import KERNELS, check_filter, resample_swapped

if TYPE_CHECKING:  # imported where the first matrix is built
    import scipy.sparse


def spacing_scale(
    pixel_spacing: tuple[float, float] | None, target: tuple[float, ...]
) -> tuple[float, float]:
    """(sx, sy) = source spacing / target spacing per axis.

    ``pixel_spacing`` is (row spacing, column spacing) in mm as DICOM gives it (Pixel
    Spacing, else Imager Pixel Spacing): x uses the column spacing, y the row spacing.
    Raises DicomError (stage ``transform``) when the file has no spacing."""
    if pixel_spacing is None:
        raise DicomError(
            "transform",
            "spacing is set but this file has neither Pixel Spacing nor Imager Pixel Spacing",
            ErrorType.NO_PIXEL_SPACING,
        )
    row_mm, column_mm = pixel_spacing
    return column_mm / target[0], row_mm / target[1]


@lru_cache(maxsize=64)
def _scale_weights(
    n_in: int, n_out: int, ratio: float, filter: str, offset: float = 0.0
) -> scipy.sparse.csr_array:
    """``n_out x n_in`` matrix resampling one axis with ``ratio`` source pixels per output
    (the input samples ``offset`` pixels left of their centres, see ``resize``)."""
    import scipy.sparse

    kernel, support = KERNELS[filter]
    center = (np.arange(n_out, dtype=np.float64) + 0.5) * ratio + offset
    sratio = max(ratio, 1.0)
    if support == 0:  # nearest: the pixel under the centre
        index = np.clip(np.floor(center).astype(np.int64), 0, n_in - 1)[:, None]
        weights = np.ones_like(index, dtype=np.float64)
        inside = np.ones_like(index, dtype=bool)
    else:
        left = np.clip(np.floor(center - support * sratio).astype(np.int64), 0, n_in - 1)
        right = np.clip(np.ceil(center + support * sratio).astype(np.int64), left + 1, n_in)
        index = left[:, None] + np.arange(int((right - left).max()))
        inside = index < right[:, None]
        weights = np.where(inside, kernel((index - (center - 0.5)[:, None]) / sratio), 0.0)
        total = weights.sum(axis=1, keepdims=True)
        weights = np.where(total != 0, weights / np.where(total == 0, 1, total), 0.0)
    rows = np.broadcast_to(np.arange(n_out)[:, None], index.shape)
    matrix = scipy.sparse.csr_array(
        (weights[inside], (rows[inside], index[inside])), shape=(n_out, n_in)
    )
    matrix.sort_indices()
    return matrix


def resample_by_scale(
    image: np.ndarray,
    scale_x: float,
    scale_y: float,
    width: int,
    height: int,
    filter: str = "triangle",
    offset: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Resample ``image`` (H x W [x C]) by exactly ``scale_x, scale_y`` to ``width x height``.

    Same dtype out (integers rounded and clipped); computed in double precision.
    ``offset`` as in :func:`dicomprep.pixels.resize.resize`."""
    check_filter(filter)
    image = np.asarray(image)
    in_height, in_width = image.shape[:2]
    dx, dy = (float(v) for v in offset)
    if (width, height) == (in_width, in_height) and scale_x == scale_y == 1.0 and dx == dy == 0:
        return image.copy()
    wy = _scale_weights(in_height, height, 1.0 / scale_y, filter, dy)
    wx = _scale_weights(in_width, width, 1.0 / scale_x, filter, dx)
    return resample_swapped(resample_swapped(image, wy), wx, image.dtype)


def slice_count(first: float, last: float, spacing_z: float) -> int:
    """How many pages :func:`slice_targets` gives (worked out without making them)."""
    return max(int(np.floor((last - first) / spacing_z + 1e-6)) + 1, 1)


def slice_targets(first: float, last: float, spacing_z: float) -> np.ndarray:
    """Page positions every ``spacing_z`` mm from ``first`` up to ``last`` (inclusive)."""
    return first + spacing_z * np.arange(slice_count(first, last, spacing_z))
