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
    mask = foreground_mask(image, crop_max)
    if components:
        box = mask_box(mask)
        if box is None:
            return None
        x0, y0, x1, y1 = box
        sub = largest_component_mask(mask[y0:y1, x0:x1])
        inner = mask_box(sub)
        return inner[0] + x0, inner[1] + y0, inner[2] + x0, inner[3] + y0
    return mask_box(mask)


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
