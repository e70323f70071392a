"""The workflow configuration: one set of defaults, and clear messages for wrong keys.

The schema's defaults, config.yaml, README.md's configuration table and
docs/configuration.md must agree key by key; an option added in one place and not the
others fails here.
"""

from __future__ import annotations

import re
import subprocess

import pandas as pd
import pydicom
import pytest
import yaml
from dicomprep_testdata import synthetic

from dicomprep.options import OptionsError, check_config_keys, load_schema, unknown_config_keys

from .workflow_helpers import REPO, snakemake, snakemake_command

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
CONFIG = REPO / "config.yaml"
# Keys the workflow cannot guess: the schema requires them instead of giving defaults.
REQUIRED = {"source", "output", "work"}


def flatten(mapping: dict, prefix: str = "") -> dict:
    """{"report": {"samples_per_modality": 24}} -> {"report.samples_per_modality": 24}."""
    out = {}
    for key, value in mapping.items():
        if isinstance(value, dict) and value:  # an empty mapping is a value ({})
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def schema_defaults(schema: dict, prefix: str = "") -> dict:
    """Dotted key -> default of every leaf property (nested objects are descended into)."""
    out = {}
    for key, prop in schema["properties"].items():
        if "properties" in prop:
            out.update(schema_defaults(prop, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = prop.get("default", "<no default>")
    return out


def markdown_defaults(path) -> dict:
    """Dotted key -> default from the first Markdown table with `key` and `default` columns.

    Cells look like `` `shards` `` and `` `[512, 640]` `` (YAML in backticks)."""
    lines = path.read_text().splitlines()
    header_index = next(
        i
        for i, line in enumerate(lines)
        if line.startswith("|") and {"key", "default"} <= set(cells(line))
    )
    header = cells(lines[header_index])
    key_col, default_col = header.index("key"), header.index("default")
    out = {}
    for line in lines[header_index + 2 :]:
        if not line.startswith("|"):
            break
        row = cells(line)
        key = re.fullmatch(r"`([\w.]+)`", row[key_col])
        default = re.fullmatch(r"`([^`]*)`", row[default_col])
        assert key and default, f"{path.name}: cannot read row {line!r}"
        out[key.group(1)] = yaml.safe_load(default.group(1))
    return out


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_schema_defaults_equal_config_yaml():
    schema = load_schema(SCHEMA)
    config = flatten(yaml.safe_load(CONFIG.read_text()))
    defaults = schema_defaults(schema)
    assert set(config) == set(defaults), "config.yaml and the schema list different keys"
    for key, default in defaults.items():
        if key in REQUIRED:
            assert default == "<no default>" and key in schema["required"]
        else:
            assert config[key] == default, f"{key}: config.yaml {config[key]!r}, schema {default!r}"


@pytest.mark.parametrize("doc", ["README.md", "docs/configuration.md"])
def test_documented_defaults_equal_config_yaml(doc):
    config = flatten(yaml.safe_load(CONFIG.read_text()))
    documented = markdown_defaults(REPO / doc)
    assert set(documented) == set(config), (
        f"{doc} misses {sorted(set(config) - set(documented))}, "
        f"has extra {sorted(set(documented) - set(config))}"
    )
    for key, value in config.items():
        assert documented[key] == value, f"{doc}: {key} is {documented[key]!r}, not {value!r}"


def test_unknown_keys_are_named_at_every_level():
    schema = load_schema(SCHEMA)
    config = yaml.safe_load(CONFIG.read_text())
    assert unknown_config_keys(config, schema) == []
    check_config_keys(config, schema)  # no error
    bad = {**config, "crop_maximum": True, "report": {"samples": 3}}
    assert sorted(unknown_config_keys(bad, schema)) == ["crop_maximum", "report.samples"]
    with pytest.raises(OptionsError) as error:
        check_config_keys({**config, "report": {"samples": 3}}, schema)
    assert str(error.value).startswith("unknown key 'report.samples'; valid keys of report: ")
    assert "samples_per_modality" in str(error.value)


def test_workflow_names_an_unknown_key_in_one_line(tmp_path):
    """`--config crop_maximum=true` stops the run with one line, not the schema."""
    command = snakemake_command(tmp_path, None, "--dry-run", "--config", "crop_maximum=true")
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    printed = proc.stdout + proc.stderr
    assert proc.returncode != 0
    messages = [line for line in printed.splitlines() if "crop_maximum" in line]
    assert len(messages) == 1, printed
    assert messages[0].startswith("config: unknown key 'crop_maximum'; valid keys: source, ")
    schema_keys = load_schema(SCHEMA)["properties"]
    assert all(key in messages[0] for key in schema_keys)
    assert "additionalProperties" not in printed  # the schema is not printed
    assert len(printed.splitlines()) < 10, printed
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_strict_run_fails_naming_the_file_that_failed(tmp_path):
    """`strict: true` with every input DICOM: the run converts, then fails naming the file."""
    source = tmp_path / "src"
    good = synthetic.write(synthetic.mammogram(rows=208, columns=160, seed=1), source / "ok.dcm")
    spare = synthetic.write(synthetic.mammogram(rows=208, columns=160, seed=2), tmp_path / "x.dcm")
    synthetic.truncated_copy(spare, source / "truncated.dcm")
    config = {
        "source": source,
        "output": tmp_path / "out",
        "work": tmp_path / "work",
        "strict": True,
        "size": [64, 80],
    }
    proc = snakemake(tmp_path, config=config, check=False)
    printed = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "strict: 1 input(s) did not become a TIFF" in printed, printed[-3000:]
    assert f"failed: {source / 'truncated.dcm'}" in printed
    assert not (tmp_path / "work" / "strict.ok").exists()
    manifest = pd.read_csv(tmp_path / "out" / "manifest.csv")  # the rest was still converted
    assert list(manifest["sop_instance_uid"]) == [str(pydicom.dcmread(good).SOPInstanceUID)]
