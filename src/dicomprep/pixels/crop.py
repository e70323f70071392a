"""Crop: the bounding box of an image's foreground (docs/configuration.md: crop).

Background is zero (and, with ``crop_max``, the output type's maximum, which ignores
burned-in white labels).  For colour images a pixel is background when all its channels
are.  Boxes are ``(x0, y0, x1, y1)`` with exclusive ends, in pixels.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

Box = tuple[int, int, int, int]


def background_value_max(dtype: np.dtype) -> int | float:
    """The output type's maximum, the second background value with ``crop_max``."""
    dtype = np.dtype(dtype)
    return np.iinfo(dtype).max if dtype.kind in "iu" else np.finfo(dtype).max


def foreground_mask(image: np.ndarray, crop_max: bool = False) -> np.ndarray:
    """Boolean HxW mask of pixels that are not background."""
    if crop_max:
        top = background_value_max(image.dtype)
        fg = (image != 0) & (image != top)
    else:
        fg = image != 0
    return fg.any(axis=-1) if image.ndim == 3 else fg


def mask_box(mask: np.ndarray) -> Box | None:
    """Bounding box of the True pixels of a mask, None when there are none."""
    cols = np.flatnonzero(mask.any(axis=0))
    if cols.size == 0:
        return None
    rows = np.flatnonzero(mask[:, cols[0] : cols[-1] + 1].any(axis=1))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def largest_component_mask(mask: np.ndarray) -> np.ndarray:
    """Only the largest 8-connected region of a mask (scikit-image ``measure.label``)."""
    from skimage.measure import label

    labels = label(mask, connectivity=2)
    if labels.max() <= 1:
        return mask
    counts = np.bincount(labels.ravel())
    counts[0] = 0
    return labels == int(np.argmax(counts))


def foreground_box(
    image: np.ndarray, crop_max: bool = False, components: bool = False
) -> Box | None:
    """The crop box of one image: its foreground, or its largest foreground region."""
    return mask_foreground_box(foreground_mask(image, crop_max), components)


def mask_foreground_box(mask: np.ndarray, components: bool = False) -> Box | None:
    """The crop box of a foreground ``mask``: its True pixels, or its largest region."""
    if components:
        box = mask_box(mask)
        if box is None:
            return None
        x0, y0, x1, y1 = box
        sub = largest_component_mask(mask[y0:y1, x0:x1])
        inner = mask_box(sub)
        return inner[0] + x0, inner[1] + y0, inner[2] + x0, inner[3] + y0
    return mask_box(mask)


def _shifted(raw: np.ndarray, lo: int) -> tuple[np.ndarray, np.dtype, object]:
    """``raw`` viewed unsigned and ``lo`` in that type: ``raw - lo`` wraps around, so that
    ``lo <= raw <= hi`` is the one comparison ``raw - lo <= hi - lo``."""
    unsigned = np.dtype(f"u{raw.dtype.itemsize}")
    return raw.view(unsigned), unsigned, np.array(lo, dtype=raw.dtype).view(unsigned)


def interval_mask(raw: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """The mask ``lo <= raw <= hi`` of an 8/16-bit integer image (all False when hi < lo)."""
    if hi < lo:
        return np.zeros(raw.shape, dtype=bool)
    values, unsigned, offset = _shifted(raw, lo)
    shifted = np.subtract(values, offset, dtype=unsigned)
    return np.less_equal(shifted, unsigned.type(hi - lo))


def interval_box(raw: np.ndarray, lo: int, hi: int, rows_per_block: int = 128) -> Box | None:
    """:func:`mask_box` of :func:`interval_mask`, a block of rows at a time, without the
    mask: a row or column holds a value in ``lo..hi`` when its smallest ``raw - lo`` (wrapped
    around) is at most ``hi - lo``.  No image-sized temporary is made."""
    if hi < lo:
        return None
    values, unsigned, offset = _shifted(raw, lo)
    width = unsigned.type(hi - lo)
    height = raw.shape[0]
    row_least = np.empty(height, dtype=unsigned)
    column_least = np.full(raw.shape[1], np.iinfo(unsigned).max, dtype=unsigned)
    shifted = np.empty((min(rows_per_block, height), raw.shape[1]), dtype=unsigned)
    for start in range(0, height, rows_per_block):
        block = values[start : start + rows_per_block]
        n = block.shape[0]
        np.subtract(block, offset, out=shifted[:n])
        np.min(shifted[:n], axis=1, out=row_least[start : start + n])
        np.minimum(column_least, np.min(shifted[:n], axis=0), out=column_least)
    columns, rows = np.flatnonzero(column_least <= width), np.flatnonzero(row_least <= width)
    if columns.size == 0:
        return None
    return int(columns[0]), int(rows[0]), int(columns[-1]) + 1, int(rows[-1]) + 1


def union_box(boxes: Iterable[Box | None]) -> Box | None:
    """The smallest box holding every given box (None entries are ignored)."""
    present = [b for b in boxes if b is not None]
    if not present:
        return None
    x0, y0, x1, y1 = zip(*present, strict=True)
    return min(x0), min(y0), max(x1), max(y1)


def crop(image: np.ndarray, box: Box) -> np.ndarray:
    """The pixels inside ``box`` (a view)."""
    x0, y0, x1, y1 = box
    return image[y0:y1, x0:x1]
