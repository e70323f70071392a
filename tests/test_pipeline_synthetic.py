"""process_file on synthetic mammograms and tomosynthesis volumes: geometry and tags."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import tifffile
from dicomprep_testdata import synthetic
from pydicom.uid import JPEG2000Lossless, RLELossless

from dicomprep.formats.geometry import Geometry
from dicomprep.formats.tiff import read_frames, read_geometry, read_info
from dicomprep.options import Options
from dicomprep.pipeline import process_file
from dicomprep.pixels.pad import pad, padding_offsets

ROWS, COLUMNS = 832, 640


def write_mammogram(tmp_path, name="mg.dcm", syntax=None, **kw):
    ds = synthetic.mammogram(rows=ROWS, columns=COLUMNS, **kw)
    path = tmp_path / name
    if syntax is None:
        return synthetic.write(ds, path), ds
    return synthetic.write(ds, path, syntax), ds


def run(tmp_path, source, **options):
    out = tmp_path / "out.tiff"
    result = process_file(source, options=Options(**options), output_path=out)
    assert result.status == "ok", result.message
    return out, result


@pytest.mark.parametrize("laterality", ["L", "R"])
def test_crop_box_is_the_foreground_and_crop_max_drops_the_label(tmp_path, laterality):
    source, _ = write_mammogram(tmp_path, laterality=laterality)
    layout = synthetic.mammogram_layout(ROWS, COLUMNS, laterality)

    out, _ = run(tmp_path, source, crop=True)
    fg = layout.foreground
    assert read_geometry(out).crop_box == (fg.left, fg.top, fg.right, fg.bottom)

    out, _ = run(tmp_path, source, crop=True, crop_max=True)
    a = layout.anatomy
    assert read_geometry(out).crop_box == (a.left, a.top, a.right, a.bottom)
    frames = read_frames(out)
    assert frames.shape == (1, a.height, a.width)
    # the anatomy touches the chest-wall edge of the cropped image
    edge = frames[0][:, 0] if laterality == "L" else frames[0][:, -1]
    assert np.count_nonzero(edge) > 0


def test_largest_component_crop_ignores_a_distant_label(tmp_path):
    source, _ = write_mammogram(tmp_path, laterality="L")
    layout = synthetic.mammogram_layout(ROWS, COLUMNS, "L")
    out, _ = run(tmp_path, source, crop=True, crop_components=True)
    a = layout.anatomy
    assert read_geometry(out).crop_box == (a.left, a.top, a.right, a.bottom)


def test_resize_and_zero_padding_go_on_the_background_side(tmp_path):
    source, _ = write_mammogram(tmp_path, laterality="L")
    out, result = run(tmp_path, source, crop=True, crop_max=True, size=(512, 512))
    g = read_geometry(out)
    assert (result.width, result.height) == (512, 512)
    assert g.resized_height == 512 and g.resized_width < 512
    # anatomy on the left: the right column is background, so padding goes right
    assert g.active_left == 0 and g.active_area[2] == g.resized_width
    frame = read_frames(out)[0]
    assert not frame[:, g.resized_width :].any()

    source_r, _ = write_mammogram(tmp_path, "r.dcm", laterality="R")
    out_r, _ = run(tmp_path, source_r, crop=True, crop_max=True, size=(512, 512))
    g_r = read_geometry(out_r)
    assert g_r.active_left == 512 - g_r.resized_width > 0


@pytest.mark.parametrize(
    ("padding", "expected_left"),
    [("top-left", "room"), ("bottom-right", 0), ("center", "half")],
)
def test_padding_directions(tmp_path, padding, expected_left):
    source, _ = write_mammogram(tmp_path)
    out, _ = run(tmp_path, source, crop=True, crop_max=True, size=(600, 600), padding=padding)
    g = read_geometry(out)
    room = 600 - g.resized_width
    want = {"room": room, "half": room // 2}.get(expected_left, expected_left)
    assert g.active_left == want


def fitted(width: int, height: int, max_width: int, max_height: int) -> tuple[int, int]:
    """One scale factor fitting the box: ``round(w s) x round(h s)``."""
    s = min(max_width / width, max_height / height)
    return round(width * s), round(height * s)


def test_every_tag_on_the_page(tmp_path):
    source, ds = write_mammogram(tmp_path, laterality="L")
    out, _ = run(tmp_path, source, crop=True, crop_max=True, size=(400, 500))
    # crop_max keeps the breast alone: the box synthetic.py drew it in
    a = synthetic.mammogram_layout(ROWS, COLUMNS, "L").anatomy
    width, height = fitted(a.width, a.height, 400, 500)
    assert height == 500 and width < 400
    # the breast's chest-wall (first) column has no zeros, its last column is mostly
    # background: all the horizontal padding goes right, so the image sits at x = 0
    active_area = (0, 0, width, height)
    with tifffile.TiffFile(out) as tif:
        page = tif.pages[0]
        tags = {t.code: t for t in page.tags}
        for tag in tags.values():
            _ = tag.value  # read while the file is open
    assert tags[50719].dtype == 4 and tags[50719].value == (a.left, a.top)
    assert tags[50720].dtype == 4 and tags[50720].value == (a.width, a.height)
    assert tags[50718].dtype == 11
    assert tags[50718].value == pytest.approx((width / a.width, height / a.height), rel=1e-6)
    assert tags[50829].dtype == 4 and tags[50829].value == active_area
    assert tags[297].dtype == 3 and tags[297].value == (0, 1)
    assert (page.imagewidth, page.imagelength) == (400, 500)
    assert page.bitspersample == 16 and page.samplesperpixel == 1
    assert page.photometric == tifffile.PHOTOMETRIC.MINISBLACK
    spacing = float(ds.PixelSpacing[1])
    x_res = tags[282].value[0] / tags[282].value[1]
    assert x_res == pytest.approx(10 / spacing * width / a.width, rel=1e-4)
    assert tags[296].value == 3  # centimetre
    frame = read_frames(out)[0]
    assert not frame[:, width:].any() and frame[:, 0].all()


def test_zero_padding_goes_top_when_the_first_and_last_rows_tie(tmp_path):
    # The breast is a half-ellipse symmetric about the image's middle row: its first and
    # last rows hold equally many zeros, and on ties the padding goes left/top.
    source, _ = write_mammogram(tmp_path, laterality="R")
    out, _ = run(tmp_path, source, crop=True, crop_max=True, size=(300, 900))
    a = synthetic.mammogram_layout(ROWS, COLUMNS, "R").anatomy
    width, height = fitted(a.width, a.height, 300, 900)
    assert width == 300 and height < 900
    room = 900 - height
    with tifffile.TiffFile(out) as tif:
        assert tif.pages[0].tags[50829].value == (0, room, width, 900)
    frame = read_frames(out)[0]
    assert not frame[:room].any()
    top_row, bottom_row = frame[room], frame[-1]
    assert np.count_nonzero(top_row == 0) == np.count_nonzero(bottom_row == 0) > 0  # a tie


def test_zero_padding_rule_on_ties_and_on_unequal_edges():
    image = np.zeros((6, 5), np.uint16)
    image[1:3, 0] = 7  # first column: 4 zeros
    image[3:5, -1] = 9  # last column: 4 zeros too, in other rows
    image[0, 1:4] = 5  # first row: 2 zeros; last row: 5 zeros
    left, top = padding_offsets(image, 8, 10, "zero")
    assert left == 3  # tie: all padding on the left
    assert top == 0  # the last row has more zeros: padding below
    image[5, 2] = 1
    image[5, 1] = 1
    image[5, 3] = 1  # last row now 2 zeros too: tie, padding on top
    assert padding_offsets(image, 8, 10, "zero") == (3, 4)
    image[4, 0] = 3  # first column 3 zeros < last column 4: padding right
    assert padding_offsets(image, 8, 10, "zero") == (0, 4)
    canvas = pad(image, 8, 10, 0, 4)
    np.testing.assert_array_equal(canvas[4:, :5], image)
    assert not canvas[:4].any() and not canvas[:, 5:].any()


def test_monochrome1_mammogram_comes_out_like_monochrome2(tmp_path):
    m2, _ = write_mammogram(tmp_path, "m2.dcm", photometric="MONOCHROME2")
    m1, _ = write_mammogram(tmp_path, "m1.dcm", photometric="MONOCHROME1")
    out2, _ = run(tmp_path / "a", m2, crop=True)
    out1, _ = run(tmp_path / "b", m1, crop=True)
    a, b = read_frames(out2)[0].astype(int), read_frames(out1)[0].astype(int)
    assert a.shape == b.shape
    assert np.abs(a - b).max() <= 20  # same picture; the mirrored window rounds apart
    assert a[-1, -1] == b[-1, -1] == 0  # background stays dark after inversion


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless])
def test_compressed_mammograms_equal_uncompressed(tmp_path, syntax):
    plain, _ = write_mammogram(tmp_path, "plain.dcm")
    packed, _ = write_mammogram(tmp_path, "packed.dcm", syntax=syntax)
    # full-resolution decoding: a reduced JPEG 2000 level is a different (smaller) source
    options = {"crop": True, "size": (256, 320), "decode_resolution": "full"}
    a, _ = run(tmp_path / "a", plain, **options)
    b, _ = run(tmp_path / "b", packed, **options)
    assert a.read_bytes() == b.read_bytes()


def test_landmark_lands_where_the_mapping_says(tmp_path):
    ds = synthetic.mammogram(rows=ROWS, columns=COLUMNS, laterality="L", label=False)
    arr = ds.pixel_array.copy()
    arr[:] = 0
    x, y = 150, 400  # a bright 3x3 dot inside the anatomy area, on zero background
    arr[y - 1 : y + 2, x - 1 : x + 2] = 4095
    arr[100:700, 20:30] = 2000  # something to crop to besides the dot
    ds.PixelData = arr.tobytes()
    source = synthetic.write(ds, tmp_path / "dot.dcm")
    out, _ = run(tmp_path, source, crop=True, size=(300, 300), filter="triangle")
    g = read_geometry(out)
    frame = read_frames(out)[0].astype(float)
    ox, oy = g.to_output([x + 0.5, y + 0.5])
    window = frame[int(oy) - 4 : int(oy) + 5, int(ox) - 4 : int(ox) + 5]
    yy, xx = np.mgrid[int(oy) - 4 : int(oy) + 5, int(ox) - 4 : int(ox) + 5]
    centroid = (
        ((xx + 0.5) * window).sum() / window.sum(),
        ((yy + 0.5) * window).sum() / window.sum(),
    )
    assert centroid == pytest.approx((ox, oy), abs=0.35)
    back = g.to_source([ox, oy])
    assert back == pytest.approx((x + 0.5, y + 0.5))
    box = g.box_to_source(g.box_to_output([x - 1, y - 1, x + 2, y + 2]))
    assert box == pytest.approx((x - 1, y - 1, x + 2, y + 2))


def test_mapping_round_trip_and_padding_offset():
    g = Geometry.identity(640, 832).with_crop(10, 20, 300, 700).with_resize(150, 350)
    g = g.with_padding(200, 350, 50, 0)
    points = [[10, 20], [310, 720], [123.25, 456.5]]
    np.testing.assert_allclose(g.to_source(g.to_output(points)), points)
    np.testing.assert_allclose(g.to_output([[10, 20], [310, 720]]), [[50, 0], [200, 350]])


def test_tomosynthesis_keep_orders_frames_and_shares_one_crop_box(tmp_path):
    frames_n = 8
    ds = synthetic.tomosynthesis(frames=frames_n, rows=208, columns=160, shuffled=True, seed=3)
    source = synthetic.write(ds, tmp_path / "bto.dcm")
    out, result = run(tmp_path, source, crop=True, crop_max=True)
    info = read_info(out)
    assert info.num_frames == frames_n == result.num_frames
    frames = read_frames(out)
    with tifffile.TiffFile(out) as tif:
        assert [p.tags[297].value for p in tif.pages] == [(k, frames_n) for k in range(frames_n)]
        boxes = {tuple(p.tags[50719].value) + tuple(p.tags[50720].value) for p in tif.pages}
    assert len(boxes) == 1
    # marker brightness rises with position: the stored shuffle was undone
    g = info.geometry
    marker = synthetic.frame_marker_box(208, 160, "L")
    mx = (marker.left + marker.right) // 2 - g.crop_x
    my = (marker.top + marker.bottom) // 2 - g.crop_y
    values = [int(f[my, mx]) for f in frames]
    assert values == sorted(values) and len(set(values)) == frames_n
    # the union box holds every frame's foreground
    unordered = pydicom.dcmread(source).pixel_array
    for frame in unordered:
        ys, xs = np.nonzero((frame > 0) & (frame < 4095))
        assert g.crop_x <= xs.min() and xs.max() < g.crop_x + g.crop_width


@pytest.mark.parametrize("spacing", ["1e-300", "0", "-0.1", "inf", "nan", "1e+300"])
def test_an_unphysical_pixel_spacing_means_no_resolution_not_a_failure(tmp_path, spacing):
    path, ds = write_mammogram(tmp_path)
    ds.PixelSpacing = ds.ImagerPixelSpacing = [spacing, spacing]
    synthetic.write(ds, path)
    out, _ = run(tmp_path, path, size=(64, 80))
    assert read_info(out).resolution is None


def test_a_physical_pixel_spacing_becomes_the_resolution(tmp_path):
    path, _ = write_mammogram(tmp_path, pixel_spacing=(0.05, 0.1))
    out, _ = run(tmp_path, path)  # no crop or resize: 1 pixel = the source pixel
    assert read_info(out).resolution == pytest.approx((100.0, 200.0))  # pixels per cm


def test_monochrome1_volume_with_voi_none_is_reflected_in_the_volume_range(tmp_path):
    ds = synthetic.tomosynthesis(
        frames=4, rows=104, columns=80, photometric="MONOCHROME1", label=False, seed=4
    )
    volume = ds.pixel_array.astype(np.int64)
    frame_ranges = {(int(f.min()), int(f.max())) for f in volume}
    assert len(frame_ranges) > 1  # a per-frame reflection would differ between frames
    source = synthetic.write(ds, tmp_path / "bto.dcm")
    out, _ = run(tmp_path, source, voi="none")
    frames = read_frames(out).astype(np.int64)
    expected = volume.max() + volume.min() - volume  # larger = brighter, one interval
    np.testing.assert_array_equal(frames, expected)
