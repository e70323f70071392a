"""Annotation coordinates between source DICOM pixels and output TIFF pixels.

A table of annotations (CSV or a DataFrame) has one row per box or point:

* ``sop_instance_uid`` (required): the image the annotation belongs to;
* a box ``x0, y0, x1, y1`` (exclusive end, continuous pixel coordinates) and/or a point
  ``x, y``;
* any other columns (labels, ``frame`` of a multi-frame image, ...) pass through
  unchanged.  Crop, resize and padding are the same on every page of a TIFF, so a frame's
  annotation maps with the file's geometry.  An annotation of a slice that became part of
  a stacked series (``series: stack``) is found through ``slices.csv`` and gets the
  ``page`` of the volume that holds the slice.

:func:`map_annotations` finds each SOP Instance UID in the dataset's manifest, reads the
TIFF's :class:`~dicomprep.formats.geometry.Geometry` and replaces the coordinates with their
mapped values (source → output, or output → source with ``inverse=True``), adding:

* ``status``: ``ok``, ``not-in-manifest``, ``unreadable-tiff``, ``no-coordinates`` or
  ``invalid-box`` (x1 < x0 or y1 < y0); coordinates of rows that are not ``ok`` are left
  as they were;
* ``clipped``: true when part of the box (or the point) lies outside what the output
  keeps — the crop box in source pixels, the active area (the non-padded image) in
  output pixels — so crop or padding cut it;
* ``outside``: true when nothing of the box (or the point) is kept;
* ``study_instance_uid`` and ``path`` (the TIFF, relative to the dataset root);
* ``page``: for slices of a stack, the output page nearest to the slice (other rows keep
  the table's own ``page`` value, or none).

With ``clip=True`` boxes are first clamped to the kept region, so mapped boxes never
reach into padding (points are never moved).

COCO JSON is read and written by :func:`map_coco`: each image is matched by its
``sop_instance_uid`` attribute when present, else by its ``file_name`` without folder and
without a ``.dcm``/``.dicom``/``.tif``/``.tiff``/``.png``/``.jpg`` extension.  ``bbox``
([x, y, width, height]), ``segmentation`` polygons, ``keypoints`` and ``area`` are mapped;
mapped images get the TIFF path as ``file_name``, the output size as ``width``/``height``
(the source values are kept as ``source_file_name``, ``source_width``, ``source_height``
and restored by the inverse mapping) and a ``sop_instance_uid``; every annotation gets
``clipped`` and ``outside``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from dicomprep.formats.geometry import Geometry
from dicomprep.formats.manifest import read_manifest
from dicomprep.formats.outputs import read_output_geometry

__all__ = [
    "BOX_COLUMNS",
    "POINT_COLUMNS",
    "GeometryLookup",
    "main",
    "map_annotations",
    "map_coco",
]

BOX_COLUMNS = ["x0", "y0", "x1", "y1"]
POINT_COLUMNS = ["x", "y"]

OK = "ok"
NOT_IN_MANIFEST = "not-in-manifest"
UNREADABLE = "unreadable-tiff"
NO_COORDINATES = "no-coordinates"
INVALID_BOX = "invalid-box"


class GeometryLookup:
    """SOP Instance UID → (study UID, TIFF path, Geometry) from a dataset's manifest, and
    for the slices of stacked series (``slices.csv`` beside it) their volume and page.

    Geometries are read from the TIFF tags on first use and cached.
    """

    def __init__(self, root, manifest=None):
        self.root = Path(root)
        table = read_manifest(manifest or self.root / "manifest.csv")
        self._rows = {
            str(sop): (str(study), str(path))
            for study, sop, path in zip(
                table["study_instance_uid"], table["sop_instance_uid"], table["path"], strict=True
            )
        }
        self._pages: dict[str, int] = {}
        slices = self.root / "slices.csv"
        if slices.exists():
            study_of = dict(zip(table["path"], table["study_instance_uid"], strict=True))
            placed = pd.read_csv(slices, dtype={"sop_instance_uid": str, "path": str})
            for sop, path, page in zip(
                placed["sop_instance_uid"], placed["path"], placed["page"], strict=True
            ):
                if path in study_of:
                    self._rows[sop] = (str(study_of[path]), path)
                    self._pages[sop] = int(page)
        self._geometries: dict[str, Geometry | Exception] = {}

    def page(self, sop: str) -> int | None:
        """The output page of a stacked slice (None for an image that is its own TIFF)."""
        return self._pages.get(sop)

    def __contains__(self, sop: str) -> bool:
        return sop in self._rows

    def study_and_path(self, sop: str) -> tuple[str, str]:
        return self._rows[sop]

    def geometry(self, sop: str) -> Geometry:
        """The geometry of ``sop``'s TIFF; raises OSError/ValueError when unreadable."""
        path = self._rows[sop][1]
        cached = self._geometries.get(path)
        if cached is None:
            try:
                cached = read_output_geometry(self.root / path)
            except (OSError, ValueError) as exc:
                cached = exc
            self._geometries[path] = cached
        if isinstance(cached, Exception):
            raise cached
        return cached


def kept_region(geometry: Geometry, inverse: bool) -> tuple[int, int, int, int]:
    """What the output keeps, in the coordinates of the annotations being mapped."""
    return geometry.active_area if inverse else geometry.crop_box


def box_flags(boxes: np.ndarray, region) -> tuple[np.ndarray, np.ndarray]:
    """(clipped, outside) for boxes ``(n, 4)`` against ``region`` (left, top, right, bottom)."""
    left, top, right, bottom = region
    x0, y0, x1, y1 = boxes.T
    clipped = (x0 < left) | (y0 < top) | (x1 > right) | (y1 > bottom)
    outside = (x1 <= left) | (x0 >= right) | (y1 <= top) | (y0 >= bottom)
    return clipped, outside


def point_flags(points: np.ndarray, region) -> np.ndarray:
    """True for points ``(n, 2)`` outside the closed ``region``."""
    left, top, right, bottom = region
    x, y = points.T
    return (x < left) | (x > right) | (y < top) | (y > bottom)


def clamp_boxes(boxes: np.ndarray, region) -> np.ndarray:
    """Boxes ``(n, 4)`` clamped to ``region`` (an outside box collapses onto its edge)."""
    left, top, right, bottom = region
    low = np.array([left, top, left, top], dtype=np.float64)
    high = np.array([right, bottom, right, bottom], dtype=np.float64)
    return np.clip(boxes, low, high)


def _numbers(table: pd.DataFrame, columns: list[str]) -> np.ndarray | None:
    if not all(c in table.columns for c in columns):
        return None
    return table[columns].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64, copy=True)


def map_annotations(
    table: pd.DataFrame,
    root=None,
    *,
    inverse: bool = False,
    clip: bool = False,
    lookup: GeometryLookup | None = None,
) -> pd.DataFrame:
    """Map the boxes and points of ``table`` (see the module documentation).

    ``root`` is the dataset folder holding ``manifest.csv``; or pass a ``lookup``.
    Returns a new table: the same rows in the same order with mapped coordinates and the
    ``status``, ``clipped``, ``outside``, ``study_instance_uid`` and ``path`` columns.
    """
    if "sop_instance_uid" not in table.columns:
        raise ValueError("the annotation table needs a sop_instance_uid column")
    lookup = lookup or GeometryLookup(root)
    out = table.copy()
    n = len(out)
    boxes, points = _numbers(out, BOX_COLUMNS), _numbers(out, POINT_COLUMNS)
    if boxes is None and points is None:
        raise ValueError("the annotation table needs x0, y0, x1, y1 and/or x, y columns")
    has_box = ~np.isnan(boxes).any(axis=1) if boxes is not None else np.zeros(n, bool)
    has_point = ~np.isnan(points).any(axis=1) if points is not None else np.zeros(n, bool)
    status = np.full(n, OK, dtype=object)
    clipped = np.full(n, None, dtype=object)
    outside = np.full(n, None, dtype=object)
    studies = np.full(n, None, dtype=object)
    paths = np.full(n, None, dtype=object)
    pages = out["page"].to_numpy(object, copy=True) if "page" in out else np.full(n, None, object)
    status[~(has_box | has_point)] = NO_COORDINATES
    if boxes is not None:
        bad = has_box & ((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
        status[bad] = INVALID_BOX
    sops = out["sop_instance_uid"].astype("string").fillna("").str.strip().to_numpy(object)
    for sop in pd.unique(sops):
        rows = np.flatnonzero(sops == sop)
        if sop not in lookup:
            status[rows] = NOT_IN_MANIFEST
            continue
        studies[rows], paths[rows] = lookup.study_and_path(sop)
        if lookup.page(sop) is not None:
            pages[rows] = lookup.page(sop)
        try:
            geometry = lookup.geometry(sop)
        except (OSError, ValueError):
            status[rows] = UNREADABLE
            continue
        rows = rows[status[rows] == OK]
        cut, lost = _map_rows(geometry, rows, boxes, points, has_box, has_point, inverse, clip)
        clipped[rows], outside[rows] = cut.tolist(), lost.tolist()
    if boxes is not None:
        mapped = has_box & (status == OK)
        for k, column in enumerate(BOX_COLUMNS):
            out[column] = _merge(out[column], boxes[:, k], mapped)
    if points is not None:
        mapped = has_point & (status == OK)
        for k, column in enumerate(POINT_COLUMNS):
            out[column] = _merge(out[column], points[:, k], mapped)
    out["study_instance_uid"] = studies
    out["path"] = paths
    if "page" in out or any(p is not None for p in pages):
        out["page"] = pd.to_numeric(pd.Series(pages, index=out.index), errors="coerce").astype(
            "Int64"
        )
    out["status"] = status
    out["clipped"] = pd.array(clipped, dtype="boolean")
    out["outside"] = pd.array(outside, dtype="boolean")
    return out


def _map_rows(geometry, rows, boxes, points, has_box, has_point, inverse: bool, clip: bool):
    """Map the boxes and points of ``rows`` (one image's, with its ``geometry``) in place
    in ``boxes`` / ``points``; return (clipped, outside) per row: whether crop or padding
    cut the annotation, and whether nothing of it is left (a point's flags count only
    where the row has no box)."""
    region = kept_region(geometry, inverse)
    to_other = geometry.box_to_source if inverse else geometry.box_to_output
    to_other_points = geometry.to_source if inverse else geometry.to_output
    cut = np.zeros(len(rows), bool)
    lost = np.zeros(len(rows), bool)
    box_rows = has_box[rows]
    if box_rows.any():
        selected = rows[box_rows]
        source = boxes[selected]
        box_cut, box_lost = box_flags(source, region)
        cut[box_rows], lost[box_rows] = box_cut, box_lost
        if clip:
            source = clamp_boxes(source, region)
        boxes[selected] = to_other(source)
    point_rows = has_point[rows]
    if point_rows.any():
        selected = rows[point_rows]
        point_out = point_flags(points[selected], region)
        only_point = point_rows & ~box_rows
        cut[only_point] = point_out[only_point[point_rows]]
        lost[only_point] = point_out[only_point[point_rows]]
        points[selected] = to_other_points(points[selected])
    return cut, lost


def _merge(original: pd.Series, mapped: np.ndarray, where: np.ndarray) -> pd.Series:
    """``mapped`` where ``where``, else the original values (as numbers where they parse)."""
    numbers = pd.to_numeric(original, errors="coerce").to_numpy(np.float64)
    return pd.Series(np.where(where, mapped, numbers), index=original.index)


# -- COCO -------------------------------------------------------------------------------

IMAGE_SUFFIXES = (".dcm", ".dicom", ".tif", ".tiff", ".png", ".jpg", ".jpeg")


def coco_image_uid(image: dict) -> str:
    """The SOP Instance UID of a COCO image entry (attribute, else file name stem)."""
    if image.get("sop_instance_uid"):
        return str(image["sop_instance_uid"]).strip()
    name = PurePosixPath(str(image.get("file_name", "")).replace("\\", "/")).name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _map_pairs(values, mapper: Callable) -> list[float]:
    """A flat [x, y, x, y, ...] list mapped pairwise."""
    pairs = np.asarray(values, dtype=np.float64).reshape(-1, 2)
    return mapper(pairs).reshape(-1).tolist()


def map_coco(
    coco: dict,
    root=None,
    *,
    inverse: bool = False,
    clip: bool = False,
    lookup: GeometryLookup | None = None,
    warn: Callable[[str], None] | None = None,
) -> dict:
    """A mapped copy of a COCO dataset dict (see the module documentation).

    Images whose UID is not in the manifest (or whose TIFF is unreadable) keep their
    annotations unmapped and get a ``status``; ``warn`` is called with one line for each.
    """
    lookup = lookup or GeometryLookup(root)
    out = copy.deepcopy(coco)
    geometries: dict = {}
    for image in out.get("images", []):
        sop = coco_image_uid(image)
        image["sop_instance_uid"] = sop
        if sop not in lookup:
            image["status"] = NOT_IN_MANIFEST
        else:
            try:
                geometry = lookup.geometry(sop)
            except (OSError, ValueError):
                image["status"] = UNREADABLE
            else:
                image["status"] = OK
                geometries[image["id"]] = geometry
                if inverse:
                    _restore_source_fields(image, sop)
                else:
                    for key in SOURCE_FIELDS:
                        if key in image:
                            image[f"source_{key}"] = image[key]
                    image["width"], image["height"] = geometry.canvas_width, geometry.canvas_height
                    image["file_name"] = lookup.study_and_path(sop)[1]
        if image["status"] != OK and warn is not None:
            warn(f"image {image.get('id')} ({sop or 'no UID'}): {image['status']}")
    for annotation in out.get("annotations", []):
        geometry = geometries.get(annotation.get("image_id"))
        if geometry is None:
            continue
        _map_coco_annotation(annotation, geometry, inverse, clip)
    return out


SOURCE_FIELDS = ("file_name", "width", "height")


def _restore_source_fields(image: dict, sop: str) -> None:
    """Source file name and size saved by the forward mapping; without them the size is
    unknown (the TIFF records the crop box, not the source size) and is removed."""
    for key in SOURCE_FIELDS:
        saved = image.pop(f"source_{key}", None)
        if saved is not None:
            image[key] = saved
        elif key == "file_name":
            image[key] = f"{sop}.dcm"
        else:
            image.pop(key, None)


def _map_coco_annotation(annotation: dict, geometry: Geometry, inverse: bool, clip: bool) -> None:
    region = kept_region(geometry, inverse)
    points = geometry.to_source if inverse else geometry.to_output
    area_scale = geometry.scale_x * geometry.scale_y
    scale = 1.0 / area_scale if inverse else area_scale
    cut = lost = False
    if annotation.get("bbox"):
        x, y, w, h = (float(v) for v in annotation["bbox"])
        box = np.array([[x, y, x + w, y + h]])
        cut_box, lost_box = box_flags(box, region)
        cut, lost = bool(cut_box[0]), bool(lost_box[0])
        if clip:
            box = clamp_boxes(box, region)
        x0, y0, x1, y1 = (geometry.box_to_source if inverse else geometry.box_to_output)(box)[0]
        annotation["bbox"] = [x0, y0, x1 - x0, y1 - y0]
    segmentation = annotation.get("segmentation")
    if isinstance(segmentation, list):
        annotation["segmentation"] = [_map_pairs(polygon, points) for polygon in segmentation]
    if annotation.get("keypoints"):
        triples = np.asarray(annotation["keypoints"], dtype=np.float64).reshape(-1, 3)
        triples[:, :2] = points(triples[:, :2])
        annotation["keypoints"] = triples.reshape(-1).tolist()
    if "area" in annotation:
        annotation["area"] = float(annotation["area"]) * scale
    annotation["clipped"], annotation["outside"] = cut, lost


# -- command line -------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dicom-map-annotations",
        description=(
            "Map annotation boxes and points between source DICOM pixels and the output "
            "TIFF pixels of a dicomprep dataset (CSV with sop_instance_uid and x0,y0,x1,y1 "
            "and/or x,y columns, or COCO JSON)."
        ),
    )
    p.add_argument("annotations", help="annotation table (.csv) or COCO file (.json)")
    p.add_argument("--dataset", required=True, help="dataset root holding manifest.csv")
    p.add_argument("--manifest", help="manifest path (default: DATASET/manifest.csv)")
    p.add_argument("-o", "--output", required=True, help="output .csv or .json")
    p.add_argument("--inverse", action="store_true", help="map output pixels back to source pixels")
    p.add_argument(
        "--clip", action="store_true", help="clamp boxes to the kept region before mapping"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """``dicom-map-annotations``: 0 when every row mapped, 1 when some did not, 2 on error."""
    args = parser().parse_args(argv)
    source, output = Path(args.annotations), Path(args.output)

    def warn(line: str) -> None:
        print(f"dicom-map-annotations: {line}", file=sys.stderr)

    try:
        lookup = GeometryLookup(args.dataset, args.manifest)
        if source.suffix.lower() == ".json":
            coco = json.loads(source.read_text())
            mapped = map_coco(coco, inverse=args.inverse, clip=args.clip, lookup=lookup, warn=warn)
            output.write_text(json.dumps(mapped, indent=1))
            unmapped = sum(1 for image in mapped.get("images", []) if image["status"] != OK)
            total = len(mapped.get("images", []))
            what = "images"
        else:
            table = pd.read_csv(source, dtype={"sop_instance_uid": "string"})
            mapped = map_annotations(table, inverse=args.inverse, clip=args.clip, lookup=lookup)
            for row, (sop, status) in enumerate(
                zip(mapped["sop_instance_uid"], mapped["status"], strict=True)
            ):
                if status != OK:
                    warn(f"row {row + 2} ({sop if isinstance(sop, str) else 'no UID'}): {status}")
            mapped.to_csv(output, index=False)
            unmapped, total, what = int((mapped["status"] != OK).sum()), len(mapped), "rows"
    except (OSError, ValueError, KeyError) as exc:
        warn(f"error: {exc}")
        return 2
    warn(f"{total - unmapped} of {total} {what} mapped; written to {output}")
    return 1 if unmapped else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
