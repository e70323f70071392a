"""Reliability and safety under bad input, crashes and concurrency.

Each test is named after a promise the tool makes:

- bad inputs: every input that does not become a TIFF gets exactly one row in
  ``failures.csv`` and leaves no output file, while everything else converts;
- malformed headers (generated) never make the library raise or write outside its folder,
  and implausible sizes fail fast instead of exhausting memory;
- a run killed at any point resumes to the same bytes an uninterrupted run gives;
- a full disk fails clearly, leaves no truncated TIFF, and a rerun completes once space is
  free;
- two runs on one work folder: the second is refused and changes nothing; shards never
  share a file;
- no identifying value from the DICOM headers reaches any output, report or log;
- two runs on the same input give the same bytes.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import os
import resource
import shutil
import signal
import string
import struct
import subprocess
import sys
import tempfile
import textwrap
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import pydicom
import pytest
from dicomprep_testdata import synthetic
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)

from dicomprep.cli import preprocess_main
from dicomprep.core.records import FAILED, OK, SKIPPED
from dicomprep.options import Options
from dicomprep.pipeline import process_file
from dicomprep.run.discover import DICOM, NO_PIXELS, NOT_DICOM, UNREADABLE, catalog_entry
from dicomprep.run.discover import INVALID_UID as INVALID_UID_STATUS
from dicomprep.run.guards import OWNER_MARKER
from dicomprep.run.local import WORK_FOLDER
from dicomprep.run.plan import saved_shards
from dicomprep.run.shard_list import read_shard_list

from .reliability_helpers import (
    KILL_DURING_WRITE,
    encode_with_elements,
    environment_with_hook,
    files_under,
    identifying_strings,
    kill_group,
    leaks,
    reading_is_denied,
    resize_tmpfs,
    run_without_permission_override,
    small_tmpfs,
    start_snakemake,
    temporaries_under,
    unreadable_tiffs,
    wait_for,
    with_transfer_syntax,
)
from .workflow_helpers import (
    journal_results,
    journaled_tiff_states,
    snakemake,
    tiff_bytes,
    tiff_states,
)

# -- 1. bad inputs in one command-line run ---------------------------------------------------


def small_mammogram(seed: int, **kwargs) -> pydicom.Dataset:
    return synthetic.mammogram(rows=160, columns=128, seed=seed, **kwargs)


def _uids(path: Path) -> tuple[str, str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SOPInstanceUID)


def _header_only(path: Path) -> None:
    ds = small_mammogram(30)
    del ds.PixelData
    synthetic.write(ds, path)


def _truncated(path: Path) -> None:
    spare = synthetic.write(small_mammogram(31), path.with_name("spare_for_truncation.dcm"))
    synthetic.truncated_copy(spare, path)
    spare.unlink()


def _text(path: Path) -> None:
    path.write_text("plain text with a .dcm name\n")


def _short_pixel_data(path: Path) -> None:
    synthetic.short_pixel_data(small_mammogram(35), path)


def _unknown_syntax(uid: str, *, encapsulated: bool):
    def build(path: Path) -> None:
        ds = small_mammogram(32 + encapsulated)
        path.write_bytes(with_transfer_syntax(ds, uid, encapsulated=encapsulated))

    return build


def _undecodable_syntax(path: Path) -> None:
    mpeg2 = "1.2.840.10008.1.2.4.100"  # a real transfer syntax (video) no plugin decodes
    path.write_bytes(with_transfer_syntax(small_mammogram(34), mpeg2, encapsulated=True))


def _with_uid(seed: int, **uids):
    return lambda path: synthetic.with_uids(small_mammogram(seed), path, **uids)


def _zero(keyword: str, seed: int):
    def build(path: Path) -> None:
        ds = small_mammogram(seed)
        setattr(ds, keyword, 0)
        synthetic.write(ds, path)

    return build


class Expect(NamedTuple):
    """The failures.csv row a bad input must get (error_type None: any non-empty)."""

    status: str
    stage: str
    error_type: str | None = None
    message_part: str = ""


NOT_CONVERTED = Expect("failed", "decode")
INVALID_UID = Expect("failed", "discover", "InvalidUID")

# name -> (how to make it, the row it must get); built by the bad_input_run fixture
BAD_INPUTS = {
    "not_dicom.dcm": (_text, Expect("skipped", "discover", "NotDicom")),
    "empty.dcm": (lambda p: p.write_bytes(b""), Expect("skipped", "discover", "EmptyFile")),
    "truncated.dcm": (_truncated, NOT_CONVERTED),
    "header_only.dcm": (_header_only, Expect("skipped", "discover", "NoPixelData")),
    "short_pixel_data.dcm": (_short_pixel_data, NOT_CONVERTED),
    "unknown_syntax_native.dcm": (
        _unknown_syntax("1.2.3.4.5", encapsulated=False),
        NOT_CONVERTED._replace(message_part="1.2.3.4.5"),
    ),
    "unknown_syntax_encapsulated.dcm": (
        _unknown_syntax("1.2.3.4.6", encapsulated=True),
        NOT_CONVERTED._replace(message_part="1.2.3.4.6"),
    ),
    "undecodable_syntax.dcm": (_undecodable_syntax, NOT_CONVERTED),
    "uid_slash.dcm": (_with_uid(40, sop_uid="1.2.3/4"), INVALID_UID),
    "uid_dot_dot.dcm": (_with_uid(41, sop_uid="1.2..3"), INVALID_UID),
    "uid_traversal.dcm": (_with_uid(42, study_uid="../../escaped"), INVALID_UID),
    "uid_space.dcm": (_with_uid(43, sop_uid="1.2 3"), INVALID_UID),
    "uid_65_chars.dcm": (
        _with_uid(44, sop_uid="1." + "2" * 63),
        INVALID_UID._replace(message_part="64"),
    ),
    "study_uid_slash.dcm": (_with_uid(45, study_uid="1.2/3"), INVALID_UID),
    "zero_rows.dcm": (_zero("Rows", 46), Expect("failed", "decode", "EmptyImage")),
    "zero_columns.dcm": (_zero("Columns", 47), Expect("failed", "decode", "EmptyImage")),
    # same SOP Instance UID as good_first_copy.dcm, later in sorted order: it loses
    "zz_second_copy.dcm": (None, Expect("duplicate", "discover", "DuplicateSOPInstanceUID")),
    # mode 000, read by a program that cannot override file permissions
    "unreadable.dcm": (None, Expect("failed", "discover", None, "Permission denied")),
}


@dataclass
class CliRun:
    root: Path
    source: Path
    output: Path
    proc: subprocess.CompletedProcess
    good: list[Path]
    bad: dict[str, Path]

    def failures(self) -> pd.DataFrame:
        return pd.read_csv(self.output / "failures.csv", dtype=str, keep_default_na=False)


def _dicom_preprocess() -> list[str]:
    script = Path(sys.executable).parent / "dicom-preprocess"
    return [str(script)] if script.exists() else [sys.executable, "-m", "dicomprep.cli"]


@pytest.fixture(scope="module")
def bad_input_run(tmp_path_factory) -> CliRun:
    """One `dicom-preprocess` run over good files and every kind of bad input."""
    root = tmp_path_factory.mktemp("bad-inputs")
    source, output = root / "src", root / "out"
    source.mkdir()
    good = [
        synthetic.write(small_mammogram(1), source / "good_first_copy.dcm"),
        synthetic.write(
            small_mammogram(2, photometric="MONOCHROME1", laterality="R"), source / "good_mono1.dcm"
        ),
        synthetic.write(
            synthetic.tomosynthesis(frames=4, rows=96, columns=80, seed=3),
            source / "good_volume.dcm",
            RLELossless,
        ),
        synthetic.write(synthetic.ct_slice(rows=64, columns=64), source / "good_ct.dcm"),
        # the longest valid UID (64 characters) is a valid file name
        synthetic.with_uids(
            small_mammogram(4), source / "good_uid_64_chars.dcm", sop_uid="1." + "2" * 62
        ),
    ]
    bad = {}
    for name, (build, *_) in BAD_INPUTS.items():
        bad[name] = source / name
        if build is not None:
            build(bad[name])
    first_study, first_sop = _uids(good[0])
    synthetic.with_uids(
        small_mammogram(9), bad["zz_second_copy.dcm"], study_uid=first_study, sop_uid=first_sop
    )
    synthetic.write(small_mammogram(10), bad["unreadable.dcm"])
    os.chmod(bad["unreadable.dcm"], 0)
    if not reading_is_denied(bad["unreadable.dcm"]):  # root that cannot give up its override
        bad.pop("unreadable.dcm").unlink()
    proc = run_without_permission_override(
        [*_dicom_preprocess(), str(source), str(output), "-j", "2"], cwd=root
    )
    return CliRun(root, source, output, proc, good, bad)


def test_every_bad_input_gets_exactly_one_failure_row(bad_input_run):
    failures = bad_input_run.failures()
    counts = collections.Counter(failures["path"])
    assert {p: n for p, n in counts.items() if n != 1} == {}
    assert set(counts) == {str(p) for p in bad_input_run.bad.values()}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_failure_row_names_status_stage_and_error_type(bad_input_run, name):
    if name not in bad_input_run.bad:
        pytest.skip(
            "running as root with a permission override that cannot be dropped: "
            "an unreadable file cannot be made"
        )
    expect = BAD_INPUTS[name][1]
    rows = bad_input_run.failures().set_index("path")
    row = rows.loc[str(bad_input_run.bad[name])]
    assert (row.status, row.stage) == (expect.status, expect.stage), row.to_dict()
    assert row.error_type, row.to_dict()
    if expect.error_type is not None:
        assert row.error_type == expect.error_type, row.to_dict()
    assert expect.message_part in row.message, row.to_dict()
    assert row.message and "\n" not in row.message


def test_bad_inputs_leave_no_output_file_and_every_good_file_converts(bad_input_run):
    out = bad_input_run.output
    expected = {"{}/{}.tiff".format(*_uids(p)) for p in bad_input_run.good}
    assert set(tiff_bytes(out)) == expected
    written = {p.relative_to(out).as_posix() for p in files_under(out)}
    state = {w for w in written if w.startswith(f"{WORK_FOLDER}/") or w == OWNER_MARKER}
    assert written - state == expected | {"failures.csv"}
    assert OWNER_MARKER in state  # the run's own state: its work folder and the marker
    assert unreadable_tiffs(out) == []
    outside = set(files_under(bad_input_run.root)) - set(files_under(bad_input_run.source, out))
    assert outside == set(), "files written outside the output folder"


def test_duplicate_sop_uid_keeps_the_first_path_in_sorted_order(bad_input_run, tmp_path):
    first = bad_input_run.good[0]
    reference = process_file(first, tmp_path)
    assert reference.status == OK
    kept = bad_input_run.output / Path(reference.output).relative_to(tmp_path)
    assert kept.read_bytes() == Path(reference.output).read_bytes()


def test_exit_status_is_non_zero_and_the_summary_counts_every_input(bad_input_run):
    proc, failures = bad_input_run.proc, bad_input_run.failures()
    assert proc.returncode == 1, proc.stderr
    by_status = failures["status"].value_counts().to_dict()
    summary = (
        f"{len(bad_input_run.good)} converted now, 0 reused, 0 removed, "
        f"{by_status.get('failed', 0)} failed, {by_status.get('skipped', 0)} skipped, "
        f"{by_status.get('duplicate', 0)} duplicate"
    )
    assert summary in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_header_value_of_the_wrong_length_fails_that_file_not_the_run(tmp_path):
    source = tmp_path / "src"
    good = synthetic.write(small_mammogram(1), source / "good.dcm")
    odd = source / "odd_rows.dcm"
    odd.write_bytes(encode_with_elements(small_mammogram(2), {"Rows": ("FL", b"\0\1")}))
    code = preprocess_main([str(source), str(tmp_path / "out"), "-j", "1"])
    assert code == 1
    assert set(tiff_bytes(tmp_path / "out")) == {"{}/{}.tiff".format(*_uids(good))}
    failures = pd.read_csv(tmp_path / "out" / "failures.csv", dtype=str, keep_default_na=False)
    assert failures["path"].tolist() == [str(odd)]
    assert failures["status"].tolist() == [FAILED]


# -- 2. generated malformed headers ------------------------------------------------------------


@cache
def _base_datasets() -> tuple[pydicom.Dataset, ...]:
    return (
        synthetic.mammogram(rows=40, columns=32, seed=5),
        synthetic.tomosynthesis(frames=3, rows=40, columns=32, seed=6),
        synthetic.ct_slice(rows=32, columns=32),
    )


# fmt: off
HEADER_KEYWORDS = [
    "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
    "SamplesPerPixel", "PhotometricInterpretation", "NumberOfFrames", "PlanarConfiguration",
    "SOPInstanceUID", "StudyInstanceUID", "WindowCenter", "WindowWidth", "RescaleSlope",
    "RescaleIntercept", "PixelSpacing",
]
# fmt: on
_INTERESTING_INTS = [0, 1, 2, 3, 7, 8, 12, 15, 16, 17, 24, 31, 32, 33, 64, 255, 4095, 65535]
# fmt: off
_INTERESTING_TEXT = [
    "", " ", "0", "-1", "3", "2000000000", "nan", "inf", "1e308", "1e-300", "MONOCHROME1",
    "RGB", "PALETTE COLOR", "YBR_FULL_422", "1.2.3/4", "../../escaped", "1..2", "1.2 3",
    "1." + "2" * 80, "0\\0", "\\",
]
# fmt: on
_MISLABELLED_SYNTAXES = [
    ImplicitVRLittleEndian,
    ExplicitVRBigEndian,
    RLELossless,
    DeflatedExplicitVRLittleEndian,
    "1.2.3.4.5",
]
_PACK = {"US": "<H", "SS": "<h", "UL": "<I", "SL": "<i"}


def _packed(vr: str, number: int) -> tuple[str, bytes]:
    bits = 8 * struct.calcsize(_PACK[vr])
    number %= 2**bits
    if vr in ("SS", "SL") and number >= 2 ** (bits - 1):
        number -= 2**bits
    return vr, struct.pack(_PACK[vr], number)


element_values = st.one_of(
    st.none(),  # the element is left out
    st.builds(
        _packed,
        st.sampled_from(sorted(_PACK)),
        st.one_of(st.sampled_from(_INTERESTING_INTS), st.integers(0, 2**32 - 1)),
    ),
    st.builds(
        lambda vr, text: (vr, text.encode("latin-1", "replace")),
        st.sampled_from(["IS", "DS", "CS", "LO", "UI", "SH"]),
        st.one_of(
            st.sampled_from(_INTERESTING_TEXT),
            st.text(alphabet=string.printable + "\u00e9\x00", max_size=70),
            st.from_regex(r"[0-9.]{1,70}", fullmatch=True),
        ),
    ),
    st.tuples(st.sampled_from(["OB", "OW", "UN", "FL", "FD"]), st.binary(max_size=24)),
)
malformed_files = st.fixed_dictionaries(
    {
        "base": st.integers(0, 2),
        "elements": st.dictionaries(st.sampled_from(HEADER_KEYWORDS), element_values, max_size=4),
        # mostly the real one (""), else a label that does not match the encoding
        "transfer_syntax": st.sampled_from(["", "", "", *_MISLABELLED_SYNTAXES]),
        "keep": st.one_of(st.none(), st.floats(0, 1)),  # fraction of the bytes kept
    }
)
OPTION_SETS = [
    Options(),
    Options(voi="none"),
    Options(crop=True, crop_max=True, size=(24, 20)),
    Options(volume="max-intensity", crop=True),
]


def _malformed_bytes(case: dict) -> bytes:
    data = encode_with_elements(
        _base_datasets()[case["base"]], case["elements"], case["transfer_syntax"]
    )
    return data if case["keep"] is None else data[: int(len(data) * case["keep"])]


@pytest.fixture
def bounded_memory():
    """Cap this process's address space a few GiB above its current size while the test
    runs, so that a header asking for absurd amounts of memory gets a MemoryError here
    instead of starving the machine (the dedicated tests below check such headers)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/status") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmSize"))
    cap = kib * 1024 + (3 << 30)
    resource.setrlimit(resource.RLIMIT_AS, (min(cap, hard) if hard > 0 else cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _deep_folder(root: Path) -> Path:
    """A folder several levels below ``root``: `..` tricks in names stay inside ``root``."""
    folder = root.joinpath(*"abcdefgh")
    folder.mkdir(parents=True)
    return folder


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=malformed_files, option_set=st.integers(0, len(OPTION_SETS) - 1))
def test_malformed_headers_never_raise_and_write_only_their_tiff(bounded_memory, case, option_set):
    with tempfile.TemporaryDirectory() as tmp:
        folder = _deep_folder(Path(tmp))
        source, out = folder / "input.dcm", folder / "out"
        source.write_bytes(_malformed_bytes(case))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = process_file(source, out, OPTION_SETS[option_set])
        assert result.status in (OK, SKIPPED, FAILED)
        written = [p for p in files_under(Path(tmp)) if p != source]
        if result.status == OK:
            assert written == [Path(result.output)]
            assert Path(result.output).resolve().is_relative_to(out.resolve())
            assert unreadable_tiffs(out) == []
        else:
            assert written == [], result
            assert result.stage and result.error_type and result.message


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=malformed_files)
@example(
    case={"base": 0, "elements": {"Rows": ("FL", b"\0\1")}, "transfer_syntax": "", "keep": None}
)
def test_discovery_never_raises_on_malformed_headers(bounded_memory, case):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "input.dcm"
        path.write_bytes(_malformed_bytes(case))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            row = catalog_entry(path)
        assert row["path"] == str(path)
        assert row["status"] in {DICOM, NOT_DICOM, NO_PIXELS, INVALID_UID_STATUS, UNREADABLE}
        assert files_under(Path(tmp)) == [path]


# -- implausible sizes: bounded memory -----------------------------------------------------------

_MEMORY_PROBE = textwrap.dedent(
    """
    import json, resource, sys, tempfile, warnings
    from dicomprep.options import Options
    from dicomprep.pipeline import process_file

    with open("/proc/self/status") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmSize"))
    limit = kib * 1024 + (1536 << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    warnings.simplefilter("ignore")
    for path, voi in zip(sys.argv[1::2], sys.argv[2::2]):
        with tempfile.TemporaryDirectory() as out:
            result = process_file(path, out, Options(voi=voi))
        print(json.dumps(result.to_dict()))
    """
)


def _tiny() -> pydicom.Dataset:
    return synthetic.mammogram(rows=32, columns=24, seed=1)


# name -> (the file's bytes, voi, expected status)
MEMORY_CASES = {
    "two-billion-frames": (
        lambda: encode_with_elements(_tiny(), {"NumberOfFrames": ("IS", b"2000000000")}),
        "auto",
        FAILED,
    ),
    "65535-rows-and-columns": (
        lambda: encode_with_elements(
            _tiny(), {"Rows": _packed("US", 65535), "Columns": _packed("US", 65535)}
        ),
        "auto",
        FAILED,
    ),
    "bits-stored-30-of-16-voi-none": (
        lambda: encode_with_elements(_tiny(), {"BitsStored": _packed("US", 30)}),
        "none",
        FAILED,
    ),
    "32-bit-dose-grid-voi-none": (
        lambda: Path(get_testdata_file("rtdose_1frame.dcm")).read_bytes(),
        "none",
        OK,
    ),
}


@pytest.fixture(scope="module")
def memory_probe(tmp_path_factory) -> dict[str, dict]:
    """process_file on each MEMORY_CASES file in a child limited to ~1.5 GiB more memory."""
    folder = tmp_path_factory.mktemp("memory")
    args = []
    for name, (make, voi, _) in MEMORY_CASES.items():
        path = folder / f"{name}.dcm"
        path.write_bytes(make())
        args += [str(path), voi]
    proc = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    return dict(zip(MEMORY_CASES, results, strict=True))


@pytest.mark.parametrize("name", list(MEMORY_CASES))
def test_implausible_image_sizes_are_handled_without_exhausting_memory(memory_probe, name):
    result = memory_probe[name]
    assert result["status"] == MEMORY_CASES[name][2], result
    assert result["error_type"] != "OutOfMemory", result


# -- shared workflow runs ------------------------------------------------------------------------

WORKFLOW_OPTIONS = {"shards": 1, "crop": True, "crop_max": True, "size": [256, 320]}


def run_config(run: Path, source: Path, **extra) -> dict:
    return {
        "source": source,
        "output": run / "out",
        "work": run / "work",
        **WORKFLOW_OPTIONS,
        **extra,
    }


@pytest.fixture(scope="module")
def workflow_source(tmp_path_factory) -> Path:
    """Synthetic files (all carrying PATIENT_VALUES), named neutrally, in the order one
    shard processes them: a large image (slow to decode), a long volume (slow to write),
    bad files, then small images."""
    source = tmp_path_factory.mktemp("workflow-source")
    synthetic.write(synthetic.mammogram(seed=1), source / "a_large.dcm", JPEG2000Lossless)
    volume = synthetic.tomosynthesis(frames=60, rows=512, columns=416, seed=3)
    synthetic.write(volume, source / "b_volume.dcm", JPEG2000Lossless)
    bad = source / "bad"
    bad.mkdir()
    _text(bad / "not_dicom.dcm")
    (bad / "empty.dcm").write_bytes(b"")
    _truncated(bad / "truncated.dcm")
    _header_only(bad / "header_only.dcm")
    _short_pixel_data(bad / "short_pixel_data.dcm")
    _with_uid(40, sop_uid="1.2.3/../../escaped")(bad / "invalid_uid.dcm")
    _zero("Rows", 46)(bad / "zero_rows.dcm")
    for k in range(4):
        ds = small_mammogram(20 + k, photometric="MONOCHROME1" if k == 3 else "MONOCHROME2")
        synthetic.write(ds, source / f"c_image_{k}.dcm")
    synthetic.write(synthetic.ct_slice(rows=96, columns=96), source / "c_slice.dcm")
    shutil.copy(source / "c_image_0.dcm", source / "d_copy.dcm")  # a duplicate SOP UID
    return source


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, workflow_source) -> Path:
    """An uninterrupted workflow run."""
    run = tmp_path_factory.mktemp("reference")
    snakemake(run, config=run_config(run, workflow_source))
    return run


def manifest_without_inode(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "out" / "manifest.csv", dtype=str).drop(columns="inode")


def assert_same_outputs(run: Path, reference: Path) -> None:
    """Byte-identical TIFFs and failures, the same manifest apart from inodes."""
    got, want = tiff_bytes(run / "out"), tiff_bytes(reference / "out")
    assert sorted(got) == sorted(want)
    assert [k for k in want if got[k] != want[k]] == [], "TIFF bytes differ"
    pd.testing.assert_frame_equal(manifest_without_inode(run), manifest_without_inode(reference))
    parquet = pd.read_parquet(run / "out" / "manifest.parquet").drop(columns="inode")
    pd.testing.assert_frame_equal(
        parquet, pd.read_parquet(reference / "out" / "manifest.parquet").drop(columns="inode")
    )
    assert (run / "out" / "failures.csv").read_bytes() == (
        reference / "out" / "failures.csv"
    ).read_bytes()


# -- 3. crashes ----------------------------------------------------------------------------------


def _kill_point(name: str, run: Path):
    """(condition to kill at, check of the state the kill froze) for each crash point."""
    out, work = run / "out", run / "work"
    if name == "during-decode":  # the shard has started its first file (the large image)
        return (
            lambda: any((work / "journal").glob("*.jsonl")),
            lambda: not list(out.rglob("*.tiff")) and not temporaries_under(out),
        )
    if name == "during-write":  # the long volume's TIFF is half written (killed by a hook)
        return lambda: bool(temporaries_under(out)), lambda: bool(temporaries_under(out))
    if name == "between-files":  # right after the second file was recorded as done
        return lambda: journal_results(work) >= 2, lambda: 2 <= journal_results(work) < 10
    if name == "during-collect":  # the manifest/failures step has started
        return (
            lambda: (work / "logs" / "collect.log").exists(),
            lambda: not (out / "report" / "index.html").exists(),
        )
    raise ValueError(name)


@pytest.mark.slow
@pytest.mark.parametrize(
    "point", ["during-decode", "during-write", "between-files", "during-collect"]
)
def test_sigkill_at_any_point_then_rerun_gives_the_uninterrupted_outputs(
    tmp_path, workflow_source, reference_run, point
):
    config = run_config(tmp_path, workflow_source)
    condition, landed = _kill_point(point, tmp_path)
    env = None
    if point == "during-write":  # the moment is too short to catch from outside every time
        env = environment_with_hook(
            tmp_path / "hook", KILL_DURING_WRITE, KILL_DURING_TIFF_WRITE="1"
        )
    proc = start_snakemake(tmp_path, config, env=env)
    try:
        reached = wait_for(condition, proc, timeout=120)
    finally:
        kill_group(proc)
    state_ok = landed()
    assert reached, f"the run finished or stalled before the kill point {point}"
    assert state_ok, f"the kill did not land {point}"

    assert unreadable_tiffs(tmp_path / "out") == [], "a crash left a damaged TIFF"
    done_before = journaled_tiff_states(tmp_path / "out", tmp_path / "work")
    snakemake(tmp_path, "--unlock", config=config)
    snakemake(tmp_path, config=config)

    assert temporaries_under(tmp_path / "out", tmp_path / "work") == []
    after = tiff_states(tmp_path / "out")
    assert {k: after[k] for k in done_before} == done_before, "finished files were redone"
    assert_same_outputs(tmp_path, reference_run)


@pytest.mark.parametrize("series", ["files", "stack"])
def test_a_killed_dicom_preprocess_leaves_no_temporary_after_its_rerun(tmp_path, series):
    """dicom-preprocess killed (with everything it started) while a multi-page TIFF is half
    written: the next run over the same folders removes the temporary and completes."""
    from .series_helpers import write_series

    source, out = tmp_path / "src", tmp_path / "out"
    if series == "files":
        synthetic.write(synthetic.tomosynthesis(frames=6, rows=64, columns=48), source / "v.dcm")
    else:
        write_series(source, count=4, name="cli-killed")
    args = [str(source), str(out), "--series", series, "-j", "1"]
    env = environment_with_hook(tmp_path / "hook", KILL_DURING_WRITE, KILL_DURING_TIFF_WRITE="1")
    proc = subprocess.Popen(
        [*_dicom_preprocess(), *args],
        start_new_session=True,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert len(temporaries_under(out)) == 1  # the half-written volume

    assert preprocess_main(args) == 0
    assert temporaries_under(out) == []
    assert len(tiff_bytes(out)) == 1 and unreadable_tiffs(out) == []


# -- 4. full disk --------------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path):
    """A 3 MiB tmpfs at tmp_path/disk (root only; skipped otherwise)."""
    with contextlib.ExitStack() as stack:
        try:
            disk = stack.enter_context(small_tmpfs(tmp_path / "disk", "3m"))
        except (PermissionError, OSError) as exc:
            pytest.skip(f"cannot mount a small tmpfs to fill: {exc}")
        yield disk


def _large_output_source(folder: Path, count: int) -> list[Path]:
    """Files whose 1024 x 1280 uint16 uncompressed TIFFs take 2.5 MiB each."""
    return [
        synthetic.write(
            synthetic.mammogram(rows=832, columns=640, seed=60 + k), folder / f"large_{k}.dcm"
        )
        for k in range(count)
    ]


def test_cli_on_a_full_disk_fails_the_files_that_do_not_fit_and_a_rerun_completes(
    tmp_path, tiny_disk
):
    _large_output_source(tmp_path / "src", 3)
    out = tiny_disk / "out"
    args = [str(tmp_path / "src"), str(out), "-s", "1024,1280", "-z", "uncompressed", "-j", "1"]
    assert preprocess_main(args) == 1
    failures = pd.read_csv(out / "failures.csv", dtype=str, keep_default_na=False)
    assert len(failures) >= 1
    assert set(failures["status"]) == {"failed"} and set(failures["stage"]) == {"write"}
    assert len(tiff_bytes(out)) + len(failures) == 3
    assert unreadable_tiffs(out) == [], "a full disk left a truncated TIFF"
    assert temporaries_under(tiny_disk) == []

    resize_tmpfs(tiny_disk, "16m")
    assert preprocess_main(args) == 0
    assert len(tiff_bytes(out)) == 3 and unreadable_tiffs(out) == []
    assert temporaries_under(tiny_disk) == []


def test_a_full_disk_is_named_in_the_failure_message(tmp_path, tiny_disk):
    _large_output_source(tmp_path / "src", 1)  # one 5 MiB TIFF for a 3 MiB disk
    out = tiny_disk / "out"
    args = [str(tmp_path / "src"), str(out), "-s", "1280,2048", "-z", "uncompressed", "-j", "1"]
    assert preprocess_main(args) == 1
    failures = pd.read_csv(out / "failures.csv", dtype=str, keep_default_na=False)
    assert failures["stage"].tolist() == ["write"]
    assert "No space left on device" in failures["message"][0]


@pytest.mark.slow
def test_workflow_on_a_full_disk_fails_the_shard_and_a_rerun_completes(tmp_path, tiny_disk):
    _large_output_source(tmp_path / "src", 3)
    config = {
        "source": tmp_path / "src",
        "output": tiny_disk / "out",
        "work": tmp_path / "work",
        "shards": 1,
        "size": [1024, 1280],
        "compression": "uncompressed",
    }
    proc = snakemake(tmp_path, config=config, check=False)
    assert proc.returncode != 0
    assert "could not be written" in proc.stderr, proc.stderr[-3000:]
    shard_log = (tmp_path / "work" / "logs" / "preprocess" / "s0000.log").read_text()
    assert "failed\twrite\t" in shard_log
    assert unreadable_tiffs(tiny_disk) == [], "a full disk left a truncated TIFF"
    assert temporaries_under(tiny_disk, tmp_path / "work") == []
    done_before = tiff_states(tiny_disk / "out")
    assert len(done_before) < 3

    resize_tmpfs(tiny_disk, "16m")
    snakemake(tmp_path, config=config)
    after = tiff_states(tiny_disk / "out")
    assert len(after) == 3 and unreadable_tiffs(tiny_disk) == []
    assert {k: after[k] for k in done_before} == done_before, "finished files were redone"
    assert len(pd.read_csv(tiny_disk / "out" / "manifest.csv")) == 3
    assert temporaries_under(tiny_disk, tmp_path / "work") == []


# -- 5. concurrency ------------------------------------------------------------------------------


@dataclass
class ContendedRun:
    run: Path
    first: subprocess.CompletedProcess
    same_settings: subprocess.CompletedProcess
    other_settings: subprocess.CompletedProcess
    plan_before: dict[str, str]
    plan_after_same: dict[str, str]
    plan_after_other: dict[str, str]


def _plan_digest(work: Path) -> dict[str, str]:
    """The run's plan: catalog and shard lists (not the shards' results)."""
    files = [
        work / "catalog.parquet",
        *sorted((work / "shards").glob("*.tsv")),
        work / "shards" / "index.json",
    ]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files if p.exists()}


@pytest.fixture(scope="module")
def contended_run(tmp_path_factory, workflow_source) -> ContendedRun:
    """A run with 3 shards; while it runs, two more on the same folder: one with the same
    settings, one with another shard count.  The first run is paused (SIGSTOP) once it
    holds Snakemake's lock, so it is still running whatever the machine's speed, and
    resumed after the other two have ended."""
    run = tmp_path_factory.mktemp("contended")
    config = run_config(run, workflow_source, shards=3)
    first = start_snakemake(run, config)
    locks = run / ".snakemake" / "locks"
    try:
        assert wait_for(lambda: locks.is_dir() and any(locks.iterdir()), first, 60)
        os.killpg(first.pid, signal.SIGSTOP)
        before = _plan_digest(run / "work")
        same = snakemake(run, config=config, check=False)
        after_same = _plan_digest(run / "work")
        other = snakemake(run, config={**config, "shards": 5}, check=False)
        after_other = _plan_digest(run / "work")
        os.killpg(first.pid, signal.SIGCONT)
        out, err = first.communicate(timeout=300)
    except BaseException:
        kill_group(first)
        raise
    finished = subprocess.CompletedProcess(first.args, first.returncode, out, err)
    return ContendedRun(run, finished, same, other, before, after_same, after_other)


# What a refused run prints: Snakemake's own lock message.
REFUSAL_MESSAGES = ("Directory cannot be locked",)


@pytest.mark.slow
def test_second_run_on_the_same_work_folder_is_refused_with_the_lock_message(contended_run):
    for second in (contended_run.same_settings, contended_run.other_settings):
        assert second.returncode != 0
        assert any(m in second.stderr for m in REFUSAL_MESSAGES), second.stderr[-2000:]
    assert contended_run.first.returncode == 0, contended_run.first.stderr[-3000:]
    assert contended_run.plan_after_same == contended_run.plan_before


@pytest.mark.slow
def test_refused_run_with_other_settings_changes_nothing_of_the_running_one(
    contended_run, reference_run
):
    assert contended_run.plan_after_other == contended_run.plan_before
    assert contended_run.first.returncode == 0
    assert_same_outputs(contended_run.run, reference_run)


@pytest.mark.slow
def test_shard_lists_partition_the_dicom_files_one_shard_per_sop_uid(contended_run):
    """Every file is in one shard, and all copies of a SOP Instance UID are in the same
    shard (which converts the first copy that works): no two shards write one TIFF."""
    work = contended_run.run / "work"
    catalog = pd.read_parquet(work / "catalog.parquet")
    shards = saved_shards(work)
    assert len(shards) > 1
    shard_of_sop: dict[str, set[str]] = {}
    paths = []
    for s in shards:
        for e in read_shard_list(work / "shards" / f"{s}.tsv"):
            paths.append(e["path"])
            shard_of_sop.setdefault(e["sop_instance_uid"], set()).add(s)
    assert len(paths) == len(set(paths)), "a file is in two shards"
    assert all(len(s) == 1 for s in shard_of_sop.values()), "two shards would write one TIFF"
    images = catalog.loc[catalog["status"].isin(["dicom", "duplicate"]), "path"]
    assert set(paths) == set(images)
    assert (catalog["status"] == "duplicate").any()


# -- 6. privacy ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_no_identifying_header_value_reaches_any_workflow_output_or_log(reference_run):
    files = files_under(reference_run)  # out/ (TIFFs, manifests, failures, report), work/,
    assert any(p.suffix == ".tiff" for p in files)  # logs and Snakemake's own records
    assert leaks(files, synthetic.PATIENT_VALUES) == []


def test_no_identifying_header_value_reaches_the_command_line_outputs(bad_input_run):
    assert leaks(files_under(bad_input_run.output), synthetic.PATIENT_VALUES) == []
    printed = bad_input_run.proc.stdout + bad_input_run.proc.stderr
    assert [v for v in identifying_strings(synthetic.PATIENT_VALUES) if v in printed] == []


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_identifying_text_in_an_invalid_uid_is_not_copied_into_the_reports(tmp_path):
    accession = "SYNACC-90817"
    assert accession in synthetic.PATIENT_VALUES
    synthetic.with_uids(small_mammogram(1), tmp_path / "src" / "image.dcm", study_uid=accession)
    assert preprocess_main([str(tmp_path / "src"), str(tmp_path / "out"), "-j", "1"]) == 1
    failures = pd.read_csv(tmp_path / "out" / "failures.csv", dtype=str)
    assert failures["error_type"].tolist() == ["InvalidUID"]
    assert leaks(files_under(tmp_path / "out"), synthetic.PATIENT_VALUES) == []


# -- 7. determinism ------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_fresh_runs_give_byte_identical_tiffs_and_the_same_manifest(
    tmp_path, workflow_source, reference_run
):
    snakemake(tmp_path, config=run_config(tmp_path, workflow_source))
    assert_same_outputs(tmp_path, reference_run)
