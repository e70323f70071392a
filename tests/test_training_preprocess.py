"""dicomprep.preprocess: the TIFF's pixels in memory, from a path and from bytes.

The reference is the TIFF that process_file writes with the same options, read back with
tifffile directly.
"""

from __future__ import annotations

import importlib
import io
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
from dicomprep_testdata import synthetic
from pydicom.data import get_testdata_file

import dicomprep
from dicomprep.formats.decode import DicomError, NoPixelDataError, NotDicomError
from dicomprep.formats.tiff import read_geometry
from dicomprep.options import Options
from dicomprep.pipeline import process_file
from tests.test_pipeline_real import TRANSFER_SYNTAX_FILES

OPTION_SETS = {
    "defaults": Options(),
    "crop-resize-pad": Options(crop=True, crop_max=True, size=(40, 56), padding="center"),
}
preprocess_module = importlib.import_module("dicomprep.training.preprocess")
MULTI_FRAME_FILES = ["emri_small.dcm", "SC_rgb_2frame.dcm"]


def data(name: str) -> str:
    path = get_testdata_file(name)
    assert path is not None, f"test file {name} is not installed (pip install pydicom-data)"
    return path


def written_tiff(tmp_path, source: str, options: Options):
    out = tmp_path / "reference.tiff"
    result = process_file(source, options=options, output_path=out)
    assert result.status == "ok", (result.stage, result.error_type, result.message)
    with tifffile.TiffFile(out) as tif:
        stack = np.stack([page.asarray() for page in tif.pages])
    if stack.ndim == 3:
        stack = stack[..., np.newaxis]
    return stack, read_geometry(out)


def assert_same_pixels(array: np.ndarray, tiff: np.ndarray) -> None:
    assert array.dtype == tiff.dtype
    assert array.shape == tiff.shape
    np.testing.assert_array_equal(array, tiff)


NAMES = [name for name, _ in TRANSFER_SYNTAX_FILES] + MULTI_FRAME_FILES


@pytest.mark.parametrize("option_set", sorted(OPTION_SETS))
@pytest.mark.parametrize("name", NAMES)
def test_preprocess_equals_the_tiff_from_path_and_bytes(tmp_path, name, option_set):
    options = OPTION_SETS[option_set]
    tiff, geometry = written_tiff(tmp_path, data(name), options)

    from_path, path_geometry = dicomprep.preprocess(data(name), options)
    assert_same_pixels(from_path, tiff)
    assert path_geometry == geometry

    with open(data(name), "rb") as fh:
        raw = fh.read()
    from_bytes, bytes_geometry = dicomprep.preprocess(raw, options)
    assert_same_pixels(from_bytes, tiff)
    assert bytes_geometry == geometry


def test_multi_frame_shape_is_frames_first():
    array, _ = dicomprep.preprocess(data("emri_small.dcm"))
    assert array.shape == (10, 64, 64, 1)
    rgb, _ = dicomprep.preprocess(data("SC_rgb_2frame.dcm"))
    assert rgb.shape == (2, 100, 100, 3)


def test_volume_handler_applies(tmp_path):
    options = Options(volume="central-slice")
    tiff, _ = written_tiff(tmp_path, data("emri_small.dcm"), options)
    array, _ = dicomprep.preprocess(data("emri_small.dcm"), options)
    assert array.shape[0] == 1
    assert_same_pixels(array, tiff)


def test_file_object_and_memoryview_sources():
    raw = Path(data("MR_small_RLE.dcm")).read_bytes()
    expected, _ = dicomprep.preprocess(data("MR_small_RLE.dcm"))
    np.testing.assert_array_equal(dicomprep.preprocess(io.BytesIO(raw))[0], expected)
    np.testing.assert_array_equal(dicomprep.preprocess(memoryview(raw))[0], expected)


def test_synthetic_mammogram_bytes_with_crop(tmp_path):
    ds = synthetic.mammogram(rows=208, columns=160, seed=3)
    raw = synthetic.encode(ds)
    source = tmp_path / "mg.dcm"
    source.write_bytes(raw)
    options = Options(crop=True, crop_max=True, size=(64, 80))
    tiff, geometry = written_tiff(tmp_path, str(source), options)
    array, array_geometry = dicomprep.preprocess(raw, options)
    assert_same_pixels(array, tiff)
    layout = synthetic.mammogram_layout(208, 160, "L")
    a = layout.anatomy
    assert array_geometry.crop_box == (a.left, a.top, a.right, a.bottom) == geometry.crop_box


def temporary_files() -> set[str]:
    folders = {preprocess_module._folder_with_room(1 << 20)}
    return {
        os.path.join(folder, name)
        for folder in folders
        for name in os.listdir(folder)
        if name.startswith("dicomprep-")
    }


def test_errors_raise_with_stage_and_leave_no_temporary_file(tmp_path):
    before = temporary_files()
    with pytest.raises(NoPixelDataError):
        dicomprep.preprocess(Path(data("rtplan.dcm")).read_bytes())
    with pytest.raises(NotDicomError):
        dicomprep.preprocess(b"this is not a DICOM file, just some bytes" * 10)
    truncated = synthetic.truncated_copy(data("MR_small.dcm"), tmp_path / "short.dcm")
    with pytest.raises(DicomError) as failure:
        dicomprep.preprocess(truncated.read_bytes())
    assert failure.value.stage == "decode"
    dicomprep.preprocess(Path(data("CT_small.dcm")).read_bytes())
    assert temporary_files() - before == set()


def test_options_from_a_config_mapping():
    config = {"crop": True, "crop_max": True, "size": [40, 56], "padding": "center", "x": 1}
    from_mapping, geometry = dicomprep.preprocess(data("CT_small.dcm"), config)
    expected, expected_geometry = dicomprep.preprocess(
        data("CT_small.dcm"), OPTION_SETS["crop-resize-pad"]
    )
    np.testing.assert_array_equal(from_mapping, expected)
    assert geometry == expected_geometry
