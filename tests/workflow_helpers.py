"""Shared helpers for tests that run the real `snakemake` command."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from dicomprep_testdata import synthetic
from pydicom.data import get_testdata_file
from pydicom.uid import RLELossless

from dicomprep.run.shard import read_journal

REPO = Path(__file__).resolve().parents[1]

# Real files with distinct SOP Instance UIDs (CT, MR, CR MONOCHROME1, enhanced MR,
# palette colour, ultrasound YBR, JPEG 2000).
REAL_FILES = [
    "CT_small.dcm",
    "MR2_J2KR.dcm",
    "RG3_UNCR.dcm",
    "emri_small.dcm",
    "OBXXXX1A.dcm",
    "US1_J2KR.dcm",
]


def build_mixed_source(folder: Path) -> dict[str, list[Path]]:
    """Real files, small synthetic mammograms and a volume, and bad files."""
    good = []
    for name in REAL_FILES:
        target = folder / "real" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(get_testdata_file(name), target)
        good.append(target)
    for k, (laterality, photometric) in enumerate(
        [("L", "MONOCHROME2"), ("R", "MONOCHROME2"), ("L", "MONOCHROME1")]
    ):
        ds = synthetic.mammogram(
            rows=416, columns=320, laterality=laterality, photometric=photometric, seed=k
        )
        good.append(synthetic.write(ds, folder / "mg" / f"mammo_{k}.dcm"))
    volume = synthetic.tomosynthesis(frames=6, rows=208, columns=160, shuffled=True, seed=7)
    good.append(synthetic.write(volume, folder / "mg" / "tomo.dcm", RLELossless))
    bad = folder / "bad"
    bad.mkdir()
    (bad / "not_dicom.dcm").write_text("this is not a DICOM file\n")
    (bad / "empty.dcm").write_bytes(b"")
    spare = synthetic.write(synthetic.mammogram(rows=416, columns=320, seed=99), folder / "spare")
    synthetic.truncated_copy(spare, bad / "truncated.dcm")
    spare.unlink()
    shutil.copy(get_testdata_file("rtplan.dcm"), bad / "rtplan.dcm")
    synthetic.with_uids(good[7], bad / "hostile.dcm", sop_uid="1.2.3/../../evil")
    duplicate = folder / "zz" / "duplicate.dcm"  # sorts after its original: it loses
    duplicate.parent.mkdir()
    shutil.copy(good[6], duplicate)
    return {"good": good, "bad": sorted(bad.iterdir()) + [duplicate]}


def snakemake_command(workdir: Path, config: dict | None = None, *args: str) -> list[str]:
    """The command running the project's workflow in ``workdir`` with ``config`` overrides."""
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--cores",
        "2",
        "--configfile",
        str(REPO / "config.yaml"),
    ]
    if config:
        cmd.append(str(write_config(workdir, config)))
    return cmd + list(args)


def snakemake(
    workdir: Path, *args: str, config: dict | None = None, check=True, env=None, **kwargs
):
    """Run the project's workflow with `workdir` as Snakemake's working directory."""
    env = dict(env or os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    proc = subprocess.run(
        snakemake_command(workdir, config, *args),
        capture_output=True,
        text=True,
        env=env,
        **kwargs,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def write_config(workdir: Path, config: dict) -> Path:
    """A YAML config file in ``workdir`` overriding the repository's config.yaml."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "test-config.yaml"
    values = {k: str(v) if isinstance(v, Path) else v for k, v in config.items()}
    path.write_text(yaml.safe_dump(values))
    return path


def tiff_states(root: Path) -> dict[str, tuple[int, int]]:
    """{relative path: (mtime_ns, inode)} of every TIFF under root."""
    return {
        p.relative_to(root).as_posix(): (p.stat().st_mtime_ns, p.stat().st_ino)
        for p in sorted(root.rglob("*.tiff"))
    }


def journal_results(work: Path) -> int:
    """The records of converted (or failed) files in the shard journals under ``work``:
    not the intent lines written before files are converted, nor a torn last line."""
    count = 0
    for journal in (work / "journal").glob("*.jsonl"):
        for line in journal.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                count += "status" in json.loads(line)
    return count


def journaled_tiff_states(out: Path, work: Path) -> dict[str, tuple[int, int]]:
    """:func:`tiff_states` of the TIFFs the shard journals under ``work`` record as done.

    After a kill, a TIFF a worker renamed into place just before it may not be recorded
    yet: a rerun converts such a file again (to the same bytes); recorded ones it keeps."""
    journals = (work / "journal").glob("*.jsonl")
    records = [r for j in journals for r in read_journal(j).values()]
    journaled = {r["output"] for r in records if r.get("status") == "ok"}  # relative to out
    states = {k: v for k, v in tiff_states(out).items() if k in journaled}
    assert len(states) == len(journaled), "a TIFF recorded as done is missing"
    return states


def tiff_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.tiff"))}
