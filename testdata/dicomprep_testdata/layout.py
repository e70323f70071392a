"""Where things are in a synthetic mammogram, and the values the generators give them.

Mammogram layout (``laterality="L"``; ``"R"`` is the mirror image)::

    +--------------------------------------+
    |                          [label ###] |   burned-in label, stored maximum (4095 @ 12 bit),
    |####                                  |   near the corner opposite the anatomy
    |#########                             |
    |############  breast: half-ellipse    |   stored 600..3000 (12 bit) with fibroglandular
    |#[m]#########  on the chest-wall edge |   texture and a skin-line falloff; [m] = marker
    |#########                             |   (tomosynthesis only, brightness encodes z)
    |####                                  |
    +--------------------------------------+   background: stored 0 (MONOCHROME2)

MONOCHROME1 files store ``max - value`` so that after the standard inversion the background is
still 0 and the label still the maximum. Window Center/Width (when written) map the background
to 0, the label to the maximum and the whole anatomy strictly inside ``(0, max)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Box:
    """A pixel box: ``left``/``top`` inclusive, ``right``/``bottom`` exclusive."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        """Columns in the box."""
        return self.right - self.left

    @property
    def height(self) -> int:
        """Rows in the box."""
        return self.bottom - self.top

    def union(self, other: Box) -> Box:
        """The smallest box holding both."""
        return Box(
            min(self.left, other.left),
            min(self.top, other.top),
            max(self.right, other.right),
            max(self.bottom, other.bottom),
        )

    def slices(self) -> tuple[slice, slice]:
        """``(rows, columns)`` slices for indexing an image array."""
        return slice(self.top, self.bottom), slice(self.left, self.right)


@dataclass(frozen=True)
class MammogramLayout:
    """Where things are in a synthetic mammogram (or in every tomosynthesis frame)."""

    rows: int
    columns: int
    laterality: str
    anatomy: Box
    """Bounding box of the breast (touches the chest-wall edge)."""
    label: Box | None
    """Bounding box of the burned-in label (None without a label)."""
    marker: Box
    """The tomosynthesis frame marker (inside the anatomy, near the chest wall)."""

    @property
    def foreground(self) -> Box:
        """Union of anatomy and label: what a zero-border crop keeps."""
        return self.anatomy if self.label is None else self.anatomy.union(self.label)


def max_value(bits_stored: int) -> int:
    """The largest stored value at ``bits_stored`` (8..16): the label's value."""
    if not 8 <= bits_stored <= 16:
        raise ValueError(f"bits_stored must be 8..16, got {bits_stored}")
    return (1 << bits_stored) - 1


def anatomy_range(bits_stored: int) -> tuple[int, int]:
    """Stored (MONOCHROME2) value range of the anatomy: 600..3000 at 12 bits."""
    top = max_value(bits_stored)
    return round(top * 600 / 4095), round(top * 3000 / 4095)


def mammogram_window(bits_stored: int = 12, photometric: str = "MONOCHROME2") -> tuple[int, int]:
    """``(center, width)`` written by the generators: background → 0, label → max, anatomy
    strictly inside. For MONOCHROME1 the window is mirrored onto the inverted stored values."""
    top = max_value(bits_stored)
    center = round(top * 1900 / 4095)
    width = round(top * 3200 / 4095)
    if photometric == "MONOCHROME1":
        center = top + 1 - center
    return center, width


def check_laterality(laterality: str) -> None:
    """Refuse a laterality other than ``"L"`` or ``"R"`` (ValueError)."""
    if laterality not in ("L", "R"):
        raise ValueError(f"laterality must be 'L' or 'R', got {laterality!r}")


def check_photometric(photometric: str) -> None:
    """Refuse a photometric interpretation other than MONOCHROME1/2 (ValueError)."""
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"photometric must be MONOCHROME1 or MONOCHROME2, got {photometric!r}")


def _ellipse(rows: int, columns: int, scale: float = 1.0) -> tuple[float, float, float]:
    """Half-ellipse of a left breast: (semi-axis across, semi-axis along, centre row)."""
    return 0.60 * columns * scale, 0.44 * rows * (0.9 + 0.1 * scale), rows / 2.0


def radius2(rows: int, columns: int, scale: float = 1.0) -> np.ndarray:
    """Squared normalised radius of the (left-breast) half-ellipse, float32 H×W."""
    a, b, cy = _ellipse(rows, columns, scale)
    xs = ((np.arange(columns, dtype=np.float32) + 0.5) / np.float32(a)) ** 2
    ys = ((np.arange(rows, dtype=np.float32) + 0.5 - np.float32(cy)) / np.float32(b)) ** 2
    return ys[:, None] + xs[None, :]


def label_box(rows: int, columns: int, laterality: str) -> Box:
    """The burned-in label's box: near the top corner opposite the chest wall."""
    height = max(8, round(0.045 * rows))
    width = max(24, round(0.16 * columns))
    top = max(1, round(0.03 * rows))
    margin = max(1, round(0.04 * columns))
    left = columns - margin - width if laterality == "L" else margin
    return Box(left, top, left + width, top + height)


def frame_marker_box(rows: int, columns: int, laterality: str = "L") -> Box:
    """The square that carries the tomosynthesis frame marker (inside the anatomy)."""
    size = max(4, round(0.025 * columns))
    left = max(1, round(0.04 * columns))
    if laterality == "R":
        left = columns - left - size
    top = rows // 2 - size // 2
    return Box(left, top, left + size, top + size)


def frame_marker_value(k: int, frames: int, bits_stored: int = 12) -> int:
    """Stored value (MONOCHROME2 sense) of the marker of the frame at z index ``k``.

    Rises linearly from the anatomy's minimum (k = 0) to its maximum (k = frames - 1), so the
    brightness of the marker square tells the frame's position along z, survives any monotonic
    windowing and stays linear under interpolation along z. For MONOCHROME1 the stored value is
    ``2**bits_stored - 1`` minus this (the displayed brightness is the same).
    """
    lo, hi = anatomy_range(bits_stored)
    if frames <= 1:
        return lo
    return lo + round((hi - lo) * k / (frames - 1))


def mammogram_layout(
    rows: int = 3328, columns: int = 2560, laterality: str = "L", label: bool = True
) -> MammogramLayout:
    """The boxes of a :func:`mammogram` with these arguments (computed from the same masks)."""
    check_laterality(laterality)
    inside = radius2(rows, columns) <= 1.0
    if laterality == "R":
        inside = inside[:, ::-1]
    r_any = np.flatnonzero(inside.any(axis=1))
    c_any = np.flatnonzero(inside.any(axis=0))
    anatomy = Box(int(c_any[0]), int(r_any[0]), int(c_any[-1]) + 1, int(r_any[-1]) + 1)
    return MammogramLayout(
        rows=rows,
        columns=columns,
        laterality=laterality,
        anatomy=anatomy,
        label=label_box(rows, columns, laterality) if label else None,
        marker=frame_marker_box(rows, columns, laterality),
    )
