"""Reading frames: the direct path for uncompressed little-endian greyscale data gives
pydicom's values exactly, and leaves every other case to pydicom."""

from __future__ import annotations

import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicomprep_testdata import synthetic
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.pixels import iter_pixels
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
)

from dicomprep.formats import dicom_header
from dicomprep.formats.decode import DicomError, iter_frames, read_header, read_native_frames
from dicomprep.options import Options
from dicomprep.pipeline import process_file

NATIVE_FILES = [
    "CT_small.dcm",  # signed 16-bit
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_padded.dcm",
    "693_UNCI.dcm",  # signed, 14 of 16 bits, implicit VR
    "RG3_UNCR.dcm",  # 10 of 16 bits
    "examples_overlay.dcm",  # 12 of 16 bits
    "MR-SIEMENS-DICOM-WithOverlays.dcm",
    "vlut_04.dcm",  # 8-bit
    "emri_small.dcm",  # 10 frames
    "eCT_Supplemental.dcm",  # 2 frames
    "liver.dcm",  # 1-bit: pydicom's
    "rtdose.dcm",  # 32-bit: pydicom's
    "MR_small_bigendian.dcm",  # big endian: pydicom's
    "US1_UNCR.dcm",  # RGB: pydicom's
    "OBXXXX1A.dcm",  # palette colour: pydicom's
]


def pydicom_frames(path, indices):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return list(iter_pixels(path, indices=indices))


@pytest.mark.parametrize("name", NATIVE_FILES)
def test_frames_equal_pydicom_on_real_files(name):
    path = get_testdata_file(name)
    ds, has_pixels = read_header(path)
    assert has_pixels
    frames = int(ds.get("NumberOfFrames") or 1)
    indices = [frames - 1, 0] if frames > 1 else [0]
    direct = read_native_frames(path, ds, indices)
    simple = ds.file_meta.TransferSyntaxUID in (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
    simple &= ds.SamplesPerPixel == 1 and ds.BitsAllocated in (8, 16)
    simple &= ds.PhotometricInterpretation.startswith("MONOCHROME")
    assert (direct is not None) == simple
    if direct is None:
        return
    ours = list(direct)
    theirs = pydicom_frames(path, indices)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


def with_garbage_high_bits(ds: pydicom.Dataset, signed: bool) -> pydicom.Dataset:
    """12 bits stored in 16, with random values in the 4 unused bits."""
    rng = np.random.default_rng(5)
    values = rng.integers(-2048 if signed else 0, 2048 if signed else 4096, (64, 48))
    raw = (values.astype(np.int64) & 0x0FFF) | (rng.integers(0, 16, values.shape) << 12)
    ds.PixelRepresentation = int(signed)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.Rows, ds.Columns = values.shape
    ds.PixelData = raw.astype("<u2").tobytes()
    return ds


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_unused_high_bits_are_cleared_or_sign_filled_as_pydicom_does(tmp_path, signed, syntax):
    ds = with_garbage_high_bits(synthetic.mammogram(rows=64, columns=48), signed)
    path = synthetic.write(ds, tmp_path / "m.dcm", syntax)
    header, _ = read_header(path)
    [ours] = list(read_native_frames(path, header, [0]))
    [theirs] = pydicom_frames(path, [0])
    assert ours.dtype == np.dtype("int16" if signed else "uint16")
    np.testing.assert_array_equal(ours, theirs)
    assert (ours < 0).any() == signed and int(np.abs(ours).max()) < 4096


def test_multi_frame_volume_reads_each_requested_frame(tmp_path):
    volume = synthetic.tomosynthesis(frames=5, rows=64, columns=48, seed=3)
    path = synthetic.write(volume, tmp_path / "v.dcm")
    header, _ = read_header(path)
    order = [4, 1, 3]
    ours = list(read_native_frames(path, header, order))
    np.testing.assert_array_equal(np.stack(ours), np.stack(pydicom_frames(path, order)))


def test_compressed_data_is_left_to_pydicom(tmp_path):
    path = synthetic.write(
        synthetic.mammogram(rows=64, columns=48), tmp_path / "r.dcm", RLELossless
    )
    header, _ = read_header(path)
    assert read_native_frames(path, header, [0]) is None
    [ours] = list(iter_frames(path, header, [0]))
    np.testing.assert_array_equal(ours, pydicom_frames(path, [0])[0])


def test_a_file_cut_inside_its_pixels_is_an_error_not_short_frames(tmp_path):
    whole = synthetic.write(
        synthetic.tomosynthesis(frames=4, rows=64, columns=48), tmp_path / "v.dcm"
    )
    header, _ = read_header(whole)
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(Path(whole).read_bytes()[: -(64 * 48 * 2 + 100)])  # last frame short
    frames = read_native_frames(cut, header, [0, 1, 2, 3])
    assert frames is not None
    assert next(frames).shape == (64, 48)
    with pytest.raises(DicomError, match="ends inside the pixel data"):
        list(frames)


# -- files that need care before decoding -------------------------------------------


def test_the_transfer_syntax_found_in_a_files_first_bytes_is_pydicoms():
    """read_header looks for the deflated syntax in the first bytes of a file; where they
    settle it, the syntax found there is the one pydicom reads (every bundled file)."""
    settled = 0
    for path in get_testdata_files():
        if not Path(path).is_file():
            continue
        with open(path, "rb") as f:
            head = f.read(132 + dicom_header.META_PEEK_BYTES)
        if head[128:132] != b"DICM":
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                meta = pydicom.dcmread(path, stop_before_pixels=True).file_meta
        except Exception:  # noqa: BLE001 - files pydicom cannot read are not the question
            continue
        found = dicom_header.meta_transfer_syntax(head)
        if found is not None:
            settled += 1
            assert found == str(meta.get("TransferSyntaxUID", "")), path
    assert settled > 200


@pytest.mark.parametrize("peek", [dicom_header.META_PEEK_BYTES, 40])  # 40: too short to settle it
def test_a_deflate_bomb_fails_clearly_without_inflating_it(tmp_path, monkeypatch, peek):
    monkeypatch.setattr(dicom_header, "META_PEEK_BYTES", peek)
    bomb = synthetic.deflate_bomb(tmp_path / "bomb.dcm", inflated_bytes=256 * 2**20)
    assert bomb.stat().st_size < 2**20  # a small file that inflates to 256 MiB
    out = tmp_path / "out.tiff"
    tracemalloc.start()
    try:
        result = process_file(bomb, options=Options(), output_path=out)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    expected = ("failed", "decode", "DecompressionBomb")
    assert (result.status, result.stage, result.error_type) == expected
    assert "deflated data inflates to more than" in result.message
    assert "\n" not in result.message
    assert peak < 64 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    assert not out.exists()


def test_a_deflated_file_within_its_bound_equals_its_uncompressed_twin(tmp_path):
    ds = synthetic.tomosynthesis(frames=3, rows=64, columns=48, seed=2)
    plain = synthetic.write(ds, tmp_path / "plain.dcm")
    deflated = synthetic.write(ds, tmp_path / "dfl.dcm", DeflatedExplicitVRLittleEndian)
    header, has_pixels = read_header(deflated)
    assert has_pixels and "PixelData" not in header and header.Rows == 64
    ours = np.stack(list(iter_frames(deflated, header, [2, 0, 1])))
    np.testing.assert_array_equal(ours, np.stack(pydicom_frames(plain, [2, 0, 1])))


def test_a_file_without_file_meta_is_read_with_the_syntax_it_was_parsed_with(tmp_path):
    ds = synthetic.mammogram(rows=64, columns=48, label=False)
    for implicit in (True, False):
        path = tmp_path / f"bare_{implicit}.dcm"
        path.write_bytes(synthetic.encode_without_meta(ds, implicit_vr=implicit))
        assert path.read_bytes()[128:132] != b"DICM"
        header, has_pixels = read_header(path)
        assert has_pixels
        syntax = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
        assert header.file_meta.TransferSyntaxUID == syntax
        [ours] = list(iter_frames(path, header, [0]))
        np.testing.assert_array_equal(ours, ds.pixel_array)


def test_a_file_without_file_meta_whose_pixels_do_not_fit_the_header_fails_plainly(tmp_path):
    ds = synthetic.mammogram(rows=64, columns=48, label=False)
    ds.Rows = 65  # the pixel data no longer matches uncompressed data of the header's size
    path = tmp_path / "bare.dcm"
    path.write_bytes(synthetic.encode_without_meta(ds))
    result = process_file(path, options=Options(), output_path=tmp_path / "out.tiff")
    assert (result.status, result.stage, result.error_type) == (
        "failed",
        "decode",
        "UnknownTransferSyntax",
    )
    assert "no file meta information" in result.message


def test_frames_pydicom_reads_only_from_the_whole_dataset_are_decoded(tmp_path):
    # pydicom's path-based reader rejects this file's Basic Offset Table.
    path = get_testdata_file("SC_rgb_jpeg.dcm")
    with pytest.raises(Exception, match="Basic Offset Table"):
        pydicom_frames(path, [0])
    header, _ = read_header(path)
    [ours] = list(iter_frames(path, header, [0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_array_equal(ours, pydicom.dcmread(path).pixel_array)
