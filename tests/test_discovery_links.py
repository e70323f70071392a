"""Discovery of local folders: link loops end, links leaving the source are not followed
unless asked, FIFOs are never opened, and each entry passed over is one failures.csv row
(through dicom-preprocess and through the workflow)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pydicom
import pytest
from dicomprep_testdata import synthetic

from dicomprep.run.discover import build_catalog
from dicomprep.run.walk import RealPaths, SourceWalk

from .workflow_helpers import snakemake

TIMEOUT = 120  # a FIFO opened by mistake blocks forever: fail instead of hanging


def mammo(path: Path, seed: int) -> str:
    """A tiny DICOM image at ``path``; its SOP Instance UID."""
    ds = synthetic.mammogram(rows=64, columns=48, seed=seed)
    synthetic.write(ds, path)
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def build_cases(tmp: Path) -> dict:
    """A source folder with good files beside every kind of entry discovery must pass over,
    and a folder outside it that links lead to."""
    src, outside = tmp / "src", tmp / "outside"
    good = {
        "good/a.dcm": mammo(src / "good" / "a.dcm", 1),
        "good/b.dcm": mammo(src / "good" / "b.dcm", 2),
        "sub/c.dcm": mammo(src / "sub" / "c.dcm", 3),
        "dir.dcm/e.dcm": mammo(src / "dir.dcm" / "e.dcm", 4),  # a folder named x.dcm
    }
    outside_uids = {
        "out_file.dcm": mammo(outside / "outside.dcm", 5),
        "out_dir/d.dcm": mammo(outside / "dir" / "d.dcm", 6),
    }
    os.symlink("self_link", src / "self_link")  # a link to itself
    os.symlink("..", src / "sub" / "up")  # a folder link to its parent
    os.symlink("chain_b", src / "chain_a")  # a chain of links that loops
    os.symlink("chain_a", src / "chain_b")
    os.symlink(outside / "outside.dcm", src / "out_file.dcm")  # a file outside the root
    os.symlink(outside / "dir", src / "out_dir")  # a folder outside the root
    os.symlink("/etc/passwd", src / "passwd")
    os.symlink("nowhere.dcm", src / "dangling.dcm")
    os.mkfifo(src / "x.dcm")
    os.symlink("../good", src / "sub" / "good_again")  # inside the root, walked already
    return {"src": src, "good": good, "outside": outside_uids}


LINKS = ["chain_a", "chain_b", "dangling.dcm", "out_dir", "out_file.dcm", "passwd"]
LINKS += ["self_link", "sub/good_again", "sub/up"]

# failures.csv rows (path relative to the source: status, error_type) with follow_symlinks
FOLLOWED = {
    "chain_a": ("skipped", "LinkLoop"),
    "chain_b": ("skipped", "LinkLoop"),
    "dangling.dcm": ("failed", "FileNotFound"),
    "out_dir": ("skipped", "LinkOutsideSource"),
    "out_file.dcm": ("skipped", "LinkOutsideSource"),
    "passwd": ("skipped", "LinkOutsideSource"),
    "self_link": ("skipped", "LinkLoop"),
    "sub/good_again": ("skipped", "LinkLoop"),
    "sub/up": ("skipped", "LinkLoop"),
    "x.dcm": ("skipped", "SpecialFile"),
}
# ... and with follow_links_outside_source too: the outside file and folder are converted
OUTSIDE_FOLLOWED = {
    **{k: v for k, v in FOLLOWED.items() if v[1] != "LinkOutsideSource"},
    "passwd": ("skipped", "NotDicom"),
}
# ... and without follow_symlinks: every link is one row, none is followed
NOT_FOLLOWED = {**{k: ("skipped", "LinkNotFollowed") for k in LINKS}, "x.dcm": FOLLOWED["x.dcm"]}


def failure_rows(failures_csv: Path, src: Path) -> dict[str, tuple[str, str]]:
    """{path relative to ``src``: (status, error_type)} of failures.csv, every row at
    stage discover."""
    df = pd.read_csv(failures_csv, dtype=str, keep_default_na=False)
    assert set(df["stage"]) <= {"discover"}, df
    return {
        os.path.relpath(r.path, src): (r.status, r.error_type) for r in df.itertuples(index=False)
    }


def converted_uids(output: Path) -> set[str]:
    """The SOP Instance UIDs of the TIFFs under ``output`` ({study}/{sop}.tiff)."""
    return {p.stem for p in output.rglob("*.tiff")}


def preprocess(*args) -> subprocess.CompletedProcess:
    """dicom-preprocess, as a user runs it."""
    cmd = [sys.executable, "-m", "dicomprep.cli", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)


@pytest.fixture
def cases(tmp_path):
    return build_cases(tmp_path)


def test_followed_links_loops_end_and_outside_links_are_refused(cases, tmp_path):
    out = tmp_path / "out"
    proc = preprocess(cases["src"], out, "--follow-symlinks", "-j", "1")
    assert proc.returncode == 1, proc.stderr  # the dangling link failed
    assert failure_rows(out / "failures.csv", cases["src"]) == FOLLOWED
    assert converted_uids(out) == set(cases["good"].values())  # nothing from outside


def test_links_outside_the_source_are_followed_when_asked(cases, tmp_path):
    out = tmp_path / "out"
    flags = ("--follow-symlinks", "--follow-links-outside-source", "-j", "1")
    proc = preprocess(cases["src"], out, *flags)
    assert proc.returncode == 1, proc.stderr
    assert failure_rows(out / "failures.csv", cases["src"]) == OUTSIDE_FOLLOWED
    everything = set(cases["good"].values()) | set(cases["outside"].values())
    assert converted_uids(out) == everything


def test_without_follow_symlinks_each_link_and_the_fifo_is_one_row(cases, tmp_path):
    out = tmp_path / "out"
    proc = preprocess(cases["src"], out, "-j", "1")
    assert proc.returncode == 0, proc.stderr  # passed over, nothing failed
    assert failure_rows(out / "failures.csv", cases["src"]) == NOT_FOLLOWED
    assert converted_uids(out) == set(cases["good"].values())


def test_a_list_naming_a_fifo_a_device_a_folder_or_a_loop_opens_none(cases, tmp_path):
    src = cases["src"]
    listing = src / "inputs.txt"
    entries = ["good/a.dcm", "x.dcm", "good", "/dev/null", "self_link", "missing.dcm"]
    listing.write_text("\n".join(entries) + "\n")
    out = tmp_path / "out"
    proc = preprocess(listing, out, "-j", "1")
    assert proc.returncode == 1, proc.stderr  # the missing file failed
    assert failure_rows(out / "failures.csv", src) == {
        "x.dcm": ("skipped", "SpecialFile"),
        "good": ("skipped", "SpecialFile"),
        os.path.relpath("/dev/null", src): ("skipped", "SpecialFile"),
        "self_link": ("skipped", "LinkLoop"),
        "missing.dcm": ("failed", "FileNotFound"),
    }
    assert converted_uids(out) == {cases["good"]["good/a.dcm"]}


def test_rediscovery_reuses_the_rows_of_a_walk_with_links(cases):
    """The passed-over rows are the same on every walk: a rerun finds the catalog
    unchanged (it is not rewritten) and reads no header again."""
    first = build_catalog(cases["src"], follow_symlinks=True)
    again = build_catalog(cases["src"], first, follow_symlinks=True)
    assert again.equals(first)
    statuses = dict(zip(first["key"], first["status"], strict=True))
    assert statuses["x.dcm"] == "special" and statuses["sub/up"] == "link_skipped"
    assert statuses["dangling.dcm"] == "broken_link"


@pytest.mark.slow
def test_the_workflow_records_the_same_rows_and_follows_outside_links_when_asked(cases, tmp_path):
    src, out, work = cases["src"], tmp_path / "dataset", tmp_path / "work"
    config = {"source": src, "output": out, "work": work, "size": [48, 64]}
    config["follow_symlinks"] = True
    snakemake(tmp_path, config=config, timeout=600)
    assert failure_rows(out / "failures.csv", src) == FOLLOWED
    assert converted_uids(out) == set(cases["good"].values())
    config["follow_links_outside_source"] = True
    snakemake(tmp_path, config=config, timeout=600)
    assert failure_rows(out / "failures.csv", src) == OUTSIDE_FOLLOWED
    assert converted_uids(out) == set(cases["good"].values()) | set(cases["outside"].values())


def test_link_targets_resolve_as_realpath_resolves_them(cases):
    """The walk's own resolution of link targets (folders cached) equals
    ``os.path.realpath``, also where a ``..`` follows a link: ``via/../outside.dcm`` lies
    outside the source though its text stays inside."""
    src = cases["src"]
    os.symlink("../outside/dir", src / "via")
    os.symlink("via/../outside.dcm", src / "tricky.dcm")
    os.symlink("sub/up/good/a.dcm", src / "inside.dcm")
    real = RealPaths()
    links = [p for p in src.rglob("*") if p.is_symlink() and p.exists()]
    assert len(links) >= 7
    for link in links:
        assert real.of_link(str(link), str(link.parent)) == os.path.realpath(link), link
    walk = SourceWalk(src, follow_symlinks=True)
    paths = {os.path.relpath(p, src) for p in walk}
    passed = {os.path.relpath(p.path, src): p.error_type for p in walk.passed_over}
    assert passed["tricky.dcm"] == "LinkOutsideSource" and passed["via"] == "LinkOutsideSource"
    assert "inside.dcm" in paths
