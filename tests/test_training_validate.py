"""dicom-validate gives each file the run's verdict: ok (an output, or a duplicate of one),
skipped or blocker, with the error type and message failures.csv holds."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import imagecodecs
import numpy as np
import pandas as pd
import pytest
import yaml
from dicomprep_testdata import synthetic
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate

from dicomprep.cli import preprocess_main
from dicomprep.options import Options
from dicomprep.training.validate import main, parser, validate_file

from .golden import copy_bundled_files
from .workflow_helpers import REPO, snakemake

# The workflow's default processing options (config.yaml) as dicom-preprocess flags.
WORKFLOW_FLAGS = ["-c", "-m", "-s", "512,640"]
VERDICT_OF_STATUS = {"skipped": "skipped", "duplicate": "ok", "failed": "blocker"}
JPEGLS_NEAR_LOSSLESS = "1.2.840.10008.1.2.4.81"


def data(name: str) -> str:
    path = get_testdata_file(name)
    assert path is not None, f"test file {name} is not installed"
    return path


def run_json(*args: str) -> tuple[int, list[dict]]:
    """dicom-validate's exit status and JSON report."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main([*args, "--format", "json"])
    return status, json.loads(out.getvalue())


def verdict_table(report: list[dict]) -> dict[str, tuple[str, str, str]]:
    """{path: (verdict, error type, message)} of a JSON report."""
    return {r["path"]: (r["verdict"], r["error_type"], r["message"]) for r in report}


def run_table(failures_csv: Path, converted: list[str]) -> dict[str, tuple[str, str, str]]:
    """The same table from a run: ``converted`` files (an output) are ok, failures.csv's
    rows by their status (a duplicate is ok)."""
    table = {path: ("ok", "", "") for path in converted}
    failures = pd.read_csv(failures_csv, dtype=str, keep_default_na=False)
    for r in failures.itertuples(index=False):
        table[r.path] = (VERDICT_OF_STATUS[r.status], r.error_type, r.message)
    return table


def files_under(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if p.is_file())


# -- (a) every bundled pydicom / pydicom-data file, against one workflow run -----------------


@pytest.fixture(scope="module")
def bundled_run(tmp_path_factory):
    """One workflow run with default options over every bundled file, and the report of
    dicom-validate with the same options on the same folder."""
    tmp = tmp_path_factory.mktemp("bundled")
    source = tmp / "source"
    count = copy_bundled_files(source)
    config = {"source": source, "output": tmp / "out", "work": tmp / "work"}
    snakemake(tmp, config=config)
    manifest = pd.read_csv(tmp / "out" / "manifest.csv", dtype=str, keep_default_na=False)
    run = run_table(tmp / "out" / "failures.csv", [str(source / s) for s in manifest.source])
    status, report = run_json(str(source), *WORKFLOW_FLAGS, "-j", "2")
    return source, count, run, status, report


def test_the_flags_are_the_workflow_defaults():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    args = parser().parse_args(["x.dcm", *WORKFLOW_FLAGS])
    from dicomprep.cli import options_from_args

    assert options_from_args(args) == Options.from_mapping(config)


@pytest.mark.slow
def test_every_bundled_file_gets_the_workflow_verdict(bundled_run):
    source, count, run, status, report = bundled_run
    validated = verdict_table(report)
    assert len(validated) == len(report) == count == len(files_under(source)) > 200
    assert set(run) == set(validated) == set(files_under(source))
    assert {p: v for p, v in validated.items() if v != run[p]} == {}
    verdicts = pd.Series([v[0] for v in validated.values()]).value_counts().to_dict()
    assert verdicts["ok"] > 100 and verdicts["skipped"] > 50 and verdicts["blocker"] >= 5
    assert status == 1  # there are blockers
    near = validated[str(source / "pydicom" / "JPEGLSNearLossless_16.dcm")]
    assert near[0] == "blocker" and "StudyInstanceUID" in near[2]  # why the run fails it


@pytest.mark.slow
def test_header_only_agrees_on_everything_found_before_decoding(bundled_run):
    source, _, run, _, _ = bundled_run
    status, report = run_json(str(source), "--header-only")
    header = verdict_table(report)
    differ = {p: (v, run[p]) for p, v in header.items() if v != run[p]}
    # only what decoding finds differs: a file the run fails while decoding is ok here,
    # and the copy converted instead of it a duplicate (of the copy that fails)
    assert differ and all(v[0] == "ok" for v, _ in differ.values())
    failed = [r for _, r in differ.values() if r[0] == "blocker"]
    swapped = [v for v, r in differ.values() if r[0] == "ok"]
    assert failed and all(r[1] not in ("InvalidUID", "MissingUID", "NotDicom") for r in failed)
    assert all(v[1] == "DuplicateSOPInstanceUID" for v in swapped)
    assert len(swapped) <= len(failed)
    assert status == 1


# -- (b) hostile files, against dicom-preprocess on the same folder ----------------------------


def jpegls_near_lossless(path: Path, near: int = 3) -> Path:
    """A synthetic mammogram whose frame is a near-lossless JPEG-LS codestream."""
    ds = synthetic.mammogram(rows=96, columns=64, seed=5)
    frame = ds.pixel_array
    codestream = imagecodecs.jpegls_encode(frame, level=near)
    decoded = imagecodecs.jpegls_decode(codestream)
    assert 0 < np.abs(decoded.astype(int) - frame).max() <= near  # really near-lossless
    ds.PixelData = encapsulate([codestream])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = JPEGLS_NEAR_LOSSLESS
    ds.LossyImageCompression = "01"
    ds.save_as(path, enforce_file_format=True)
    return path


def broken_rle(path: Path) -> Path:
    raw = bytearray(Path(data("MR_small_RLE.dcm")).read_bytes())
    raw[-300:] = b"\x80" * 300  # RLE "no-op" bytes: the last segment comes up short
    path.write_bytes(bytes(raw))
    return path


def build_hostile_folder(folder: Path) -> dict[str, Path]:
    """Files a run fails, skips or converts only in part, and good ones, by name."""
    folder.mkdir(parents=True)
    files = {}
    good = synthetic.write(synthetic.mammogram(rows=96, columns=64, seed=1), folder / "good.dcm")
    files["good"] = good
    files["hostile_uid"] = synthetic.with_uids(
        good, folder / "hostile_uid.dcm", sop_uid="1.2.3/../../evil"
    )
    no_study = synthetic.mammogram(rows=96, columns=64, seed=2)
    del no_study.StudyInstanceUID
    files["no_study"] = synthetic.write(no_study, folder / "no_study.dcm")
    files["jpegls_near"] = jpegls_near_lossless(folder / "jpegls_near.dcm")
    shutil.copy(data("JPEGLSNearLossless_16.dcm"), folder / "bundled_jpegls_near.dcm")
    files["bundled_jpegls_near"] = folder / "bundled_jpegls_near.dcm"
    files["bundled_jpegls_near_with_study"] = synthetic.with_uids(
        files["bundled_jpegls_near"],
        folder / "bundled_jpegls_near_with_study.dcm",
        study_uid="1.2.826.0.1.3680043.8.498.1",
    )
    spare = synthetic.write(synthetic.mammogram(rows=96, columns=64, seed=3), folder / "spare")
    files["truncated"] = synthetic.truncated_copy(spare, folder / "truncated.dcm")
    spare.unlink()
    # a damaged first copy of good.dcm (sorts before it): the good copy is converted instead
    files["damaged_copy"] = synthetic.truncated_copy(good, folder / "a_damaged_copy.dcm")
    shutil.copy(good, folder / "z_copy.dcm")  # a later copy: a duplicate
    files["copy"] = folder / "z_copy.dcm"
    files["empty"] = folder / "empty.dcm"
    files["empty"].write_bytes(b"")
    files["not_dicom"] = folder / "notes.dcm"
    files["not_dicom"].write_text("not an image\n" * 40)
    files["rtplan"] = Path(shutil.copy(data("rtplan.dcm"), folder / "rtplan.dcm"))
    files["broken_rle"] = broken_rle(folder / "broken_rle.dcm")
    no_bits = synthetic.mammogram(rows=96, columns=64, seed=4)
    del no_bits.BitsStored
    del no_bits.HighBit
    files["no_bits_stored"] = synthetic.write(no_bits, folder / "no_bits_stored.dcm")
    return files


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    files = build_hostile_folder(tmp / "source")
    return tmp / "source", files


def test_hostile_files_get_dicom_preprocess_verdicts(hostile, tmp_path):
    source, files = hostile
    out = tmp_path / "out"
    assert preprocess_main([str(source), str(out), "-j", "1"]) == 1
    failures = pd.read_csv(out / "failures.csv", dtype=str, keep_default_na=False)
    converted = [p for p in files_under(source) if p not in set(failures.path)]
    run = run_table(out / "failures.csv", converted)
    assert len(list(out.rglob("*.tiff"))) == sum(v == ("ok", "", "") for v in run.values())

    status, report = run_json(str(source), "-j", "1")
    validated = verdict_table(report)
    assert validated == run
    assert status == 1
    verdict = {name: validated[str(path)] for name, path in files.items()}
    # (no Bits Stored or High Bit: the run reads Bits Allocated, with warnings)
    for name in ("good", "jpegls_near", "bundled_jpegls_near_with_study", "no_bits_stored"):
        assert verdict[name] == ("ok", "", ""), name
    assert verdict["copy"][:2] == ("ok", "DuplicateSOPInstanceUID")
    for name in ("empty", "not_dicom", "rtplan"):
        assert verdict[name][0] == "skipped", name
    for name in (
        "hostile_uid",
        "no_study",
        "bundled_jpegls_near",
        "truncated",
        "damaged_copy",
        "broken_rle",
    ):
        assert verdict[name][0] == "blocker", name
    assert "SOPInstanceUID" in verdict["hostile_uid"][2]
    assert "StudyInstanceUID is missing" in verdict["bundled_jpegls_near"][2]
    assert f"the copy {files['good']} was converted instead" in verdict["damaged_copy"][2]


def test_the_error_vocabulary_and_bomb_files_get_dicom_preprocess_verdicts(tmp_path):
    """Every hostile file tests/test_error_vocabulary.py (with tests/test_reliability.py's)
    and tests/test_codestream_bombs.py build."""
    from .test_codestream_bombs import BOMBS
    from .test_error_vocabulary import every_hostile_builder

    source = tmp_path / "source"
    source.mkdir()
    builders = {**every_hostile_builder(), **{f"bomb_{k}.dcm": b for k, b in BOMBS.items()}}
    for name, build in builders.items():
        build(source / name)
    out = tmp_path / "out"
    preprocess_main([str(source), str(out), "-j", "2"])
    failures = pd.read_csv(out / "failures.csv", dtype=str, keep_default_na=False)
    converted = [p for p in files_under(source) if p not in set(failures.path)]
    status, report = run_json(str(source), "-j", "2")
    validated = verdict_table(report)
    assert validated == run_table(out / "failures.csv", converted)
    assert len(validated) == len(builders) > 30 and status == 1
    for kind in BOMBS:
        assert validated[str(source / f"bomb_{kind}.dcm")][0] == "blocker", kind


def test_text_lines_and_exit_status(hostile, capsys):
    source, files = hostile
    assert main([str(files["good"]), str(files["rtplan"]), str(files["not_dicom"])]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"{files['good']}: ok",
        f"{files['rtplan']}: skipped: NoPixelData: no pixel data (not an image object)",
        f"{files['not_dicom']}: skipped: NotDicom: not a DICOM file",
    ]
    assert main([str(files["good"]), str(files["hostile_uid"])]) == 1
    line = capsys.readouterr().out.splitlines()[1]
    assert line.startswith(f"{files['hostile_uid']}: blocker: InvalidUID: SOPInstanceUID ")
    # not DICOM under --strict: the run refuses it
    assert main([str(files["good"]), str(files["not_dicom"]), "--strict"]) == 1
    assert capsys.readouterr().out.splitlines()[1].startswith(f"{files['not_dicom']}: blocker: ")
    # an input the run refuses (missing, empty): as dicom-preprocess says it, exit status 2
    missing, empty = source.parent / "missing.dcm", source.parent / "empty_folder"
    empty.mkdir(exist_ok=True)
    assert main([str(files["good"]), str(missing), str(empty)]) == 2
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [f"{files['good']}: ok"]
    assert captured.err.splitlines() == [
        f"dicom-validate: source {str(missing)!r} does not exist",
        f"dicom-validate: source {str(empty)!r} holds no files (an empty folder or list); "
        "nothing was converted or removed",
    ]
    # a listed file that is missing: the run fails it (FileNotFound), and it cannot be read
    listing = source.parent / "with_missing.txt"
    listing.write_text(f"{files['good']}\n{missing}\n")
    assert main([str(listing)]) == 2
    assert capsys.readouterr().out.splitlines() == [  # in path order
        f"{missing}: blocker: FileNotFound: No such file or directory",
        f"{files['good']}: ok",
    ]


def test_the_options_decide_the_verdict(tmp_path):
    ds = synthetic.mammogram(rows=96, columns=64, seed=6)
    del ds.PixelSpacing
    del ds.ImagerPixelSpacing
    path = synthetic.write(ds, tmp_path / "no_spacing.dcm")
    assert validate_file(path).verdict == "ok"
    status, report = run_json(str(path), "--spacing", "0.2,0.2")
    out = tmp_path / "out"
    preprocess_main([str(tmp_path), str(out), "--spacing", "0.2,0.2", "-j", "1"])
    run = run_table(out / "failures.csv", [])
    assert status == 1 and verdict_table(report) == {str(path): run[str(path)]}
    assert report[0]["verdict"] == "blocker"


def test_stacks_get_dicom_preprocess_verdicts(tmp_path):
    from .series_helpers import write_series

    source = tmp_path / "series"
    write_series(source, count=5, duplicate_of=2, localizer=True)
    first = sorted(source.rglob("*.dcm"))[0]
    synthetic.truncated_copy(first, first)  # a damaged slice: left out of the volume
    out = tmp_path / "out"
    preprocess_main([str(source), str(out), "--series", "stack", "-j", "1"])
    failures = pd.read_csv(out / "failures.csv", dtype=str, keep_default_na=False)
    converted = [p for p in files_under(source) if p not in set(failures.path)]
    status, report = run_json(str(source), "--series", "stack", "-j", "1")
    validated = verdict_table(report)
    assert validated == run_table(out / "failures.csv", converted)
    assert validated[str(first)][0] == "blocker" and status == 1
    assert sorted(v[1] for v in validated.values() if v[1]) == [
        "DuplicatePosition",
        validated[str(first)][1],
    ]


def test_batches_give_the_same_verdicts_and_leave_no_temporary_folder(
    hostile, tmp_path, monkeypatch
):
    import tempfile

    from dicomprep.training import validate as module

    source, files = hostile
    whole = verdict_table(run_json(str(source), "-j", "1")[1])
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(module, "BATCH_FILES", 2)  # copies of one image stay in one batch
    assert len(list(module.batches(module.catalog_of([str(source)])[0], 2))) > 3
    assert verdict_table(run_json(str(source), "-j", "1")[1]) == whole
    assert whole[str(files["damaged_copy"])][0] == "blocker"
    assert whole[str(files["copy"])][1] == "DuplicateSOPInstanceUID"
    assert list(tmp_path.iterdir()) == []  # every temporary folder is removed


def test_header_only_does_not_decode(hostile):
    _, files = hostile
    broken = str(files["broken_rle"])
    assert validate_file(broken, header_only=True).verdict == "ok"
    assert validate_file(broken).verdict == "blocker"


# -- (c) folders and .txt lists --------------------------------------------------------------


def test_folder_and_list_give_the_per_file_verdicts(hostile, tmp_path):
    source, files = hostile
    listing = source.parent / "inputs.txt"  # relative entries: against the list's folder
    relative = [files[n].relative_to(source.parent) for n in ("good", "rtplan")]
    absolute = [files[n] for n in ("hostile_uid", "truncated")]
    listing.write_text("\n".join(["# to check", *map(str, relative), "", *map(str, absolute)]))
    listed = [str(source.parent / r) for r in relative] + [str(p) for p in absolute]

    singles = {p: validate_file(p) for p in listed}
    status, report = run_json(str(listing), "-j", "1")
    assert [r["path"] for r in report] == sorted(listed)  # in path order, as the run has them
    assert verdict_table(report) == {
        p: (v.verdict, v.error_type, v.message) for p, v in singles.items()
    }
    assert [v.verdict for v in singles.values()] == ["ok", "skipped", "blocker", "blocker"]
    assert status == 1

    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    for name in ("good", "rtplan"):
        shutil.copy(files[name], folder / files[name].name)
    (folder / ".hidden.dcm").write_bytes(b"")  # passed over by the walk, as by the workflow
    status, report = run_json(str(folder))
    assert status == 0  # ok and skipped: nothing blocks
    assert [(r["path"], r["verdict"]) for r in report] == [
        (str(folder / "good.dcm"), "ok"),
        (str(folder / "rtplan.dcm"), "skipped"),
    ]
    shutil.copy(files["hostile_uid"], folder / "sub" / "x.dcm")
    assert run_json(str(folder))[0] == 1  # the worst verdict: a blocker
    assert run_json(str(folder), str(tmp_path / "absent"))[0] == 2


def test_symbolic_links_follow_dicom_preprocess_options(hostile, tmp_path):
    _, files = hostile
    source, outside = tmp_path / "source", tmp_path / "outside"
    (source / "data").mkdir(parents=True)
    outside.mkdir()
    shutil.copy(files["good"], source / "data" / "x.dcm")
    shutil.copy(files["jpegls_near"], outside / "y.dcm")
    (source / "link.dcm").symlink_to(Path("data") / "x.dcm")
    (source / "outside_link.dcm").symlink_to(outside / "y.dcm")
    seen = set()
    for flags in (
        [],
        ["--follow-symlinks"],
        ["--follow-symlinks", "--follow-links-outside-source"],
    ):
        out = tmp_path / f"out{len(flags)}"
        preprocess_main([str(source), str(out), "-j", "1", *flags])
        failures = pd.read_csv(out / "failures.csv", dtype=str, keep_default_na=False)
        converted = [str(source / "data" / "x.dcm")]
        if str(source / "outside_link.dcm") not in set(failures.path):
            converted.append(str(source / "outside_link.dcm"))
        status, report = run_json(str(source), "-j", "1", *flags)
        assert verdict_table(report) == run_table(out / "failures.csv", converted), flags
        assert status == 0
        seen.add(tuple(sorted(verdict_table(report)[str(source / "outside_link.dcm")][:2])))
    assert len(seen) == 3  # each setting gives the link another verdict


def test_warnings_stay_warnings(hostile, tmp_path, capsys):
    ds = synthetic.mammogram(rows=64, columns=48, window=False)
    ds.RescaleSlope = 1  # without its intercept
    if "RescaleIntercept" in ds:
        del ds.RescaleIntercept
    del ds.PixelSpacing
    del ds.ImagerPixelSpacing
    path = synthetic.write(ds, tmp_path / "odd.dcm")
    verdict = validate_file(path)
    assert verdict.verdict == "ok"
    assert {w.error_type for w in verdict.warnings} == {
        "NoWindow",
        "InvalidRescale",
        "NoPixelSpacing",
    }
    # the window matters with voi auto only
    assert "NoWindow" not in {
        w.error_type for w in validate_file(path, Options(voi="none")).warnings
    }
    assert main([str(path), "--warnings"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{path}: ok"
    assert f"{path}: warning: NoPixelSpacing: no Pixel Spacing or Imager Pixel Spacing: " in (
        "\n".join(lines)
    )
    # a header defect the run converts despite: the text of the manifest's warnings column
    no_bits = validate_file(hostile[1]["no_bits_stored"])
    assert no_bits.verdict == "ok"
    assert [(w.error_type, w.message) for w in no_bits.warnings] == [
        ("InvalidImageDescription", "Bits Stored is absent: read as 16"),
        ("InvalidImageDescription", "High Bit is absent: taken as 15"),
    ]


def test_command_line_entry_point_takes_a_folder(hostile):
    source, files = hostile
    command = [sys.executable, "-m", "dicomprep.training.validate", str(source)]
    process = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert process.returncode == 1, process.stderr  # there are blockers
    lines = process.stdout.splitlines()
    assert len(lines) == len(files_under(source)) == len(files)
    assert f"{files['good']}: ok" in lines
