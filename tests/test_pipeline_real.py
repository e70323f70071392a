"""process_file on real DICOM files from pydicom and pydicom-data.

Expected values are computed independently with pydicom's own decoding and LUT
functions, then compared with what the TIFF holds.
"""

from __future__ import annotations

import warnings

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import (
    apply_color_lut,
    apply_modality_lut,
    apply_voi,
    convert_color_space,
    pixel_array,
)

from dicomprep.formats.tiff import read_frames, read_info
from dicomprep.options import Options
from dicomprep.pipeline import process_file


def data(name: str) -> str:
    path = get_testdata_file(name)
    assert path is not None, f"test file {name} is not installed (pip install pydicom-data)"
    return path


def dataset(name: str) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(data(name))


def convert(tmp_path, name: str, **options):
    out = tmp_path / "out.tiff"
    result = process_file(data(name), options=Options(**options), output_path=out)
    assert result.status == "ok", (result.stage, result.error_type, result.message)
    return result, read_frames(out), read_info(out)


def min_max_scaled(values: np.ndarray, top: int, low=None, high=None) -> np.ndarray:
    """``values`` mapped linearly from [low, high] (default: their own range) to [0, top]."""
    v = values.astype(np.float64)
    low = v.min() if low is None else low
    high = v.max() if high is None else high
    return np.rint((v - low) / (high - low) * top)


# One file per supported transfer syntax (all lossless ones are compared to the
# uncompressed twin where one exists).
TRANSFER_SYNTAX_FILES = [
    ("MR_small_implicit.dcm", "1.2.840.10008.1.2"),
    ("MR_small.dcm", "1.2.840.10008.1.2.1"),
    ("MR_small_bigendian.dcm", "1.2.840.10008.1.2.2"),
    ("image_dfl.dcm", "1.2.840.10008.1.2.1.99"),
    ("MR_small_RLE.dcm", "1.2.840.10008.1.2.5"),
    ("SC_rgb_jpeg_dcmtk.dcm", "1.2.840.10008.1.2.4.50"),
    ("JPGExtended.dcm", "1.2.840.10008.1.2.4.51"),
    ("JPEG-LL.dcm", "1.2.840.10008.1.2.4.70"),
    ("MR_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80"),
    ("JPEGLSNearLossless_16.dcm", "1.2.840.10008.1.2.4.81"),
    ("MR_small_jp2klossless.dcm", "1.2.840.10008.1.2.4.90"),
    ("693_J2KI.dcm", "1.2.840.10008.1.2.4.91"),
]


@pytest.mark.parametrize(("name", "syntax"), TRANSFER_SYNTAX_FILES)
def test_every_transfer_syntax_decodes(tmp_path, name, syntax):
    ds = dataset(name)
    assert ds.file_meta.TransferSyntaxUID == syntax
    result, frames, info = convert(tmp_path, name)
    assert (info.height, info.width) == (ds.Rows, ds.Columns)
    assert info.num_frames == int(ds.get("NumberOfFrames", 1))
    expected_channels = 3 if ds.SamplesPerPixel == 3 else 1
    assert info.channels == expected_channels
    assert frames.dtype == (np.uint8 if ds.BitsStored <= 8 else np.uint16)
    assert frames.max() > frames.min()  # a real image, not a blank


def expected_output(ds: pydicom.Dataset) -> np.ndarray:
    """What the TIFF should hold for ``ds``, computed here from pydicom's decode: RGB as
    decoded; greyscale through the rescale, then the first header window (DICOM LINEAR) or
    the image's min–max, scaled to the output type and inverted for MONOCHROME1."""
    pixels = pixel_array(ds)
    if ds.SamplesPerPixel == 3:
        return pixels[None] if int(ds.get("NumberOfFrames", 1)) == 1 else pixels
    values = pixels.astype(np.float64) * float(ds.get("RescaleSlope", 1))
    values += float(ds.get("RescaleIntercept", 0))
    if "WindowCenter" in ds:
        c, w = float(ds.WindowCenter), float(ds.WindowWidth)
        unit = np.clip((values - (c - 0.5)) / (w - 1) + 0.5, 0, 1)
    else:
        unit = (values - values.min()) / (values.max() - values.min())
    if ds.PhotometricInterpretation == "MONOCHROME1":
        unit = 1 - unit
    top = 255 if ds.BitsStored <= 8 else 65535
    out = np.rint(unit * top)
    return out[None] if int(ds.get("NumberOfFrames", 1)) == 1 else out


LOSSY_FILES = [
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline, YBR_FULL
    "SC_rgb_jpeg.dcm",  # JPEG baseline, RGB; pydicom's path reader refuses its offset table
    "JPGExtended.dcm",  # JPEG extended, 12 bits
    "JPEGLSNearLossless_16.dcm",  # JPEG-LS near-lossless, 16 bits
    "693_J2KI.dcm",  # lossy JPEG 2000, signed, rescaled, header window
]


@pytest.mark.parametrize("name", LOSSY_FILES)
def test_lossy_syntaxes_match_pydicom_decode_through_the_same_windowing(tmp_path, name):
    ds = dataset(name)
    expected = expected_output(ds)
    _, frames, _ = convert(tmp_path, name)
    assert frames.shape == expected.shape
    top = float(np.iinfo(frames.dtype).max)
    difference = np.abs(frames.astype(np.float64) - expected) / top
    # decoders of lossy data may round differently; a wrong window or colour is far off
    assert difference.max() <= 0.01 and difference.mean() <= 0.001


def test_a_file_without_file_meta_is_converted_with_its_implicit_vr_syntax(tmp_path):
    name = "OT-PAL-8-face.dcm"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(data(name), force=True)
    assert "TransferSyntaxUID" not in ds.file_meta and ds.preamble is None
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2"  # implicit VR little endian
    expected = apply_color_lut(ds.pixel_array, ds)
    _, frames, info = convert(tmp_path, name)
    assert info.channels == 3 and frames.dtype == expected.dtype
    np.testing.assert_array_equal(frames[0], expected)


def test_monochrome1_with_voi_none_is_inverted_within_the_image_range(tmp_path):
    ds = dataset("RG1_UNCR.dcm")
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    stored = ds.pixel_array.astype(np.int64)
    values = stored * int(ds.get("RescaleSlope", 1)) + int(ds.get("RescaleIntercept", 0))
    expected = values.max() + values.min() - values  # larger = brighter, same range
    _, frames, _ = convert(tmp_path, "RG1_UNCR.dcm", voi="none")
    assert frames.dtype.kind in "iu"
    np.testing.assert_array_equal(frames[0], expected)


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_implicit.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_jp2klossless.dcm",
    ],
)
def test_lossless_syntaxes_give_identical_outputs(tmp_path, name):
    _, reference, _ = convert(tmp_path / "ref", "MR_small.dcm")
    _, frames, _ = convert(tmp_path / "other", name)
    np.testing.assert_array_equal(frames, reference)


def test_ct_voi_none_keeps_hounsfield_units_in_int16(tmp_path):
    ds = dataset("CT_small.dcm")
    hu = ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
    _, frames, info = convert(tmp_path, "CT_small.dcm", voi="none")
    assert frames.dtype == np.int16 and info.dtype == "int16"
    np.testing.assert_array_equal(frames[0], hu)
    assert frames.min() < -100  # air/fat below water: negative HU survive


def test_ct_window_from_header_matches_dicom_linear_function(tmp_path):
    ds = dataset("693_UNCR.dcm")
    _, frames, _ = convert(tmp_path, "693_UNCR.dcm")
    hu = apply_modality_lut(ds.pixel_array, ds)
    c, w = float(ds.WindowCenter), float(ds.WindowWidth)
    expected = np.clip((hu - (c - 0.5)) / (w - 1) + 0.5, 0, 1) * 65535
    assert np.abs(frames[0].astype(float) - np.rint(expected)).max() <= 1


def test_explicit_voi_window_overrides_header(tmp_path):
    ds = dataset("CT_small.dcm")
    hu = apply_modality_lut(ds.pixel_array, ds)
    _, frames, _ = convert(tmp_path, "CT_small.dcm", voi=(0.0, 200.0))
    assert (frames[0][hu < -100] == 0).all()
    assert (frames[0][hu > 100] == 65535).all()


def test_image_without_window_uses_its_own_min_max(tmp_path):
    ds = dataset("CT_small.dcm")
    assert "WindowCenter" not in ds and "VOILUTSequence" not in ds
    _, frames, _ = convert(tmp_path, "CT_small.dcm")
    np.testing.assert_array_equal(frames[0], min_max_scaled(ds.pixel_array, 65535))


def test_monochrome1_is_inverted_so_larger_is_brighter(tmp_path):
    ds = dataset("RG1_UNCR.dcm")
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    _, frames, _ = convert(tmp_path, "RG1_UNCR.dcm")  # header window 15000/30000
    stored = ds.pixel_array.astype(np.float64)
    out = frames[0].astype(np.float64)
    assert np.corrcoef(stored.ravel(), out.ravel())[0, 1] < -0.99
    darkest_stored = np.unravel_index(np.argmin(stored), stored.shape)
    assert out[darkest_stored] == out.max()


def test_voi_lut_sequence_is_applied(tmp_path):
    ds = dataset("vlut_04.dcm")
    assert "VOILUTSequence" in ds and "WindowCenter" not in ds
    _, frames, _ = convert(tmp_path, "vlut_04.dcm")
    bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
    expected = np.rint(apply_voi(ds.pixel_array, ds).astype(float) / (2**bits - 1) * 255)
    assert frames.dtype == np.uint8
    assert np.abs(frames[0].astype(float) - expected).max() <= 1


def test_modality_lut_sequence_is_applied(tmp_path):
    ds = dataset("mlut_18.dcm")
    assert "ModalityLUTSequence" in ds
    _, frames, _ = convert(tmp_path, "mlut_18.dcm", voi="none")
    np.testing.assert_array_equal(frames[0], apply_modality_lut(ds.pixel_array, ds))


def test_palette_color_becomes_rgb(tmp_path):
    ds = dataset("OBXXXX1A.dcm")
    _, frames, info = convert(tmp_path, "OBXXXX1A.dcm")
    assert info.channels == 3
    rgb = apply_color_lut(ds.pixel_array, ds)  # 16-bit palette entries
    assert frames.dtype == rgb.dtype == np.uint16
    np.testing.assert_array_equal(frames[0], rgb)


def test_ybr_full_is_converted_to_rgb(tmp_path):
    _, rgb, _ = convert(tmp_path / "a", "SC_rgb.dcm")
    _, ybr, _ = convert(tmp_path / "b", "SC_ybr_full_uncompressed.dcm")
    assert ybr.shape == rgb.shape
    # The YBR file is a lossy round trip of the RGB one: a few levels of difference,
    # where an unconverted YBR image would be off by ~100.
    assert np.abs(ybr.astype(int) - rgb.astype(int)).max() <= 8


def test_uncompressed_ybr_full_422_is_converted_to_rgb(tmp_path):
    name = "SC_ybr_full_422_uncompressed.dcm"
    ds = dataset(name)
    assert ds.PhotometricInterpretation == "YBR_FULL_422" and ds.file_meta.TransferSyntaxUID in (
        "1.2.840.10008.1.2",
        "1.2.840.10008.1.2.1",
    )
    assert len(ds.PixelData) == ds.Rows * ds.Columns * 2  # two samples per pixel
    ybr = pixel_array(ds, raw=True)  # pydicom upsamples the chroma, no colour conversion
    expected = convert_color_space(ybr, "YBR_FULL", "RGB")
    _, frames, info = convert(tmp_path, name)
    assert info.channels == 3 and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames[0], expected)
    _, rgb, _ = convert(tmp_path / "rgb", "SC_rgb.dcm")  # the same picture stored as RGB
    assert np.abs(frames.astype(int) - rgb.astype(int)).max() <= 8


def test_rgb_16_bit_stays_16_bit(tmp_path):
    ds = dataset("SC_rgb_16bit.dcm")
    _, frames, info = convert(tmp_path, "SC_rgb_16bit.dcm")
    assert frames.dtype == np.uint16 and info.channels == 3
    np.testing.assert_array_equal(frames[0], ds.pixel_array)


def test_enhanced_multiframe_keeps_every_frame_with_one_range_for_the_volume(tmp_path):
    ds = dataset("emri_small.dcm")
    assert "WindowCenter" not in ds and "VOILUTSequence" not in ds
    volume = ds.pixel_array.astype(np.float64)
    frame_maxima = volume.reshape(10, -1).max(axis=1)
    assert len(set(frame_maxima)) > 1  # a per-frame range would map them differently
    _, frames, info = convert(tmp_path, "emri_small.dcm")
    assert info.num_frames == 10 == frames.shape[0]
    low, high = volume.min(), volume.max()
    for k in range(10):
        np.testing.assert_array_equal(frames[k], min_max_scaled(volume[k], 65535, low, high))
    # equal stored values give equal outputs in every frame
    for value in np.unique(frame_maxima):
        outputs = {
            int(frames[k][volume[k] == value][0]) for k in range(10) if (volume[k] == value).any()
        }
        assert len(outputs) == 1


def test_volume_handlers_on_enhanced_mr(tmp_path):
    ds = dataset("emri_small.dcm")
    _, central, _ = convert(tmp_path / "c", "emri_small.dcm", volume="central-slice")
    assert central.shape[0] == 1
    volume = ds.pixel_array
    expected = min_max_scaled(volume[5], 65535, float(volume.min()), float(volume.max()))
    np.testing.assert_array_equal(central[0], expected)
    _, keep, _ = convert(tmp_path / "k", "emri_small.dcm")
    _, mip, _ = convert(tmp_path / "m", "emri_small.dcm", volume="max-intensity")
    np.testing.assert_array_equal(mip[0], keep.max(axis=0))
    _, interp, _ = convert(tmp_path / "i", "emri_small.dcm", volume="interpolate", target_frames=19)
    assert interp.shape[0] == 19
    np.testing.assert_array_equal(interp[0], keep[0])
    np.testing.assert_array_equal(interp[-1], keep[-1])
    np.testing.assert_array_equal(interp[2], keep[1])  # 19 frames: every other is original
    midpoint = np.rint((keep[0].astype(np.float32) + keep[1]) / 2)
    assert np.abs(interp[1].astype(float) - midpoint).max() <= 1


def test_enhanced_ct_rescale_from_functional_groups(tmp_path):
    ds = dataset("eCT_Supplemental.dcm")
    pvt = ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0]
    _, frames, _ = convert(tmp_path, "eCT_Supplemental.dcm", voi="none")
    hu = ds.pixel_array.astype(np.int32) * int(pvt.RescaleSlope) + int(pvt.RescaleIntercept)
    # The row direction is -x, so the slice normal points to -z: position order along
    # the normal is the reverse of the stored order.
    np.testing.assert_array_equal(frames, hu[::-1])


def test_120_frame_ultrasound_streams_every_frame(tmp_path):
    ds = dataset("color3d_jpeg_baseline.dcm")
    _, frames, info = convert(tmp_path, "color3d_jpeg_baseline.dcm", volume="keep")
    assert info.num_frames == 120 and info.channels == 3
    np.testing.assert_array_equal(frames[60], ds.pixel_array[60])


def test_resolution_from_pixel_spacing_after_resize(tmp_path):
    ds = dataset("MR2_UNCR.dcm")
    spacing = ds.PixelSpacing
    _, _, info = convert(tmp_path, "MR2_UNCR.dcm", size=(300, 200))
    g = info.geometry
    assert info.resolution is not None
    assert info.resolution[0] == pytest.approx(10 / float(spacing[1]) * g.scale_x, rel=1e-4)
    assert info.resolution[1] == pytest.approx(10 / float(spacing[0]) * g.scale_y, rel=1e-4)


@pytest.mark.parametrize(
    ("name", "status", "stage"),
    [
        ("rtplan.dcm", "skipped", "discover"),
        ("MR_truncated.dcm", "failed", "decode"),
        ("badVR.dcm", "failed", "decode"),
        ("JPEG-lossy.dcm", "failed", "decode"),
    ],
)
def test_bad_real_files_fail_cleanly(tmp_path, name, status, stage):
    out = tmp_path / "x.tiff"
    result = process_file(data(name), options=Options(), output_path=out)
    assert (result.status, result.stage) == (status, stage), result.message
    assert result.message and "\n" not in result.message
    assert list(tmp_path.iterdir()) == []  # nothing partial on disk
