"""Volume handling for multi-frame files and stacks (docs/configuration.md: volume).

``keep`` writes every frame, ``central-slice`` the frame ``n // 2``, ``max-intensity``
the element-wise maximum (optionally without ``skip_frames`` frames at each end),
``interpolate`` linearly resamples the frame axis to ``target_frames`` frames and
``laplacian-mip`` fuses the central frame with the maximum by Laplacian pyramids
(docs/volumes.md).  Frames arrive as an iterator in position order so that at most two
frames (interpolation), one running result (maximum) or a result and the central frame
(laplacian-mip) are held.
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


def projected_range(num_frames: int, skip_frames: int) -> range:
    """The frames a maximum projection uses: ``skip_frames`` left out at each end.

    When that would leave no frame (``num_frames <= 2 * skip_frames``) every frame is used."""
    if skip_frames < 0:
        raise ValueError("skip_frames must be >= 0")
    if num_frames > 2 * skip_frames:
        return range(skip_frames, num_frames - skip_frames)
    return range(num_frames)


def max_intensity_skipping(
    frames: Iterable[np.ndarray], num_frames: int, skip_frames: int
) -> np.ndarray:
    """:func:`max_intensity` over the frames of :func:`projected_range` (others are read and
    dropped, so a stream can pass through)."""
    kept = projected_range(num_frames, skip_frames)
    return max_intensity(f for i, f in enumerate(frames) if i in kept)


# -- laplacian-mip -------------------------------------------------------------------------

#: Levels of the pyramids (the coarsest is the low-pass base), as in the Rust tool.
PYRAMID_LEVELS = 7
#: The coarsest level keeps at least this many pixels a side.
MIN_BASE_SIDE = 16
_BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _blur(image: np.ndarray) -> np.ndarray:
    """Separable 5-tap binomial blur [1, 4, 6, 4, 1] / 16, edges replicated."""
    from scipy.ndimage import correlate1d

    out = correlate1d(image, _BINOMIAL, axis=0, mode="nearest")
    return correlate1d(out, _BINOMIAL, axis=1, mode="nearest")


def _reduce(image: np.ndarray) -> np.ndarray:
    """Blur, then keep every second row and column (sizes round up)."""
    return _blur(image)[::2, ::2]


def _expand(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Linear interpolation back to ``height x width``: coarse pixel ``i`` is fine pixel ``2i``
    (it was sampled there by :func:`_reduce`), positions past the last one take its value."""

    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.minimum(np.arange(n_out) / 2.0, n_in - 1)
        low = np.floor(pos).astype(np.int64)
        high = np.minimum(low + 1, n_in - 1)
        return low, high, pos - low

    r0, r1, fr = axis(image.shape[0], height)
    c0, c1, fc = axis(image.shape[1], width)
    rows = image[r0] * (1 - fr)[:, None] + image[r1] * fr[:, None]
    return rows[:, c0] * (1 - fc) + rows[:, c1] * fc


def gaussian_pyramid(image: np.ndarray, levels: int = PYRAMID_LEVELS) -> list[np.ndarray]:
    """``image`` and its successive :func:`_reduce` halvings, at most ``levels`` in all and
    none smaller than :data:`MIN_BASE_SIDE` pixels a side (a tiny base would carry the
    brightness of the whole image into the detail bands)."""
    pyramid = [np.asarray(image, dtype=np.float64)]
    while len(pyramid) < levels and min(pyramid[-1].shape[:2]) >= 2 * MIN_BASE_SIDE:
        pyramid.append(_reduce(pyramid[-1]))
    return pyramid


def laplacian_pyramid(image: np.ndarray, levels: int = PYRAMID_LEVELS) -> list[np.ndarray]:
    """Detail bands ``G_k - Expand(G_{k+1})`` then the coarsest Gaussian level (the base)."""
    gauss = gaussian_pyramid(image, levels)
    bands = [g - _expand(gauss[k + 1], *g.shape) for k, g in enumerate(gauss[:-1])]
    return bands + [gauss[-1]]


def collapse(pyramid: list[np.ndarray]) -> np.ndarray:
    """The image a Laplacian pyramid describes (inverse of :func:`laplacian_pyramid`)."""
    image = pyramid[-1]
    for band in reversed(pyramid[:-1]):
        image = band + _expand(image, *band.shape)
    return image


def laplacian_mip_fusion(
    central: np.ndarray, mip: np.ndarray, mip_weight: float = 1.5, levels: int = PYRAMID_LEVELS
) -> np.ndarray:
    """Fuse a central slice and a maximum-intensity projection (float64 result).

    Both are decomposed into Laplacian pyramids; every detail band of the result is
    ``L_central + mip_weight * L_mip`` and the base (the coarsest level) is the central
    slice's, so the overall brightness is the central slice's while the MIP adds the fine
    detail of structures (calcifications) from every slice.
    """
    if central.shape != mip.shape:
        raise ValueError(f"central slice {central.shape} and MIP {mip.shape} differ in shape")
    if central.ndim == 3:  # RGB: each channel on its own
        return np.stack(
            [
                laplacian_mip_fusion(central[..., c], mip[..., c], mip_weight, levels)
                for c in range(central.shape[2])
            ],
            axis=-1,
        )
    bands_central = laplacian_pyramid(central, levels)
    bands_mip = laplacian_pyramid(mip, levels)
    fused = [c + mip_weight * m for c, m in zip(bands_central[:-1], bands_mip[:-1], strict=True)]
    return collapse(fused + bands_central[-1:])


def to_dtype_of(values: np.ndarray, like: np.dtype) -> np.ndarray:
    """Float ``values`` rounded and clipped to the integer type ``like`` (floats: cast)."""
    like = np.dtype(like)
    if like.kind == "f":
        return values.astype(like)
    info = np.iinfo(like)
    return np.clip(np.rint(values), info.min, info.max).astype(like)


def laplacian_mip(
    frames: Iterable[np.ndarray],
    num_frames: int,
    mip_weight: float = 1.5,
    skip_frames: int = 5,
) -> np.ndarray:
    """Synthesized 2D view of a volume: :func:`laplacian_mip_fusion` of the central frame
    (``n // 2``) and the maximum over :func:`projected_range` frames, in the frames' type.

    Streams: holds the running maximum and the central frame only."""
    kept = projected_range(num_frames, skip_frames)
    middle = central_index(num_frames)
    central = mip = None
    for index, frame in enumerate(frames):
        if index == middle:
            central = frame.copy()
        if index in kept:
            mip = frame.copy() if mip is None else np.maximum(mip, frame, out=mip)
    if central is None or mip is None:
        raise ValueError(f"expected {num_frames} frames, got fewer")
    return to_dtype_of(laplacian_mip_fusion(central, mip, mip_weight), central.dtype)


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


def interpolate_at(frames: Iterable[np.ndarray], positions, targets) -> Iterator[np.ndarray]:
    """Frames at physical ``targets`` (increasing) from frames at increasing ``positions``.

    Each output blends the two source frames around its target linearly by distance (uneven
    source spacing is honoured); targets outside the sources take the nearest end frame.
    Holds two source frames at a time."""
    positions = np.asarray(positions, dtype=np.float64)
    n = len(positions)
    source = iter(frames)
    lower = upper = next(source)
    upper_index = 0
    for target in np.asarray(targets, dtype=np.float64):
        needed = min(int(np.searchsorted(positions, target, side="right")), n - 1)
        while upper_index < needed:
            lower, upper = upper, next(source)
            upper_index += 1
        if upper_index == 0 or target >= positions[upper_index]:
            yield upper.copy()
            continue
        a, b = positions[upper_index - 1], positions[upper_index]
        yield _blend(lower, upper, (target - a) / (b - a))
