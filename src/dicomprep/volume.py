"""Volume handling for multi-frame files (docs/configuration.md: volume).

``keep`` writes every frame, ``central-slice`` the frame ``n // 2``, ``max-intensity``
the element-wise maximum and ``interpolate`` linearly resamples the frame axis to
``target_frames`` frames.  Frames arrive as an iterator in position order so that at
most two frames (interpolation) or one running result (maximum) are held.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np


def central_index(num_frames: int) -> int:
    """Index of the central frame, ``n // 2``."""
    return num_frames // 2


def max_intensity(frames: Iterable[np.ndarray]) -> np.ndarray:
    """Element-wise maximum over frames, keeping one running result."""
    result = None
    for frame in frames:
        result = frame.copy() if result is None else np.maximum(result, frame, out=result)
    if result is None:
        raise ValueError("no frames")
    return result


def interpolation_positions(num_frames: int, target_frames: int) -> np.ndarray:
    """Fractional source positions of the output frames; the first and last are kept."""
    if target_frames == 1:
        return np.array([(num_frames - 1) / 2.0])
    return np.linspace(0.0, num_frames - 1, target_frames)


def interpolate_frames(
    frames: Iterable[np.ndarray], num_frames: int, target_frames: int
) -> Iterator[np.ndarray]:
    """Linear resampling along the frame axis, streaming over the input frames.

    Output frame ``k`` lies at source position ``p = k (n - 1) / (t - 1)`` and blends
    frames ``floor(p)`` and ``floor(p) + 1`` with weight ``p - floor(p)``.  Integer
    outputs are rounded to nearest.
    """
    source = iter(frames)
    lower = upper = next(source)
    upper_index = 0
    for p in interpolation_positions(num_frames, target_frames):
        base = min(int(np.floor(p)), num_frames - 1)
        needed = min(base + 1, num_frames - 1)
        while upper_index < needed:  # slide the two-frame window forward
            lower, upper = upper, next(source)
            upper_index += 1
        yield upper.copy() if needed == base else _blend(lower, upper, p - base)


def _blend(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    if t <= 0.0:
        return a.copy()
    if t >= 1.0:
        return b.copy()
    mixed = a.astype(np.float32) * np.float32(1.0 - t) + b.astype(np.float32) * np.float32(t)
    if a.dtype.kind in "iu":
        return np.rint(mixed).astype(a.dtype)
    return mixed.astype(a.dtype)
