"""Pad: place a resized image on a canvas of the requested size (docs/configuration.md: padding).

The fill is 0.  :func:`padding_offsets` decides where the image goes; :func:`pad` puts it
there.  Offsets are the image's (left, top) inside the canvas.
"""

from __future__ import annotations

import numpy as np

from dicomprep.pixels.crop import foreground_mask


def _zero_side_offset(first: np.ndarray, last: np.ndarray, room: int) -> int:
    """All padding on the side whose edge line holds more zeros; ties pad before."""
    first_zeros = int(np.count_nonzero(~foreground_mask(first)))
    last_zeros = int(np.count_nonzero(~foreground_mask(last)))
    return room if first_zeros >= last_zeros else 0


def padding_offsets(image: np.ndarray, width: int, height: int, mode: str) -> tuple[int, int]:
    """(left, top) of ``image`` inside a ``width x height`` canvas.

    Modes: ``zero`` pads on the side that is already background (the first vs last
    column and first vs last row are compared by their count of zero pixels; ties pad
    left/top), ``top-left`` puts all padding on the left and top, ``bottom-right`` on the
    right and bottom, ``center`` splits it with the odd pixel to the right/bottom.
    """
    h, w = image.shape[:2]
    room_x, room_y = width - w, height - h
    if room_x < 0 or room_y < 0:
        raise ValueError(f"image {w}x{h} is larger than the canvas {width}x{height}")
    if mode == "top-left":
        return room_x, room_y
    if mode == "bottom-right":
        return 0, 0
    if mode == "center":
        return room_x // 2, room_y // 2
    if mode == "zero":
        left = _zero_side_offset(image[:, :1], image[:, -1:], room_x) if room_x else 0
        top = _zero_side_offset(image[:1], image[-1:], room_y) if room_y else 0
        return left, top
    raise ValueError(f"unknown padding mode {mode!r}")


def pad(image: np.ndarray, width: int, height: int, left: int, top: int) -> np.ndarray:
    """``image`` on a zero canvas of ``width x height`` at offset (left, top)."""
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    canvas = np.zeros((height, width) + image.shape[2:], dtype=image.dtype)
    canvas[top : top + h, left : left + w] = image
    return canvas
