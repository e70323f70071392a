"""Every output stays byte-identical: the SHA-256 of every TIFF / NIfTI the command line
and the workflow make from every bundled pydicom / pydicom-data file and the sample set,
under six option sets, equals the golden list recorded from a known-good tree
(tests/golden.py says how to record it again when a commit names a fix that changes
outputs)."""

from __future__ import annotations

import json

import pytest

from tests.golden import GOLDEN, OPTION_SETS, compute


@pytest.fixture(scope="module")
def golden():
    return json.loads(GOLDEN.read_text())


@pytest.mark.parametrize("name", list(OPTION_SETS))
def test_outputs_equal_the_golden_list(tmp_path, golden, name):
    hashes = compute(tmp_path, [name])[name]
    for runner in ("cli", "workflow"):
        expected, found = golden[name][runner], hashes[runner]
        assert sorted(found) == sorted(expected), (runner, set(found) ^ set(expected))
        changed = sorted(path for path in expected if found[path] != expected[path])
        assert changed == [], f"{runner}: {len(changed)} output(s) changed, e.g. {changed[:5]}"


def test_the_command_line_and_the_workflow_make_the_same_outputs(golden):
    for name, runs in golden.items():
        assert runs["cli"] == runs["workflow"], name
