"""The one renderer: the crop box found on the stored values and the lookup table applied
inside it alone give exactly what mapping the whole frame and cropping it gives; a file's
frames and a stack's slices are rendered by the same code."""

from __future__ import annotations

import numpy as np
import pytest
from dicomprep_testdata import synthetic
from pydicom.data import get_testdata_file

from dicomprep.formats.decode import image_info, iter_frames, read_header
from dicomprep.options import VOLUME_HANDLERS, Options, VolumeHandler
from dicomprep.pipeline import FileFrames, render
from dicomprep.pixels.crop import (
    crop,
    foreground_box,
    foreground_mask,
    interval_box,
    interval_mask,
    mask_box,
)
from dicomprep.pixels.mapper import IntensityMapper, foreground_interval
from dicomprep.pixels.resize import fit_size


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16"])
def test_interval_box_is_the_box_of_the_values_in_the_interval(dtype):
    rng = np.random.default_rng(1)
    info = np.iinfo(dtype)
    image = rng.integers(info.min, info.max, (70, 90), endpoint=True).astype(dtype)
    for lo, hi in [(info.min, info.max), (0, 0), (-5, 40), (info.max - 3, info.max), (9, 2)]:
        lo, hi = max(lo, info.min), min(hi, info.max)
        expected = (image >= lo) & (image <= hi) if lo <= hi else np.zeros(image.shape, bool)
        np.testing.assert_array_equal(interval_mask(image, lo, hi), expected)
        for rows in (1, 7, 64, 200):
            assert interval_box(image, lo, hi, rows) == mask_box(expected)
    one = np.zeros((50, 40), dtype)
    one[33, 4] = 7
    assert interval_box(one, 1, 7, rows_per_block=8) == (4, 33, 5, 34)
    assert interval_box(one, 8, 9) is None


def test_a_table_whose_foreground_is_not_one_interval_is_refused():
    lut = np.array([0, 5, 0, 5] + [0] * 252, dtype=np.uint8)
    assert foreground_interval(lut, np.dtype(np.uint8), crop_max=False) is None
    lut = np.array([0, 0, 5, 9, 255] + [255] * 251, dtype=np.uint8)
    assert foreground_interval(lut, np.dtype(np.uint8), crop_max=True) == (2, 3)
    assert foreground_interval(lut, np.dtype(np.uint8), crop_max=False) == (2, 255)
    assert foreground_interval(np.zeros(256, np.uint8), np.dtype(np.uint8), False) == (1, 0)


@pytest.mark.parametrize(
    ("name", "voi"),
    [
        ("CT_small.dcm", "auto"),  # signed 16-bit with a window
        ("CT_small.dcm", (40.0, 80.0)),
        ("RG1_UNCR.dcm", "auto"),  # MONOCHROME1: the table decreases
        ("MR_small.dcm", "auto"),
    ],
)
@pytest.mark.parametrize("crop_max", [False, True])
def test_the_box_of_the_stored_values_and_the_region_are_those_of_the_mapped_frame(
    name, voi, crop_max
):
    path = get_testdata_file(name)
    ds, _ = read_header(path)
    info = image_info(ds)
    raw = next(iter_frames(path, ds, [0], info))
    mapper = IntensityMapper(ds, info, Options(crop=True, crop_max=crop_max, voi=voi))
    mapped = mapper(0, raw)
    interval = mapper.stored_interval(0, raw, crop_max)
    assert interval is not None
    np.testing.assert_array_equal(interval_mask(raw, *interval), foreground_mask(mapped, crop_max))
    box = interval_box(raw, *interval)
    assert box == foreground_box(mapped, crop_max)
    region = mapper.region(0, raw, box)
    assert region.dtype == mapped.dtype
    np.testing.assert_array_equal(region, crop(mapped, box))


def test_a_table_that_wraps_around_leaves_the_box_to_the_mapped_frame(tmp_path):
    """MONOCHROME1 with `voi: none` reflects the values within the image's range: stored
    values outside it wrap around in the output type, so the foreground is no interval."""
    path = get_testdata_file("RG1_UNCR.dcm")
    ds, _ = read_header(path)
    info = image_info(ds)
    raw = next(iter_frames(path, ds, [0], info))
    mapper = IntensityMapper(ds, info, Options(crop=True, voi="none"))
    assert mapper.stored_interval(0, raw, crop_max=False) is None
    rendered = render(path, ds, Options(crop=True, voi="none", size=(64, 64)))
    x0, y0, x1, y1 = foreground_box(mapper(0, raw))
    assert rendered.geometry.crop_box == (x0, y0, x1, y1)


def test_a_mammogram_is_cropped_on_its_stored_values_to_the_box_of_its_mapped_frame(tmp_path):
    source = synthetic.write(synthetic.mammogram(seed=3), tmp_path / "mg.dcm")
    ds, _ = read_header(source)
    options = Options(crop=True, crop_max=True, size=(256, 320))
    rendered = render(source, ds, options, keep_source=True)  # the whole frame is kept
    frame = rendered.source
    x0, y0, x1, y1 = foreground_box(frame, crop_max=True)
    assert rendered.geometry.crop_box == (x0, y0, x1, y1)
    assert 0 < x1 - x0 < frame.shape[1]  # the background and the label are cropped away
    fast = render(source, ds, options)  # only the box is mapped
    assert fast.source is None
    assert fast.geometry == rendered.geometry
    np.testing.assert_array_equal(next(fast.frames), next(rendered.frames))
    assert fast.shape == (320, 256)
    assert fit_size(x1 - x0, y1 - y0, 256, 320)[1] == 320


def test_a_file_s_frames_are_a_frame_source_in_position_order():
    path = get_testdata_file("emri_small.dcm")  # 10 frames
    ds, _ = read_header(path)
    frames = FileFrames(path, ds, image_info(ds))
    assert frames.count == 10 and frames.positions is None and len(frames.headers) == 1
    assert [frames.frame_of(i)[0] for i in range(10)] == [0] * 10
    decoded = list(frames.decode([3, 0], level=0))
    numbers = [frames.frame_of(i)[1] for i in (3, 0)]
    np.testing.assert_array_equal(decoded[0], next(iter_frames(path, ds, [numbers[0]])))
    assert frames.level_for(8, 8, 64, 64) == 0  # not a codestream


def test_the_volume_handlers_are_one_enumeration():
    assert tuple(VolumeHandler) == VOLUME_HANDLERS
    projections = [h.value for h in VolumeHandler if h.is_projection]
    assert projections == ["central-slice", "max-intensity", "laplacian-mip"]
    assert Options(volume="interpolate", target_frames=3).volume == VolumeHandler.INTERPOLATE
