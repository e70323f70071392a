"""The error vocabulary: every failure names an ErrorType and says in one line, in the file's
terms, what is wrong.

- a data set encoded big endian under Explicit VR Little Endian, and an element whose length
  runs past the end of the file, fail at discovery with TransferSyntaxMismatch and
  TruncatedElement (they were "skipped: no pixel data");
- malformed palettes, Modality LUT and VOI LUT Sequences fail with their own types and a
  message naming the element;
- every hostile file the project knows of, through dicom-preprocess and the workflow, gives
  failures.csv rows whose error_type is in the vocabulary and whose message holds no
  traceback, memory address, bare exception class or NumPy type text;
- docs/errors.md lists exactly the vocabulary.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from dicomprep_testdata import synthetic
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, generate_fragments
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.filewriter import write_file_meta_info

from dicomprep.cli import preprocess_main
from dicomprep.core.errors import (
    DESCRIPTIONS,
    STAGE_DESCRIPTIONS,
    STATUS_DESCRIPTIONS,
    DicomError,
    ErrorType,
    one_line,
)
from dicomprep.formats.decode import read_header
from dicomprep.options import Options
from dicomprep.pipeline import process_file
from dicomprep.series.stacks import form_stacks
from dicomprep.series.volume_file import process_stack

from .reliability_helpers import encode_with_elements
from .series_helpers import write_series
from .test_series_stacks import facts_of
from .workflow_helpers import snakemake

REPO = Path(__file__).resolve().parents[1]
VOCABULARY = {t.value for t in ErrorType}

# -- hostile files, each built from a real or synthetic file ---------------------------------


def _testdata(name: str) -> bytes:
    return Path(get_testdata_file(name)).read_bytes()


def _save(ds: pydicom.Dataset, path: Path) -> None:
    with warnings.catch_warnings(), pydicom.config.disable_value_validation():
        warnings.simplefilter("ignore")
        ds.save_as(path, enforce_file_format=True)


EXPLICIT_LE, IMPLICIT_LE = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"


def lying_transfer_syntax(path: Path, syntax: str = EXPLICIT_LE) -> None:
    """MR_small_bigendian.dcm with only its meta Transfer Syntax UID changed to ``syntax``
    (a little endian one): the big endian data set follows unchanged."""
    data = _testdata("MR_small_bigendian.dcm")
    f = io.BytesIO(data)
    read_preamble(f, force=False)
    meta = _read_file_meta_info(f)
    data_set = data[f.tell() :]
    meta.TransferSyntaxUID = syntax
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, False
    out.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(out, meta, enforce_standard=True)
    path.write_bytes(out.getvalue() + data_set)


def truncated_element(path: Path) -> None:
    """CT_small.dcm whose last element before the pixel data, (0043,104E) FL, says 65520
    bytes: its value runs past the end of the file (and swallows the pixel data)."""
    data = bytearray(_testdata("CT_small.dcm"))
    pixels = data.rfind(b"\xe0\x7f\x10\x00OW")
    element = data.rfind(b"\x43\x00\x4e\x10FL", 0, pixels)
    assert 0 < element < pixels
    data[element + 6 : element + 8] = (0xFFF0).to_bytes(2, "little")
    path.write_bytes(bytes(data))


def short_palette(path: Path) -> None:
    ds = pydicom.dcmread(get_testdata_file("OBXXXX1A.dcm"))
    ds.RedPaletteColorLookupTableData = ds.RedPaletteColorLookupTableData[:6]  # 3 entries
    _save(ds, path)


def zero_bit_palette(path: Path) -> None:
    ds = pydicom.dcmread(get_testdata_file("OBXXXX1A.dcm"))
    entries, first, _ = ds.RedPaletteColorLookupTableDescriptor
    ds.RedPaletteColorLookupTableDescriptor = [entries, first, 0]
    _save(ds, path)


def short_voi_lut(path: Path) -> None:
    ds = pydicom.dcmread(get_testdata_file("vlut_04.dcm"))
    item = ds.VOILUTSequence[0]
    item.LUTData = list(item.LUTData)[:3]
    _save(ds, path)


def short_modality_lut(path: Path) -> None:
    ds = pydicom.dcmread(get_testdata_file("mlut_18.dcm"))
    item = ds.ModalityLUTSequence[0]
    item.LUTData = list(item.LUTData)[:3]
    _save(ds, path)


def _with_first_fragment(name: str, damage) -> callable:
    def build(path: Path) -> None:
        ds = pydicom.dcmread(get_testdata_file(name))
        fragment = bytearray(next(generate_fragments(ds.PixelData)))
        damage(fragment)
        ds.PixelData = encapsulate([bytes(fragment)])
        _save(ds, path)

    return build


def _overwrite_middle(fragment: bytearray) -> None:
    third = len(fragment) // 3
    fragment[third : third + 200] = b"\xff" * 200


def _bad_rle_offset(fragment: bytearray) -> None:
    fragment[4:8] = (10**6).to_bytes(4, "little")  # the first segment starts past the end


corrupt_jpeg2000 = _with_first_fragment("MR_small_jp2klossless.dcm", _overwrite_middle)
corrupt_rle = _with_first_fragment("MR_small_RLE.dcm", _bad_rle_offset)


def deep_sequences(path: Path, depth: int = 3000) -> None:
    """A mammogram with a private sequence nested ``depth`` levels deep (undefined
    lengths), more than any recursive parser follows."""
    data = synthetic.encode(synthetic.mammogram(rows=16, columns=16, seed=3))
    opening = b"\x09\x00\x10\x10SQ\x00\x00\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    closing = b"\xfe\xff\x0d\xe0\0\0\0\0" + b"\xfe\xff\xdd\xe0\0\0\0\0"
    at = data.find(b"\x10\x00\x10\x00")  # (0010,0010): the private group 0009 sorts before
    path.write_bytes(data[:at] + opening * depth + closing * depth + data[at:])


def number_of_frames_not_a_number(path: Path) -> None:
    ds = synthetic.mammogram(rows=16, columns=16, seed=4)
    path.write_bytes(encode_with_elements(ds, {"NumberOfFrames": ("IS", b"x.5z")}))


def ragged_float_pixel_data(path: Path) -> None:
    """Float Pixel Data two bytes short of 16 x 16 samples (not a whole number of them)."""
    ds = synthetic.mammogram(rows=16, columns=16, seed=5)
    for keyword in ("PixelData", "BitsStored", "HighBit", "PixelRepresentation"):
        delattr(ds, keyword)
    ds.BitsAllocated = 32
    ds.FloatPixelData = bytes(16 * 16 * 4 - 2)
    synthetic.write(ds, path)


def nan_float_pixels(path: Path) -> None:
    ds = synthetic.mammogram(rows=16, columns=16, seed=6)
    for keyword in ("PixelData", "BitsStored", "HighBit", "PixelRepresentation"):
        delattr(ds, keyword)
    for keyword in ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth"):
        if keyword in ds:
            delattr(ds, keyword)
    values = np.linspace(0, 1000, 256).astype(np.float32)
    values[7] = np.nan
    ds.BitsAllocated = 32
    ds.FloatPixelData = values.tobytes()
    synthetic.write(ds, path)


def corrupt_deflate_stream(path: Path) -> None:
    """image_dfl.dcm with zeros over the deflate stream just after the file meta."""
    data = bytearray(_testdata("image_dfl.dcm"))
    start = data.find(b"1.2.840.10008.1.2.1.99") + 64
    data[start : start + 64] = bytes(64)
    path.write_bytes(bytes(data))


def deflate_bomb(path: Path) -> None:
    synthetic.deflate_bomb(path, inflated_bytes=40 * 2**20)


def sixty_thousand_frames(path: Path) -> None:
    """60,000 frames of 1 x 1 pixel: more than max_frames, and than a TIFF's 65,535 pages
    would allow were it raised."""
    ds = synthetic.mammogram(rows=16, columns=16, seed=8)
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 1, 8, 8, 7
    ds.NumberOfFrames = 60000
    ds.PixelData = bytes(60000)
    synthetic.write(ds, path)


def missing_sop_uid(path: Path) -> None:
    synthetic.with_uids(synthetic.mammogram(rows=16, columns=16, seed=7), path, sop_uid="")


#: The hostile files of this module: name -> builder.
HOSTILE = {
    "lying_transfer_syntax.dcm": lying_transfer_syntax,
    "truncated_element.dcm": truncated_element,
    "short_palette.dcm": short_palette,
    "zero_bit_palette.dcm": zero_bit_palette,
    "short_voi_lut.dcm": short_voi_lut,
    "short_modality_lut.dcm": short_modality_lut,
    "corrupt_jpeg2000.dcm": corrupt_jpeg2000,
    "corrupt_rle.dcm": corrupt_rle,
    "deep_sequences.dcm": deep_sequences,
    "number_of_frames_not_a_number.dcm": number_of_frames_not_a_number,
    "ragged_float_pixel_data.dcm": ragged_float_pixel_data,
    "nan_float_pixels.dcm": nan_float_pixels,
    "corrupt_deflate_stream.dcm": corrupt_deflate_stream,
    "deflate_bomb.dcm": deflate_bomb,
    "missing_sop_uid.dcm": missing_sop_uid,
    "sixty_thousand_frames.dcm": sixty_thousand_frames,
}


def every_hostile_builder() -> dict:
    """This module's hostile files and the bad inputs of tests/test_reliability.py (those
    that a builder makes), prefixed ``reliability_``."""
    from .test_reliability import BAD_INPUTS

    builders = dict(HOSTILE)
    for name, (build, _expect) in BAD_INPUTS.items():
        if build is not None:
            builders[f"reliability_{name}"] = build
    try:  # the codestreams that claim another image than the header (decompression bombs)
        from .test_codestream_bombs import BOMBS
    except ImportError:
        BOMBS = {}
    for name, build in BOMBS.items():
        builders[f"codestream_bomb_{name}.dcm"] = build
    return builders


# -- (a) the two wrong verdicts --------------------------------------------------------------


@pytest.mark.parametrize(
    ("syntax", "name"),
    [(EXPLICIT_LE, "Explicit VR Little Endian"), (IMPLICIT_LE, "Implicit VR Little Endian")],
)
def test_a_big_endian_data_set_under_a_little_endian_syntax_is_a_mismatch(tmp_path, syntax, name):
    path = tmp_path / "lying.dcm"
    lying_transfer_syntax(path, syntax)
    with pytest.raises(DicomError) as caught:
        read_header(path)
    assert (caught.value.stage, caught.value.error_type) == (
        "discover",
        ErrorType.TRANSFER_SYNTAX_MISMATCH,
    )
    assert f"Transfer Syntax UID {syntax} says {name}" in str(caught.value)
    assert "big endian" in str(caught.value)
    original = process_file(get_testdata_file("MR_small_bigendian.dcm"), tmp_path / "out")
    assert original.status == "ok", original  # the honest big endian file still converts


def test_an_element_longer_than_the_file_is_a_truncated_element(tmp_path):
    path = tmp_path / "cut.dcm"
    truncated_element(path)
    result = process_file(path, tmp_path / "out")
    assert (result.status, result.stage, result.error_type) == (
        "failed",
        "discover",
        "TruncatedElement",
    )
    assert "(0043,104E)" in result.message and "65520" in result.message


def test_the_cli_fails_both_files_with_their_types_and_exit_status_1(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    lying_transfer_syntax(source / "lying.dcm")
    truncated_element(source / "cut.dcm")
    (source / "good.dcm").write_bytes(_testdata("CT_small.dcm"))
    assert preprocess_main([str(source), str(tmp_path / "out"), "-j", "1"]) == 1
    failures = pd.read_csv(tmp_path / "out" / "failures.csv", dtype=str, keep_default_na=False)
    rows = {Path(r.path).name: (r.status, r.stage, r.error_type) for r in failures.itertuples()}
    assert rows == {
        "cut.dcm": ("failed", "discover", "TruncatedElement"),
        "lying.dcm": ("failed", "discover", "TransferSyntaxMismatch"),
    }


def test_a_stack_slice_that_vanished_is_left_out_as_file_not_found(tmp_path):
    written = write_series(tmp_path / "in", count=4, name="vanish")
    (stack,), _ = form_stacks(facts_of(tmp_path / "in"))
    gone = Path(stack.paths[1])
    gone.unlink()
    result = process_stack(stack.paths, tmp_path / "vol.tiff", Options())
    assert result.status == "ok", result.message
    assert [(f["source"], f["stage"], f["error_type"]) for f in result.left_out] == [
        (str(gone), "discover", "FileNotFound")
    ]
    assert len(result.sources) == len(written["paths"]) - 1


# -- (b) lookup tables -----------------------------------------------------------------------

LUT_CASES = {
    "short_palette": (
        short_palette,
        "InvalidPalette",
        "Red Palette Color Lookup Table Descriptor says 256 entries, but the table holds 3",
    ),
    "zero_bit_palette": (
        zero_bit_palette,
        "InvalidPalette",
        "Red Palette Color Lookup Table Descriptor says 0 bits per entry",
    ),
    "short_voi_lut": (
        short_voi_lut,
        "InvalidVOILUT",
        "VOI LUT Sequence LUT Descriptor says 256 entries, but LUT Data holds 3",
    ),
    "short_modality_lut": (
        short_modality_lut,
        "InvalidModalityLUT",
        "Modality LUT Sequence LUT Descriptor says 4096 entries, but LUT Data holds 3",
    ),
}


@pytest.mark.parametrize("name", list(LUT_CASES))
def test_a_malformed_lookup_table_fails_with_its_type_naming_the_element(tmp_path, name):
    build, error_type, message = LUT_CASES[name]
    path = tmp_path / f"{name}.dcm"
    build(path)
    result = process_file(path, tmp_path / "out")
    assert (result.status, result.error_type) == ("failed", error_type), result
    assert result.message.startswith(message), result.message


@pytest.mark.parametrize("name", ["OBXXXX1A.dcm", "vlut_04.dcm", "mlut_18.dcm"])
def test_the_well_formed_originals_still_convert(tmp_path, name):
    result = process_file(get_testdata_file(name), tmp_path / "out")
    assert result.status == "ok", result


# -- the sanitizer ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "pillow: cannot identify image file <_io.BytesIO object at 0x7feaf259a2a0>",
            "pillow: cannot identify image file",
        ),
        ("Alias 'uint0' was removed in NumPy 2.0. Use a name without a digit at the end.", ""),
        ("ValueError", ""),
        ("Traceback (most recent call last):\n  File 'x', line 1\nIndexError: index 3", "index 3"),
        ("cannot reshape array of size 3 into shape (2,2) dtype('uint16')", None),
        ("x" * 400, "x" * 297 + "..."),
    ],
)
def test_one_line_keeps_the_words_and_drops_the_internals(text, expected):
    cleaned = one_line(text)
    if expected is not None:
        assert cleaned == expected
    assert "\n" not in cleaned and "dtype" not in cleaned and "0x7f" not in cleaned


def test_an_error_type_outside_the_vocabulary_is_refused():
    with pytest.raises(ValueError):
        DicomError("decode", "a message", "ValueError")
    assert DicomError("decode", "a\nmessage").error_type == ErrorType.PROCESSING_ERROR


# -- (c) every hostile file through the command line and the workflow --------------------------

ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")
CLASS_NAME = re.compile(r"^[A-Z]\w*(Error|Exception|Warning)$")
NUMPY_TEXT = re.compile(r"dtype\(|numpy|NumPy|np\.\w+|Alias '")


def bad_message_parts(message: str) -> list[str]:
    """What a failure message must not hold."""
    found = []
    if not message.strip():
        found.append("empty")
    if "Traceback" in message or "\n" in message:
        found.append("traceback")
    if ADDRESS.search(message):
        found.append("memory address")
    if CLASS_NAME.match(message.strip()):
        found.append("bare exception class")
    if NUMPY_TEXT.search(message):
        found.append("numpy text")
    if "object at" in message:
        found.append("object repr")
    return found


def check_failures(failures_csv: Path, hostile: dict[str, Path]) -> pd.DataFrame:
    failures = pd.read_csv(failures_csv, dtype=str, keep_default_na=False)
    outside = failures[~failures["error_type"].isin(VOCABULARY)]
    assert outside.empty, outside[["path", "error_type", "message"]].to_string()
    bad = {r.path: (r.message, bad_message_parts(r.message)) for r in failures.itertuples()}
    assert {p: v for p, v in bad.items() if v[1]} == {}
    assert set(failures["stage"]) <= set(STAGE_DESCRIPTIONS)
    assert set(failures["status"]) <= set(STATUS_DESCRIPTIONS)
    named = set(failures["path"])
    assert {name for name, path in hostile.items() if str(path) not in named} == set()
    return failures


@pytest.fixture(scope="module")
def hostile_source(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    source = tmp_path_factory.mktemp("hostile") / "src"
    source.mkdir()
    hostile = {}
    for name, build in every_hostile_builder().items():
        hostile[name] = source / name
        build(hostile[name])
    (source / "good.dcm").write_bytes(_testdata("CT_small.dcm"))
    return source, hostile


def test_every_hostile_file_fails_in_the_vocabulary_through_dicom_preprocess(
    hostile_source, tmp_path
):
    source, hostile = hostile_source
    script = Path(sys.executable).parent / "dicom-preprocess"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "dicomprep.cli"]
    proc = subprocess.run(
        [*command, str(source), str(tmp_path / "out"), "-j", "2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    failures = check_failures(tmp_path / "out" / "failures.csv", hostile)
    by_name = {Path(r.path).name: r.error_type for r in failures.itertuples()}
    assert by_name["lying_transfer_syntax.dcm"] == "TransferSyntaxMismatch"
    assert by_name["truncated_element.dcm"] == "TruncatedElement"
    assert by_name["corrupt_jpeg2000.dcm"] in ("CorruptCodestream", "CodestreamMismatch")
    assert by_name["deep_sequences.dcm"] == "InvalidHeader"
    assert by_name["number_of_frames_not_a_number.dcm"] == "InvalidImageDescription"
    assert by_name["ragged_float_pixel_data.dcm"] == "ShortPixelData"
    assert by_name["missing_sop_uid.dcm"] == "MissingUID"
    assert by_name["sixty_thousand_frames.dcm"] == "TooManyFrames"
    assert by_name["short_palette.dcm"] == "InvalidPalette"
    assert "good.dcm" not in by_name


def test_every_hostile_file_fails_in_the_vocabulary_through_the_workflow(hostile_source, tmp_path):
    source, hostile = hostile_source
    config = {"source": source, "output": tmp_path / "out", "work": tmp_path / "work"}
    proc = snakemake(tmp_path, config={**config, "shards": 1, "size": [64, 64]}, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    failures = check_failures(tmp_path / "out" / "failures.csv", hostile)
    by_name = {Path(r.path).name: r.error_type for r in failures.itertuples()}
    assert by_name["lying_transfer_syntax.dcm"] == "TransferSyntaxMismatch"
    assert by_name["truncated_element.dcm"] == "TruncatedElement"


# -- docs/errors.md --------------------------------------------------------------------------


def _table(text: str, heading: str) -> dict[str, str]:
    """The ``| `key` | meaning |`` rows of the table under ``heading``."""
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| (.*) \|$", section, re.M)
    return dict(rows)


def test_docs_list_exactly_the_vocabulary_the_stages_and_the_statuses():
    text = (REPO / "docs" / "errors.md").read_text()
    assert _table(text, "Error types") == {t.value: DESCRIPTIONS[t] for t in ErrorType}
    assert _table(text, "Stages") == STAGE_DESCRIPTIONS
    assert _table(text, "Statuses") == STATUS_DESCRIPTIONS
    assert set(DESCRIPTIONS) == set(ErrorType)
