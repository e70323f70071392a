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

import json
from dataclasses import asdict, dataclass, replace

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
    # Set when the resize followed a target pixel spacing: the exact (sx, sy) = source spacing /
    # target spacing, which the resampling used (the sizes are rounded, the scale is not).
    exact_scale: tuple[float, float] | None = None
    # Set for a volume made from a stack of slices: where its pages lie in patient space.
    volume: VolumeGeometry | None = None

    @classmethod
    def identity(cls, width: int, height: int) -> Geometry:
        """The geometry of an image that was neither cropped, resized nor padded."""
        return cls(0, 0, width, height, width, height, width, height)

    @property
    def scale_x(self) -> float:
        """Resized width / crop width (DefaultScale x), or the exact spacing ratio."""
        if self.exact_scale is not None:
            return self.exact_scale[0]
        return self.resized_width / self.crop_width

    @property
    def scale_y(self) -> float:
        """Resized height / crop height (DefaultScale y), or the exact spacing ratio."""
        if self.exact_scale is not None:
            return self.exact_scale[1]
        return self.resized_height / self.crop_height

    def with_exact_scale(self, scale_x: float, scale_y: float) -> Geometry:
        """This geometry resized by exactly ``(scale_x, scale_y)``: the resized size is
        ``round(crop * scale)`` (at least 1) and the mapping uses the exact scale."""
        width = max(1, round(self.crop_width * scale_x))
        height = max(1, round(self.crop_height * scale_y))
        return replace(self.with_resize(width, height), exact_scale=(scale_x, scale_y))

    def with_volume(self, volume: VolumeGeometry | None) -> Geometry:
        """This geometry with the patient-space placement of a volume's pages."""
        return replace(self, volume=volume)

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
            self.exact_scale,
            self.volume,
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

    # -- volumes: (x, y, slice) <-> (x', y', page) ------------------------------

    def to_output_3d(self, points) -> np.ndarray:
        """Map source points ``(..., 3)`` of (x, y, slice index) to (x', y', page).

        The slice index is the position in the stack's order (fractional values lie between
        slices); the page follows from the slice positions (:class:`VolumeGeometry`)."""
        p = np.asarray(points, dtype=np.float64)
        out = np.empty_like(p)
        out[..., :2] = self.to_output(p[..., :2])
        out[..., 2] = self._volume().slice_to_page(p[..., 2])
        return out

    def to_source_3d(self, points) -> np.ndarray:
        """Map output points ``(..., 3)`` of (x', y', page) back to (x, y, slice index)."""
        p = np.asarray(points, dtype=np.float64)
        out = np.empty_like(p)
        out[..., :2] = self.to_source(p[..., :2])
        out[..., 2] = self._volume().page_to_slice(p[..., 2])
        return out

    def _volume(self) -> VolumeGeometry:
        if self.volume is None:
            raise ValueError("this output is not a volume made from a stack of slices")
        return self.volume

    # -- the JSON record of the values the integer tags cannot hold -------------

    def description(self, stack: StackSource | None = None) -> str | None:
        """The exact scale, the volume placement and, for a stack's volume, the series and
        slices it holds (``stack``), as JSON (None when there is none of them)."""
        if self.exact_scale is None and self.volume is None and stack is None:
            return None
        return json.dumps(self._record(stack), sort_keys=True, separators=(",", ":"))

    def record(self, stack: StackSource | None = None) -> str:
        """The whole geometry as JSON: :meth:`description` and the values a TIFF keeps in
        its integer tags (under ``"tags"``); the record of an output that has no tags, a
        stack's NIfTI volume."""
        record = self._record(stack)
        record["tags"] = {name: getattr(self, name) for name in _TAG_FIELDS}
        return json.dumps(record, sort_keys=True, separators=(",", ":"))

    def _record(self, stack: StackSource | None) -> dict:
        record: dict = {"dicomprep": 1}
        if self.exact_scale is not None:
            record["exact_scale"] = list(self.exact_scale)
        if self.volume is not None:
            record["volume"] = self.volume.to_dict()
        if stack is not None:
            record["stack"] = asdict(stack)
        return record

    @classmethod
    def from_record(cls, text: str | None) -> Geometry | None:
        """The geometry of a :meth:`record` (None for other text)."""
        record = _description_record(text)
        tags = record.get("tags") if record is not None else None
        if not isinstance(tags, dict):
            return None
        try:
            values = {name: int(tags[name]) for name in _TAG_FIELDS}
        except (KeyError, TypeError, ValueError):
            return None
        return cls(**values).with_description(text)

    def with_description(self, text: str | None) -> Geometry:
        """This geometry completed by a :meth:`description` (other text is ignored)."""
        record = _description_record(text)
        if record is None:
            return self
        scale = record.get("exact_scale")
        volume = record.get("volume")
        return replace(
            self,
            exact_scale=tuple(float(v) for v in scale) if scale is not None else None,
            volume=VolumeGeometry.from_dict(volume) if volume is not None else None,
        )


# The values of a Geometry the TIFF tags hold (DefaultCropOrigin/Size, ActiveArea, the size).
_TAG_FIELDS = (
    "crop_x",
    "crop_y",
    "crop_width",
    "crop_height",
    "resized_width",
    "resized_height",
    "canvas_width",
    "canvas_height",
    "active_left",
    "active_top",
)


@dataclass(frozen=True)
class StackSource:
    """What a stack's volume was made from, recorded in it: the Series Instance UID, the
    SOP Instance UID of its first slice (the lowest position) and how many slices it holds.
    A folder of outputs then says the same as the manifest the run wrote (dicom-manifest)."""

    series_instance_uid: str
    sop_instance_uid: str
    slices: int

    @classmethod
    def from_description(cls, text: str | None) -> StackSource | None:
        """The record in a :meth:`Geometry.description`, None when there is none (or it is
        not one this code wrote: other text, missing or mistyped values)."""
        record = _description_record(text)
        stack = record.get("stack") if record is not None else None
        if not isinstance(stack, dict):
            return None
        series, sop, slices = (
            stack.get(k) for k in ("series_instance_uid", "sop_instance_uid", "slices")
        )
        if not (isinstance(series, str) and isinstance(sop, str) and type(slices) is int):
            return None
        return cls(series, sop, slices)


def _description_record(text: str | None) -> dict | None:
    if not text or not text.lstrip().startswith("{"):
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    return record if isinstance(record, dict) and "dicomprep" in record else None


@dataclass(frozen=True)
class VolumeGeometry:
    """Where the pages of a volume lie in patient space (DICOM LPS coordinates, mm).

    ``orientation`` is ImageOrientationPatient: the direction of increasing x' (columns)
    then of increasing y' (rows); the slice normal is their cross product.  ``origin`` is
    the patient position of the centre of output pixel (0, 0) of page 0.  ``spacing`` is
    the output's (x, y, z) voxel size in mm after crop and resize; z is the median distance
    between pages.  ``slice_positions`` are the source slices' positions along the normal
    in stack order and ``page_positions`` the pages'; ``uneven_spacing`` is true when the
    source slices are not evenly spaced (then ``spacing[2]`` is a median, not exact, and
    only the positions place each slice).
    """

    orientation: tuple[float, float, float, float, float, float]
    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]
    slice_positions: tuple[float, ...]
    page_positions: tuple[float, ...]
    uneven_spacing: bool = False

    @property
    def normal(self) -> np.ndarray:
        """The slice normal: row direction x column direction."""
        o = np.asarray(self.orientation, dtype=np.float64)
        return np.cross(o[:3], o[3:])

    def slice_to_page(self, index) -> np.ndarray:
        """Page coordinate of (fractional) source slice ``index`` (through its position)."""
        position = _interp(index, self.slice_positions)
        return _inverse_interp(position, self.page_positions)

    def page_to_slice(self, page) -> np.ndarray:
        """Source slice coordinate of (fractional) ``page``."""
        position = _interp(page, self.page_positions)
        return _inverse_interp(position, self.slice_positions)

    def affine_lps(self) -> np.ndarray:
        """4 x 4 matrix from (x', y', page) voxel indices to LPS mm (evenly spaced pages)."""
        o = np.asarray(self.orientation, dtype=np.float64)
        affine = np.eye(4)
        affine[:3, 0] = o[:3] * self.spacing[0]
        affine[:3, 1] = o[3:] * self.spacing[1]
        affine[:3, 2] = self.normal * self.spacing[2]
        affine[:3, 3] = self.origin
        return affine

    def affine_ras(self) -> np.ndarray:
        """:meth:`affine_lps` in the RAS+ world of NIfTI (x and y negated)."""
        return np.diag([-1.0, -1.0, 1.0, 1.0]) @ self.affine_lps()

    def to_dict(self) -> dict:
        return {
            "orientation": list(self.orientation),
            "origin": list(self.origin),
            "spacing": list(self.spacing),
            "slice_positions": list(self.slice_positions),
            "page_positions": list(self.page_positions),
            "uneven_spacing": bool(self.uneven_spacing),
        }

    @classmethod
    def from_dict(cls, values: dict) -> VolumeGeometry:
        return cls(
            orientation=tuple(float(v) for v in values["orientation"]),
            origin=tuple(float(v) for v in values["origin"]),
            spacing=tuple(float(v) for v in values["spacing"]),
            slice_positions=tuple(float(v) for v in values["slice_positions"]),
            page_positions=tuple(float(v) for v in values["page_positions"]),
            uneven_spacing=bool(values.get("uneven_spacing", False)),
        )


def _interp(index, positions) -> np.ndarray:
    """Position at fractional ``index`` along increasing ``positions`` (linear, extended)."""
    p = np.asarray(positions, dtype=np.float64)
    i = np.asarray(index, dtype=np.float64)
    if len(p) == 1:
        return np.full_like(i, p[0])
    base = np.clip(np.floor(i), 0, len(p) - 2).astype(np.int64)
    return p[base] + (i - base) * (p[base + 1] - p[base])


def _inverse_interp(position, positions) -> np.ndarray:
    """Fractional index of ``position`` along increasing ``positions`` (linear, extended)."""
    p = np.asarray(positions, dtype=np.float64)
    x = np.asarray(position, dtype=np.float64)
    if len(p) == 1:
        return np.zeros_like(x)
    base = np.clip(np.searchsorted(p, x, side="right") - 1, 0, len(p) - 2)
    return base + (x - p[base]) / (p[base + 1] - p[base])
