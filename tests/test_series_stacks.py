"""Stacks of real CT/MR slices against dcm2niix and SimpleITK (GDCM ordering).

The series are pydicom's CT_small / MR_small slices written with positions set here and
shuffled on disk; the peers read the same files.  On clean series the voxels (voi: none)
and the geometry agree; on flawed ones dicomprep reports what the peers keep silently.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from dicomprep.formats.tiff import read_frames, read_geometry
from dicomprep.options import Options
from dicomprep.series.stacks import (
    DUPLICATE_POSITION,
    GAP,
    LOCALIZER,
    MIXED_GEOMETRY,
    SPLIT_SERIES,
    form_stacks,
    single_files,
    stack_facts,
)
from dicomprep.series.volume_file import process_stack

from .series_helpers import AXIAL, OBLIQUE, write_series

DCM2NIIX = Path(sys.executable).with_name("dcm2niix")


def facts_of(folder: Path) -> list[dict]:
    rows = []
    for path in sorted(folder.iterdir()):
        facts = stack_facts(pydicom.dcmread(path, stop_before_pixels=True))
        rows.append({**facts, "path": str(path)})
    return rows


def dcm2niix(folder: Path, out: Path) -> list[nib.Nifti1Image]:
    """dcm2niix's volumes (it exits non-zero on flawed series but still writes them)."""
    out.mkdir()
    subprocess.run(
        [str(DCM2NIIX), "-z", "y", "-b", "n", "-f", "%j_%s", "-o", str(out), str(folder)],
        check=False,
        capture_output=True,
    )
    return [nib.load(p) for p in sorted(out.glob("*.nii.gz"))]


def sitk_series(folder: Path, series: str) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), series))
    return reader.Execute()


def hounsfield_volume(series: dict, order: list[str]) -> np.ndarray:
    """Reference voxels: pydicom's pixel_array with its own rescale, slice by slice."""
    by_uid = {ds.SOPInstanceUID: ds for ds in series["datasets"]}
    out = []
    for uid in order:
        ds = pydicom.dcmread(series["paths"][uid])
        assert ds.SOPInstanceUID == by_uid[uid].SOPInstanceUID
        slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
        out.append(ds.pixel_array * slope + intercept)
    return np.stack(out)


@pytest.mark.parametrize(
    ("source", "orientation"),
    [("CT_small.dcm", AXIAL), ("CT_small.dcm", OBLIQUE), ("MR_small.dcm", AXIAL)],
)
def test_clean_series_matches_dcm2niix_and_simpleitk(tmp_path, source, orientation):
    series = write_series(tmp_path / "in", source=source, orientation=orientation, count=10)
    stacks, records = form_stacks(facts_of(tmp_path / "in"))
    assert records == []
    assert len(stacks) == 1 and stacks[0].name == series["series"]
    stack = stacks[0]
    expected_order = [ds.SOPInstanceUID for ds in series["datasets"]]  # written in order
    assert list(stack.sop_instance_uids) == expected_order

    tiff, nifti = tmp_path / "out.tiff", tmp_path / "out.nii.gz"
    assert process_stack(stack.paths, tiff, Options(voi="none")).status == "ok"
    result = process_stack(stack.paths, nifti, Options(voi="none", volume_format="nifti"))
    assert result.status == "ok", result.message
    pages = read_frames(tiff)
    assert pages.dtype == np.int16
    np.testing.assert_array_equal(pages, hounsfield_volume(series, expected_order))

    # SimpleITK: voxel array (z, y, x), spacing, origin and direction in LPS
    image = sitk_series(tmp_path / "in", series["series"])
    np.testing.assert_array_equal(pages, sitk.GetArrayFromImage(image))
    volume = read_geometry(tiff).volume
    np.testing.assert_allclose(volume.spacing, image.GetSpacing(), atol=1e-3)
    np.testing.assert_allclose(volume.origin, image.GetOrigin(), atol=1e-3)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    np.testing.assert_allclose(
        volume.affine_lps()[:3, :3], direction * image.GetSpacing(), atol=1e-3
    )
    assert not volume.uneven_spacing

    # dcm2niix: the same voxels and affine in RAS once both are brought to canonical order
    (peer,) = dcm2niix(tmp_path / "in", tmp_path / "dcm2niix")
    ours = nib.as_closest_canonical(nib.load(nifti))
    theirs = nib.as_closest_canonical(peer)
    np.testing.assert_array_equal(np.asarray(ours.dataobj), theirs.get_fdata())
    np.testing.assert_allclose(ours.affine, theirs.affine, atol=1e-3)
    np.testing.assert_allclose(nib.load(nifti).affine, volume.affine_ras(), atol=1e-9)


def test_flawed_series_are_reported_where_the_peers_stay_silent(tmp_path):
    series = write_series(
        tmp_path / "in", count=10, missing=(6,), duplicate_of=3, localizer=True, name="flawed"
    )
    facts = facts_of(tmp_path / "in")
    stacks, records = form_stacks(facts)
    kinds = sorted(r.kind for r in records)
    assert kinds == sorted([DUPLICATE_POSITION, GAP, LOCALIZER, "uneven-spacing"])
    (stack,) = stacks
    assert len(stack.paths) == 9 - 0  # 10 written, one missing; the duplicate left out
    assert stack.uneven_spacing
    duplicate = next(r for r in records if r.kind == DUPLICATE_POSITION)
    localizer = next(r for r in records if r.kind == LOCALIZER)
    dup_uid = duplicate.sop_instance_uids[1]
    assert dup_uid not in stack.sop_instance_uids
    assert single_files(facts, stacks, records) == [str(p) for p in localizer.paths]
    gap = next(r for r in records if r.kind == GAP)
    k5, k7 = (series["datasets"][i].SOPInstanceUID for i in (5, 6))  # slices 5 and 7
    assert gap.sop_instance_uids == (k5, k7)

    result = process_stack(stack.paths, tmp_path / "out.tiff", Options(voi="none"))
    assert result.status == "ok"
    volume = read_geometry(tmp_path / "out.tiff").volume
    assert volume.uneven_spacing  # reported in the geometry as well
    positions = np.array(volume.slice_positions)
    assert np.diff(positions).max() == pytest.approx(5.0)

    # dcm2niix puts every file, duplicate and localizer included, into its volumes (its
    # console warns; nothing in its outputs says which slice is which); SimpleITK reads
    # every file of the series into one volume.
    peers = dcm2niix(tmp_path / "in", tmp_path / "dcm2niix")
    assert sum(img.shape[2] for img in peers) == len(facts) == 11
    image = sitk_series(tmp_path / "in", series["series"])
    assert image.GetSize()[2] == len(facts)  # 11: the duplicate and localizer included


def test_mixed_sizes_split_a_series_in_a_deterministic_order(tmp_path):
    big = write_series(tmp_path / "in", source="CT_small.dcm", count=4, name="mixed")
    small = write_series(tmp_path / "tmp", source="MR_small.dcm", count=3, name="other")
    for k, ds in enumerate(small["datasets"]):  # MR slices put into the CT series
        ds.SeriesInstanceUID, ds.StudyInstanceUID = big["series"], big["study"]
        ds.save_as(tmp_path / "in" / f"mr{k}.dcm")
    shutil.rmtree(tmp_path / "tmp")
    stacks, records = form_stacks(facts_of(tmp_path / "in"))
    assert [s.name for s in stacks] == [f"{big['series']}-1", f"{big['series']}-2"]
    assert [len(s.paths) for s in stacks] == [4, 3]
    assert [r.kind for r in records] == [SPLIT_SERIES]
    # one MR slice alone in the series stays a single file, reported as mixed geometry
    (tmp_path / "in" / "mr1.dcm").unlink()
    (tmp_path / "in" / "mr2.dcm").unlink()
    stacks, records = form_stacks(facts_of(tmp_path / "in"))
    assert [len(s.paths) for s in stacks] == [4]
    assert [r.kind for r in records] == [MIXED_GEOMETRY]


def test_order_uses_position_then_instance_number_not_file_order(tmp_path):
    write_series(tmp_path / "in", count=6, seed=3, name="order")
    facts = facts_of(tmp_path / "in")
    for f in facts:  # instance numbers reversed: position still decides
        f["instance_number"] = 100 - f["instance_number"]
    (stack,) = form_stacks(facts)[0]
    assert list(stack.positions) == sorted(stack.positions)
    assert np.allclose(np.diff(stack.positions), 2.5)


def test_stack_outputs_are_deterministic_and_interpolate_keeps_positions(tmp_path):
    write_series(tmp_path / "in", count=5, name="det")
    (stack,), _ = form_stacks(facts_of(tmp_path / "in"))
    for name in ("a.tiff", "b.tiff"):
        assert process_stack(stack.paths, tmp_path / name, Options(crop=True)).status == "ok"
    assert (tmp_path / "a.tiff").read_bytes() == (tmp_path / "b.tiff").read_bytes()
    for name in ("a.nii.gz", "b.nii.gz"):
        options = Options(voi="none", volume_format="nifti")
        assert process_stack(stack.paths, tmp_path / name, options).status == "ok"
    assert (tmp_path / "a.nii.gz").read_bytes() == (tmp_path / "b.nii.gz").read_bytes()

    options = Options(voi="none", volume="interpolate", target_frames=9)
    result = process_stack(stack.paths, tmp_path / "i.tiff", options)
    volume = read_geometry(tmp_path / "i.tiff").volume
    assert result.num_frames == 9
    assert np.allclose(np.diff(volume.page_positions), 1.25)  # 5 slices 2.5 mm apart
    assert volume.spacing[2] == pytest.approx(1.25)
    assert [s.page for s in result.slices] == [0, 2, 4, 6, 8]
    pages = read_frames(tmp_path / "i.tiff").astype(np.float64)
    hu = np.stack([pydicom.dcmread(p).pixel_array * 1.0 - 1024 for p in stack.paths])
    np.testing.assert_allclose(pages[1], np.rint((hu[0] + hu[1]) / 2), atol=0.5)


def test_each_slice_keeps_its_own_rescale(tmp_path):
    """Slices of one stack with different Rescale Slope / Intercept (as PET and some CT
    series have): each slice's voxels are its own modality values, as pydicom gives them,
    and the windowed output maps each through its own rescale too."""
    series = write_series(tmp_path / "in", count=6, name="rescale")
    for k, ds in enumerate(series["datasets"]):
        ds.RescaleSlope, ds.RescaleIntercept = (1, -1024) if k % 2 else (2, -1000)
        ds.save_as(series["paths"][ds.SOPInstanceUID])
    (stack,), _ = form_stacks(facts_of(tmp_path / "in"))
    order = list(stack.sop_instance_uids)
    tiff = tmp_path / "hu.tiff"
    assert process_stack(stack.paths, tiff, Options(voi="none")).status == "ok"
    np.testing.assert_array_equal(read_frames(tiff), hounsfield_volume(series, order))

    window = tmp_path / "window.tiff"
    assert process_stack(stack.paths, window, Options(voi=(40.0, 400.0))).status == "ok"
    hu = hounsfield_volume(series, order)
    # the linear window of PS3.3 C.11.2.1.2.1 onto 0..65535
    expected = np.rint(np.clip((hu - (40 - 0.5)) / (400 - 1) + 0.5, 0, 1) * 65535)
    assert np.abs(read_frames(window).astype(np.float64) - expected).max() <= 1


def test_compressed_slices_are_decoded_once_for_every_pass(tmp_path, monkeypatch):
    """`voi: none` (the value range) with crop (the box) takes three passes over a stack;
    compressed slices are decoded in the first and kept, with the same output bytes."""
    from pydicom.uid import RLELossless

    from dicomprep.series import volume_file

    series = write_series(tmp_path / "in", count=6, name="rle")
    for ds in series["datasets"]:
        ds.compress(RLELossless, generate_instance_uid=False)
        ds.save_as(series["paths"][ds.SOPInstanceUID])
    (stack,), _ = form_stacks(facts_of(tmp_path / "in"))
    decodes = []
    original = volume_file.iter_frames

    def counting(path, *args, **kwargs):
        decodes.append(path)
        return original(path, *args, **kwargs)

    monkeypatch.setattr(volume_file, "iter_frames", counting)
    options = Options(voi="none", crop=True)
    assert process_stack(stack.paths, tmp_path / "kept.tiff", options).status == "ok"
    assert sorted(decodes) == sorted(stack.paths)  # each slice once
    decodes.clear()
    monkeypatch.setattr(volume_file, "KEEP_DECODED_BYTES", 0)  # nothing kept: every pass
    assert process_stack(stack.paths, tmp_path / "again.tiff", options).status == "ok"
    assert len(decodes) == 3 * len(stack.paths)
    assert (tmp_path / "kept.tiff").read_bytes() == (tmp_path / "again.tiff").read_bytes()
