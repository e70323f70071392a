"""Synthetic DICOM generators and the bundled sample set."""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicomprep_testdata import synthetic
from dicomprep_testdata.sample import REASONS, SAMPLE_EXPECTATIONS, build_sample, main
from pydicom.pixels import apply_voi_lut
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSNearLossless,
    RLELossless,
)

_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
SMALL = {"rows": 208, "columns": 160}


def valid_uid(value: object) -> bool:
    return isinstance(value, str) and len(value) <= 64 and _UID.fullmatch(value) is not None


def read(data: bytes | Path) -> pydicom.Dataset:
    src = io.BytesIO(data) if isinstance(data, bytes) else data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(src)


def foreground_box(img: np.ndarray, background: tuple[int, ...]) -> synthetic.Box:
    fg = ~np.isin(img, background)
    rows = np.flatnonzero(fg.any(axis=1))
    cols = np.flatnonzero(fg.any(axis=0))
    return synthetic.Box(int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


# --- determinism and UIDs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: synthetic.mammogram(**SMALL, seed=3),
        lambda: synthetic.mammogram(**SMALL, photometric="MONOCHROME1", laterality="R"),
        lambda: synthetic.tomosynthesis(frames=5, **SMALL, shuffled=True, per_frame_voi=True),
        lambda: synthetic.ct_slice(index=2),
    ],
    ids=["mg", "mg-mono1-R", "bto", "ct"],
)
@pytest.mark.parametrize("ts", [ExplicitVRLittleEndian, RLELossless, JPEG2000Lossless])
def test_same_arguments_give_identical_files(tmp_path, make, ts):
    a = synthetic.write(make(), tmp_path / "a" / "x.dcm", ts)
    b = synthetic.write(make(), tmp_path / "b" / "x.dcm", ts)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes()[128:132] == b"DICM"


def test_different_arguments_give_different_images_and_uids():
    one = synthetic.mammogram(**SMALL, seed=1)
    two = synthetic.mammogram(**SMALL, seed=2)
    right = synthetic.mammogram(**SMALL, seed=1, laterality="R")
    assert one.PixelData != two.PixelData
    assert len({one.SOPInstanceUID, two.SOPInstanceUID, right.SOPInstanceUID}) == 3
    assert one.StudyInstanceUID == right.StudyInstanceUID  # same seed: same study
    for ds in (one, two, right):
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            assert valid_uid(ds.get(keyword)), keyword


def test_explicit_uids_are_used():
    ds = synthetic.mammogram(**SMALL, study_uid="1.2.3", sop_uid="1.2.3.4")
    assert (ds.StudyInstanceUID, ds.SOPInstanceUID) == ("1.2.3", "1.2.3.4")
    data = synthetic.encode(ds)
    assert read(data).file_meta.MediaStorageSOPInstanceUID == "1.2.3.4"


@pytest.mark.parametrize(
    "make",
    [
        lambda: synthetic.mammogram(**SMALL),
        lambda: synthetic.tomosynthesis(frames=2, **SMALL),
        lambda: synthetic.ct_slice(),
    ],
    ids=["mg", "bto", "ct"],
)
def test_every_file_carries_the_patient_values(make):
    data = synthetic.encode(make(), RLELossless)
    for value in synthetic.PATIENT_VALUES:
        assert value.encode() in data, value


# --- mammogram content -------------------------------------------------------------------------


@pytest.mark.parametrize("laterality", ["L", "R"])
@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_mammogram_layout_and_values(laterality, photometric):
    rows, columns = 416, 320
    ds = synthetic.mammogram(
        rows=rows, columns=columns, laterality=laterality, photometric=photometric, seed=4
    )
    assert ds.SOPClassUID == synthetic.DIGITAL_MAMMOGRAPHY_FOR_PRESENTATION
    assert (ds.Modality, ds.ImageLaterality, ds.ViewPosition) == ("MG", laterality, "CC")
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 12, 11, 0)
    assert ds.PresentationLUTShape == ("IDENTITY" if photometric == "MONOCHROME2" else "INVERSE")
    top = 4095
    stored = ds.pixel_array
    # Presentation values: larger = brighter, whatever the photometric interpretation.
    img = stored if photometric == "MONOCHROME2" else top - stored.astype(np.int32)
    layout = synthetic.mammogram_layout(rows, columns, laterality)

    # Background 0 everywhere outside anatomy and label; label at the maximum.
    assert img[0, 0] == 0 and img[-1, -1] == 0 and img[-1, 0] == 0
    label = img[layout.label.slices()]
    assert set(np.unique(label)) == {0, top}
    fg = img.copy()
    fg[layout.label.slices()] = 0
    anatomy = fg[layout.anatomy.slices()]
    assert np.count_nonzero(fg) == np.count_nonzero(anatomy)
    assert foreground_box(img, (0,)) == layout.foreground
    assert foreground_box(img, (0, top)) == layout.anatomy
    inside = anatomy[anatomy > 0]
    assert inside.min() > 500 and inside.max() < 3100

    # The breast touches the chest-wall edge and covers 55-65 % of the width; the label sits
    # near the opposite top corner, far from it.
    assert 0.55 <= layout.anatomy.width / columns <= 0.65
    if laterality == "L":
        assert layout.anatomy.left == 0 and img[:, 0].any()
        assert layout.label.left > layout.anatomy.right + 0.1 * columns
    else:
        assert layout.anatomy.right == columns and img[:, -1].any()
        assert layout.label.right < layout.anatomy.left - 0.1 * columns
    assert layout.label.top < 0.1 * rows

    # The window maps background → 0, label → max, anatomy strictly inside (0, max).
    windowed = apply_voi_lut(stored, ds).astype(np.float64)
    shown = windowed if photometric == "MONOCHROME2" else top - windowed
    anat_shown = shown[img > 0][img[img > 0] < top]
    assert shown[0, 0] == 0
    assert shown[layout.label.slices()].max() == top
    assert anat_shown.min() > 0 and anat_shown.max() < top


def test_mammogram_without_label_or_window():
    ds = synthetic.mammogram(**SMALL, label=False, window=False)
    assert "WindowCenter" not in ds and "WindowWidth" not in ds
    assert ds.pixel_array.max() < 4095
    assert synthetic.mammogram_layout(**SMALL, label=False).label is None


def test_mammogram_default_size():
    ds = synthetic.mammogram()
    assert (ds.Rows, ds.Columns) == (3328, 2560)
    assert [float(v) for v in ds.PixelSpacing] == [0.07, 0.07]
    assert [float(v) for v in ds.ImagerPixelSpacing] == [0.07, 0.07]
    img = ds.pixel_array
    assert img.max() == 4095 and img[0, 0] == 0
    assert foreground_box(img, (0,)) == synthetic.mammogram_layout().foreground


@pytest.mark.parametrize("bits", [8, 10, 16])
def test_mammogram_other_bit_depths(bits):
    ds = synthetic.mammogram(**SMALL, bits_stored=bits)
    assert ds.BitsAllocated == (8 if bits == 8 else 16)
    img = ds.pixel_array
    assert img.max() == 2**bits - 1 and img.min() == 0
    windowed = apply_voi_lut(img, ds)
    anatomy = windowed[(img > 0) & (img < 2**bits - 1)]
    assert anatomy.min() > 0 and anatomy.max() < 2**bits - 1


# --- transfer syntaxes -------------------------------------------------------------------------


@pytest.mark.parametrize("ts", synthetic.SUPPORTED_TRANSFER_SYNTAXES, ids=lambda ts: ts.name)
@pytest.mark.parametrize(
    "make",
    [
        lambda: synthetic.mammogram(**SMALL, photometric="MONOCHROME1"),
        lambda: synthetic.tomosynthesis(frames=3, **SMALL, shuffled=True),
        lambda: synthetic.ct_slice(rows=64, columns=64),
    ],
    ids=["mg", "bto", "ct"],
)
def test_transfer_syntax_round_trip(tmp_path, ts, make):
    ds = make()
    expected = ds.pixel_array
    path = synthetic.write(ds, tmp_path / "sub" / "x.dcm", ts)
    back = read(path)
    assert back.file_meta.TransferSyntaxUID == ts
    assert back.SOPInstanceUID == ds.SOPInstanceUID  # compress() must not renew the UID
    assert "PixelData" in ds and ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    decoded = back.pixel_array
    assert decoded.shape == expected.shape
    if ts in synthetic.LOSSLESS_TRANSFER_SYNTAXES:
        assert np.array_equal(decoded, expected)
        assert back.get("LossyImageCompression", "00") == "00"
    else:
        assert back.LossyImageCompression == "01"
        error = np.abs(decoded.astype(np.int64) - expected.astype(np.int64))
        if ts == JPEGLSNearLossless:
            assert error.max() <= 2  # the NEAR parameter encode() uses
        else:
            assert error.mean() < 0.03 * (int(expected.max()) - int(expected.min()))


def test_unsupported_transfer_syntax_is_refused():
    with pytest.raises(ValueError, match="unsupported"):
        synthetic.encode(synthetic.ct_slice(), "1.2.840.10008.1.2.4.50")


def test_deflated_hides_nothing_but_still_decodes():
    data = synthetic.encode(synthetic.ct_slice(), DeflatedExplicitVRLittleEndian)
    assert read(data).pixel_array.dtype == np.int16


# --- tomosynthesis -----------------------------------------------------------------------------


def _z_and_stack(ds: pydicom.Dataset) -> tuple[list[float], list[int]]:
    z = [
        float(f.PlanePositionSequence[0].ImagePositionPatient[2])
        for f in ds.PerFrameFunctionalGroupsSequence
    ]
    stack = [
        int(f.FrameContentSequence[0].InStackPositionNumber)
        for f in ds.PerFrameFunctionalGroupsSequence
    ]
    return z, stack


def test_tomosynthesis_structure():
    ds = synthetic.tomosynthesis(frames=6, **SMALL)
    assert ds.SOPClassUID == synthetic.BREAST_TOMOSYNTHESIS_IMAGE_STORAGE
    assert ds.NumberOfFrames == 6 and ds.Modality == "MG"
    shared = ds.SharedFunctionalGroupsSequence[0]
    measures = shared.PixelMeasuresSequence[0]
    assert [float(v) for v in measures.PixelSpacing] == [0.1, 0.1]
    assert float(measures.SliceThickness) == 1.0
    iop = shared.PlaneOrientationSequence[0].ImageOrientationPatient
    assert [float(v) for v in iop] == [1, 0, 0, 0, 1, 0]
    assert "FrameVOILUTSequence" in shared
    z, stack = _z_and_stack(ds)
    assert z == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0] and stack == [1, 2, 3, 4, 5, 6]
    assert ds.pixel_array.shape == (6, SMALL["rows"], SMALL["columns"])


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_shuffled_tomosynthesis_order_is_recoverable(photometric):
    frames = 7
    kwargs = dict(frames=frames, **SMALL, photometric=photometric, laterality="R")
    plain = synthetic.tomosynthesis(**kwargs)
    shuffled = synthetic.tomosynthesis(**kwargs, shuffled=True)
    z, stack = _z_and_stack(shuffled)
    order = synthetic.tomosynthesis_frame_order(frames, shuffled=True)
    assert order != sorted(order)
    assert z == [float(k) for k in order] and stack == [k + 1 for k in order]

    # Ordering the stored frames by position gives exactly the unshuffled volume.
    volume = shuffled.pixel_array
    by_position = volume[np.argsort(z)]
    assert np.array_equal(by_position, plain.pixel_array)

    # The marker square tells each stored frame's z index.
    top = 4095
    box = synthetic.frame_marker_box(SMALL["rows"], SMALL["columns"], "R")
    for i, k in enumerate(order):
        marker = volume[i][box.slices()]
        expected = synthetic.frame_marker_value(k, frames)
        if photometric == "MONOCHROME1":
            expected = top - expected
        assert np.all(marker == expected)
    values = [synthetic.frame_marker_value(k, frames) for k in range(frames)]
    assert values == sorted(values) and len(set(values)) == frames

    # The anatomy changes smoothly with z: neighbours differ, but less than far frames.
    ordered = plain.pixel_array.astype(np.int64)
    near = np.abs(ordered[3] - ordered[2]).mean()
    far = np.abs(ordered[6] - ordered[0]).mean()
    assert 0 < near < far


def test_per_frame_voi():
    frames = 5
    ds = synthetic.tomosynthesis(frames=frames, **SMALL, per_frame_voi=True, shuffled=True)
    assert "FrameVOILUTSequence" not in ds.SharedFunctionalGroupsSequence[0]
    z, _ = _z_and_stack(ds)
    centers = {}
    volume = ds.pixel_array
    for i, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        voi = item.FrameVOILUTSequence[0]
        centers[z[i]] = float(voi.WindowCenter)
        c, w = float(voi.WindowCenter), float(voi.WindowWidth)
        lower, upper = c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2
        frame = volume[i]
        anatomy = frame[(frame > 0) & (frame < 4095)]
        assert lower > 0 and upper < 4095
        assert lower < anatomy.min() and anatomy.max() < upper
    assert len(set(centers.values())) == frames
    assert [centers[k] for k in sorted(centers)] == sorted(centers.values())


# --- CT ----------------------------------------------------------------------------------------


def test_ct_slice_hounsfield_units():
    ds = synthetic.ct_slice(index=1)
    assert ds.SOPClassUID == synthetic.CT_IMAGE_STORAGE and ds.Modality == "CT"
    assert (ds.PixelRepresentation, ds.BitsStored) == (1, 16)
    assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, -1024.0)
    assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (40.0, 400.0)
    stored = ds.pixel_array
    assert stored.dtype == np.int16
    hu = stored.astype(np.int32) - 1024
    assert hu[0, 0] == -1000
    assert hu[64, 116] == 0  # water annulus, r = 0.41
    assert hu[64, 108] == 1000  # bone ring, r = 0.35
    assert 0 < np.median(hu[48:80, 48:80]) < 100  # soft tissue inside
    values = set(np.unique(hu).tolist())
    assert {-1000, 0, 1000} <= values
    assert hu.max() == 1000


def test_ct_series():
    slices = [synthetic.ct_slice(index=i, series_uid="1.2.3.9") for i in range(3)]
    assert len({s.SOPInstanceUID for s in slices}) == 3
    assert {s.SeriesInstanceUID for s in slices} == {"1.2.3.9"}
    assert [float(s.ImagePositionPatient[2]) for s in slices] == [0.0, 2.5, 5.0]
    assert slices[0].PixelData != slices[2].PixelData


# --- damaged files -----------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.6, 0.001, 0.9999])
def test_truncated_copy(tmp_path, fraction):
    src = synthetic.write(synthetic.mammogram(**SMALL), tmp_path / "full.dcm")
    cut = synthetic.truncated_copy(src, tmp_path / "cut" / "t.dcm", fraction)
    full, part = src.read_bytes(), cut.read_bytes()
    assert full.startswith(part) and 0 < len(part) < len(full)
    ds = read(cut)  # the header still parses, the cut is inside the pixel data...
    assert ds.SOPInstanceUID == read(src).SOPInstanceUID
    assert 16 <= len(ds.PixelData) <= SMALL["rows"] * SMALL["columns"] * 2 - 16
    with pytest.raises(ValueError):  # ...but the pixels are cut short
        ds.pixel_array  # noqa: B018


def test_short_pixel_data(tmp_path):
    src = synthetic.write(synthetic.tomosynthesis(frames=3, **SMALL), tmp_path / "bto.dcm")
    short = synthetic.short_pixel_data(src, tmp_path / "short.dcm")
    ds = read(short)
    assert len(ds.PixelData) < ds.Rows * ds.Columns * ds.NumberOfFrames * 2
    with pytest.raises(ValueError):
        ds.pixel_array  # noqa: B018


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
@pytest.mark.filterwarnings("ignore:The value length")
@pytest.mark.parametrize(
    "uid", ["../x", "../../etc/passwd", "1.2/3", "1.2 3", "1..2", "1." * 34 + "12", ""]
)
def test_with_uids_writes_hostile_values(tmp_path, uid):
    ds = synthetic.mammogram(**SMALL)
    path = synthetic.with_uids(ds, tmp_path / "h.dcm", sop_uid=uid, study_uid=uid or None)
    back = read(path)
    assert back.SOPInstanceUID == uid
    assert back.file_meta.MediaStorageSOPInstanceUID == uid
    if uid:
        assert uid.encode() in path.read_bytes()
        assert back.StudyInstanceUID == uid
    assert np.array_equal(back.pixel_array, ds.pixel_array)
    assert ds.SOPInstanceUID != uid  # the source dataset is untouched


# --- the bundled sample ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    return build_sample(tmp_path_factory.mktemp("sample") / "data")


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_sample_has_exactly_the_expected_files(sample):
    exp = SAMPLE_EXPECTATIONS
    assert _files(sample) == list(exp.all_paths)
    assert set(exp.bad.values()) == set(REASONS)
    assert exp.tiff_count == len(exp.images) == 25
    assert not set(exp.image_paths) & set(exp.bad)
    total = sum((sample / p).stat().st_size for p in exp.all_paths)
    assert total < 25e6


def test_sample_images_match_expectations(sample):
    seen: dict[str, str] = {}
    for image in SAMPLE_EXPECTATIONS.images:
        ds = read(sample / image.path)
        assert ds.get("Modality") == image.modality, image.path
        assert ds.file_meta.TransferSyntaxUID == image.transfer_syntax, image.path
        assert (ds.Rows, ds.Columns) == (image.rows, image.columns), image.path
        assert int(ds.get("NumberOfFrames", 1)) == image.frames, image.path
        assert ds.PhotometricInterpretation == image.photometric, image.path
        assert ds.BitsStored == image.bits_stored, image.path
        channels = 3 if ds.SamplesPerPixel == 3 or image.photometric == "PALETTE COLOR" else 1
        assert channels == image.channels, image.path
        assert valid_uid(ds.StudyInstanceUID) and valid_uid(ds.SOPInstanceUID), image.path
        assert ds.SOPInstanceUID not in seen, (image.path, seen.get(ds.SOPInstanceUID))
        seen[ds.SOPInstanceUID] = image.path
        arr = ds.pixel_array
        assert arr.shape[:1] == ((image.frames,) if image.frames > 1 else (image.rows,))


def test_sample_synthetic_files_carry_patient_values(sample):
    for rel in SAMPLE_EXPECTATIONS.image_paths:
        if rel.startswith("synthetic/"):
            data = (sample / rel).read_bytes()
            assert all(v.encode() in data for v in synthetic.PATIENT_VALUES), rel


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_sample_bad_files(sample):
    exp = SAMPLE_EXPECTATIONS
    for rel in exp.paths_with_reason("not_dicom"):
        data = (sample / rel).read_bytes()
        assert data and data[128:132] != b"DICM"
        with pytest.raises(pydicom.errors.InvalidDicomError):
            pydicom.dcmread(sample / rel)
    for rel in exp.paths_with_reason("empty"):
        assert (sample / rel).stat().st_size == 0
    for rel in exp.paths_with_reason("no_pixels"):
        ds = read(sample / rel)
        assert "PixelData" not in ds and ds.Modality == "RTPLAN"
    for rel in exp.paths_with_reason("truncated"):
        ds = read(sample / rel)
        assert valid_uid(ds.SOPInstanceUID)
        assert len(ds.PixelData) < ds.Rows * ds.Columns * 2
    (hostile,) = exp.paths_with_reason("invalid_uid")
    assert b"../../etc/passwd" in (sample / hostile).read_bytes()
    ds = read(sample / hostile)
    assert ds.SOPInstanceUID == "../../etc/passwd" and not valid_uid(ds.SOPInstanceUID)
    assert valid_uid(ds.StudyInstanceUID)
    (duplicate,) = exp.paths_with_reason("duplicate")
    originals = [
        p for p in exp.image_paths if (sample / p).read_bytes() == (sample / duplicate).read_bytes()
    ]
    assert len(originals) == 1 and originals[0] < duplicate
    # Every other failure has a SOP UID of its own (so only the duplicate is a duplicate).
    image_sops = {read(sample / p).SOPInstanceUID for p in exp.image_paths}
    for rel in (*exp.paths_with_reason("truncated"), hostile):
        assert read(sample / rel).SOPInstanceUID not in image_sops


def test_sample_list_file(sample):
    lines = (sample / "list.txt").read_text().splitlines()
    assert any(line.startswith("#") for line in lines) and "" in lines
    entries = [line for line in lines if line.strip() and not line.startswith("#")]
    assert tuple(entries) == SAMPLE_EXPECTATIONS.list_entries
    for entry in entries:
        assert (sample / entry).is_file() and entry in SAMPLE_EXPECTATIONS.image_paths


def test_sample_tomosynthesis_is_shuffled(sample):
    ds = read(sample / "synthetic/bto_01_LCC_shuffled.dcm")
    z, _ = _z_and_stack(ds)
    assert z != sorted(z) and sorted(z) == [float(k) for k in range(8)]


def test_sample_rebuild_is_identical_and_keeps_mtimes(tmp_path):
    first = build_sample(tmp_path / "one")
    old = 1_000_000_000
    for rel in SAMPLE_EXPECTATIONS.all_paths:
        os.utime(first / rel, (old, old))
    before = {rel: (first / rel).read_bytes() for rel in SAMPLE_EXPECTATIONS.all_paths}
    # Damage one file: the rebuild must restore it and leave the others alone.
    (first / "synthetic/ct_001.dcm").write_bytes(b"damaged")
    assert main([str(first), "--quiet"]) == 0
    for rel in SAMPLE_EXPECTATIONS.all_paths:
        assert (first / rel).read_bytes() == before[rel], rel
        changed = (first / rel).stat().st_mtime != old
        assert changed == (rel == "synthetic/ct_001.dcm"), rel
    assert not list(first.rglob("*.tmp"))

    second = build_sample(tmp_path / "two")
    for rel in SAMPLE_EXPECTATIONS.all_paths:
        assert (second / rel).read_bytes() == before[rel], rel
