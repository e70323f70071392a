"""laplacian-mip, max-intensity with skipped frames, resampling to a pixel spacing, and the
3D coordinate mapping of stacked volumes."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import tifffile
from dicomprep_testdata import synthetic

from dicomprep.formats.tiff import read_frames, read_geometry, read_info
from dicomprep.options import Options, OptionsError
from dicomprep.pipeline import process_file
from dicomprep.pixels.resize import resize
from dicomprep.series.spacing import resample_by_scale
from dicomprep.series.stacks import form_stacks
from dicomprep.series.volume_file import process_stack

from .series_helpers import OBLIQUE, write_series
from .test_series_stacks import facts_of

FRAMES, MIDDLE = 21, 10
CALC = (slice(120, 123), slice(60, 63))  # a 3 x 3 pixel "calcification"


@pytest.fixture(scope="module")
def tomo(tmp_path_factory):
    """A tomosynthesis volume with a bright calcification in the three middle slices."""
    ds = synthetic.tomosynthesis(frames=FRAMES, rows=256, columns=192, label=False, seed=4)
    volume = ds.pixel_array.copy()
    volume[MIDDLE - 1 : MIDDLE + 2, CALC[0], CALC[1]] += 400
    ds.PixelData = volume.tobytes()
    path = synthetic.write(ds, tmp_path_factory.mktemp("tomo") / "tomo.dcm")
    return path, volume.astype(np.float64)


def contrast(image: np.ndarray) -> float:
    """Calcification mean minus the mean of a ring 4..8 pixels around it."""
    inner = image[CALC].mean()
    ring = image[116:127, 56:67].astype(np.float64).sum() - image[118:125, 58:65].sum()
    return float(inner - ring / (11 * 11 - 7 * 7))


def test_laplacian_mip_shows_the_calcification_with_more_contrast(tmp_path, tomo):
    path, volume = tomo
    out = tmp_path / "fused.tiff"
    result = process_file(
        path, options=Options(volume="laplacian-mip", voi="none"), output_path=out
    )
    assert result.status == "ok", result.message
    (fused,) = read_frames(out).astype(np.float64)
    central = volume[MIDDLE]
    mip = volume[5 : FRAMES - 5].max(axis=0)  # skip_frames 5 at each end
    assert contrast(fused) > 1.5 * contrast(central) > 0
    # the overall brightness is the central slice's, not the MIP's
    assert mip.mean() - central.mean() > 40
    assert abs(fused.mean() - central.mean()) < 0.05 * (mip.mean() - central.mean())
    assert not np.array_equal(fused, mip)


def test_mip_weight_scales_the_detail_added(tmp_path, tomo):
    path, volume = tomo
    contrasts = []
    for weight in (0.0, 1.5, 3.0):
        out = tmp_path / f"w{weight}.tiff"
        options = Options(volume="laplacian-mip", voi="none", mip_weight=weight)
        assert process_file(path, options=options, output_path=out).status == "ok"
        contrasts.append(contrast(read_frames(out)[0].astype(np.float64)))
    # weight 0 is the central slice itself (up to rounding)
    assert contrasts[0] == pytest.approx(contrast(volume[MIDDLE]), abs=1)
    assert contrasts[0] < contrasts[1] < contrasts[2]


def test_max_intensity_skips_frames_at_each_end(tmp_path, tomo):
    path, volume = tomo
    for skip, frames in ((0, slice(None)), (3, slice(3, FRAMES - 3))):
        out = tmp_path / f"mip{skip}.tiff"
        options = Options(volume="max-intensity", voi="none", skip_frames=skip)
        assert process_file(path, options=options, output_path=out).status == "ok"
        np.testing.assert_array_equal(read_frames(out)[0], volume[frames].max(axis=0))


def mammogram_file(tmp_path, spacing: float, rows: int, columns: int):
    ds = synthetic.mammogram(
        rows=rows, columns=columns, label=False, pixel_spacing=(spacing, spacing), seed=1
    )
    return synthetic.write(ds, tmp_path / f"mammo{spacing}.dcm")


def test_spacing_gives_the_same_physical_size_at_any_source_resolution(tmp_path):
    sizes = []
    for spacing, rows, columns in ((0.07, 700, 500), (0.1, 490, 350)):
        out = tmp_path / f"{spacing}.tiff"
        path = mammogram_file(tmp_path, spacing, rows, columns)
        options = Options(spacing=(0.2, 0.2))
        assert process_file(path, options=options, output_path=out).status == "ok"
        info = read_info(out)
        sizes.append((info.width, info.height))
        assert info.geometry.scale_x == spacing / 0.2  # exact, from the first page's record
        assert info.geometry.scale_y == spacing / 0.2
        assert info.resolution == pytest.approx((50.0, 50.0))  # 0.2 mm pixels
        with tifffile.TiffFile(out) as tif:
            tag = tif.pages.first.tags[50718].value
        assert tag == pytest.approx((spacing / 0.2, spacing / 0.2), rel=1e-6)
        assert (info.width, info.height) == (
            round(columns * spacing / 0.2),
            round(rows * spacing / 0.2),
        )
    (w1, h1), (w2, h2) = sizes
    assert abs(w1 - w2) <= 1 and abs(h1 - h2) <= 1


def test_spacing_needs_a_pixel_spacing_and_excludes_size(tmp_path):
    ds = synthetic.mammogram(rows=64, columns=48, label=False)
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        if keyword in ds:
            delattr(ds, keyword)
    path = synthetic.write(ds, tmp_path / "nospacing.dcm")
    result = process_file(
        path, options=Options(spacing=(0.2, 0.2)), output_path=tmp_path / "o.tiff"
    )
    assert result.status == "failed" and "Pixel Spacing" in result.message
    ds.ImagerPixelSpacing = [0.1, 0.1]  # projection radiography: Imager Pixel Spacing
    path = synthetic.write(ds, tmp_path / "imager.dcm")
    result = process_file(
        path, options=Options(spacing=(0.2, 0.2)), output_path=tmp_path / "i.tiff"
    )
    assert result.status == "ok" and (result.width, result.height) == (24, 32)
    with pytest.raises(OptionsError, match="size and spacing"):
        Options(size=(10, 10), spacing=(0.2, 0.2))


def test_exact_halving_agrees_with_resize():
    """A scale of exactly 1/2 is resize()'s grid: the same values (resize works in single
    precision, so a value may round the other way)."""
    image = np.random.default_rng(0).integers(0, 4096, (64, 48), dtype=np.uint16)
    for filter in ("nearest", "triangle", "lanczos3"):
        ours = resample_by_scale(image, 0.5, 0.5, 24, 32, filter).astype(np.int64)
        theirs = resize(image, 24, 32, filter).astype(np.int64)
        assert np.abs(ours - theirs).max() <= (0 if filter == "nearest" else 1)
        assert np.mean(ours == theirs) > 0.99


def test_volume_mapping_round_trips_and_lands_on_the_patient_position(tmp_path):
    write_series(tmp_path / "in", orientation=OBLIQUE, count=9, name="map")
    (stack,), _ = form_stacks(facts_of(tmp_path / "in"))
    out = tmp_path / "vol.tiff"
    options = Options(voi="none", spacing=(1.0, 1.25, 5.0))
    result = process_stack(stack.paths, out, options)
    assert result.status == "ok", result.message
    assert result.num_frames == 5  # slices 0..20 mm every 5 mm
    assert [s.page for s in result.slices] == [0, 1, 1, 2, 2, 3, 3, 4, 4]  # nearest, ties up
    geometry = read_geometry(out)
    volume = geometry.volume
    assert volume.spacing == pytest.approx((1.0, 1.25, 5.0))
    rng = np.random.default_rng(1)
    points = np.column_stack(
        [rng.uniform(0, 128, 20), rng.uniform(0, 128, 20), rng.uniform(0, 8, 20)]
    )
    np.testing.assert_allclose(geometry.to_source_3d(geometry.to_output_3d(points)), points)
    # pixel (i, j) of slice k, placed in patient space from its own header, is where the
    # output's affine puts the mapped voxel
    for k in (0, 4, 8):
        ds = pydicom.dcmread(stack.paths[k], stop_before_pixels=True)
        o = np.array(ds.ImageOrientationPatient, dtype=float)
        row_mm, column_mm = (float(v) for v in ds.PixelSpacing)
        i, j = 37.0, 90.0
        patient = (
            np.array(ds.ImagePositionPatient, dtype=float)
            + o[:3] * column_mm * i
            + o[3:] * row_mm * j
        )
        x, y, page = geometry.to_output_3d([i + 0.5, j + 0.5, k])
        mapped = volume.affine_lps() @ [x - 0.5, y - 0.5, page, 1.0]
        np.testing.assert_allclose(mapped[:3], patient, atol=1e-3)


def test_one_window_for_the_stack_is_the_first_slices(tmp_path):
    series = write_series(tmp_path / "in", source="MR_small.dcm", count=4, name="voi")
    (stack,), _ = form_stacks(facts_of(tmp_path / "in"))
    same = process_stack(stack.paths, tmp_path / "same.tiff", Options())
    for k, path in enumerate(stack.paths[1:], start=1):  # other windows on later slices
        ds = pydicom.dcmread(path)
        ds.WindowCenter, ds.WindowWidth = 100 * k, 50
        ds.save_as(path)
    changed = process_stack(stack.paths, tmp_path / "changed.tiff", Options())
    assert same.status == changed.status == "ok"
    pages = read_frames(tmp_path / "changed.tiff")
    np.testing.assert_array_equal(pages, read_frames(tmp_path / "same.tiff"))
    first = series["datasets"][0]
    center, width = float(first.WindowCenter), float(first.WindowWidth)
    raw = pydicom.dcmread(stack.paths[2]).pixel_array.astype(np.float64)
    # DICOM linear window to 0..65535 (PS3.3 C.11.2.1.2.1), the expected values of slice 2
    expected = np.clip((raw - (center - 0.5)) / (width - 1) + 0.5, 0, 1) * 65535
    np.testing.assert_allclose(pages[2], expected, atol=1.0)
