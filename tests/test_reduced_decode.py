"""JPEG 2000 / HTJ2K decoded at reduced resolution, and lossless codecs against uncompressed.

Codestreams are made here with imagecodecs (OpenJPEG, OpenJPH, CharLS) and put into DICOM
files with pydicom's ``encapsulate``; the expected values come from the uncompressed pixels,
from pydicom's own decoders and from numpy computations on the source pixels.
"""

from __future__ import annotations

import warnings

import imagecodecs
import numpy as np
import pydicom
import pytest
from dicomprep_testdata import synthetic
from pydicom.data import get_testdata_file

from dicomprep.formats.codestreams import (
    CodestreamError,
    codestream_frames,
    read_codestream,
    read_frame_header,
    reduced_foreground_box,
)
from dicomprep.formats.decode import image_info, read_header
from dicomprep.formats.tiff import read_frames, read_geometry
from dicomprep.options import Options
from dicomprep.pipeline import process_file

from .codestream_helpers import (
    HTJ2K_LOSSLESS,
    J2K_LOSSLESS,
    JPEG_LOSSLESS,
    JPEGLS_LOSSLESS,
    frames_of,
    write_encapsulated,
)

ROWS, COLUMNS = 1664, 1280
SIZE = (512, 640)  # the breast crop (about 768 x 1460) shrinks about 2.3 times: level 1
LANDMARK = (301, 803, 12)  # left, top, side of a bright square inside the breast
PATCH = 80  # a flat patch around it, so its centroid is measured without texture


def mammogram_with_landmark() -> pydicom.Dataset:
    ds = synthetic.mammogram(rows=ROWS, columns=COLUMNS, seed=3)
    pixels = ds.pixel_array.copy()
    x, y, side = LANDMARK
    cx, cy = x + side // 2, y + side // 2
    pixels[cy - PATCH // 2 : cy + PATCH // 2, cx - PATCH // 2 : cx + PATCH // 2] = 1500
    pixels[y : y + side, x : x + side] = 3000
    ds.PixelData = pixels.tobytes()
    return ds


def convert(tmp_path, source, name, **options):
    out = tmp_path / f"{name}.tiff"
    values = {"crop": True, "crop_max": True, "size": SIZE, **options}
    result = process_file(source, options=Options(**values), output_path=out)
    assert result.status == "ok", result.message
    return out


def landmark_centroid(image: np.ndarray, near: tuple[float, float], radius: int = 10):
    """(x, y) centroid of the bright square in output pixels, weighted by its excess over the
    flat patch around it (pixel (i, j) has its centre at (i + 0.5, j + 0.5))."""
    x0, y0 = int(near[0]) - radius, int(near[1]) - radius
    window = image[y0 : y0 + 2 * radius, x0 : x0 + 2 * radius].astype(np.float64)
    excess = np.clip(window - np.median(window), 0, None)
    ys, xs = np.mgrid[0 : window.shape[0], 0 : window.shape[1]]
    total = excess.sum()
    return (x0 + (excess * (xs + 0.5)).sum() / total, y0 + (excess * (ys + 0.5)).sum() / total)


@pytest.fixture(scope="module")
def landmark_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("landmark")
    ds = mammogram_with_landmark()
    return {
        "uncompressed": synthetic.write(ds, folder / "raw.dcm"),
        J2K_LOSSLESS: write_encapsulated(ds, folder / "j2k.dcm", J2K_LOSSLESS),
        HTJ2K_LOSSLESS: write_encapsulated(ds, folder / "htj2k.dcm", HTJ2K_LOSSLESS),
    }


# -- codestream headers --------------------------------------------------------------------------


@pytest.mark.parametrize("resolutions", [1, 3, 6])
def test_codestream_header_gives_size_precision_and_levels(resolutions):
    image = np.arange(600 * 900, dtype=np.uint16).reshape(600, 900) % 1024
    data = imagecodecs.jpeg2k_encode(
        image, level=0, codecformat="j2k", reversible=True, bitspersample=10,
        resolutions=resolutions,
    )  # fmt: skip
    header = read_codestream(data)
    assert (header.width, header.height, header.precision) == (900, 600, 10)
    assert header.levels == resolutions - 1
    assert (header.components, header.signed, header.x_origin, header.y_origin) == (1, 0, 0, 0)


def test_lossless_jpeg_with_a_point_transform_is_left_to_pydicom():
    image = np.random.default_rng(0).integers(0, 4096, (40, 30)).astype(np.uint16)
    data = bytearray(imagecodecs.ljpeg_encode(image, bitspersample=12))
    header = read_frame_header(bytes(data), JPEG_LOSSLESS)
    assert (header.width, header.height, header.precision, header.components) == (30, 40, 12, 1)
    sos = data.index(b"\xff\xda")
    components = data[sos + 4]
    data[sos + 5 + 2 * components + 2] |= 0x01  # Al = 1: samples were shifted right by one
    with pytest.raises(CodestreamError, match="point transform"):
        read_frame_header(bytes(data), JPEG_LOSSLESS)


def test_levels_asked_never_exceed_the_codestream(tmp_path):
    ds = synthetic.mammogram(rows=512, columns=384, seed=1)
    path = tmp_path / "few.dcm"
    codestream = imagecodecs.jpeg2k_encode(
        ds.pixel_array, level=0, codecformat="j2k", reversible=True, bitspersample=12,
        resolutions=2,
    )  # fmt: skip
    from pydicom.encaps import encapsulate

    ds.PixelData = encapsulate([codestream])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = J2K_LOSSLESS
    ds.save_as(path, enforce_file_format=True)
    header, _ = read_header(path)
    frames = codestream_frames(path, header, image_info(header))
    assert frames.header.levels == 1
    assert frames.level_for(16, 16) == 1  # 5 levels would fit 16 x 16; the codestream has 1
    out = convert(tmp_path, path, "few", size=(64, 64))
    assert read_frames(out).shape == (1, 64, 64)


# -- reduced values ----------------------------------------------------------------------------


@pytest.mark.parametrize("syntax", [J2K_LOSSLESS, HTJ2K_LOSSLESS])
@pytest.mark.parametrize("level", [1, 2, 3])
def test_reduced_pixel_k_is_centred_on_the_first_source_pixel_of_its_block(tmp_path, syntax, level):
    """On a smooth image the low-pass at level r, pixel k, is the image at source pixel
    k 2^r (the first of its block, not the block's centre: the documented offset)."""
    rows, columns = 303, 439  # odd: the partial last block is dropped

    def smooth(y, x):
        return 1000 + 800 * np.sin(x / 57.0) * np.cos(y / 43.0)

    image = smooth(*np.mgrid[0:rows, 0:columns]).astype(np.uint16)
    ds = synthetic.mammogram(rows=rows, columns=columns, seed=0)
    ds.PixelData = image.tobytes()
    path = write_encapsulated(ds, tmp_path / "smooth.dcm", syntax)
    header, _ = read_header(path)
    frames = codestream_frames(path, header, image_info(header))
    reduced = next(frames.frames([0], level))
    block = 1 << level
    h, w = rows >> level, columns >> level
    assert reduced.shape == (h, w) and reduced.dtype == np.uint16
    inner = (slice(2, -2), slice(2, -2))  # away from the symmetric extension at the borders
    at_first_pixel = smooth(*np.mgrid[0:h, 0:w] * block) - 0.5  # the cast floored the image
    tolerance = 2 + 2 * level  # rounding per level, curvature under the wider filters
    assert np.abs(reduced - at_first_pixel)[inner].max() <= tolerance
    means = image[: h * block, : w * block].reshape(h, block, w, block).mean(axis=(1, 3))
    assert np.abs(reduced - means)[inner].max() > tolerance  # the block centre is not it


@pytest.mark.parametrize("shape", [(301, 437), (300, 436), (304, 440), (257, 263)])
def test_levels_chosen_are_the_ones_pillow_decodes(tmp_path, shape):
    image = np.random.default_rng(0).integers(0, 4000, shape).astype(np.uint16)
    ds = synthetic.mammogram(rows=shape[0], columns=shape[1], seed=0)
    ds.PixelData = image.tobytes()
    path = write_encapsulated(ds, tmp_path / "odd.dcm", J2K_LOSSLESS)
    header, _ = read_header(path)
    frames = codestream_frames(path, header, image_info(header))
    for width in range(1, 80, 3):
        level = frames.level_for(width, width)
        reduced = next(frames.frames([0], level))
        assert reduced.shape == (shape[0] >> level, shape[1] >> level)
        assert min(reduced.shape) >= width


def test_reduced_decode_of_a_real_radiograph_matches_block_averages():
    """RG1_J2KR: a real 1955 x 1841 15-bit MONOCHROME1 CR encoded by another tool."""
    path = get_testdata_file("RG1_J2KR.dcm")
    header, _ = read_header(path)
    frames = codestream_frames(path, header, image_info(header))
    assert frames is not None and frames.header.levels == 5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = pydicom.dcmread(path).pixel_array
    assert np.array_equal(next(frames.frames([0], 0)), full)
    assert frames.level_for(400, 400) == 1  # level 2 would do, but Pillow cannot size it
    reduced = next(frames.frames([0], 1))
    assert reduced.shape == (1955 >> 1, 1841 >> 1)
    means = full[: 977 * 2, : 920 * 2].reshape(977, 2, 920, 2).mean(axis=(1, 3))
    difference = np.abs(reduced.astype(np.float64) - means)
    assert np.median(difference) < 0.01 * (full.max() - full.min())


@pytest.mark.parametrize(
    "name",
    [
        "RG1_J2KI.dcm",
        "RG3_J2KR.dcm",
        "RG3_J2KI.dcm",
        "MR2_J2KR.dcm",
        "MR2_J2KI.dcm",
        "JPEGLSNearLossless_08.dcm",
        "JPEGLSNearLossless_16.dcm",
        "JPGLosslessP14SV1_1s_1f_8b.dcm",
        "emri_small_jpeg_2k_lossless.dcm",
    ],
)
def test_full_resolution_frames_equal_pydicoms_decode(name):
    path = get_testdata_file(name)
    header, _ = read_header(path)
    info = image_info(header)
    frames = codestream_frames(path, header, info)
    assert frames is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = pydicom.dcmread(path).pixel_array.reshape(info.num_frames, info.rows, -1)
    decoded = np.stack(list(frames.frames(range(info.num_frames), 0)))
    assert decoded.dtype == expected.dtype
    assert np.array_equal(decoded, expected)


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_jp2klossless.dcm",
        "US1_J2KR.dcm",
        "SC_rgb_gdcm_KY.dcm",
        "CT_small.dcm",
        "JPEG-LL.dcm",
        "SC_rgb_jpeg_gdcm.dcm",
        "JPEG2000.dcm",
    ],
)
def test_signed_colour_and_other_files_are_left_to_pydicom(name):
    path = get_testdata_file(name)
    header, _ = read_header(path)
    assert codestream_frames(path, header, image_info(header)) is None


# -- geometry of the reduced path ---------------------------------------------------------------


@pytest.mark.parametrize("syntax", [J2K_LOSSLESS, HTJ2K_LOSSLESS])
def test_landmark_lands_where_the_tags_map_it(tmp_path, landmark_files, syntax):
    source = landmark_files[syntax]
    header, _ = read_header(source)
    frames = codestream_frames(source, header, image_info(header))
    assert frames.level_for(*SIZE) == 1  # the reduced path is the one under test

    reduced = convert(tmp_path, source, "auto")
    full = convert(tmp_path, source, "full", decode_resolution="full")
    reduced_image, full_image = read_frames(reduced)[0], read_frames(full)[0]
    assert not np.array_equal(reduced_image, full_image)  # decoded differently

    x, y, side = LANDMARK
    centre = (x + side / 2, y + side / 2)
    for out, image in ((reduced, reduced_image), (full, full_image)):
        expected = read_geometry(out).to_output(centre)
        measured = landmark_centroid(image, expected)
        assert np.hypot(*(np.array(measured) - expected)) < 1.0, (out.name, measured, expected)


@pytest.mark.parametrize("syntax", [J2K_LOSSLESS, HTJ2K_LOSSLESS])
def test_a_target_spacing_is_decoded_at_the_level_its_grid_needs(tmp_path, syntax):
    """0.07 mm pixels to 0.2 mm shrink 2.86 times: level 1 still has the pixels.  The
    exact scale stays the source's (tags and record), and the landmark lands where the
    tags map it in the reduced and the full decode alike."""
    ds = mammogram_with_landmark()
    ds.PixelSpacing = [0.07, 0.07]
    source = write_encapsulated(ds, tmp_path / "spaced.dcm", syntax)
    header, _ = read_header(source)
    frames = codestream_frames(source, header, image_info(header))
    scale = 0.07 / 0.2
    assert frames.level_for(round(COLUMNS * scale), round(ROWS * scale)) == 1
    spacing = {"spacing": (0.2, 0.2), "size": None}
    reduced = convert(tmp_path, source, "auto", **spacing)
    full = convert(tmp_path, source, "full", decode_resolution="full", **spacing)
    reduced_image, full_image = read_frames(reduced)[0], read_frames(full)[0]
    assert not np.array_equal(reduced_image, full_image)  # decoded differently
    reduced_geometry, full_geometry = read_geometry(reduced), read_geometry(full)
    assert reduced_geometry.exact_scale == full_geometry.exact_scale == (scale, scale)
    assert all(v % 2 == 0 for v in reduced_geometry.crop_box)  # whole blocks of level 1
    assert np.abs(np.subtract(reduced_geometry.crop_box, full_geometry.crop_box)).max() <= 3
    assert reduced_image.shape[:2] == (
        reduced_geometry.resized_height,
        reduced_geometry.resized_width,
    )
    x, y, side = LANDMARK
    centre = (x + side / 2, y + side / 2)
    for out, image in ((reduced, reduced_image), (full, full_image)):
        expected = read_geometry(out).to_output(centre)
        measured = landmark_centroid(image, expected, radius=6)
        assert np.hypot(*(np.array(measured) - expected)) < 1.0, (out.name, measured, expected)
    # the same picture: on the rows and columns both outputs cover, values agree closely
    dx, dy = (
        round((reduced_geometry.crop_x - full_geometry.crop_x) * scale),
        round((reduced_geometry.crop_y - full_geometry.crop_y) * scale),
    )
    h = min(reduced_image.shape[0], full_image.shape[0] - dy) - 2
    w = min(reduced_image.shape[1], full_image.shape[1] - dx) - 2
    a = reduced_image[1:h, 1:w].astype(np.float64)
    b = full_image[1 + dy : h + dy, 1 + dx : w + dx].astype(np.float64)
    assert np.mean(np.abs(a - b)) < 0.01 * 65535


@pytest.mark.parametrize("syntax", [J2K_LOSSLESS, HTJ2K_LOSSLESS])
def test_reduced_tags_differ_from_full_decode_only_by_whole_blocks(
    tmp_path, landmark_files, syntax
):
    source = landmark_files[syntax]
    reduced = read_geometry(convert(tmp_path, source, "auto"))
    full = read_geometry(convert(tmp_path, source, "full", decode_resolution="full"))
    uncompressed = read_geometry(convert(tmp_path, landmark_files["uncompressed"], "raw"))
    assert full == uncompressed
    block = 2  # level 1
    assert all(v % block == 0 for v in reduced.crop_box)  # whole blocks of source pixels
    # each side within one block of rounding plus one block of low-pass spread
    assert np.abs(np.subtract(reduced.crop_box, full.crop_box)).max() <= 2 * block - 1
    assert (reduced.canvas_width, reduced.canvas_height) == SIZE
    assert reduced.scale_x == pytest.approx(reduced.resized_width / reduced.crop_width)
    assert abs(reduced.resized_width - full.resized_width) <= 2
    assert abs(reduced.resized_height - full.resized_height) <= 2


def test_crop_max_ignores_the_blurred_label_edges(landmark_files):
    source = landmark_files[J2K_LOSSLESS]
    header, _ = read_header(source)
    frames = codestream_frames(source, header, image_info(header))
    reduced = next(frames.frames([0], 1))
    # the output mapping of the mammogram window sends the label to the maximum
    center, width = synthetic.mammogram_window()
    low, high = center - width / 2, center + width / 2
    output = np.rint(np.clip((reduced - low) / (high - low), 0, 1) * 65535).astype(np.uint16)
    anatomy = synthetic.mammogram_layout(ROWS, COLUMNS).anatomy
    box = reduced_foreground_box(output, crop_max=True, level=1)
    assert abs(box[2] * 2 - anatomy.right) <= 3  # the label, to the right, is left out
    from dicomprep.pixels.crop import foreground_box

    assert foreground_box(output, crop_max=True)[2] * 2 > anatomy.right + 100  # without it


def test_reduced_box_drops_blends_of_the_maximum_and_background_only():
    image = np.zeros((60, 80), np.uint16)
    image[10:50, 0:30] = 20000  # anatomy on the left edge
    image[5:9, 60:76] = 65535  # a label ...
    image[4, 59:77] = image[9, 59:77] = 30000  # ... with blurred edges one pixel wide
    image[4:10, 59] = image[4:10, 76] = 30000
    image[0, 79] = 65535  # a maximum pixel in the corner
    image[1, 78] = 100  # next to it
    assert reduced_foreground_box(image, crop_max=True, level=1) == (0, 10, 30, 50)
    assert reduced_foreground_box(image, crop_max=True, level=0) == (0, 1, 79, 50)
    assert reduced_foreground_box(image, crop_max=False, level=1) == (0, 0, 80, 50)
    image[10:50, 30:34] = 65535  # a saturated region bordering the anatomy keeps it
    assert reduced_foreground_box(image, crop_max=True, level=1) == (0, 10, 30, 50)
    image[10:50, 26:30] = 65535  # the anatomy's last columns saturated: the box ends before
    assert reduced_foreground_box(image, crop_max=True, level=1) == (0, 10, 26, 50)


def test_a_radiograph_whose_anatomy_borders_saturation_keeps_its_box(tmp_path):
    """RG3_J2KR: 44 % of the output is at the maximum, next to the anatomy (collimation)."""
    source = get_testdata_file("RG3_J2KR.dcm")
    reduced = read_geometry(convert(tmp_path, source, "auto", size=(256, 320)))
    full = read_geometry(
        convert(tmp_path, source, "full", size=(256, 320), decode_resolution="full")
    )
    block = 4  # level 2
    assert all(v % block == 0 for v in reduced.crop_box)
    assert reduced.crop_box != full.crop_box  # the reduced path ran
    # ragged edges: sides move by at most two blocks (never the whole saturated border)
    assert np.abs(np.subtract(reduced.crop_box, full.crop_box)).max() <= 2 * block


def test_a_small_crop_is_decoded_at_the_level_it_needs(tmp_path):
    """The whole image would allow level 2; the crop needs full resolution."""
    ds = synthetic.mammogram(rows=1024, columns=1024, label=False, seed=0)
    pixels = np.zeros((1024, 1024), np.uint16)
    y, x = np.mgrid[0:120, 0:100]
    pixels[401:521, 333:433] = 900 + 5 * x + 3 * y
    ds.PixelData = pixels.tobytes()
    raw = synthetic.write(ds, tmp_path / "raw.dcm")
    j2k = write_encapsulated(ds, tmp_path / "j2k.dcm", J2K_LOSSLESS)
    options = {"size": (200, 240), "crop_max": False}
    reduced = convert(tmp_path, j2k, "auto", **options)
    expected = convert(tmp_path, raw, "raw", **options)
    assert read_geometry(reduced) == read_geometry(expected)
    assert read_geometry(reduced).crop_box == (333, 401, 433, 521)
    assert np.array_equal(read_frames(reduced), read_frames(expected))


def test_option_is_validated_and_part_of_the_fingerprint():
    assert Options().decode_resolution == "auto"
    assert Options(decode_resolution="full").fingerprint() != Options().fingerprint()
    with pytest.raises(ValueError, match="decode_resolution"):
        Options(decode_resolution="half")


# -- lossless codecs give the uncompressed output ---------------------------------------------


@pytest.mark.parametrize("syntax", [J2K_LOSSLESS, HTJ2K_LOSSLESS, JPEGLS_LOSSLESS, JPEG_LOSSLESS])
@pytest.mark.parametrize("size", [None, SIZE])
def test_lossless_codecs_at_full_resolution_equal_uncompressed(tmp_path, syntax, size):
    ds = synthetic.mammogram(rows=832, columns=640, seed=2)
    raw = synthetic.write(ds, tmp_path / "raw.dcm")
    encoded = write_encapsulated(ds, tmp_path / "encoded.dcm", syntax)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.array_equal(pydicom.dcmread(encoded).pixel_array, frames_of(ds)[0])
    options = {"size": size, "decode_resolution": "full"}
    expected = convert(tmp_path, raw, "raw", **options)
    out = convert(tmp_path, encoded, "encoded", **options)
    assert np.array_equal(read_frames(out), read_frames(expected))
    assert read_geometry(out) == read_geometry(expected)


@pytest.mark.parametrize("syntax", [J2K_LOSSLESS, HTJ2K_LOSSLESS])
def test_a_stack_of_jpeg2000_slices_is_decoded_at_the_level_its_output_needs(tmp_path, syntax):
    """Slices 128 x 128 to a 32 x 32 volume: decoded at level 2, the same geometry and
    placement as a full decode, and pixels within a small error of it."""
    from dicomprep.formats import codestreams
    from dicomprep.series.volume_file import process_stack

    from .series_helpers import write_series

    series = write_series(tmp_path / "plain", count=4, name=f"reduced-{syntax}")
    paths = []
    for k, ds in enumerate(sorted(series["datasets"], key=lambda d: d.InstanceNumber)):
        values = ds.pixel_array.astype(np.uint16)  # 128..2191: unsigned, as many CTs store
        ds.PixelRepresentation, ds.PixelData = 0, values.tobytes()
        paths.append(write_encapsulated(ds, tmp_path / "j2k" / f"s{k}.dcm", syntax))
    levels = []
    decode = codestreams.CodestreamFrames.decode

    def recording(self, data, level=0):
        levels.append(level)
        return decode(self, data, level)

    outputs = {}
    for resolution in ("auto", "full"):
        options = Options(size=(32, 32), voi="none", decode_resolution=resolution)
        codestreams.CodestreamFrames.decode = recording
        try:
            result = process_stack(paths, tmp_path / f"{resolution}.tiff", options)
        finally:
            codestreams.CodestreamFrames.decode = decode
        assert result.status == "ok", result.message
        outputs[resolution] = tmp_path / f"{resolution}.tiff"
    assert levels == [2] * len(paths)  # auto: each slice once, at level 2; full: pydicom's
    reduced, full = (read_frames(outputs[r]).astype(np.float64) for r in ("auto", "full"))
    assert reduced.shape == full.shape == (4, 32, 32)
    assert read_geometry(outputs["auto"]) == read_geometry(outputs["full"])
    assert not np.array_equal(reduced, full)  # decoded differently
    assert np.mean(np.abs(reduced - full)) < 0.02 * (full.max() - full.min())


@pytest.mark.parametrize("syntax", [J2K_LOSSLESS, HTJ2K_LOSSLESS])
@pytest.mark.parametrize(("level", "size"), [(1, 256), (2, 128), (3, 64)])
def test_reduced_pixels_are_resampled_where_the_geometry_puts_them(tmp_path, syntax, level, size):
    """A pixel decoded at level r lies on its block's first source pixel: resampled as if it
    were at the block's centre, a ramp would come out shifted by (2^r - 1) / 2 source pixels
    (4.5 units here at level 2).  Resampled where it is, the ramp matches a full decode."""
    rows = columns = 512
    y, x = np.mgrid[0:rows, 0:columns]
    ds = synthetic.mammogram(rows=rows, columns=columns, seed=0)
    ds.PixelData = (1000 + 3 * x + 2 * y).astype(np.uint16).tobytes()
    path = write_encapsulated(ds, tmp_path / "ramp.dcm", syntax)
    header, _ = read_header(path)
    assert codestream_frames(path, header, image_info(header)).level_for(size, size) == level
    images = {}
    for resolution in ("auto", "full"):
        options = Options(size=(size, size), voi="none", decode_resolution=resolution)
        out = tmp_path / f"{resolution}.tiff"
        assert process_file(path, options=options, output_path=out).status == "ok"
        images[resolution] = read_frames(out)[0].astype(np.float64)
    inner = (slice(2, -2), slice(2, -2))  # the borders' clamped windows differ by design
    assert np.abs(images["auto"] - images["full"])[inner].max() <= 1.0
