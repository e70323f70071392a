"""Writing and reading the output TIFF files (docs/output-format.md).

One page per frame, the pixels as the image (H x W MinIsBlack or H x W x 3 RGB, uint8,
uint16, or the int16/int32/float32 of `voi: none`), and on every page the tags that
record where the pixels came from:

=================  =====  ========  ==================================================
Tag                Code   Type      Value
=================  =====  ========  ==================================================
DefaultCropOrigin  50719  LONG[2]   (crop_x, crop_y) in source pixels
DefaultCropSize    50720  LONG[2]   (crop_width, crop_height)
DefaultScale       50718  FLOAT[2]  (scale_x, scale_y), informative for other readers
ActiveArea         50829  LONG[4]   (left, top, right, bottom), right/bottom exclusive
PageNumber         297    SHORT[2]  (page index, total pages)
=================  =====  ========  ==================================================

The tag codes are borrowed from DNG, but the values are dicomprep's, not DNG's: ActiveArea
is (left, top, right, bottom) where DNG has (top, left, bottom, right), and
DefaultCropOrigin is in source pixels, not relative to the active area.
:func:`read_geometry` rebuilds the :class:`~dicomprep.formats.geometry.Geometry` from the integer
tags alone (resized size = active area size, canvas = image size).

Files are written atomically and deterministically: the same pixels, geometry and options
give the same bytes (no date, no version string; a JSON description only for volumes and
resizes to a target spacing, see :func:`read_geometry`), and a failed write
never leaves a partial file at the target path.

Resolution: tifffile always writes XResolution/YResolution.  Without a pixel spacing they
are 1/1 with ResolutionUnit NONE (1), which TIFF 6.0 defines as "no absolute unit" (square
pixels, aspect ratio only); :func:`read_info` reports such files as having no resolution.
"""

from __future__ import annotations

import errno
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from dicomprep.core.durable import atomic_file
from dicomprep.formats.geometry import Geometry, StackSource
from dicomprep.formats.tiff_layout import TiffLayout, read_layout

__all__ = [
    "COMPRESSIONS",
    "TiffInfo",
    "TiffLayout",
    "needs_bigtiff",
    "read_frames",
    "read_geometry",
    "read_info",
    "read_layout",
    "rows_per_strip",
    "write_tiff",
]

COMPRESSIONS = ("packbits", "lzw", "uncompressed", "zstd", "deflate")

TAG_DEFAULT_SCALE = 50718
TAG_DEFAULT_CROP_ORIGIN = 50719
TAG_DEFAULT_CROP_SIZE = 50720
TAG_ACTIVE_AREA = 50829
TAG_PAGE_NUMBER = 297

# TIFF field types
_SHORT = 3
_LONG = 4
_FLOAT = 11

SOFTWARE = "dicomprep"

# tifffile arguments per compression name: (compression, predictor)
_CODECS: dict[str, tuple[str | None, bool]] = {
    "packbits": ("packbits", False),
    "lzw": ("lzw", False),
    "uncompressed": (None, False),
    "zstd": ("zstd", True),
    "deflate": ("adobe_deflate", True),
}

# TIFF Compression tag value -> name used here
_COMPRESSION_NAMES = {
    1: "uncompressed",
    5: "lzw",
    8: "deflate",
    32946: "deflate",
    32773: "packbits",
    50000: "zstd",
}

# uint8/uint16 after VOI; int16/int32/float32 for `voi: none` (modality values).
_DTYPES = tuple(np.dtype(t) for t in (np.uint8, np.uint16, np.int16, np.int32, np.float32))

# A whole page goes into one strip (the fastest to read back with tifffile, see
# rows_per_strip) unless a strip would hold more than this many uncompressed bytes.
MAX_STRIP_BYTES = 64 * 1024 * 1024

_CLASSIC_LIMIT = 2**32  # offsets in classic TIFF are 32-bit
_PAGE_OVERHEAD = 4096  # IFD with ~20 entries, its values and alignment: well under this
_FILE_OVERHEAD = 1 << 20
_SAFETY_MARGIN = 64 << 20
_MAX_PAGES = 65535  # PageNumber is SHORT


def _check_compression(compression: str) -> tuple[str | None, bool]:
    try:
        return _CODECS[compression]
    except (KeyError, TypeError):
        valid = ", ".join(COMPRESSIONS)
        raise ValueError(f"unknown compression {compression!r}; valid: {valid}") from None


def rows_per_strip(height: int, row_bytes: int) -> int:
    """Rows per strip for a page: the whole page, split only above MAX_STRIP_BYTES.

    Reading a 1280 x 1024 uint16 page back with tifffile was fastest with one strip per
    page for every compression (PackBits 0.6 ms vs 8.7 ms with one-row strips, zstd
    2.4 ms vs 2.8 ms with 128-row strips); more strips only add per-strip overhead.
    """
    if height < 1 or row_bytes < 1:
        raise ValueError("height and row_bytes must be positive")
    return max(1, min(height, MAX_STRIP_BYTES // row_bytes))


def _worst_page_bytes(height: int, row_bytes: int, compression: str) -> int:
    """An upper bound of the stored size of one page's pixel data."""
    page = height * row_bytes
    if compression == "uncompressed":
        return page
    if compression == "packbits":
        # rows are encoded separately; each run of up to 128 literals costs one header byte
        return height * (row_bytes + math.ceil(row_bytes / 128))
    if compression == "lzw":
        # at most one 12-bit code per input byte, plus clear and end codes
        return math.ceil(page * 1.5) + 4096
    # deflate and zstd store incompressible blocks with a few bytes of framing per block
    return page + page // 64 + 4096


def needs_bigtiff(
    num_frames: int,
    frame_shape: tuple[int, ...],
    itemsize: int,
    compression: str = "packbits",
) -> bool:
    """Whether a file of ``num_frames`` pages of ``frame_shape`` could exceed classic TIFF.

    The estimate is the worst case of the stored pixel data for the compression (PackBits
    and LZW can expand incompressible data) plus IFD overhead per page and a safety margin,
    compared against the 4 GiB limit of 32-bit offsets.
    """
    _check_compression(compression)
    if num_frames < 1:
        raise ValueError("num_frames must be at least 1")
    height, width = int(frame_shape[0]), int(frame_shape[1])
    samples = int(frame_shape[2]) if len(frame_shape) > 2 else 1
    row_bytes = width * samples * int(itemsize)
    strip_rows = rows_per_strip(height, row_bytes)
    strips = math.ceil(height / strip_rows)
    page = _worst_page_bytes(height, row_bytes, compression) + strips * 4096
    total = num_frames * (page + _PAGE_OVERHEAD) + _FILE_OVERHEAD
    return total + _SAFETY_MARGIN > _CLASSIC_LIMIT


def _check_frame(frame: np.ndarray) -> None:
    if frame.dtype not in _DTYPES:
        names = ", ".join(str(t) for t in _DTYPES)
        raise ValueError(f"frame dtype {frame.dtype} is not one of {names}")
    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 3):
        if frame.shape[0] < 1 or frame.shape[1] < 1:
            raise ValueError(f"empty frame of shape {frame.shape}")
        return
    raise ValueError(f"frame shape {frame.shape} is neither H x W nor H x W x 3")


def _check_geometry(geometry: Geometry, width: int, height: int) -> None:
    values = (
        geometry.crop_x,
        geometry.crop_y,
        geometry.crop_width,
        geometry.crop_height,
        geometry.active_left,
        geometry.active_top,
    )
    if any(int(v) != v or v < 0 or v >= 2**32 for v in values):
        raise ValueError(f"geometry values must be integers in LONG range: {geometry}")
    if geometry.crop_width < 1 or geometry.crop_height < 1:
        raise ValueError(f"empty crop box in {geometry}")
    if (geometry.canvas_width, geometry.canvas_height) != (width, height):
        raise ValueError(
            f"geometry canvas {geometry.canvas_width}x{geometry.canvas_height} "
            f"does not match the image size {width}x{height}"
        )
    left, top, right, bottom = geometry.active_area
    if not (0 <= left < right <= width and 0 <= top < bottom <= height):
        raise ValueError(
            f"active area {geometry.active_area} is outside the {width}x{height} image"
        )


def _geometry_tags(geometry: Geometry) -> list[tuple[int, int, int, tuple, bool]]:
    return [
        (TAG_DEFAULT_SCALE, _FLOAT, 2, (geometry.scale_x, geometry.scale_y), True),
        (TAG_DEFAULT_CROP_ORIGIN, _LONG, 2, (int(geometry.crop_x), int(geometry.crop_y)), True),
        (
            TAG_DEFAULT_CROP_SIZE,
            _LONG,
            2,
            (int(geometry.crop_width), int(geometry.crop_height)),
            True,
        ),
        (TAG_ACTIVE_AREA, _LONG, 4, tuple(int(v) for v in geometry.active_area), True),
    ]


def _check_resolution(resolution) -> tuple[float, float] | None:
    if resolution is None:
        return None
    x, y = (float(v) for v in resolution)
    if not (math.isfinite(x) and math.isfinite(y) and x > 0 and y > 0):
        raise ValueError(f"resolution must be positive pixels per cm, got {resolution!r}")
    return x, y


def write_tiff(
    path,
    frames: Iterable[np.ndarray],
    *,
    num_frames: int,
    geometry: Geometry,
    compression: str = "packbits",
    resolution: tuple[float, float] | None = None,
    stack: StackSource | None = None,
) -> None:
    """Write ``frames`` as a multi-page TIFF at ``path``, atomically.

    ``frames`` is consumed one frame at a time; each is H x W or H x W x 3 of uint8, uint16,
    int16, int32 or float32, all alike. ``num_frames`` must equal the number of frames
    yielded (it goes into PageNumber and decides BigTIFF before the first page is written).
    ``resolution`` is (x, y) in pixels per centimetre; ``stack`` is recorded in the first
    page's description when the file is a stack's volume. The data go to a hidden temporary
    file in the same folder that replaces ``path`` only when complete; on any error it is
    removed and the error re-raised, leaving an existing file at ``path`` untouched.
    """
    codec, predictor = _check_compression(compression)
    num_frames = int(num_frames)
    if not 1 <= num_frames <= _MAX_PAGES:
        raise ValueError(f"num_frames must be between 1 and {_MAX_PAGES}, got {num_frames}")
    resolution = _check_resolution(resolution)
    path = Path(path)

    iterator = iter(frames)
    try:
        first = np.asarray(next(iterator))
    except StopIteration:
        raise ValueError("frames yielded no frame") from None
    _check_frame(first)
    height, width = first.shape[:2]
    _check_geometry(geometry, width, height)
    bigtiff = needs_bigtiff(num_frames, first.shape, first.dtype.itemsize, compression)
    row_bytes = first.shape[1] * (first.shape[2] if first.ndim == 3 else 1) * first.itemsize
    options = dict(
        photometric="rgb" if first.ndim == 3 else "minisblack",
        planarconfig="contig" if first.ndim == 3 else None,
        compression=codec,
        predictor=predictor or None,
        rowsperstrip=rows_per_strip(height, row_bytes),
        resolution=resolution,
        resolutionunit="CENTIMETER" if resolution is not None else None,
        software=SOFTWARE,
        datetime=False,
        metadata=None,
        maxworkers=1,
    )
    tags = _geometry_tags(geometry)
    description = geometry.description(stack)
    pages = _first_then_rest(first, iterator)
    del first  # hold no frame longer than its page takes to write

    with atomic_file(path, sync_folder=False) as tmp:
        try:
            _write_pages(tmp, pages, bigtiff, options, tags, description, num_frames)
        except OSError as exc:
            if exc.errno is None and _nearly_full(tmp.parent):  # numpy's short writes
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from exc
            raise


def _first_then_rest(first: np.ndarray, rest: Iterator) -> Iterator[np.ndarray]:
    """``first``, then what ``rest`` yields, holding no frame once it was handed out."""
    yield first
    del first
    for frame in rest:
        yield np.asarray(frame)
        del frame  # before the next is made


def _write_pages(tmp: Path, pages, bigtiff, options, tags, description, num_frames) -> None:
    """Write the frames ``pages`` yields (all of the first one's shape and type, at most
    ``num_frames``) into ``tmp``, one page each, holding one frame at a time."""
    frame = next(pages)
    shape, dtype = frame.shape, frame.dtype
    with tifffile.TiffWriter(tmp, bigtiff=bigtiff, byteorder="<") as writer:
        index = 0
        while True:
            if frame.shape != shape or frame.dtype != dtype:
                raise ValueError(
                    f"frame {index} has shape {frame.shape} {frame.dtype}, expected {shape} {dtype}"
                )
            page_number = (TAG_PAGE_NUMBER, _SHORT, 2, (index, num_frames), True)
            # The first page also holds what integer tags cannot: the exact scale of a
            # resize to a target spacing and the patient-space placement of a volume.
            described = {"description": description} if index == 0 and description else {}
            writer.write(frame, extratags=[*tags, page_number], **options, **described)
            index += 1
            frame = None
            try:
                frame = next(pages)
            except StopIteration:
                break
            if index >= num_frames:
                raise ValueError(f"frames yielded more than num_frames={num_frames}")
        if index != num_frames:
            raise ValueError(f"frames yielded {index} frames, expected {num_frames}")


def _nearly_full(folder: Path) -> bool:
    """True when the file system holding ``folder`` has less than 1 MiB left."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 1 << 20


# -- reading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TiffInfo:
    """What a reader needs to know about an output TIFF without decoding pixels."""

    width: int
    height: int
    channels: int
    num_frames: int
    dtype: str
    geometry: Geometry
    resolution: tuple[float, float] | None  # pixels per cm
    compression: str


def _tag_values(page, code: int, count: int, path) -> tuple:
    tag = page.tags.get(code)
    if tag is None:
        raise ValueError(f"{path}: tag {code} is missing (not a dicomprep TIFF?)")
    value = tag.value if isinstance(tag.value, tuple) else (tag.value,)
    if len(value) != count:
        raise ValueError(f"{path}: tag {code} has {len(value)} values, expected {count}")
    return value


def page_geometry(page, path) -> Geometry:
    crop_x, crop_y = _tag_values(page, TAG_DEFAULT_CROP_ORIGIN, 2, path)
    crop_width, crop_height = _tag_values(page, TAG_DEFAULT_CROP_SIZE, 2, path)
    left, top, right, bottom = _tag_values(page, TAG_ACTIVE_AREA, 4, path)
    return Geometry(
        crop_x=int(crop_x),
        crop_y=int(crop_y),
        crop_width=int(crop_width),
        crop_height=int(crop_height),
        resized_width=int(right) - int(left),
        resized_height=int(bottom) - int(top),
        canvas_width=int(page.imagewidth),
        canvas_height=int(page.imagelength),
        active_left=int(left),
        active_top=int(top),
    )


def _page_resolution(page) -> tuple[float, float] | None:
    if page.tags.valueof(296) != tifffile.RESUNIT.CENTIMETER:
        return None
    x = page.tags.valueof(282)
    y = page.tags.valueof(283)
    if x is None or y is None:
        return None
    return x[0] / x[1], y[0] / y[1]


def read_info(path) -> TiffInfo:
    """Size, type, frame count, geometry, resolution and compression of an output TIFF."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        code = int(page.compression)
        return TiffInfo(
            width=int(page.imagewidth),
            height=int(page.imagelength),
            channels=int(page.samplesperpixel),
            num_frames=len(tif.pages),
            dtype=str(page.dtype),
            geometry=page_geometry(page, path).with_description(page.description),
            resolution=_page_resolution(page),
            compression=_COMPRESSION_NAMES.get(code, tifffile.COMPRESSION(code).name.lower()),
        )


def read_geometry(path) -> Geometry:
    """The :class:`Geometry` recorded in the first page's tags.

    For a volume made from a stack of slices (and a resize to a target spacing) the first
    page's ImageDescription holds a JSON record of the values integer tags cannot carry:
    the exact scale and the volume's :class:`~dicomprep.formats.geometry.VolumeGeometry`
    (spacing, orientation, origin, slice and page positions); they are returned too."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        return page_geometry(page, path).with_description(page.description)


def read_frames(path) -> np.ndarray:
    """All pages as one array of shape (num_frames, H, W) or (num_frames, H, W, 3)."""
    with tifffile.TiffFile(path) as tif:
        pages = list(tif.pages)
        first = pages[0]
        out = np.empty((len(pages), *first.shape), dtype=first.dtype)
        for i, page in enumerate(pages):
            if page.shape != first.shape or page.dtype != first.dtype:
                raise ValueError(f"{path}: page {i} differs in shape or type from page 0")
            page.asarray(out=out[i])
        return out
