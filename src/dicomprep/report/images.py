"""Sample thumbnails for the QC report, drawn and encoded with Pillow.

For each sampled output the report shows two thumbnails:

- the **source**: the DICOM decoded by the library as the pipeline decodes it (VOI applied,
  no crop, resize or padding; the central frame of a volume, or the maximum-intensity
  projection when that is the volume handling), the area outside the crop box tinted
  :data:`OUTSIDE_CROP_COLOUR` and the box outlined in :data:`CROP_COLOUR`;
- the **output**: the TIFF's central page, the padding tinted :data:`PADDING_COLOUR` and the
  active area outlined in :data:`ACTIVE_COLOUR`.

The crop box and active area are read from the TIFF's tags.  While the output page is in
memory, the histogram of its displayed values inside the active area is taken too (the
report's intensity plots).  Beside the thumbnails a JSON record says what they were made from
(the TIFF's and the source's size and modification time, the options); :func:`render_samples`
reuses thumbnails whose record still matches.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from dicomprep.core.durable import atomic_write_bytes
from dicomprep.core.errors import one_line
from dicomprep.formats.geometry import Geometry
from dicomprep.options import Options
from dicomprep.pixels.volume import central_index
from dicomprep.report.sampling import volume_label

__all__ = [
    "ACTIVE_COLOUR",
    "CROP_COLOUR",
    "IMAGE_FORMATS",
    "OUTSIDE_CROP_COLOUR",
    "PADDING_COLOUR",
    "THUMBNAIL_SIZE",
    "TINT",
    "Sample",
    "display_histogram",
    "output_thumbnail",
    "render_and_record",
    "render_sample",
    "render_samples",
    "save_image",
    "source_thumbnail",
    "to_display",
]

THUMBNAIL_SIZE = 256  # longest side of a thumbnail, in pixels

# Overlay colours (RGB) and the opacity of the tints.
CROP_COLOUR = (255, 150, 0)
OUTSIDE_CROP_COLOUR = (200, 30, 120)
ACTIVE_COLOUR = (0, 210, 90)
PADDING_COLOUR = (40, 100, 255)
TINT = 0.45
OUTLINE_WIDTH = 2

# Thumbnail encodings: Pillow format and save arguments.  Both are lossless, so the overlay
# colours stay exact; PNG at a low zlib level is the fastest to write.
IMAGE_FORMATS = {
    "png": ("PNG", {"compress_level": 1}),
    "webp": ("WEBP", {"lossless": True, "quality": 0, "method": 0}),
}


@dataclass
class Sample:
    """One sampled output: its two thumbnails (file names inside ``img/``), what they show
    and the histogram of the output's displayed values (0..255) inside the active area."""

    modality: str
    study_instance_uid: str
    sop_instance_uid: str
    source_image: str = ""
    output_image: str = ""
    source_size: tuple[int, int] = (0, 0)
    output_size: tuple[int, int] = (0, 0)
    source_frames: int = 0
    output_frames: int = 0
    source_view: str = ""
    output_view: str = ""
    geometry: Geometry | None = None
    label: str = ""
    histogram: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


# -- pixels ------------------------------------------------------------------------------


def to_display(frame: np.ndarray) -> np.ndarray:
    """An output or rendered frame as uint8 for viewing (H x W or H x W x 3).

    uint8 stays; uint16 (the full 0..65535 range after VOI) keeps its high byte; the
    signed or float values of `voi: none` are stretched from their minimum to maximum.
    """
    frame = np.asarray(frame)
    if frame.dtype == np.uint8:
        return frame
    if frame.dtype == np.uint16:
        return (frame >> 8).astype(np.uint8)
    values = frame.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(frame.shape, np.uint8)
    low, high = float(values[finite].min()), float(values[finite].max())
    if high <= low:
        return np.zeros(frame.shape, np.uint8)
    scaled = (np.where(finite, values, low) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def display_histogram(display: np.ndarray, box) -> list[int]:
    """Counts of the values 0..255 of a uint8 image inside ``box`` (x0, y0, x1, y1; exclusive
    end), every channel of a colour image counted."""
    x0, y0, x1, y1 = box
    values = np.ascontiguousarray(np.asarray(display, np.uint8)[y0:y1, x0:x1])
    if values.size and (values.ndim == 2 or (values.ndim == 3 and values.shape[2] == 3)):
        counts = Image.fromarray(values).histogram()  # 256 per channel, counted in C
        return [sum(counts[value::256]) for value in range(256)]
    return np.bincount(values.ravel(), minlength=256).tolist()


def _thumbnail(display: np.ndarray, size: int) -> tuple[Image.Image, float, float]:
    """A uint8 image scaled by one factor to fit ``size x size`` (smooth when shrinking,
    nearest when enlarging), as RGB, and the scale per axis."""
    image = Image.fromarray(np.ascontiguousarray(display))
    shrinking = max(image.size) > size
    method = Image.Resampling.BILINEAR if shrinking else Image.Resampling.NEAREST
    thumb = ImageOps.contain(image, (size, size), method=method).convert("RGB")
    return thumb, thumb.width / image.width, thumb.height / image.height


def _scaled_box(box, sx: float, sy: float, width: int, height: int) -> tuple[int, ...]:
    """A box (x0, y0, x1, y1; exclusive end) in thumbnail pixels, at least 1 pixel wide."""
    x0, y0, x1, y1 = box
    a = min(max(int(np.floor(x0 * sx)), 0), width - 1)
    b = min(max(int(np.floor(y0 * sy)), 0), height - 1)
    c = min(max(int(np.ceil(x1 * sx)), a + 1), width)
    d = min(max(int(np.ceil(y1 * sy)), b + 1), height)
    return a, b, c, d


def _mark_box(thumb: Image.Image, box, outside_colour, outline_colour) -> Image.Image:
    """``thumb`` with everything outside ``box`` blended towards ``outside_colour`` (opacity
    :data:`TINT`) and the box outlined :data:`OUTLINE_WIDTH` pixels wide, inside its edge."""
    x0, y0, x1, y1 = box
    marked = Image.blend(thumb, Image.new("RGB", thumb.size, outside_colour), TINT)
    marked.paste(thumb.crop(box), (x0, y0))
    width = max(1, min(OUTLINE_WIDTH, (x1 - x0 + 1) // 2, (y1 - y0 + 1) // 2))
    ImageDraw.Draw(marked).rectangle((x0, y0, x1 - 1, y1 - 1), outline=outline_colour, width=width)
    return marked


def source_thumbnail(
    frame: np.ndarray, crop_box, size: int = THUMBNAIL_SIZE, source_size=None
) -> Image.Image:
    """The source frame as an RGB thumbnail, outside the crop box tinted, the box outlined.

    ``crop_box`` is in source pixels; ``source_size`` (width, height) is the source's when
    ``frame`` was decoded at a reduced resolution.  A frame four or more times the
    thumbnail's size takes every second pixel first (then every fourth, ...): the smooth
    resize that follows still shrinks it by two or more, and a 3328x2560 mammogram costs a
    quarter of the conversion to 8 bits and of the resize."""
    source_size = source_size or (frame.shape[1], frame.shape[0])
    while min(frame.shape[0], frame.shape[1]) >= 4 * size:
        frame = frame[::2, ::2]
    thumb, _, _ = _thumbnail(to_display(frame), size)
    sx, sy = thumb.width / source_size[0], thumb.height / source_size[1]
    box = _scaled_box(crop_box, sx, sy, thumb.width, thumb.height)
    return _mark_box(thumb, box, OUTSIDE_CROP_COLOUR, CROP_COLOUR)


def output_thumbnail(page: np.ndarray, active_area, size: int = THUMBNAIL_SIZE) -> Image.Image:
    """An output page (or its :func:`to_display` image) as an RGB thumbnail, the padding
    tinted, the active area outlined."""
    thumb, sx, sy = _thumbnail(to_display(page), size)
    box = _scaled_box(active_area, sx, sy, thumb.width, thumb.height)
    return _mark_box(thumb, box, PADDING_COLOUR, ACTIVE_COLOUR)


def save_image(path: str | os.PathLike, image: Image.Image, image_format: str = "png") -> None:
    """Encode ``image`` as ``image_format`` (a key of :data:`IMAGE_FORMATS`), atomically.

    No metadata is written, so the bytes depend on the pixels alone."""
    name, arguments = IMAGE_FORMATS[image_format]
    encoded = io.BytesIO()
    image.save(encoded, format=name, **arguments)
    write_atomically(Path(path), encoded.getvalue())


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` through a hidden temporary beside it (a reader never
    sees a part; no fsync: the report can always be built again)."""
    atomic_write_bytes(path, data, sync=False)


# -- one sample --------------------------------------------------------------------------


def _source_options(options: Options) -> Options:
    """Decode a source as the pipeline does, without crop, resize or padding: the central
    frame of a volume (or the projection, when that is what the TIFF holds)."""
    volume = "max-intensity" if options.volume == "max-intensity" else "central-slice"
    voi = options.voi if isinstance(options.voi, tuple) else "auto"
    return Options(volume=volume, voi=voi)


def _one_line(exc: BaseException) -> str:
    text = one_line(exc) or "an unexpected error"
    return text if len(text) <= 200 else text[:197] + "..."


def _render_output(sample: Sample, output_path: Path, img_dir: Path, size: int, fmt: str):
    """The output's central page (a TIFF's, or a stack's NIfTI volume's)."""
    from dicomprep.formats.outputs import is_nifti

    if is_nifti(output_path):
        from dicomprep.formats.nifti import NiftiVolume

        volume = NiftiVolume(output_path)
        geometry, pages = volume.geometry(), volume.pages
        index = central_index(pages)
        [page] = volume.read([index])
    else:
        import tifffile

        from dicomprep.formats.tiff import read_geometry

        geometry = read_geometry(output_path)
        with tifffile.TiffFile(output_path) as tif:
            pages = len(tif.pages)
            index = central_index(pages)
            page = tif.pages[index].asarray()
    sample.geometry = geometry
    sample.output_frames = pages
    sample.output_size = (page.shape[1], page.shape[0])
    sample.output_view = f"page {index + 1} of {pages}" if pages > 1 else ""
    display = to_display(page)
    sample.histogram = display_histogram(display, geometry.active_area)
    sample.output_image = f"{sample.sop_instance_uid}.output.{fmt}"
    thumbnail = output_thumbnail(display, geometry.active_area, size)
    save_image(img_dir / sample.output_image, thumbnail, fmt)


def _render_source(
    sample: Sample, path: str, options: Options, img_dir: Path, size, fmt, source=None
):
    source_options = _source_options(options)
    if source is not None and source_options.voi == options.voi:
        frame, source_size = source  # the conversion's frame: as decoding it again gives
        frames = 1
    else:
        from dicomprep.formats.decode import image_info, read_header
        from dicomprep.pipeline import render

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds, _ = read_header(path)
            frames = image_info(ds).num_frames
            frame = next(render(path, ds, source_options).frames)
        source_size = (frame.shape[1], frame.shape[0])
    sample.source_frames = frames
    sample.source_size = tuple(source_size)
    if frames > 1:
        if source_options.volume == "max-intensity":
            sample.source_view = f"maximum-intensity projection of {frames} frames"
        else:
            sample.source_view = f"central frame {central_index(frames) + 1} of {frames}"
    g = sample.geometry
    crop = g.crop_box if g is not None else (0, 0, *sample.source_size)
    sample.source_image = f"{sample.sop_instance_uid}.source.{fmt}"
    thumbnail = source_thumbnail(frame, crop, size, source_size)
    save_image(img_dir / sample.source_image, thumbnail, fmt)


def render_sample(
    row,
    output_root: str | os.PathLike,
    img_dir: str | os.PathLike,
    options: Options,
    size: int = THUMBNAIL_SIZE,
    image_format: str = "png",
    source=None,
) -> Sample:
    """Thumbnails of one processed file (source with crop box, TIFF with active area).

    ``row`` is a row of :func:`~dicomprep.report.data.instance_table`.  Problems (a source
    that moved, a TIFF that cannot be read) are recorded in ``Sample.errors``, not raised.
    ``source`` is the ``(frame, (width, height))`` the conversion of a single-frame file
    kept (see :func:`~dicomprep.pipeline.process_file`); without it the file is decoded.
    """
    sample = Sample(str(row.modality), str(row.study_instance_uid), str(row.sop_instance_uid))
    img_dir = Path(img_dir)
    try:
        _render_output(sample, Path(output_root) / str(row.tiff), img_dir, size, image_format)
    except Exception as exc:  # noqa: BLE001 - one unreadable file must not stop the report
        sample.errors.append(f"output: {_one_line(exc)}")
    try:
        _render_source(sample, str(row.path), options, img_dir, size, image_format, source)
    except Exception as exc:  # noqa: BLE001
        sample.errors.append(f"source: {_one_line(exc)}")
    frames_in = sample.source_frames or int(row.source_frames)
    sample.label = volume_label(frames_in, sample.output_frames or int(row.num_frames), options)
    return sample


# -- many samples, cached ----------------------------------------------------------------


def sample_record_key(row, output_root, options: Options, size: int, image_format: str) -> dict:
    """What a sample's thumbnails are made from: the TIFF and the source file (size and
    modification time), the options, the thumbnail size and format."""

    def identity(path: str | os.PathLike) -> list[int]:
        try:
            st = os.stat(path)
        except OSError:
            return [-1, -1]
        return [st.st_size, st.st_mtime_ns]

    path_hash = hashlib.sha256(str(row.path).encode()).hexdigest()[:16]  # no folder names
    return {
        "tiff": identity(Path(output_root) / str(row.tiff)),
        "source": [path_hash, *identity(row.path)],
        "options": options.fingerprint(),
        "size": size,
        "format": image_format,
    }


def record_name(sop_instance_uid: str) -> str:
    """The file name of a sample's JSON record inside ``img/``."""
    return f"{sop_instance_uid}.json"


def _cached_sample(row, img_dir: Path, key: dict) -> Sample | None:
    """The sample recorded beside its thumbnails, if it was made from the same files."""
    try:
        record = json.loads((img_dir / record_name(row.sop_instance_uid)).read_text())
        if record["key"] != key or record["sample"]["errors"]:
            return None
        fields = record["sample"]
        geometry = fields.pop("geometry")
        sample = Sample(**fields)
        sample.geometry = Geometry(**geometry) if geometry else None
        sample.source_size = tuple(sample.source_size)
        sample.output_size = tuple(sample.output_size)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not all((img_dir / name).is_file() for name in (sample.source_image, sample.output_image)):
        return None
    return sample


def _render_and_record(job, source=None) -> Sample:
    row, output_root, img_dir, options, size, image_format, key = job
    sample = render_sample(row, output_root, img_dir, options, size, image_format, source)
    record = {"key": key, "sample": asdict(sample)}
    record_path = img_dir / record_name(sample.sop_instance_uid)
    write_atomically(record_path, json.dumps(record).encode())
    return sample


def render_and_record(
    row,
    output_root: str | os.PathLike,
    img_dir: str | os.PathLike,
    options: Options,
    size: int = THUMBNAIL_SIZE,
    image_format: str = "png",
    source=None,
) -> Sample:
    """Render one sample's thumbnails with the record :func:`render_samples` reuses them
    by (a shard job does this for the files it converts that the report will show, from
    the ``source`` frame the conversion kept, see :func:`render_sample`).

    ``row`` needs the :func:`~dicomprep.report.data.instance_table` fields ``modality``,
    ``study_instance_uid``, ``sop_instance_uid``, ``path`` (the source), ``tiff`` (relative
    to ``output_root``), ``source_frames`` and ``num_frames``.
    """
    img_dir = Path(img_dir)
    img_dir.mkdir(parents=True, exist_ok=True)
    key = sample_record_key(row, output_root, options, size, image_format)
    job = (row, output_root, img_dir, options, size, image_format, key)
    return _render_and_record(job, source)


def render_samples(
    rows: list,
    output_root: str | os.PathLike,
    img_dir: str | os.PathLike,
    options: Options,
    size: int = THUMBNAIL_SIZE,
    processes: int = 1,
    image_format: str = "png",
) -> list[tuple[Sample, bool]]:
    """``(sample, reused)`` for each row, in order: thumbnails still made from the same files
    are reused, the others rendered (in ``processes`` forked processes when there are
    several to render)."""
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"unknown image format {image_format!r}; use one of {list(IMAGE_FORMATS)}")
    img_dir = Path(img_dir)
    img_dir.mkdir(parents=True, exist_ok=True)
    keys = [sample_record_key(row, output_root, options, size, image_format) for row in rows]
    cached = [_cached_sample(row, img_dir, key) for row, key in zip(rows, keys, strict=True)]
    jobs = [
        (SimpleNamespace(**row._asdict()), output_root, img_dir, options, size, image_format, key)
        for row, key, sample in zip(rows, keys, cached, strict=True)
        if sample is None
    ]
    if jobs:
        from dicomprep import pipeline  # noqa: F401 - imported once, before the workers fork
        from dicomprep.formats import tiff  # noqa: F401
    if processes > 1 and len(jobs) > 1:
        from dicomprep.run.processes import worker_pool

        with worker_pool(min(processes, len(jobs))) as pool:
            fresh = iter(list(pool.map(_render_and_record, jobs)))
    else:
        fresh = iter([_render_and_record(job) for job in jobs])
    return [(sample, True) if sample is not None else (next(fresh), False) for sample in cached]
