"""The dicomprep wheel ships the product only: the test data (synthetic generators, the sample
set and what a run over it must report) is the development package in testdata/."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .workflow_helpers import REPO

TEST_DATA_MODULES = ("synthetic.py", "sample.py")
SYNTHETIC_PATIENT = b"SYNTHETIC^JANE^Q"  # written by the generators into every file they make


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> dict[str, bytes]:
    """{path: bytes} of every file in the wheel `pip wheel --no-deps .` builds from a copy of
    the project (the checkout itself gets no build/ or egg-info folders)."""
    root = tmp_path_factory.mktemp("wheel")
    project = root / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, project / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(REPO / "src", project / "src", ignore=ignore)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet"]
    proc = subprocess.run(
        [*command, "-w", str(root / "dist"), str(project)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    (built,) = (root / "dist").glob("dicomprep-*.whl")
    with zipfile.ZipFile(built) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_the_wheel_ships_the_package_its_templates_and_commands(wheel):
    assert {"dicomprep/__init__.py", "dicomprep/cli.py", "dicomprep/pipeline.py"} <= set(wheel)
    assert any(name.startswith("dicomprep/report/templates/") for name in wheel)
    (entry_points,) = [name for name in wheel if name.endswith(".dist-info/entry_points.txt")]
    assert b"dicom-preprocess = dicomprep.cli:preprocess_main" in wheel[entry_points]


def test_the_wheel_ships_no_test_data(wheel):
    modules = [name for name in wheel if name.endswith(".py")]
    assert [name for name in modules if Path(name).name in TEST_DATA_MODULES] == []
    assert [name for name in wheel if name.startswith("dicomprep_testdata")] == []
    assert [name for name in modules if SYNTHETIC_PATIENT in wheel[name]] == []


def test_nothing_the_wheel_ships_imports_the_test_data(wheel):
    modules = {name: data for name, data in wheel.items() if name.endswith(".py")}
    assert len(modules) > 50
    assert [name for name, data in modules.items() if b"dicomprep_testdata" in data] == []


def test_the_test_data_is_its_own_package_with_the_sample_builder():
    from dicomprep_testdata import sample, synthetic

    assert Path(synthetic.__file__).parent == REPO / "testdata" / "dicomprep_testdata"
    assert sample.SAMPLE_EXPECTATIONS.tiff_count > 0
