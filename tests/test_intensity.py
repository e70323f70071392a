"""VOI functions against pydicom's implementation, and per-frame windows."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from dicomprep_testdata import synthetic
from pydicom import Dataset
from pydicom.pixels import apply_windowing

from dicomprep.formats.tiff import read_frames
from dicomprep.options import Options
from dicomprep.pipeline import process_file
from dicomprep.pixels.intensity import apply_window, smallest_integer_dtype


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
@pytest.mark.parametrize(("center", "width"), [(2048.0, 4096.0), (300.5, 41.0), (10.0, 2.0)])
def test_window_functions_match_pydicom(function, center, width):
    ds = Dataset()
    ds.BitsStored, ds.PixelRepresentation = 12, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = center, width, function
    x = np.arange(0, 4096, dtype=np.float64)
    theirs = apply_windowing(x.copy(), ds) / 4095.0  # pydicom maps onto the stored range
    ours = apply_window(x, center, width, function)
    np.testing.assert_allclose(ours, theirs, atol=1e-9)


def test_smallest_exact_integer_type():
    assert smallest_integer_dtype(-1024, 3071) == np.int16
    assert smallest_integer_dtype(0, 255) == np.uint8
    assert smallest_integer_dtype(0, 65535) == np.uint16
    assert smallest_integer_dtype(-33792, 31743) == np.int32


def test_per_frame_windows_from_functional_groups(tmp_path):
    ds = synthetic.tomosynthesis(frames=4, rows=104, columns=80, per_frame_voi=True, label=False)
    groups = ds.PerFrameFunctionalGroupsSequence
    windows = [
        (float(g.FrameVOILUTSequence[0].WindowCenter), float(g.FrameVOILUTSequence[0].WindowWidth))
        for g in groups
    ]
    assert len(set(windows)) == 4
    source = synthetic.write(ds, tmp_path / "bto.dcm")
    out = tmp_path / "out.tiff"
    assert process_file(source, options=Options(), output_path=out).status == "ok"
    frames = read_frames(out)
    stored = ds.pixel_array
    for k, (center, width) in enumerate(windows):
        expected = np.rint(apply_window(stored[k].astype(float), center, width) * 65535)
        assert np.abs(frames[k].astype(float) - expected).max() <= 1


@pytest.mark.parametrize(
    ("keyword", "value", "shown"),
    [
        ("RescaleSlope", "0", "0"),
        ("RescaleSlope", "nan", "nan"),
        ("RescaleSlope", "inf", "inf"),
        ("RescaleIntercept", "-inf", "-inf"),
        ("RescaleIntercept", "nan", "nan"),
    ],
)
@pytest.mark.parametrize("voi", ["auto", "none"])
def test_an_unusable_rescale_is_a_clear_failure(tmp_path, keyword, value, shown, voi):
    ds = synthetic.mammogram(rows=64, columns=48)
    ds.RescaleSlope, ds.RescaleIntercept = "1", "0"
    setattr(ds, keyword, value)
    source = synthetic.write(ds, tmp_path / "m.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NaN-cast warnings on the way
        result = process_file(source, options=Options(voi=voi), output_path=tmp_path / "o.tiff")
    assert (result.status, result.stage, result.error_type) == (
        "failed",
        "transform",
        "InvalidRescale",
    )
    assert result.message.startswith(f"{keyword} is {shown}")
    assert "\n" not in result.message
    assert not (tmp_path / "o.tiff").exists()
