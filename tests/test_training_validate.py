"""dicom-validate: exit 0 for ready files, 1 for blockers, 2 when a file cannot be read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pydicom.data import get_testdata_file

from dicomprep import synthetic
from dicomprep.training.validate import main, validate_file


def data(name: str) -> str:
    path = get_testdata_file(name)
    assert path is not None, f"test file {name} is not installed"
    return path


def codes(path) -> dict[str, str]:
    return {f.code: f.severity for f in validate_file(path).findings}


def run(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "dicomprep.training.validate", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_good_files_exit_zero():
    mr = data("MR_small.dcm")
    process = run(mr, data("MR_small_jp2klossless.dcm"), data("SC_rgb.dcm"))
    assert process.returncode == 0, process.stdout + process.stderr
    assert f"{mr}: ok" in process.stdout.splitlines()


def test_pixel_less_truncated_and_non_dicom_files_exit_one(tmp_path):
    truncated = synthetic.truncated_copy(data("MR_small.dcm"), tmp_path / "short.dcm")
    not_dicom = tmp_path / "notes.txt"
    not_dicom.write_text("not an image\n" * 40)
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    assert codes(data("rtplan.dcm")) == {"no-pixel-data": "error"}
    assert codes(truncated).get("implausible-image") == "error"
    assert codes(not_dicom) == {"not-dicom": "error"}
    assert codes(empty) == {"not-dicom": "error"}
    for path in (data("rtplan.dcm"), truncated, not_dicom):
        process = run(data("MR_small.dcm"), str(path))
        assert process.returncode == 1, (path, process.stdout)
        assert sum(f"{path}: error" in line for line in process.stdout.splitlines()) == 1


def test_compressed_frame_that_does_not_decode_is_a_blocker(tmp_path):
    source = data("MR_small_RLE.dcm")
    raw = bytearray(Path(source).read_bytes())
    raw[-300:] = b"\x80" * 300  # RLE "no-op" bytes: the last segment comes up short
    broken = tmp_path / "broken_rle.dcm"
    broken.write_bytes(bytes(raw))
    assert codes(broken).get("decode-failed") == "error"


def test_missing_attribute_is_a_blocker(tmp_path):
    ds = synthetic.mammogram(rows=64, columns=48)
    del ds.BitsStored
    path = synthetic.write(ds, tmp_path / "no_bits_stored.dcm")
    assert codes(path).get("missing-attribute") == "error"


def test_warnings_do_not_fail(tmp_path):
    ds = synthetic.mammogram(rows=64, columns=48, window=False)
    ds.RescaleSlope = 0
    del ds.PixelSpacing
    del ds.ImagerPixelSpacing
    path = synthetic.write(ds, tmp_path / "odd.dcm")
    found = codes(path)
    assert found == {
        "no-window": "warning",
        "invalid-rescale": "warning",
        "no-spacing": "warning",
    }
    assert main([str(path)]) == 0

    ds = synthetic.mammogram(rows=64, columns=48)
    ds.WindowWidth = 0
    ds.PixelSpacing = [0.1, -1]
    path = synthetic.write(ds, tmp_path / "bad_window.dcm")
    assert codes(path) == {"invalid-window": "warning", "invalid-spacing": "warning"}


def test_missing_file_is_a_runtime_error_and_json_lists_every_file(tmp_path, capsys):
    missing = tmp_path / "missing.dcm"
    assert main([data("CT_small.dcm"), str(missing), "--format", "json"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert [entry["path"] for entry in report] == [data("CT_small.dcm"), str(missing)]
    assert report[0]["valid"] is True
    assert [f["code"] for f in report[0]["findings"]] == ["no-window"]
    assert report[1]["valid"] is False and report[1]["runtime_error"] is True
    assert report[1]["findings"][0]["code"] == "unreadable"
