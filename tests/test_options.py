"""Options: validation, `--config` coercion, and the fingerprint that decides reprocessing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import yaml
from snakemake.cli import parse_config
from snakemake.utils import validate

import dicomprep
from dicomprep.options import (
    LIMIT_OPTIONS,
    OUTPUT_MODULES,
    Options,
    OptionsError,
    coerce_command_line_values,
)

from .workflow_helpers import REPO

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"crop": "false"}, "crop"),
        ({"crop_max": 1}, "crop_max"),
        ({"crop_components": None}, "crop_components"),
        ({"size": (0, 640)}, "size"),
        ({"size": (512,)}, "size"),
        ({"size": (512, 640, 3)}, "size"),
        ({"size": (512.5, 640)}, "size"),
        ({"filter": "bicubic"}, "filter"),
        ({"padding": "left"}, "padding"),
        ({"compression": "jpeg"}, "compression"),
        ({"volume": "stack"}, "volume"),
        ({"volume": "interpolate"}, "target_frames"),
        ({"volume": "interpolate", "target_frames": 0}, "target_frames"),
        ({"target_frames": -3}, "target_frames"),
        ({"voi": "window"}, "voi"),
        ({"voi": (40.0, 0.0)}, "voi"),
        ({"voi": (40.0, -400.0)}, "voi"),
    ],
)
def test_each_bad_value_raises_naming_the_option(values, named):
    with pytest.raises(OptionsError) as error:
        Options(**values)
    assert str(error.value).startswith(named), str(error.value)


def test_good_values_are_kept_in_canonical_form():
    options = Options.from_mapping(
        {"crop": True, "size": [64, 80], "voi": [40, 400], "source": "ignored", "shards": 3}
    )
    assert options.size == (64, 80) and options.voi == (40.0, 400.0) and options.crop is True
    assert options.to_dict()["size"] == [64, 80]


def command_line_config(*entries: str) -> dict:
    """What the workflow sees for `snakemake --config ENTRIES` (Snakemake's own parser)."""
    return coerce_command_line_values(parse_config(list(entries)))


def test_command_line_values_become_the_types_the_schema_wants():
    config = command_line_config(
        "size=[1024,1280]",
        "crop=true",
        "crop_max=False",
        "target_frames=null",
        "voi=[40,400]",
        "shards=8",
        "filter=lanczos3",
        "report={samples_per_modality: 3}",
    )
    assert config == {
        "size": [1024, 1280],
        "crop": True,
        "crop_max": False,
        "target_frames": None,
        "voi": [40, 400],
        "shards": 8,
        "filter": "lanczos3",
        "report": {"samples_per_modality": 3},
    }
    # the schema accepts the result, and so do the options
    full = {**yaml.safe_load((REPO / "config.yaml").read_text()), **config}
    validate(full, str(SCHEMA))
    assert Options.from_mapping(full).size == (1024, 1280)


def test_voi_none_stays_a_mode_and_null_size_keeps_the_size():
    config = command_line_config("voi=none", "size=null")
    assert config == {"voi": "none", "size": None}
    assert Options.from_mapping(config) == Options(voi="none", size=None)


def test_every_option_changes_the_fingerprint():
    base = Options(crop=True, size=(64, 80))
    changed = {
        "crop": False,
        "crop_max": True,
        "crop_components": True,
        "size": (80, 64),
        "filter": "nearest",
        "padding": "center",
        "compression": "lzw",
        "volume": "central-slice",
        "target_frames": 4,
        "voi": "none",
        "decode_resolution": "full",
        "series": "stack",
        "volume_format": "nifti",
        "mip_weight": 2.0,
        "skip_frames": 3,
    }
    # spacing replaces size (both together are an error): compared without size below
    # the safety limits refuse inputs but never change an output: not in the fingerprint
    missing = {f.name for f in fields(Options)} - set(changed) - {"spacing"} - set(LIMIT_OPTIONS)
    assert not missing, f"add a changed value for the new options {missing}"
    prints = {base.fingerprint()}
    for name, value in changed.items():
        prints.add(Options(**{**base.to_dict(), name: value}).fingerprint())
    assert len(prints) == len(changed) + 1
    assert Options(crop=True, size=(64, 80)).fingerprint() == base.fingerprint()
    assert Options(crop=True, spacing=(0.2, 0.2)).fingerprint() != base.fingerprint()
    limits = {"max_output_pixels": 10, "max_output_bytes": 10, "max_upsampling": 1.5}
    assert Options(**{**base.to_dict(), **limits}).fingerprint() == base.fingerprint()
    assert (
        Options(crop=True, spacing=(0.2, 0.2)).fingerprint()
        != Options(crop=True, spacing=(0.2, 0.2, 1.0)).fingerprint()
    )


FINGERPRINT = "from dicomprep.options import Options; print(Options(crop=True).fingerprint())"


def fingerprint_of_copy(package: Path) -> str:
    """The fingerprint computed by a fresh interpreter importing the package at ``package``."""
    code = (
        f"import dicomprep; assert dicomprep.__file__.startswith({str(package)!r}); {FINGERPRINT}"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(package.parent), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.strip()


@pytest.fixture
def package_copy(tmp_path):
    source = Path(dicomprep.__file__).parent
    return Path(
        shutil.copytree(
            source, tmp_path / "dicomprep", ignore=shutil.ignore_patterns("__pycache__")
        )
    )


def test_a_code_change_in_an_output_module_changes_the_fingerprint(package_copy):
    """Outputs made by other code are converted again; changes elsewhere reprocess nothing."""
    original = fingerprint_of_copy(package_copy)
    assert original == Options(crop=True).fingerprint()  # the copy is this code
    command_line = package_copy / "cli.py"
    assert "cli" not in OUTPUT_MODULES
    command_line.write_text(command_line.read_text() + "\n# a change to the command line only\n")
    assert fingerprint_of_copy(package_copy) == original
    resize = package_copy / "pixels" / "resize.py"
    resize.write_text(resize.read_text().replace('"""', '"""Changed. ', 1))
    assert fingerprint_of_copy(package_copy) != original
