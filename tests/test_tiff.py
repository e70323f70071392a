"""Output TIFF writing and reading (docs/output-format.md)."""

from __future__ import annotations

import errno
import gc
import os
import struct
import weakref

import numpy as np
import pytest
import tifffile

import dicomprep.formats.tiff as tiff_module
from dicomprep.formats.geometry import Geometry, StackSource
from dicomprep.formats.tiff import (
    COMPRESSIONS,
    MAX_STRIP_BYTES,
    TiffLayout,
    needs_bigtiff,
    read_frames,
    read_geometry,
    read_info,
    read_layout,
    rows_per_strip,
    write_tiff,
)

# cropped at (10, 20) to 300 x 200, resized to 150 x 100, padded into 160 x 120 at (5, 10)
GEOMETRY = Geometry(10, 20, 300, 200, 150, 100, 160, 120, 5, 10)
FLOAT = 11
LONG = 4
SHORT = 3


def frames_for(geometry: Geometry, n: int, dtype="uint16", rgb=False, seed=0) -> np.ndarray:
    shape = (n, geometry.canvas_height, geometry.canvas_width) + ((3,) if rgb else ())
    info = np.iinfo(dtype)
    rng = np.random.default_rng(seed)
    data = rng.integers(info.min, info.max, shape, endpoint=True, dtype=np.int64)
    data[..., : geometry.canvas_height // 3, :] //= 64  # some compressible rows
    return data.astype(dtype)


def write(path, frames: np.ndarray, geometry=GEOMETRY, **kwargs) -> None:
    write_tiff(path, (f for f in frames), num_frames=len(frames), geometry=geometry, **kwargs)


def folder_names(folder) -> list[str]:
    return sorted(os.listdir(folder))


# -- tags ---------------------------------------------------------------------------------


def test_tags_on_every_page(tmp_path):
    path = tmp_path / "x.tiff"
    write(path, frames_for(GEOMETRY, 3))
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == 3
        for index, page in enumerate(tif.pages):
            tags = page.tags
            expected = {
                50719: (LONG, (10, 20)),
                50720: (LONG, (300, 200)),
                50718: (FLOAT, (0.5, 0.5)),
                50829: (LONG, (5, 10, 155, 110)),
                297: (SHORT, (index, 3)),
            }
            for code, (dtype, value) in expected.items():
                tag = tags[code]
                assert int(tag.dtype) == dtype, code
                assert tag.count == len(value), code
                assert tuple(tag.value) == value, code
            assert page.imagewidth == 160 and page.imagelength == 120
            assert page.photometric == tifffile.PHOTOMETRIC.MINISBLACK
            # nothing that changes between runs or could identify anyone
            assert 306 not in tags  # DateTime
            assert 270 not in tags  # ImageDescription
            assert tags.valueof(305) in (None, "dicomprep")  # Software, no version


def test_default_scale_is_exact_per_axis_float(tmp_path):
    geometry = Geometry(0, 0, 3000, 2000, 1000, 1500, 1000, 1500)
    path = tmp_path / "x.tiff"
    frame = np.zeros((1500, 1000), np.uint8)
    write_tiff(path, iter([frame]), num_frames=1, geometry=geometry)
    with tifffile.TiffFile(path) as tif:
        sx, sy = tif.pages[0].tags[50718].value
    assert sx == pytest.approx(1 / 3, rel=1e-7)
    assert sy == pytest.approx(0.75, rel=1e-7)
    assert read_geometry(path) == geometry


def test_tag_bytes_in_ifd_are_the_declared_types(tmp_path):
    # parse the first IFD by hand: tifffile could silently change types when reading
    path = tmp_path / "x.tiff"
    write(path, frames_for(GEOMETRY, 1))
    data = path.read_bytes()
    assert data[:4] == b"II*\x00"
    offset = struct.unpack_from("<I", data, 4)[0]
    count = struct.unpack_from("<H", data, offset)[0]
    entries = {}
    for i in range(count):
        code, dtype, n = struct.unpack_from("<HHI", data, offset + 2 + 12 * i)
        entries[code] = (dtype, n)
    assert entries[50719] == (LONG, 2)
    assert entries[50720] == (LONG, 2)
    assert entries[50718] == (FLOAT, 2)
    assert entries[50829] == (LONG, 4)
    assert entries[297] == (SHORT, 2)
    # PageNumber (4 bytes) is stored inline in the entry
    index = list(entries).index(297)
    assert struct.unpack_from("<HH", data, offset + 2 + 12 * index + 8) == (0, 1)


def test_resolution_tags_present(tmp_path):
    path = tmp_path / "x.tiff"
    write(path, frames_for(GEOMETRY, 2), resolution=(142.857, 125.0))
    with tifffile.TiffFile(path) as tif:
        for page in tif.pages:
            assert page.tags.valueof(296) == tifffile.RESUNIT.CENTIMETER
            x = page.tags.valueof(282)
            y = page.tags.valueof(283)
            assert x[0] / x[1] == pytest.approx(142.857, rel=1e-6)
            assert y[0] / y[1] == pytest.approx(125.0)
    resolution = read_info(path).resolution
    assert resolution == pytest.approx((142.857, 125.0), rel=1e-6)


def test_resolution_absent(tmp_path):
    path = tmp_path / "x.tiff"
    write(path, frames_for(GEOMETRY, 1))
    assert read_info(path).resolution is None
    with tifffile.TiffFile(path) as tif:
        # tifffile always writes X/YResolution; without a spacing the unit is NONE
        # ("no absolute unit"), never centimetre or inch
        unit = tif.pages[0].tags.valueof(296)
        assert unit in (None, tifffile.RESUNIT.NONE)


@pytest.mark.parametrize("resolution", [(0, 1), (-1.0, 2.0), (float("nan"), 1.0)])
def test_invalid_resolution(tmp_path, resolution):
    with pytest.raises(ValueError, match="resolution"):
        write(tmp_path / "x.tiff", frames_for(GEOMETRY, 1), resolution=resolution)
    assert folder_names(tmp_path) == []


# -- pixels -------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16"])
@pytest.mark.parametrize("rgb", [False, True], ids=["gray", "rgb"])
def test_round_trip(tmp_path, compression, dtype, rgb):
    geometry = Geometry.identity(45, 37)  # odd sizes
    frames = frames_for(geometry, 2, dtype=dtype, rgb=rgb)
    path = tmp_path / "x.tiff"
    write(path, frames, geometry=geometry, compression=compression)
    back = read_frames(path)
    assert back.dtype == frames.dtype
    assert back.shape == frames.shape
    np.testing.assert_array_equal(back, frames)
    np.testing.assert_array_equal(tifffile.imread(path), frames)

    info = read_info(path)
    assert (info.width, info.height, info.num_frames) == (45, 37, 2)
    assert info.channels == (3 if rgb else 1)
    assert info.dtype == dtype
    assert info.compression == compression
    assert info.geometry == geometry
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        expected_photometric = "RGB" if rgb else "MINISBLACK"
        assert page.photometric == tifffile.PHOTOMETRIC[expected_photometric]
        signed = dtype == "int16"
        assert page.sampleformat == (tifffile.SAMPLEFORMAT.INT if signed else 1)
        predictor = page.tags.valueof(317, default=1)
        assert predictor == (2 if compression in ("zstd", "deflate") else 1)


def test_single_frame_read_frames_keeps_frame_axis(tmp_path):
    path = tmp_path / "x.tiff"
    frames = frames_for(GEOMETRY, 1)
    write(path, frames)
    assert read_frames(path).shape == (1, 120, 160)


def test_one_strip_per_page(tmp_path):
    path = tmp_path / "x.tiff"
    write(path, frames_for(GEOMETRY, 2))
    with tifffile.TiffFile(path) as tif:
        for page in tif.pages:
            assert page.tags.valueof(278) == 120
            assert len(page.dataoffsets) == 1


def test_rows_per_strip_splits_only_huge_pages():
    assert rows_per_strip(4096, 3328 * 2) == 4096
    row = 20000 * 3 * 2
    rows = rows_per_strip(20000, row)
    assert rows < 20000 and rows * row <= MAX_STRIP_BYTES
    assert rows_per_strip(5, MAX_STRIP_BYTES * 2) == 1


@pytest.mark.parametrize("geometry", [Geometry.identity(160, 120), GEOMETRY])
def test_read_geometry_rebuilds_exactly(tmp_path, geometry):
    path = tmp_path / "x.tiff"
    write(path, frames_for(geometry, 1), geometry=geometry)
    assert read_geometry(path) == geometry
    assert read_info(path).geometry == geometry


# -- determinism --------------------------------------------------------------------------


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_deterministic_bytes(tmp_path, compression):
    frames = frames_for(GEOMETRY, 3)
    write(tmp_path / "a.tiff", frames, compression=compression, resolution=(50.0, 50.0))
    write(tmp_path / "b.tiff", frames, compression=compression, resolution=(50.0, 50.0))
    first = (tmp_path / "a.tiff").read_bytes()
    assert first == (tmp_path / "b.tiff").read_bytes()
    write(tmp_path / "a.tiff", frames, compression=compression, resolution=(50.0, 50.0))
    assert (tmp_path / "a.tiff").read_bytes() == first


# -- atomicity and validation -------------------------------------------------------------


def failing_frames(frames, fail_at, exc):
    for i, frame in enumerate(frames):
        if i == fail_at:
            raise exc
        yield frame


def test_generator_failure_leaves_nothing(tmp_path):
    folder = tmp_path / "study"
    frames = frames_for(GEOMETRY, 3)
    with pytest.raises(RuntimeError, match="decode failed"):
        write_tiff(
            folder / "x.tiff",
            failing_frames(frames, 2, RuntimeError("decode failed")),
            num_frames=3,
            geometry=GEOMETRY,
        )
    assert folder_names(folder) == []


def test_failed_rewrite_keeps_existing_file(tmp_path):
    path = tmp_path / "x.tiff"
    write(path, frames_for(GEOMETRY, 2))
    good = path.read_bytes()
    for fail_at in (0, 1):
        with pytest.raises(KeyboardInterrupt):
            write_tiff(
                path,
                failing_frames(frames_for(GEOMETRY, 2, seed=1), fail_at, KeyboardInterrupt()),
                num_frames=2,
                geometry=GEOMETRY,
            )
        assert path.read_bytes() == good
        assert folder_names(tmp_path) == ["x.tiff"]


def test_disk_full_leaves_nothing(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tiff_module.os, "fsync", full)
    with pytest.raises(OSError, match="No space"):
        write(tmp_path / "x.tiff", frames_for(GEOMETRY, 2))
    assert folder_names(tmp_path) == []


@pytest.mark.parametrize("yielded", [0, 2, 4])
def test_frame_count_mismatch(tmp_path, yielded):
    frames = frames_for(GEOMETRY, yielded) if yielded else []
    with pytest.raises(ValueError, match="frame"):
        write_tiff(tmp_path / "x.tiff", iter(frames), num_frames=3, geometry=GEOMETRY)
    assert folder_names(tmp_path) == []


def test_frame_shape_or_dtype_change_is_rejected(tmp_path):
    frames = frames_for(GEOMETRY, 2)
    mixed = [frames[0], frames[1].astype(np.uint8)]
    with pytest.raises(ValueError, match="frame 1"):
        write_tiff(tmp_path / "x.tiff", iter(mixed), num_frames=2, geometry=GEOMETRY)
    assert folder_names(tmp_path) == []


@pytest.mark.parametrize(
    "frame",
    [np.zeros((120, 160), np.float64), np.zeros((120, 160, 4), np.uint8), np.zeros(5, np.uint8)],
)
def test_unsupported_frames(tmp_path, frame):
    with pytest.raises(ValueError):
        write_tiff(tmp_path / "x.tiff", iter([frame]), num_frames=1, geometry=GEOMETRY)
    assert folder_names(tmp_path) == []


def test_geometry_must_match_image(tmp_path):
    frame = np.zeros((120, 161), np.uint16)
    with pytest.raises(ValueError, match="canvas"):
        write_tiff(tmp_path / "x.tiff", iter([frame]), num_frames=1, geometry=GEOMETRY)
    assert folder_names(tmp_path) == []


def test_unknown_compression(tmp_path):
    with pytest.raises(ValueError, match="packbits, lzw, uncompressed, zstd, deflate"):
        write(tmp_path / "x.tiff", frames_for(GEOMETRY, 1), compression="jpeg")
    with pytest.raises(ValueError, match="valid"):
        needs_bigtiff(1, (10, 10), 1, "gzip")


def test_creates_parent_folders(tmp_path):
    path = tmp_path / "out" / "1.2.3" / "1.2.3.4.tiff"
    write(path, frames_for(GEOMETRY, 1))
    assert path.is_file()
    assert folder_names(path.parent) == ["1.2.3.4.tiff"]


def test_frames_are_consumed_one_at_a_time(tmp_path):
    alive: list[weakref.ref] = []
    high_water = 0

    def frames():
        nonlocal high_water
        for i in range(6):
            gc.collect()
            high_water = max(high_water, sum(r() is not None for r in alive))
            frame = np.full((120, 160), i, np.uint16)
            alive.append(weakref.ref(frame))
            yield frame

    write_tiff(tmp_path / "x.tiff", frames(), num_frames=6, geometry=GEOMETRY)
    assert high_water <= 1
    assert read_frames(tmp_path / "x.tiff")[:, 0, 0].tolist() == list(range(6))


# -- BigTIFF ------------------------------------------------------------------------------


def test_needs_bigtiff_decision():
    # small images and typical tomosynthesis volumes stay classic
    assert not needs_bigtiff(1, (4096, 3328), 2)
    assert not needs_bigtiff(100, (2457, 1890), 2)
    assert not needs_bigtiff(120, (600, 800, 3), 1, "lzw")
    # beyond 4 GiB of pixels
    assert needs_bigtiff(600, (2457, 1890), 2)
    assert needs_bigtiff(1024, (2048, 1024), 2, "uncompressed")  # exactly 4 GiB of pixels
    # 3.6 GiB of pixels fits uncompressed, but LZW may expand incompressible data
    assert not needs_bigtiff(900, (2048, 1024), 2, "uncompressed")
    assert not needs_bigtiff(900, (2048, 1024), 2, "packbits")
    assert needs_bigtiff(900, (2048, 1024), 2, "lzw")
    # the margin: just under 4 GiB of pixels is already too close
    assert needs_bigtiff(1023, (2048, 1024), 2, "uncompressed")
    with pytest.raises(ValueError):
        needs_bigtiff(0, (10, 10), 1)


def test_needs_bigtiff_is_monotonic_in_frames():
    decisions = [needs_bigtiff(n, (2048, 2048), 2) for n in range(400, 600)]
    first_true = decisions.index(True)
    assert all(decisions[first_true:]) and not any(decisions[:first_true])


def test_bigtiff_written_when_needed(tmp_path, monkeypatch):
    monkeypatch.setattr(tiff_module, "needs_bigtiff", lambda *args: True)
    path = tmp_path / "x.tiff"
    frames = frames_for(GEOMETRY, 3, rgb=True)
    write(path, frames, compression="zstd")
    with tifffile.TiffFile(path) as tif:
        assert tif.is_bigtiff
        assert [p.tags.valueof(297) for p in tif.pages] == [(0, 3), (1, 3), (2, 3)]
    np.testing.assert_array_equal(read_frames(path), frames)
    assert read_geometry(path) == GEOMETRY
    assert read_layout(path) == TiffLayout(160, 120, 3, 3)


def test_classic_tiff_by_default(tmp_path):
    path = tmp_path / "x.tiff"
    write(path, frames_for(GEOMETRY, 2))
    with tifffile.TiffFile(path) as tif:
        assert not tif.is_bigtiff


# -- header-only layout -------------------------------------------------------------------


def test_read_layout(tmp_path):
    path = tmp_path / "x.tiff"
    write(path, frames_for(GEOMETRY, 4))
    assert read_layout(path) == TiffLayout(width=160, height=120, channels=1, num_frames=4)


def test_a_stack_volume_records_what_it_holds(tmp_path):
    path = tmp_path / "x.tiff"
    held = StackSource("1.2.3", "1.2.3.4", 4)
    write(path, frames_for(GEOMETRY, 4), stack=held)
    assert StackSource.from_description(read_layout(path).description) == held
    assert read_geometry(path) == GEOMETRY  # the geometry reads as before
    assert StackSource.from_description(GEOMETRY.description()) is None
    assert StackSource.from_description('{"dicomprep": 1, "stack": {"slices": "4"}}') is None


@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("bigtiff", [False, True])
@pytest.mark.parametrize("description", [None, "ab", "abcdefg", '{"x": "' + "y" * 300 + '"}'])
def test_read_layout_other_writers(tmp_path, byteorder, bigtiff, description):
    """Sizes, pages and the first page's description as tifffile reads them (descriptions
    short enough to sit in the entry itself, and longer)."""
    path = tmp_path / "x.tif"
    data = np.zeros((5, 70, 300, 3), np.uint8)
    tifffile.imwrite(
        path,
        data,
        byteorder=byteorder,
        bigtiff=bigtiff,
        photometric="rgb",
        description=description,
        metadata=None,
    )
    with tifffile.TiffFile(path) as tif:
        described = tif.pages[0].description or None
    assert described == description
    assert read_layout(path) == TiffLayout(300, 70, 3, 5, description=described)


def test_read_layout_rejects_non_tiff(tmp_path):
    path = tmp_path / "x.tiff"
    path.write_bytes(b"not a tiff at all")
    with pytest.raises(ValueError, match="not a TIFF"):
        read_layout(path)
    path.write_bytes(b"II*\x00")
    with pytest.raises(ValueError, match="not a TIFF"):
        read_layout(path)
