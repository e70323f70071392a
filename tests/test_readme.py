"""README.md and docs/ say what the code does: their snippets run, their numbers hold."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from dicomprep.formats import tiff
from dicomprep.formats.manifest import MANIFEST_COLUMNS
from dicomprep.run.discover import CATALOG_COLUMNS
from dicomprep.run.failures import FAILURE_COLUMNS

from .workflow_helpers import REPO, snakemake

BIN = Path(sys.executable).parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), flags=re.S | re.M)


@pytest.fixture(scope="module")
def produced(tmp_path_factory):
    """A folder holding results/dataset as the README's snippets expect after `make run`."""
    root = tmp_path_factory.mktemp("readme")
    source = root / "src"
    source.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm", "RG3_UNCR.dcm"):
        shutil.copy(get_testdata_file(name), source / name)
    dataset = root / "results" / "dataset"
    for tool, args in [
        ("dicom-preprocess", ["-c", "-m", "-s", "64,80", source, dataset]),
        ("dicom-manifest", [dataset, dataset / "manifest.csv"]),
    ]:
        proc = subprocess.run([BIN / tool, *args], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    return root


BLOCKS = [(doc, block) for doc in DOCS for block in python_blocks(doc)]


def test_there_are_python_snippets_to_check():
    assert any(doc.name == "README.md" for doc, _ in BLOCKS)


@pytest.mark.parametrize(
    "block", [b for _, b in BLOCKS], ids=[f"{d.name}-{i}" for i, (d, _) in enumerate(BLOCKS)]
)
def test_python_snippets_run_as_written(block, produced, monkeypatch, capsys):
    monkeypatch.chdir(produced)
    exec(compile(block, "<snippet>", "exec"), {"__name__": "__snippet__"})


def test_output_format_documents_every_column_and_tag():
    text = (REPO / "docs" / "output-format.md").read_text()
    for column in [*MANIFEST_COLUMNS, *FAILURE_COLUMNS, *CATALOG_COLUMNS]:
        assert f"`{column}`" in text, f"docs/output-format.md does not describe {column}"
    for name, code in [
        ("DefaultScale", tiff.TAG_DEFAULT_SCALE),
        ("DefaultCropOrigin", tiff.TAG_DEFAULT_CROP_ORIGIN),
        ("DefaultCropSize", tiff.TAG_DEFAULT_CROP_SIZE),
        ("ActiveArea", tiff.TAG_ACTIVE_AREA),
        ("PageNumber", tiff.TAG_PAGE_NUMBER),
    ]:
        assert re.search(rf"^\| {name} \| {code} \|", text, flags=re.M), name


def test_no_document_cites_a_specification_users_do_not_have():
    tracked = subprocess.run(
        [
            "git",
            "grep",
            "-n",
            "-E",
            r"SPEC( |§)",
            "--",
            "src",
            "tests",
            "workflow",
            "*.md",
            "config.yaml",
            "Makefile",
            "profiles",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    hits = [line for line in tracked.stdout.splitlines() if "tests/test_readme.py" not in line]
    assert hits == []


@pytest.mark.slow
def test_make_run_on_the_sample_gives_what_the_readme_promises(tmp_path):
    """`make run`: build the bundled sample, run the workflow with config.yaml (in a copy)."""
    readme = (REPO / "README.md").read_text()
    promised = re.search(r"^dicomprep: (\d+) converted now, .*$", readme, flags=re.M)
    tiffs = re.search(r"That is (\d+) TIFFs under `results/dataset/`", readme)
    assert promised and tiffs
    subprocess.run(
        [sys.executable, "-m", "dicomprep_testdata.sample", tmp_path / "resources" / "sample"],
        check=True,
        capture_output=True,
    )
    proc = snakemake(tmp_path, timeout=900)  # config.yaml as it is: source resources/sample
    printed = (proc.stdout + proc.stderr).splitlines()
    assert promised.group(0) in printed
    produced = list((tmp_path / "results" / "dataset").rglob("*.tiff"))
    assert len(produced) == int(promised.group(1)) == int(tiffs.group(1))
