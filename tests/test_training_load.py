"""dicomprep.load: pages of the TIFFs dicomprep writes, as uint8, uint16 or float32.

Expected values come from the TIFF read with tifffile directly and the documented
per-type formula, computed here in floating point (the library uses integer arithmetic).
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import tifffile
from pydicom.data import get_testdata_file

import dicomprep
from dicomprep.formats.tiff import read_geometry
from dicomprep.options import Options
from dicomprep.pipeline import process_file

load_module = importlib.import_module("dicomprep.training.load")

# file, options, stored TIFF type
CASES = {
    "uint8": ("image_dfl.dcm", Options(), np.uint8),
    "uint16": ("MR_small.dcm", Options(), np.uint16),
    "int16": ("CT_small.dcm", Options(voi="none"), np.int16),
    "rgb8": ("SC_rgb.dcm", Options(), np.uint8),
    "rgb16": ("SC_rgb_16bit.dcm", Options(), np.uint16),
    "frames": ("emri_small.dcm", Options(), np.uint16),
}

# stored type -> (offset, top of the unsigned range), as the load documentation states
RANGES = {np.uint8: (0, 255), np.uint16: (0, 65535), np.int16: (32768, 65535)}


@pytest.fixture(scope="module")
def tiffs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiffs")
    out = {}
    for case, (name, options, _) in CASES.items():
        path = folder / f"{case}.tiff"
        result = process_file(get_testdata_file(name), options=options, output_path=path)
        assert result.status == "ok", result.message
        out[case] = path
    return out


def stored(path) -> np.ndarray:
    """All pages with tifffile, as (pages, H, W, C)."""
    with tifffile.TiffFile(path) as tif:
        pages = np.stack([page.asarray() for page in tif.pages])
    return pages if pages.ndim == 4 else pages[..., np.newaxis]


def expected(values: np.ndarray, dtype: str) -> np.ndarray:
    offset, top = RANGES[values.dtype.type]
    unit = (values.astype(np.float64) + offset) / top  # in [0, 1]
    if dtype == "float32":
        return unit.astype(np.float32)
    target_top = 255 if dtype == "uint8" else 65535
    return np.round(unit * target_top).astype(dtype)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_load_converts_by_the_documented_formula(tiffs, case, dtype):
    values = stored(tiffs[case])
    assert values.dtype == CASES[case][2]
    loaded = dicomprep.load(tiffs[case], dtype=dtype)
    assert loaded.dtype == np.dtype(dtype)
    assert loaded.shape == values.shape
    np.testing.assert_array_equal(loaded, expected(values, dtype))


def test_same_type_is_the_stored_values_and_native_keeps_them(tiffs):
    np.testing.assert_array_equal(
        dicomprep.load(tiffs["uint16"], "uint16"), stored(tiffs["uint16"])
    )
    native = dicomprep.load(tiffs["int16"], "native")
    assert native.dtype == np.int16
    np.testing.assert_array_equal(native, stored(tiffs["int16"]))


def test_float32_is_in_unit_range_and_hits_the_ends():
    values = np.array([[0, 1, 65534, 65535]], dtype=np.uint16)
    unit = load_module.convert(values, "float32")
    assert unit.min() == 0.0 and unit.max() == 1.0
    assert load_module.convert(values, "uint8").tolist() == [[0, 0, 255, 255]]


def test_uint8_round_trip_through_uint16_is_exact():
    convert = load_module.convert
    every = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(convert(convert(every, "uint16"), "uint8"), every)
    int16 = np.array([-32768, -1024, 0, 3071, 32767], dtype=np.int16)
    assert convert(int16, "uint16").tolist() == [0, 31744, 32768, 35839, 65535]


def test_only_the_requested_pages_in_the_requested_order(tiffs):
    values = stored(tiffs["frames"])
    assert values.shape[0] == 10
    picked = dicomprep.load(tiffs["frames"], "uint16", frames=[7, 2, -1])
    np.testing.assert_array_equal(picked, values[[7, 2, 9]])
    one = dicomprep.load(tiffs["frames"], "float32", frames=3)
    assert one.shape == (1, *values.shape[1:])
    np.testing.assert_array_equal(one, expected(values[3:4], "float32"))
    with pytest.raises(IndexError):
        dicomprep.load(tiffs["frames"], frames=[10])


def test_unread_pages_are_not_decoded(tmp_path):
    """Page 1's strip is overwritten with garbage that PackBits cannot decode to the page
    size; loading page 0 alone must still work, loading page 1 must fail."""
    path = tmp_path / "two.tiff"
    frames = np.arange(2 * 16 * 24, dtype=np.uint16).reshape(2, 16, 24)
    with tifffile.TiffWriter(path) as writer:
        for frame in frames:
            writer.write(frame, compression="zlib", extratags=_geometry_tags(24, 16))
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[1].dataoffsets[0]
        count = tif.pages[1].databytecounts[0]
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\xff" * count)
    np.testing.assert_array_equal(dicomprep.load(path, "native", frames=[0])[0, ..., 0], frames[0])
    with pytest.raises(Exception):  # noqa: B017 - whatever zlib raises for a broken stream
        dicomprep.load(path, "native", frames=[1])


def _geometry_tags(width: int, height: int):
    return [
        (50719, 4, 2, (0, 0), True),
        (50720, 4, 2, (width, height), True),
        (50829, 4, 4, (0, 0, width, height), True),
    ]


def test_load_with_geometry_matches_read_geometry(tiffs):
    _, geometry = dicomprep.load_with_geometry(tiffs["uint16"])
    assert geometry == read_geometry(tiffs["uint16"])


def test_float_tiffs_only_load_native():
    with pytest.raises(ValueError, match="native"):
        load_module.convert(np.zeros((1, 2, 2, 1), np.float32), "uint8")
    with pytest.raises(ValueError, match="dtype"):
        load_module.convert(np.zeros((1, 2, 2, 1), np.uint8), "int8")


def test_the_top_level_offers_every_training_name_without_importing_it():
    """`import dicomprep` stays cheap, yet every name of the training side is there."""
    import subprocess
    import sys

    import dicomprep.training

    assert sorted(dicomprep.__all__) == sorted(["__version__", *dicomprep.training.__all__])
    for name in dicomprep.training.__all__:
        assert getattr(dicomprep, name) is getattr(dicomprep.training, name)
    code = "import sys, dicomprep; print('numpy' in sys.modules, 'pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_a_stacks_nifti_volume_loads_as_its_tiff_does(tmp_path):
    """The same stack written as TIFF and as NIfTI: every page, chosen pages and each dtype
    come out equal, and so does the geometry each records."""
    import pydicom

    from dicomprep.options import Options
    from dicomprep.series.volume_file import process_stack

    from .series_helpers import write_series

    series = write_series(tmp_path / "in", count=5, name="load-nifti")
    paths = sorted(
        series["paths"].values(), key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2])
    )
    for name, volume_format in (("v.tiff", "tiff"), ("v.nii.gz", "nifti")):
        options = Options(voi="none", spacing=(1.0, 1.0), volume_format=volume_format)
        assert process_stack(paths, tmp_path / name, options).status == "ok"
    for dtype in ("native", "uint16", "float32"):
        for frames in (None, 2, [4, 0, 0]):
            tiff = dicomprep.load(tmp_path / "v.tiff", dtype, frames)
            nifti = dicomprep.load(tmp_path / "v.nii.gz", dtype, frames)
            assert nifti.dtype == tiff.dtype and nifti.shape == tiff.shape
            np.testing.assert_array_equal(nifti, tiff)
    geometry = dicomprep.load_with_geometry(tmp_path / "v.nii.gz")[1]
    assert geometry == dicomprep.load_with_geometry(tmp_path / "v.tiff")[1]
    assert geometry == read_geometry(tmp_path / "v.tiff")  # the exact scale and placement too
    assert geometry.exact_scale is not None and geometry.volume is not None
