"""The geometric record of one output image and the coordinate mapping it defines.

Every output TIFF is the source image cropped to a box, scaled per axis and placed
inside a (possibly padded) canvas.  :class:`Geometry` holds exactly the values that
are written to the TIFF tags (docs/output-format.md) and maps coordinates both ways:

    x' = (x - crop_x) * scale_x + active_left
    y' = (y - crop_y) * scale_y + active_top

Coordinates are continuous pixel coordinates: pixel ``(i, j)`` (column, row)
covers ``[i, i + 1) x [j, j + 1)``, so its centre is ``(i + 0.5, j + 0.5)``.
Boxes are ``(x0, y0, x1, y1)`` with exclusive ``x1, y1`` in the same convention.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Geometry:
    """Crop box, per-axis scale and padded placement of one output image.

    ``crop_*`` are in source pixels (the whole source when nothing was cropped),
    ``resized_*`` is the size of the image after resizing (before padding), ``canvas_*``
    the final output size and ``active_left/top`` the offset of the resized image inside the canvas.
    """

    crop_x: int
    crop_y: int
    crop_width: int
    crop_height: int
    resized_width: int
    resized_height: int
    canvas_width: int
    canvas_height: int
    active_left: int = 0
    active_top: int = 0

    @classmethod
    def identity(cls, width: int, height: int) -> Geometry:
        """The geometry of an image that was neither cropped, resized nor padded."""
        return cls(0, 0, width, height, width, height, width, height)

    @property
    def scale_x(self) -> float:
        """Resized width / crop width (DefaultScale x)."""
        return self.resized_width / self.crop_width

    @property
    def scale_y(self) -> float:
        """Resized height / crop height (DefaultScale y)."""
        return self.resized_height / self.crop_height

    @property
    def crop_box(self) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of the crop in source pixels, exclusive end."""
        return (
            self.crop_x,
            self.crop_y,
            self.crop_x + self.crop_width,
            self.crop_y + self.crop_height,
        )

    @property
    def active_area(self) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of the non-padded image in the output, exclusive end."""
        return (
            self.active_left,
            self.active_top,
            self.active_left + self.resized_width,
            self.active_top + self.resized_height,
        )

    def with_crop(self, x: int, y: int, width: int, height: int) -> Geometry:
        """This geometry with a crop box (resets resize and padding to the crop size)."""
        return Geometry(x, y, width, height, width, height, width, height)

    def with_resize(self, width: int, height: int) -> Geometry:
        """This geometry with the cropped image resized to ``width x height`` (no padding)."""
        return Geometry(
            self.crop_x,
            self.crop_y,
            self.crop_width,
            self.crop_height,
            width,
            height,
            width,
            height,
        )

    def with_padding(self, canvas_width: int, canvas_height: int, left: int, top: int) -> Geometry:
        """This geometry with the resized image placed at (left, top) of a larger canvas."""
        if left < 0 or top < 0:
            raise ValueError("padding offsets must be non-negative")
        if left + self.resized_width > canvas_width or top + self.resized_height > canvas_height:
            raise ValueError("the resized image does not fit the canvas")
        return Geometry(
            self.crop_x,
            self.crop_y,
            self.crop_width,
            self.crop_height,
            self.resized_width,
            self.resized_height,
            canvas_width,
            canvas_height,
            left,
            top,
        )

    # -- coordinate mapping -------------------------------------------------

    def to_output(self, points) -> np.ndarray:
        """Map source points ``(..., 2)`` of (x, y) to output coordinates."""
        p = np.asarray(points, dtype=np.float64)
        out = np.empty_like(p)
        out[..., 0] = (p[..., 0] - self.crop_x) * self.scale_x + self.active_left
        out[..., 1] = (p[..., 1] - self.crop_y) * self.scale_y + self.active_top
        return out

    def to_source(self, points) -> np.ndarray:
        """Map output points ``(..., 2)`` of (x, y) back to source coordinates."""
        p = np.asarray(points, dtype=np.float64)
        out = np.empty_like(p)
        out[..., 0] = (p[..., 0] - self.active_left) / self.scale_x + self.crop_x
        out[..., 1] = (p[..., 1] - self.active_top) / self.scale_y + self.crop_y
        return out

    def box_to_output(self, boxes) -> np.ndarray:
        """Map source boxes ``(..., 4)`` of (x0, y0, x1, y1) to output boxes."""
        b = np.asarray(boxes, dtype=np.float64)
        corners = self.to_output(b.reshape(b.shape[:-1] + (2, 2)))
        return corners.reshape(b.shape)

    def box_to_source(self, boxes) -> np.ndarray:
        """Map output boxes ``(..., 4)`` of (x0, y0, x1, y1) back to source boxes."""
        b = np.asarray(boxes, dtype=np.float64)
        corners = self.to_source(b.reshape(b.shape[:-1] + (2, 2)))
        return corners.reshape(b.shape)
