"""Non-finite pixels and rescales fail clearly; the lenient header cases are converted with
a warning in the manifest, the others refused (formats/lenient.py, docs/errors.md).

Fixtures are built with pydicom: Float Pixel Data (Bits Allocated 32) and Double Float
Pixel Data (64) with NaN and infinite samples, a synthetic mammogram with a Rescale Slope
of 1e308, and headers with Bits Stored 0, absent or 17 and a High Bit that disagrees.
Expected pixels come from numpy on the values written, not from the project's code.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from dicomprep_testdata import synthetic
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from dicomprep.core.errors import ErrorType
from dicomprep.formats.manifest import MANIFEST_COLUMNS, read_manifest, scan_dataset
from dicomprep.formats.tiff import read_frames
from dicomprep.options import Options
from dicomprep.pipeline import process_file
from dicomprep.series.volume_file import process_stack

from .reliability_helpers import encode_with_elements
from .series_helpers import write_series
from .workflow_helpers import snakemake

BIN = Path(sys.executable).parent
ROWS, COLUMNS = 40, 32


def float_image(dtype, bad: dict[int, float] | None = None, photometric="MONOCHROME2"):
    """A float image (Float Pixel Data for float32, Double Float for float64): a ramp of
    0..1000 with ``bad`` = {sample index: value} written over it."""
    ds = synthetic.mammogram(rows=ROWS, columns=COLUMNS, seed=3)
    for keyword in ("PixelData", "BitsStored", "HighBit", "PixelRepresentation"):
        delattr(ds, keyword)
    for keyword in ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth"):
        if keyword in ds:
            delattr(ds, keyword)
    values = np.linspace(0.0, 1000.0, ROWS * COLUMNS).astype(dtype)
    for index, value in (bad or {}).items():
        values[index] = value
    values = values.reshape(ROWS, COLUMNS)
    if photometric == "RGB":
        values = np.stack([values, values[::-1], values[:, ::-1]], axis=-1)
        ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 8 * np.dtype(dtype).itemsize
    if np.dtype(dtype) == np.float32:
        ds.FloatPixelData = values.tobytes()
    else:
        ds.DoubleFloatPixelData = values.tobytes()
    return ds, values


def mammogram(**elements):
    """A small synthetic 12-bit mammogram with ``elements`` set (None: deleted)."""
    ds = synthetic.mammogram(rows=ROWS, columns=COLUMNS, seed=4)
    for keyword, value in elements.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return ds


def convert(path, tmp_path, **options):
    out = tmp_path / f"{Path(path).stem}.tiff"
    return process_file(path, options=Options(**options), output_path=out), out


def failed(result) -> tuple[str, str, str]:
    return result.status, result.stage, result.error_type


# -- non-finite float pixels -------------------------------------------------------------

ELEMENT = {np.float32: "Float Pixel Data", np.float64: "Double Float Pixel Data"}
BAD_SAMPLES = {
    "nan": ({3: np.nan, 17: np.nan, 400: np.nan}, 3, 0),
    "+inf": ({0: np.inf}, 0, 1),
    "-inf": ({5: -np.inf, 6: -np.inf}, 0, 2),
    "mixed": ({1: np.nan, 2: np.inf, 3: -np.inf}, 1, 2),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("case", list(BAD_SAMPLES))
@pytest.mark.parametrize("voi", ["auto", "none"])
def test_float_pixels_with_nan_or_inf_are_one_decode_failure(tmp_path, dtype, case, voi):
    bad, nan, inf = BAD_SAMPLES[case]
    ds, _ = float_image(dtype, bad)
    source = synthetic.write(ds, tmp_path / "float.dcm")
    result, out = convert(source, tmp_path, voi=voi)
    assert failed(result) == ("failed", "decode", ErrorType.NON_FINITE_PIXELS)
    assert result.message == (
        f"{ELEMENT[dtype]} holds {nan} NaN and {inf} infinite samples in frame 0"
    )
    assert not out.exists()  # before: an all-zero TIFF and status ok


def test_colour_float_pixels_count_every_sample(tmp_path):
    ds, _ = float_image(np.float32, {10: np.nan, 11: np.inf}, photometric="RGB")
    source = synthetic.write(ds, tmp_path / "rgb.dcm")
    result, out = convert(source, tmp_path)
    # the same two pixels are NaN and inf in every channel of the stacked planes' first
    assert failed(result) == ("failed", "decode", ErrorType.NON_FINITE_PIXELS)
    assert result.message.startswith("Float Pixel Data holds ")
    nan, inf = (int(n) for n in result.message.split()[4::3][:2])
    assert nan >= 1 and inf >= 1 and not out.exists()


def test_a_finite_float_image_still_converts_to_its_min_max_window(tmp_path):
    ds, values = float_image(np.float32)
    source = synthetic.write(ds, tmp_path / "fine.dcm")
    result, out = convert(source, tmp_path)
    assert result.status == "ok" and result.warnings == ""
    x = values.astype(np.float64)
    expected = np.rint((x - x.min()) / (x.max() - x.min()) * 65535)
    np.testing.assert_array_equal(read_frames(out)[0], expected.astype(np.uint16))


def test_a_nan_frame_of_a_multi_frame_float_image_is_named(tmp_path):
    ds, values = float_image(np.float32)
    frames = np.stack([values, values, values])
    frames[2, 1, 1] = np.nan
    ds.NumberOfFrames = 3
    ds.FloatPixelData = frames.tobytes()
    source = synthetic.write(ds, tmp_path / "frames.dcm")
    result, out = convert(source, tmp_path)
    assert failed(result) == ("failed", "decode", ErrorType.NON_FINITE_PIXELS)
    assert result.message == "Float Pixel Data holds 1 NaN and 0 infinite samples in frame 2"


# -- rescales that overflow ------------------------------------------------------------------


@pytest.mark.parametrize("voi", ["auto", "none"])
@pytest.mark.parametrize(
    ("slope", "intercept", "shown"),
    [
        (
            "1e308",
            "0",
            "RescaleSlope 1e+308 and RescaleIntercept 0 take the stored values 0..4095 to 0..inf",
        ),
        (
            "-1e306",
            "0",
            "RescaleSlope -1e+306 and RescaleIntercept 0 take the stored values 0..4095 to 0..-inf",
        ),
    ],
)
def test_a_rescale_that_overflows_the_stored_range_fails(tmp_path, voi, slope, intercept, shown):
    source = synthetic.write(
        mammogram(RescaleSlope=slope, RescaleIntercept=intercept), tmp_path / "s.dcm"
    )
    result, out = convert(source, tmp_path, voi=voi)
    assert failed(result) == ("failed", "transform", ErrorType.INVALID_RESCALE)
    assert result.message.startswith(shown), result.message
    assert not out.exists()  # before: an output (all 0 / 65535) and status ok


def test_a_large_finite_rescale_still_converts(tmp_path):
    """1e300 x 4095 is finite: converted (the window maps it like any other rescale)."""
    source = synthetic.write(mammogram(RescaleSlope="1e300", RescaleIntercept="0"), tmp_path / "s")
    result, _ = convert(source, tmp_path, voi="auto")
    assert result.status == "ok", result.message


# -- lenient header cases --------------------------------------------------------------------


def raw_us(value: int) -> tuple[str, bytes]:
    return "US", struct.pack("<H", value)


def sixteen_bit(tmp_path, name: str, transfer_syntax=ExplicitVRLittleEndian, **replace) -> Path:
    """A 16-bit mammogram (Bits Stored 16, High Bit 15) in ``transfer_syntax`` with the raw
    ``replace`` elements (keyword -> value or None: left out) written over its header."""
    ds = synthetic.mammogram(rows=ROWS, columns=COLUMNS, seed=5, bits_stored=16)
    ds.SOPInstanceUID = synthetic.derived_uid("lenient test", name)  # one image per name
    encoded = pydicom.dcmread(synthetic.write(ds, tmp_path / f"{name}.base", transfer_syntax))
    data = encode_with_elements(
        encoded, {k: (None if v is None else raw_us(v)) for k, v in replace.items()}
    )
    path = tmp_path / f"{name}.dcm"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("transfer_syntax", [ExplicitVRLittleEndian, RLELossless])
@pytest.mark.parametrize(
    ("replace", "warning"),
    [
        ({"BitsStored": 0}, "Bits Stored is 0: read as 16"),
        ({"BitsStored": None}, "Bits Stored is absent: read as 16"),
        ({"HighBit": None}, "High Bit is absent: taken as 15"),
        (
            {"BitsStored": 0, "HighBit": None},
            "Bits Stored is 0: read as 16; High Bit is absent: taken as 15",
        ),
    ],
)
def test_lenient_cases_convert_to_the_same_pixels_with_a_warning(
    tmp_path, transfer_syntax, replace, warning
):
    normal = sixteen_bit(tmp_path, "normal", transfer_syntax)
    lenient = sixteen_bit(tmp_path, "lenient", transfer_syntax, **replace)
    reference, reference_out = convert(normal, tmp_path)
    result, out = convert(lenient, tmp_path)
    assert reference.status == "ok" and reference.warnings == ""
    assert (result.status, result.warnings) == ("ok", warning), result.message
    np.testing.assert_array_equal(read_frames(out), read_frames(reference_out))


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        (
            {"BitsStored": 17},
            "Bits Stored 17 with Bits Allocated 16: the samples do not have "
            "the bits the header claims",
        ),
        (
            {"BitsStored": 12},
            "High Bit 15 with Bits Stored 12: where the stored bits sit in "
            "the sample is ambiguous (High Bit must be 11)",
        ),
        (
            {"HighBit": 11},
            "High Bit 11 with Bits Stored 16: where the stored bits sit in the "
            "sample is ambiguous (High Bit must be 15)",
        ),
    ],
)
def test_headers_that_leave_the_samples_open_are_refused(tmp_path, replace, message):
    result, out = convert(sixteen_bit(tmp_path, "bad", **replace), tmp_path)
    assert failed(result) == ("failed", "decode", ErrorType.INVALID_IMAGE_DESCRIPTION)
    assert result.message == message
    assert not out.exists()


def test_a_stack_names_its_slices_warnings_and_leaves_out_an_overflowing_slice(tmp_path):
    series = write_series(tmp_path / "in", count=4, name="lenient")
    paths = [series["paths"][ds.SOPInstanceUID] for ds in series["datasets"]]
    for k, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        replace = {"BitsStored": raw_us(0)}
        if k == 2:
            replace["RescaleSlope"] = ("DS", b"1e308 ")
        path.write_bytes(encode_with_elements(ds, replace))
    result = process_stack(paths, tmp_path / "stack.tiff", Options(voi="none"))
    assert result.status == "ok", result.message
    assert result.warnings == "Bits Stored is 0: read as 16"
    assert [f["source"] for f in result.left_out] == [str(paths[2])]
    assert result.left_out[0]["error_type"] == ErrorType.INVALID_RESCALE
    assert read_frames(tmp_path / "stack.tiff").shape[0] == 3


# -- through the tools -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def mixed_source(tmp_path_factory) -> Path:
    """A folder with a normal image, a Bits Stored 0 image, a Bits Stored 17 image, a NaN
    float image and an integer image with Rescale Slope 1e308."""
    folder = tmp_path_factory.mktemp("lenient") / "src"
    folder.mkdir()
    sixteen_bit(folder, "normal")
    sixteen_bit(folder, "bits0", BitsStored=0)
    sixteen_bit(folder, "bits17", BitsStored=17)
    for leftover in folder.glob("*.base"):
        leftover.unlink()
    ds, _ = float_image(np.float32, {7: np.nan, 8: np.inf})
    synthetic.write(ds, folder / "nan.dcm")
    synthetic.write(mammogram(RescaleSlope="1e308"), folder / "slope.dcm")
    return folder


EXPECTED_FAILURES = {
    "bits17.dcm": ("decode", ErrorType.INVALID_IMAGE_DESCRIPTION),
    "nan.dcm": ("decode", ErrorType.NON_FINITE_PIXELS),
    "slope.dcm": ("transform", ErrorType.INVALID_RESCALE),
}


def failure_lines(failures_csv: Path) -> dict[str, tuple[str, str]]:
    table = pd.read_csv(failures_csv, keep_default_na=False)
    names = [Path(p).name for p in table["path"]]
    assert len(names) == len(set(names)), "one failure line per file"
    return {n: (s, e) for n, s, e in zip(names, table["stage"], table["error_type"], strict=True)}


def test_dicom_preprocess_gives_one_failure_line_each(mixed_source, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [str(BIN / "dicom-preprocess"), str(mixed_source), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    assert failure_lines(out / "failures.csv") == EXPECTED_FAILURES
    assert len(list(out.rglob("*.tiff"))) == 2  # normal and Bits Stored 0
    assert not (out / "manifest.csv").exists()  # the command line tool writes none


@pytest.mark.slow
def test_the_workflow_manifest_names_the_warning(mixed_source, tmp_path):
    config = {"source": mixed_source, "output": tmp_path / "out", "work": tmp_path / "work"}
    snakemake(tmp_path, config={**config, "shards": 1, "size": None, "crop": False})
    out = tmp_path / "out"
    assert failure_lines(out / "failures.csv") == EXPECTED_FAILURES
    text = (out / "manifest.csv").read_text().splitlines()
    assert text[0].split(",") == MANIFEST_COLUMNS and MANIFEST_COLUMNS[-1] == "warnings"
    for manifest in (read_manifest(out / "manifest.csv"), read_manifest(out / "manifest.parquet")):
        warnings = dict(zip(manifest["source"], manifest["warnings"], strict=True))
        assert warnings == {"bits0.dcm": "Bits Stored is 0: read as 16", "normal.dcm": ""}
    # a manifest rebuilt from the TIFFs alone cannot know it
    assert list(scan_dataset(out)["warnings"]) == ["", ""]


# -- the QC report's intensity histograms ----------------------------------------------------


def test_report_histogram_leaves_out_padding_and_background(tmp_path):
    """A mammogram padded into a wider canvas: the chart counts the active area's pixels
    whose displayed value is neither 0 (background, padding) nor 255; the note names the
    two ends' shares."""
    from types import SimpleNamespace

    import tifffile

    from dicomprep.report import images, plots

    ds = synthetic.mammogram(rows=208, columns=160, seed=6)
    source = synthetic.write(ds, tmp_path / "mg.dcm")
    out = tmp_path / "out" / "mg.tiff"
    result = process_file(source, options=Options(crop=True, size=(256, 256)), output_path=out)
    assert result.status == "ok"
    with tifffile.TiffFile(out) as tif:
        page = tif.pages[0].asarray()
        left, top, right, bottom = tif.pages[0].tags[50829].value  # ActiveArea
    shown = (page >> 8).astype(np.uint8)
    inside = np.zeros(shown.shape, bool)
    inside[top:bottom, left:right] = True
    assert (~inside).sum() > 0 and (shown[~inside] == 0).all()  # there is padding
    active = shown[inside]
    assert (active == 0).sum() > 0.1 * active.size  # and background inside the active area

    row = SimpleNamespace(
        modality="MG",
        study_instance_uid=str(ds.StudyInstanceUID),
        sop_instance_uid=str(ds.SOPInstanceUID),
        tiff="mg.tiff",
        path=str(source),
        source_frames=1,
        num_frames=1,
    )
    sample = images.render_sample(row, tmp_path / "out", tmp_path / "img", Options(crop=True))
    assert not sample.errors
    chart = plots.intensity_chart(
        "MG", plots.intensity_histograms([("MG", sample.histogram)])["MG"], 1
    )
    kept = active[(active != 0) & (active != 255)]
    assert chart.total == kept.size  # before: every pixel of the active area, zeros included
    expected = np.bincount(kept, minlength=256).reshape(32, 8).sum(axis=1)
    assert [b.count for b in chart.bars] == expected.tolist()
    zeros, tops = int((active == 0).sum()), int((active == 255).sum())
    assert f"{active.size:,} pixels of 1 sampled outputs" in chart.note
    share = "0" if not tops else f"{max(100 * tops / active.size, 0.1):.1f}"
    assert f"{100 * zeros / active.size:.1f}\u00a0% at 0, {share}\u00a0% at 255" in chart.note
    # the tallest bar is no longer the background's: the tissue's values fill the plot
    assert max(chart.bars, key=lambda b: b.count).label != "1–7"


def test_no_chart_text_reaches_past_its_edge():
    """Counts in the millions (24 samples of 2048 x 2048) and the last tick "256": every text's
    extent, at the widest a 10 px font draws it, lies inside its chart (before, the "256" under
    the right end of every intensity chart was cut off)."""
    from dicomprep.report import plots

    counts = np.full(256, 400_000, np.int64)
    counts[128] = 98_000_000
    charts = [
        plots.intensity_chart("MG", counts, 24),
        plots.crop_fraction_chart(np.linspace(0, 1, 2_000), 1_500_000),
        plots.size_chart([("3328 × 4096", 1_234_567), ("11 other sizes", 42)]),
    ]
    for chart in charts:
        assert plots.outside(chart) == [], chart.id
        ends = [plots.text_box(t) for t in chart.texts]
        assert min(b[0] for b in ends) >= 0 and max(b[2] for b in ends) <= chart.width
