"""Invalid geometry never passes as right, and no output grows without bound.

Pixel Spacing, Image Orientation (Patient) and Image Position (Patient) are validated once
(formats/geometry_tags.py) for single files, stack formation and volume writing; the size
of an output is worked out from the header and the options before anything is decoded and
refused beyond max_upsampling, max_output_pixels and max_output_bytes (docs/limits.md).
Fixtures are tiny synthetic CT slices written by the tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import tifffile
from dicomprep_testdata import synthetic

from dicomprep.cli import preprocess_main
from dicomprep.formats.geometry_tags import (
    geometry_problem,
    orientation_problem,
    position_problem,
    spacing_problem,
)
from dicomprep.formats.tiff import read_info
from dicomprep.options import Options
from dicomprep.pipeline import process_file
from dicomprep.run.guards import OWNER_MARKER
from dicomprep.run.local import WORK_FOLDER
from dicomprep.series.stacks import form_stacks, stack_facts
from dicomprep.series.volume_file import process_stack

from .workflow_helpers import snakemake

# Pixel Spacing values that are not two numbers > 0, and how the message shows them.
BAD_SPACINGS = [
    ([0, 0.5], "[0, 0.5]"),
    ([-0.5, -0.5], "[-0.5, -0.5]"),
    (["nan", 0.5], "[nan, 0.5]"),
    ([0.5, 0.5, 7], "[0.5, 0.5, 7]"),
]


def ct_series(folder: Path, name: str, positions, *, size=8, edit=None) -> list[Path]:
    """Axial CT slices of ``size`` x ``size`` at z = ``positions`` (mm), one series;
    ``edit(ds)`` changes each slice's header before it is written."""
    study, series = synthetic.derived_uid("study", name), synthetic.derived_uid("series", name)
    paths = []
    for k, z in enumerate(positions):
        ds = synthetic.ct_slice(
            rows=size, columns=size, index=k, study_uid=study, series_uid=series
        )
        ds.ImagePositionPatient = [0, 0, z]
        if edit is not None:
            edit(ds)
        paths.append(synthetic.write(ds, folder / f"{name}{k}.dcm"))
    return paths


def setting(keyword: str, value):
    return lambda ds: setattr(ds, keyword, value)


def outputs(root: Path) -> list[str]:
    """Every file under ``root`` but the run's tables and state (its work folder and the
    ownership marker): TIFFs, volumes, temporaries."""
    tables = {"failures.csv", "series_report.csv", "slices.csv", "slices.parquet"}
    state = {WORK_FOLDER, OWNER_MARKER}
    return sorted(
        str(p)
        for p in root.rglob("*")
        if p.is_file() and p.name not in tables and not state & set(p.relative_to(root).parts)
    )


def run_cli(source: Path, out: Path, *args: str) -> tuple[int, pd.DataFrame, pd.DataFrame]:
    code = preprocess_main([str(source), str(out), "-j", "1", *args])
    failures = pd.read_csv(out / "failures.csv", keep_default_na=False)
    report_path = out / "series_report.csv"
    report = pd.read_csv(report_path, keep_default_na=False) if report_path.exists() else None
    return code, failures, report


# -- the rules --------------------------------------------------------------------------------


def test_each_geometry_element_has_one_rule_naming_the_value():
    assert spacing_problem((0.7, 0.7)) is None and spacing_problem(None) is None
    assert (
        spacing_problem((0.0, 0.5))
        == "Pixel Spacing is [0, 0.5]: expected two numbers > 0 (from 1e-06 to 1e+06 mm)"
    )
    assert "Imager Pixel Spacing is [inf, 1]" in spacing_problem(
        (np.inf, 1), "Imager Pixel Spacing"
    )
    assert orientation_problem((1, 0, 0, 0, 1, 0)) is None
    # within the documented tolerance of 1e-3: a cosine rounded to 4 digits is valid
    assert orientation_problem((0.7071, 0.7071, 0, 0, 0, 1)) is None
    assert "length 0" in orientation_problem((0,) * 6)
    assert "length 1.00499" in orientation_problem((1, 0, 0, 0.1, 1, 0))
    assert "not orthogonal (dot product 0.7071" in orientation_problem((1, 0, 0, 0.7071, 0.7071, 0))
    assert "expected six finite numbers" in orientation_problem((1, 0, 0, 0, 1, np.nan))
    assert position_problem((0, 0, 1.5)) is None
    assert position_problem((0, np.nan, 1)) == (
        "Image Position (Patient) is [0, nan, 1]: expected three finite numbers"
    )
    assert "is [1, 2]:" in position_problem((1, 2))
    error_type, _ = geometry_problem((1, 0, 0, 0, 1, 0), (1, 2), None)
    assert error_type == "InvalidPosition"


# -- Pixel Spacing ----------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "shown"), BAD_SPACINGS)
def test_an_invalid_pixel_spacing_fails_a_stacked_series_saying_why(tmp_path, value, shown):
    paths = ct_series(tmp_path / "in", "ps", [0, 2.5, 5], edit=setting("PixelSpacing", value))
    out = tmp_path / "out"
    code, failures, report = run_cli(tmp_path / "in", out, "--series", "stack")
    assert code == 1
    assert outputs(out) == []  # no stack without geometry
    assert sorted(failures["path"]) == sorted(str(p) for p in paths)
    assert set(failures["error_type"]) == {"InvalidPixelSpacing"}
    assert all(f"Pixel Spacing is {shown}: expected two numbers > 0" in m for m in failures.message)
    assert report["kind"].tolist() == ["invalid-geometry"]
    assert f"Pixel Spacing is {shown}" in report["message"][0]
    assert len(report["paths"][0].split()) == 3


@pytest.mark.parametrize(("value", "shown"), BAD_SPACINGS)
def test_with_spacing_an_invalid_pixel_spacing_is_named_not_missing(tmp_path, value, shown):
    [path] = ct_series(tmp_path, "one", [0], edit=setting("PixelSpacing", value))
    result = process_file(path, tmp_path / "out", Options(spacing=(0.5, 0.5)))
    assert (result.status, result.error_type) == ("failed", "InvalidPixelSpacing")
    assert (
        result.message == f"spacing is set and Pixel Spacing is {shown}: "
        "expected two numbers > 0 (from 1e-06 to 1e+06 mm)"
    )


def test_with_spacing_a_file_without_any_spacing_still_says_so(tmp_path):
    [path] = ct_series(tmp_path, "none", [0], edit=lambda ds: delattr(ds, "PixelSpacing"))
    result = process_file(path, tmp_path / "out", Options(spacing=(0.5, 0.5)))
    assert result.error_type == "NoPixelSpacing"


@pytest.mark.parametrize(("value", "shown"), BAD_SPACINGS)
def test_without_spacing_a_2d_file_converts_without_a_wrong_resolution(tmp_path, value, shown):
    """The spacing is not needed, so the file converts; but the TIFF carries no resolution
    (a third value used to be dropped and the first two written as if right)."""
    [path] = ct_series(tmp_path, "flat", [0], edit=setting("PixelSpacing", value))
    result = process_file(path, tmp_path / "out", Options())
    assert result.status == "ok", result.message
    assert read_info(result.output).resolution is None
    [good] = ct_series(tmp_path, "good", [0])
    assert read_info(process_file(good, tmp_path / "out", Options()).output).resolution == (
        pytest.approx((10 / 0.7, 10 / 0.7))
    )


# -- orientation and position -----------------------------------------------------------------


def test_a_zero_orientation_is_one_failure_naming_it_not_duplicate_positions(tmp_path):
    paths = ct_series(
        tmp_path / "in", "zero", [0, 2.5, 5], edit=setting("ImageOrientationPatient", [0] * 6)
    )
    out = tmp_path / "out"
    code, failures, report = run_cli(tmp_path / "in", out, "--series", "stack")
    assert code == 1 and outputs(out) == []
    assert sorted(failures["path"]) == sorted(str(p) for p in paths)
    assert set(failures["status"]) == {"failed"}  # not "duplicate"
    assert set(failures["error_type"]) == {"InvalidOrientation"}
    assert report["kind"].tolist() == ["invalid-geometry"]  # no duplicate-position rows
    assert "Image Orientation (Patient) is [0, 0, 0, 0, 0, 0]" in report["message"][0]


@pytest.mark.parametrize(
    ("keyword", "value", "error_type", "words"),
    [
        (
            "ImageOrientationPatient",
            [1, 0, 0, 0.7071, 0.7071, 0],
            "InvalidOrientation",
            "orthogonal",
        ),
        ("ImageOrientationPatient", [2, 0, 0, 0, 1, 0], "InvalidOrientation", "length 2"),
        ("ImageOrientationPatient", [1, 0, 0, 0, 1, "nan"], "InvalidOrientation", "six finite"),
        ("ImagePositionPatient", [0, "nan", 0], "InvalidPosition", "[0, nan, 0]"),
        ("ImagePositionPatient", [0, 0], "InvalidPosition", "[0, 0]"),
    ],
)
def test_invalid_orientation_or_position_is_kept_apart_and_fails(
    tmp_path, keyword, value, error_type, words
):
    """The stacks formed from the headers keep the bad slice out of the good ones; its
    own stack fails with the element's error type, and so does a volume written from it."""
    good = ct_series(tmp_path, "mix", [0, 2.5, 5])
    [bad] = ct_series(tmp_path, "mixbad", [7.5], edit=setting(keyword, value))
    bad_ds = pydicom.dcmread(bad)
    bad_ds.SeriesInstanceUID = pydicom.dcmread(good[0]).SeriesInstanceUID
    bad_ds.save_as(bad)
    facts = []
    for path in [*good, bad]:
        facts.append(
            {**stack_facts(pydicom.dcmread(path, stop_before_pixels=True)), "path": str(path)}
        )
    stacks, records = form_stacks(facts)
    assert [s.paths for s in stacks] == [tuple(str(p) for p in good), (str(bad),)]
    assert [s.error_type for s in stacks] == ["", error_type]
    assert [r.kind for r in records] == ["invalid-geometry"] and words in records[0].message
    result = process_stack(stacks[1].paths, tmp_path / "bad.tiff", Options())
    assert (result.status, result.error_type) == ("failed", error_type)
    result = process_stack([*good, bad], tmp_path / "all.tiff", Options())  # written anyway
    assert (result.error_type, result.sources) == (error_type, [str(p) for p in [*good, bad]])
    assert not (tmp_path / "all.tiff").exists()
    assert process_stack(good, tmp_path / "good.tiff", Options()).status == "ok"


# -- output-size limits -----------------------------------------------------------------------


def test_slices_far_apart_resampled_every_millimetre_are_refused_until_allowed(tmp_path):
    """z = 0, 30000, 60000 mm with sz = 1 mm: 60,001 pages.  Refused for the z axis's
    upsampling, then for bytes when that is allowed; a series a tenth as long (6,001
    pages, to keep the test fast) is written when both limits allow it."""
    ct_series(tmp_path / "far", "far", [0, 30000, 60000])
    args = ["--series", "stack", "--spacing", "0.7,0.7,1"]
    code, failures, _ = run_cli(tmp_path / "far", tmp_path / "a", *args)
    assert code == 1 and outputs(tmp_path / "a") == []
    assert set(failures["error_type"]) == {"UpsamplingTooLarge"} and len(failures) == 3
    assert "z axis 2e+04 times, more than max_upsampling = 16" in failures["message"][0]
    args += ["--max-upsampling", "100000", "--max-output-bytes"]
    code, failures, _ = run_cli(tmp_path / "far", tmp_path / "b", *args, "7000000")
    assert code == 1 and outputs(tmp_path / "b") == []
    assert set(failures["error_type"]) == {"OutputTooLarge"}
    assert (
        "8 x 8 x 60001 pages x 1 channel = 7,680,128 bytes uncompressed, more than "
        "max_output_bytes = 7,000,000 (raise max_output_bytes, --max-output-bytes"
    ) in failures["message"][0]
    ct_series(tmp_path / "near", "near", [0, 3000, 6000])
    code, failures, _ = run_cli(tmp_path / "near", tmp_path / "c", *args, "7000000")
    assert code == 0 and failures.empty
    [volume] = outputs(tmp_path / "c")
    assert len(tifffile.TiffFile(volume).pages) == 6001


def test_ten_thousand_small_frames_are_refused_before_anything_is_written(tmp_path):
    """10,000 frames of 32 x 32 to the workflow's size [512, 640]: 3.3e9 samples."""
    ds = synthetic.mammogram(rows=32, columns=32, bits_stored=8, seed=3)
    frame = np.frombuffer(ds.PixelData, dtype=np.uint8 if ds.BitsAllocated == 8 else np.uint16)
    ds.NumberOfFrames = 10_000
    ds.PixelData = np.tile(frame, 10_000).tobytes()
    source = synthetic.write(ds, tmp_path / "in" / "cine.dcm")
    out = tmp_path / "out"
    code, failures, _ = run_cli(source.parent, out, "-c", "-m", "-s", "512,640")
    assert code == 1
    assert outputs(out) == []  # no TIFF, no temporary
    [row] = failures.to_dict("records")
    assert row["error_type"] == "OutputTooLarge"
    assert "512 x 640 x 10000 pages x 1 channel = 3,276,800,000 samples" in row["message"]
    assert "max_output_pixels = 2,147,483,648 (raise max_output_pixels" in row["message"]


_MEASURED_RUN = """
import json, resource, subprocess, sys
resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, resource.getrlimit(resource.RLIMIT_AS)[1]))
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({"code": proc.returncode, "peak": peak, "stderr": proc.stderr[-2000:]}))
"""


def test_a_huge_pixel_spacing_is_refused_in_bounded_memory_and_the_rest_converts(tmp_path):
    """A stacked series whose Pixel Spacing is 1000 mm resampled to 0.5 mm (2000 times
    larger) is refused before anything is allocated, in a worker process; three good files
    of the same run are written.  Peak memory is measured in a child process (with an
    address-space limit as a safety net)."""
    ct_series(
        tmp_path / "in", "huge", [0, 2.5, 5], size=64, edit=setting("PixelSpacing", [1000, 1000])
    )
    good = [ct_series(tmp_path / "in", f"good{k}", [0])[0] for k in range(3)]
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-c",
        "from dicomprep.cli import preprocess_main; raise SystemExit(preprocess_main())",
    ]
    command += [
        str(tmp_path / "in"),
        str(out),
        "--series",
        "stack",
        "--spacing",
        "0.5,0.5",
        "-j",
        "1",
    ]
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURED_RUN, *command], capture_output=True, text=True, check=True
    )
    measured = json.loads(proc.stdout)
    assert measured["code"] == 1, measured["stderr"]
    assert measured["peak"] < 2**30, measured
    failures = pd.read_csv(out / "failures.csv")
    assert set(failures["error_type"]) == {"UpsamplingTooLarge"} and len(failures) == 3
    assert "x axis 2000 times" in failures["message"][0]
    written = outputs(out)
    assert len(written) == 3 and all(w.endswith(".tiff") for w in written)
    assert {Path(w).stem for w in written} == {pydicom.dcmread(p).SOPInstanceUID for p in good}


# -- the workflow ---------------------------------------------------------------------------


@pytest.mark.slow
def test_the_workflow_fails_invalid_geometry_and_retries_a_refusal_when_the_limit_is_raised(
    tmp_path,
):
    source = tmp_path / "src"
    spacing_bad = ct_series(source, "wps", [0, 2.5, 5], edit=setting("PixelSpacing", [0, 0.5]))
    zero = ct_series(source, "wzero", [0, 2.5, 5], edit=setting("ImageOrientationPatient", [0] * 6))
    far = ct_series(source, "wfar", [0, 3000, 6000])
    good = ct_series(source, "wgood", [0, 2.5, 5])
    config = {
        "source": source,
        "output": tmp_path / "out",
        "work": tmp_path / "work",
        "series": "stack",
        "size": None,
        "spacing": [0.7, 0.7, 1.0],
        "voi": "none",
    }
    snakemake(tmp_path, config=config)
    failures = pd.read_csv(tmp_path / "out" / "failures.csv").set_index("path")["error_type"]
    assert {p: failures[str(p)] for p in spacing_bad} == dict.fromkeys(
        spacing_bad, "InvalidPixelSpacing"
    )
    assert {p: failures[str(p)] for p in zero} == dict.fromkeys(zero, "InvalidOrientation")
    assert {p: failures[str(p)] for p in far} == dict.fromkeys(far, "UpsamplingTooLarge")
    assert not any(str(p) in failures.index for p in good)
    report = pd.read_csv(tmp_path / "out" / "series_report.csv")
    assert report["kind"].value_counts().to_dict() == {"invalid-geometry": 2}
    volumes = sorted((tmp_path / "out").rglob("*.tiff"))
    assert len(volumes) == 1 and len(tifffile.TiffFile(volumes[0]).pages) == 6
    before = volumes[0].stat().st_mtime_ns

    snakemake(tmp_path, config={**config, "max_upsampling": 10000})
    failures = pd.read_csv(tmp_path / "out" / "failures.csv")
    assert not failures["path"].isin([str(p) for p in far]).any()
    volumes = {len(tifffile.TiffFile(v).pages): v for v in (tmp_path / "out").rglob("*.tiff")}
    assert sorted(volumes) == [6, 6001]
    assert volumes[6].stat().st_mtime_ns == before  # a limit is not part of the fingerprint
