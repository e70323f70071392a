"""Bounded decoding: a compressed frame whose own header claims a larger image than Rows and
Columns is refused before any decoder allocates it, and the frame-size limits refuse files
before decoding (docs/limits.md, "Decoding limits").

Each hostile file is built here: a 64 x 64 codestream whose SOF / SOF55 / SIZ is patched to
claim 65535 x 65535 or 60000 x 60000, RLE frames with hand-built segment tables.  Peak
memory is measured in a fresh process (``ru_maxrss``), with an address-space limit of
3 GiB as a safety net and a time limit, so that a regression fails instead of hanging.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import imagecodecs
import numpy as np
import pandas as pd
import pydicom
import pytest
from dicomprep_testdata import synthetic
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate

from dicomprep.formats.decode import image_info, iter_frames, read_header
from dicomprep.options import Options
from dicomprep.pipeline import process_file

BIN = Path(sys.executable).parent
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEGLS = "1.2.840.10008.1.2.4.80"
J2K = "1.2.840.10008.1.2.4.90"
HTJ2K = "1.2.840.10008.1.2.4.201"
RLE = "1.2.840.10008.1.2.5"
PEAK_LIMIT_KB = 2**20  # 1 GiB
# Runs a command with a 3 GiB address-space limit and prints its exit code and the peak
# resident memory of it and its children (their ru_maxrss, in KiB).
MEASURE = """
import json, resource, subprocess, sys
limit = 3 << 30
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=120)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"rc": proc.returncode, "peak_kb": peak, "out": proc.stdout[-4000:],
                  "err": proc.stderr[-4000:]}))
"""
PROCESS_FILE = """
import json, sys
from dicomprep.pipeline import process_file
print(json.dumps(process_file(sys.argv[1], output_path=sys.argv[2]).to_dict()))
"""


# -- hostile files --------------------------------------------------------------------------


def _dataset(rows: int = 64, columns: int = 64, bits: int = 8):
    ds = synthetic.mammogram(rows=rows, columns=columns, bits_stored=min(bits, 12), label=False)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    return ds


def _write(path: Path, frames: list[bytes], syntax: str, ds=None) -> Path:
    ds = ds if ds is not None else _dataset()
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = syntax
    ds.NumberOfFrames = len(frames)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _patch_sof(data: bytes, marker: bytes, width: int, height: int) -> bytes:
    """``data`` with the frame marker's Y and X set to ``height`` and ``width``."""
    i = data.index(marker)
    return data[: i + 5] + struct.pack(">HH", height, width) + data[i + 9 :]


def _patch_siz(data: bytes, width: int, height: int) -> bytes:
    """``data`` with SIZ's Xsiz/Ysiz and one tile of the whole (claimed) image."""
    i = data.index(b"\xff\x51")
    size = struct.pack(">II", width, height)
    return data[: i + 6] + size + data[i + 14 : i + 22] + size + data[i + 30 :]


def _rle_frame(segments: list[bytes], count: int | None = None) -> bytes:
    offsets, position = [], 64
    for segment in segments:
        offsets.append(position)
        position += len(segment)
    count = len(segments) if count is None else count
    table = struct.pack("<16I", count, *offsets, *[0] * (15 - len(offsets)))
    return table + b"".join(segments)


def _run(segment_bytes: int, value: int = 7) -> bytes:
    """An RLE segment of replicate runs (2 bytes each, 128 decoded bytes)."""
    return bytes([0x81, value]) * (segment_bytes // 2)


IMAGE = np.full((64, 64), 9, np.uint8)
BOMBS = {
    "jpeg": lambda p: _write(
        p, [_patch_sof(imagecodecs.jpeg8_encode(IMAGE), b"\xff\xc0", 65535, 65535)], JPEG_BASELINE
    ),
    "jpegls": lambda p: _write(
        p, [_patch_sof(imagecodecs.jpegls_encode(IMAGE), b"\xff\xf7", 65535, 65535)], JPEGLS
    ),
    "jpeg2000": lambda p: _write(
        p,
        [_patch_siz(imagecodecs.jpeg2k_encode(IMAGE, level=0, codecformat="j2k"), 60000, 60000)],
        J2K,
    ),
    "htj2k": lambda p: _write(
        p, [_patch_siz(imagecodecs.htj2k_encode(IMAGE), 60000, 60000)], HTJ2K
    ),
    # 64 x 64 x 8 bits needs 1 segment: the table names 3 (pylibjpeg-rle decodes 3 planes)
    "rle": lambda p: _write(p, [_rle_frame([_run(64)] * 3)], RLE),
}
MESSAGES = {
    "jpeg": "frame 0's JPEG codestream (SOF0) is 65535 x 65535 (width x height), but "
    "Columns x Rows is 64 x 64",
    "jpegls": "frame 0's JPEG-LS codestream (SOF55) is 65535 x 65535 (width x height), but "
    "Columns x Rows is 64 x 64",
    "jpeg2000": "frame 0's JPEG 2000 codestream (SIZ) is 60000 x 60000 (width x height), but "
    "Columns x Rows is 64 x 64",
    "htj2k": "frame 0's HTJ2K codestream (SIZ) is 60000 x 60000 (width x height), but "
    "Columns x Rows is 64 x 64",
    "rle": "frame 0's RLE segment table holds 3 segments, but Samples per Pixel x bytes per "
    "sample is 1 x 1 = 1",
}


def _measured(*command) -> tuple[dict, int]:
    """(what ``command`` printed as JSON, its peak resident memory in KiB)."""
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, *map(str, command)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    measured = json.loads(proc.stdout)
    return measured, measured["peak_kb"]


# -- the codestream's own header ----------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(BOMBS))
def test_a_codestream_claiming_a_larger_image_is_one_decode_failure(kind, tmp_path):
    path = BOMBS[kind](tmp_path / f"{kind}.dcm")
    result = process_file(path, output_path=tmp_path / "out.tiff")
    assert (result.status, result.stage, result.error_type) == (
        "failed",
        "decode",
        "CodestreamMismatch",
    )
    assert result.message == MESSAGES[kind]
    assert not (tmp_path / "out.tiff").exists()


@pytest.mark.parametrize("kind", sorted(BOMBS))
def test_the_command_line_reports_one_failure_line_within_bounded_memory(kind, tmp_path):
    BOMBS[kind](tmp_path / "source" / f"{kind}.dcm")
    measured, peak = _measured(
        BIN / "dicom-preprocess", "-j", "1", tmp_path / "source", tmp_path / "out"
    )
    failures = pd.read_csv(tmp_path / "out" / "failures.csv")
    assert len(failures) == 1, measured
    row = failures.iloc[0]
    assert (row["stage"], row["error_type"], row["message"]) == (
        "decode",
        "CodestreamMismatch",
        MESSAGES[kind],
    )
    assert peak < PEAK_LIMIT_KB, f"peak {peak / 2**10:.0f} MiB"


@pytest.mark.parametrize("kind", sorted(BOMBS))
def test_a_worker_converting_a_bomb_stays_under_a_gibibyte(kind, tmp_path):
    path = BOMBS[kind](tmp_path / f"{kind}.dcm")
    measured, peak = _measured(sys.executable, "-c", PROCESS_FILE, path, tmp_path / "o.tiff")
    result = json.loads(measured["out"])
    assert result["error_type"] == "CodestreamMismatch", measured
    assert peak < PEAK_LIMIT_KB, f"peak {peak / 2**10:.0f} MiB"


def test_a_later_frame_is_checked_too(tmp_path):
    good = imagecodecs.jpegls_encode(IMAGE)
    path = _write(tmp_path / "f.dcm", [good, good, _patch_sof(good, b"\xff\xf7", 4096, 64)], JPEGLS)
    result = process_file(path, output_path=tmp_path / "o.tiff")
    assert result.error_type == "CodestreamMismatch"
    assert result.message.startswith("frame 2's JPEG-LS codestream (SOF55) is 4096 x 64")


def test_a_frame_without_a_readable_header_is_a_corrupt_codestream(tmp_path):
    path = _write(tmp_path / "f.dcm", [b"\x00" * 200], JPEG_BASELINE)
    result = process_file(path, output_path=tmp_path / "o.tiff")
    assert (result.stage, result.error_type) == ("decode", "CorruptCodestream")
    assert result.message.startswith("frame 0's JPEG codestream header cannot be read")


def test_an_rle_segment_outside_its_frame_is_a_corrupt_codestream(tmp_path):
    frame = bytearray(_rle_frame([_run(64)]))
    frame[4:8] = struct.pack("<I", 10_000)  # the segment starts past the frame's end
    path = _write(tmp_path / "f.dcm", [bytes(frame)], RLE)
    result = process_file(path, output_path=tmp_path / "o.tiff")
    assert (result.stage, result.error_type) == ("decode", "CorruptCodestream")
    assert "segment 0 starts at byte 10000, outside the frame's 128 bytes" in result.message


def test_an_rle_segment_decoding_past_rows_x_columns_fails_within_bounded_memory(tmp_path):
    # 16 bits: two segments; the first decodes to 1 GiB (16 MiB of runs), the second is
    # short.  pylibjpeg-rle panics (a BaseException, which ended the worker), and pydicom's
    # own RLE decoder would decode the first segment whole before failing.
    ds = _dataset(bits=16)
    frame = _rle_frame([_run(16 * 2**20), _run(64)])
    path = _write(tmp_path / "f.dcm", [frame], RLE, ds)
    measured, peak = _measured(sys.executable, "-c", PROCESS_FILE, path, tmp_path / "o.tiff")
    result = json.loads(measured["out"])
    assert (result["stage"], result["error_type"]) == ("decode", "CorruptCodestream"), measured
    assert result["message"].startswith("frame 0's codestream cannot be decoded: it is corrupt")
    assert peak < 256 * 2**10, f"peak {peak / 2**10:.0f} MiB"  # the file is 16 MiB


def test_an_rle_header_of_65535_x_65535_is_refused_before_decoding(tmp_path):
    ds = _dataset(rows=64, columns=64)
    ds.Rows = ds.Columns = 65535
    path = _write(tmp_path / "rle.dcm", [_rle_frame([_run(64)])], RLE, ds)
    measured, peak = _measured(sys.executable, "-c", PROCESS_FILE, path, tmp_path / "o.tiff")
    result = json.loads(measured["out"])
    assert (result["stage"], result["error_type"]) == ("decode", "FrameTooLarge"), measured
    assert "max_frame_pixels" in result["message"]
    assert peak < PEAK_LIMIT_KB


# -- frame limits ------------------------------------------------------------------------


def _three_frames(tmp_path) -> Path:
    good = imagecodecs.jpegls_encode(IMAGE)
    return _write(tmp_path / "three.dcm", [good] * 3, JPEGLS)


def test_frames_over_max_frame_pixels_are_refused_and_converted_when_it_is_raised(tmp_path):
    path = _three_frames(tmp_path)
    refused = process_file(
        path, output_path=tmp_path / "a.tiff", options=Options(max_frame_pixels=4095)
    )
    assert (refused.stage, refused.error_type) == ("decode", "FrameTooLarge")
    assert refused.message == (
        "Rows x Columns is 64 x 64 = 4,096 pixels per frame, more than max_frame_pixels (4,095)"
    )
    converted = process_file(
        path, output_path=tmp_path / "b.tiff", options=Options(max_frame_pixels=4096)
    )
    assert (converted.status, converted.num_frames) == ("ok", 3)


def test_more_frames_than_max_frames_are_refused_and_converted_when_it_is_raised(tmp_path):
    path = _three_frames(tmp_path)
    refused = process_file(path, output_path=tmp_path / "a.tiff", options=Options(max_frames=2))
    assert (refused.stage, refused.error_type) == ("decode", "TooManyFrames")
    assert refused.message == "Number of Frames is 3, more than max_frames (2)"
    converted = process_file(path, output_path=tmp_path / "b.tiff", options=Options(max_frames=3))
    assert (converted.status, converted.num_frames) == ("ok", 3)


def test_the_limits_are_flags_and_leave_the_fingerprint_alone(tmp_path):
    path = _three_frames(tmp_path)
    out = tmp_path / "out.tiff"
    proc = subprocess.run(
        [BIN / "dicom-preprocess", "--max-frames", "2", path, out], capture_output=True, text=True
    )
    assert proc.returncode != 0 and "max_frames" in proc.stdout + proc.stderr
    assert Options(max_frames=2, max_frame_pixels=10).fingerprint() == Options().fingerprint()


# -- real files --------------------------------------------------------------------------


REAL = [
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline, YBR
    "SC_jpeg_no_color_transform.dcm",
    "JPGLosslessP14SV1_1s_1f_8b.dcm",  # lossless JPEG
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS
    "JPEGLSNearLossless_16.dcm",
    "JPEG2000.dcm",
    "US1_J2KR.dcm",  # JPEG 2000, RGB
    "emri_small_jpeg_2k_lossless.dcm",  # 10 frames
    "MR_small_RLE.dcm",
    "emri_small_RLE.dcm",  # 10 frames
    "SC_rgb_rle_16bit.dcm",
]


@pytest.mark.parametrize("name", REAL)
def test_real_compressed_files_decode_to_pydicoms_values(name):
    path = get_testdata_file(name)
    ds, _ = read_header(path)
    info = image_info(ds)
    frames = np.stack(list(iter_frames(path, ds, range(info.num_frames), info)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = pydicom.dcmread(path).pixel_array
    assert np.array_equal(frames.reshape(expected.shape), expected)
