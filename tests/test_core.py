"""The bottom layer: the status and stage names agree with the error vocabulary's, results
travel as plain JSON, and atomic_file replaces a file whole or not at all."""

import json
import os

import pytest

from dicomprep.core.durable import atomic_file, atomic_write_bytes
from dicomprep.core.errors import STAGES, STATUS_DESCRIPTIONS
from dicomprep.core.records import (
    FAILED,
    OK,
    FileResult,
    SlicePlacement,
    StackResult,
    Stage,
    Status,
    read_results,
    write_results,
)


def test_stage_and_status_names_are_the_vocabulary():
    assert tuple(Stage) == STAGES
    assert set(STATUS_DESCRIPTIONS) | {"ok", "removed"} == {s.value for s in Status}
    assert OK == "ok" and f"{FAILED}" == "failed"


def test_results_written_and_read_back_are_plain_strings(tmp_path):
    result = FileResult(source="a.dcm", status=FAILED, stage=Stage.DECODE, error_type="X")
    write_results([result.to_dict()], tmp_path / "r.jsonl")
    [row] = read_results(tmp_path / "r.jsonl")
    assert (row["status"], row["stage"], row["source"]) == ("failed", "decode", "a.dcm")
    assert json.loads((tmp_path / "r.jsonl").read_text())["status"] == "failed"


def test_a_stack_result_counts_its_sources_and_lists_its_slices():
    placed = SlicePlacement(sop_instance_uid="1.2", source="s1.dcm", page=0, position=1.5)
    result = StackResult(sources=["s1.dcm", "s2.dcm"], status=OK, slices=[placed])
    out = result.to_dict()
    assert out["slices"] == 2 and "geometry" not in out
    assert out["slice_rows"] == [
        {"sop_instance_uid": "1.2", "source": "s1.dcm", "page": 0, "position": 1.5}
    ]


def test_atomic_file_replaces_the_file_whole(tmp_path):
    target = tmp_path / "sub" / "out.bin"
    with atomic_file(target) as tmp:
        assert tmp.parent == target.parent and tmp.name == f".out.bin.{os.getpid()}.tmp"
        tmp.write_bytes(b"new")
        assert not target.exists()  # nothing at the target until the block ends
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.bin"]


def test_atomic_file_leaves_the_old_file_and_no_temporary_on_error(tmp_path):
    target = tmp_path / "out.bin"
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError, match="half way"), atomic_file(target) as tmp:
        tmp.write_bytes(b"part")
        raise RuntimeError("half way")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
