"""The package's layers hold (pyproject.toml's [tool.importlinter] contracts, checked by
``lint-imports``), and an upward import breaks them, naming the edge."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(
    not LINT_IMPORTS.exists(), reason="import-linter is not installed (the test extra has it)"
)


def lint_imports(project: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the package under ``project/src`` with ``project``'s contracts."""
    env = {**os.environ, "PYTHONPATH": str(project / "src")}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(project / "pyproject.toml")],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_tree_keeps_every_contract():
    proc = lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def lint_imports_with(tmp_path, module: str, line: str) -> subprocess.CompletedProcess:
    """lint-imports on a copy of the tree where ``line`` is appended to ``module`` (a
    path under src/dicomprep)."""
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("*.egg-info"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    path = tmp_path / "src" / "dicomprep" / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    return lint_imports(tmp_path)


def test_an_upward_import_breaks_the_layers_naming_the_edge(tmp_path):
    proc = lint_imports_with(tmp_path, "formats/geometry.py", "from dicomprep.run import walk")

    assert proc.returncode != 0
    assert "dicomprep.formats is not allowed to import dicomprep.run" in proc.stdout
    assert "dicomprep.formats.geometry -> dicomprep.run.walk" in proc.stdout


def test_the_bottom_layer_importing_a_library_breaks_its_contract(tmp_path):
    proc = lint_imports_with(tmp_path, "core/records.py", "import pandas")

    assert proc.returncode != 0
    assert "dicomprep.core.records -> pandas" in proc.stdout
