"""Run state under damage and change: state files torn, emptied or corrupted the way
crashes and full disks leave them, outputs deleted or changed by hand, sources deleted,
replaced or moved.  After every case the next run's dataset folder and manifest agree,
nothing finished is converted twice and nothing is lost."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pydicom
import pytest
from dicomprep_testdata import synthetic

from dicomprep.formats.manifest import read_manifest, scan_dataset
from dicomprep.run.shard import read_journal

from .reliability_helpers import environment_with_hook
from .workflow_helpers import snakemake, tiff_states

pytestmark = pytest.mark.slow

OPTIONS = {"crop": True, "crop_max": True, "size": [48, 64], "shards": 3}


def config(tmp: Path, source: Path | str | None = None, **extra) -> dict:
    return {
        "source": source if source is not None else tmp / "src",
        "output": tmp / "out",
        "work": tmp / "work",
        **OPTIONS,
        **extra,
    }


def write_mammogram(path: Path, study: int, seed: int) -> Path:
    ds = synthetic.mammogram(
        rows=96, columns=72, seed=seed, study_uid=str(synthetic.derived_uid("study", study))
    )
    return synthetic.write(ds, path)


def build_source(src: Path) -> list[Path]:
    """Six small mammograms in three studies."""
    return [write_mammogram(src / f"st{k % 3}" / f"m{k}.dcm", k % 3, k) for k in range(6)]


def summary(tmp: Path) -> dict:
    return json.loads((tmp / "work" / "summary.json").read_text())


def run(tmp: Path, **kwargs):
    proc = snakemake(tmp, config=config(tmp, **kwargs))
    return proc.stdout + proc.stderr


def assert_folder_and_manifest_agree(tmp: Path) -> pd.DataFrame:
    """The manifest lists exactly the TIFFs in the dataset folder, with their inodes."""
    manifest = read_manifest(tmp / "out" / "manifest.csv")
    folder = scan_dataset(tmp / "out")
    assert sorted(manifest["path"]) == sorted(folder["path"])
    assert dict(zip(manifest["path"], manifest["inode"], strict=True)) == dict(
        zip(folder["path"], folder["inode"], strict=True)
    )
    return manifest


@pytest.fixture
def finished(tmp_path):
    files = build_source(tmp_path / "src")
    run(tmp_path)
    assert summary(tmp_path)["converted_now"] == 6
    return tmp_path, files


def results_files(tmp: Path) -> list[Path]:
    return sorted((tmp / "work" / "shards").glob("*.results.jsonl"))


# -- state files ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[: len(data) - 40], id="torn-last-line"),
        pytest.param(lambda data: b"", id="empty"),
        pytest.param(lambda data: data[:10] + b"\xff\xfe\x00" + data[13:], id="corrupt-bytes"),
    ],
)
def test_a_damaged_results_file_makes_its_shard_run_again_naming_the_file(finished, damage):
    tmp, _ = finished
    before = tiff_states(tmp / "out")
    victim = results_files(tmp)[0]
    victim.write_bytes(damage(victim.read_bytes()))
    output = run(tmp)
    assert "runs again" in output and victim.name in output
    assert summary(tmp)["converted_now"] == 0  # the journal still knows every file
    assert tiff_states(tmp / "out") == before
    manifest = assert_folder_and_manifest_agree(tmp)
    assert len(manifest) == 6


def test_a_torn_journal_line_costs_only_its_file_and_the_next_record_is_kept(finished):
    tmp, files = finished
    journal = max((tmp / "work" / "journal").glob("s*.jsonl"), key=lambda p: p.stat().st_size)
    lines = journal.read_bytes().splitlines(keepends=True)
    torn_key = json.loads(lines[-1])["key"]
    journal.write_bytes(b"".join(lines[:-1]) + lines[-1][:25])  # a crash mid-append
    # a new file of the same study goes to the same shard and is appended after the tear
    study = int(Path(torn_key).parts[0][2:])
    new = write_mammogram(tmp / "src" / f"st{study}" / "new.dcm", study, 50)
    run(tmp)
    assert summary(tmp)["converted_now"] == 2  # the torn record's file and the new one
    records = read_journal(journal)
    assert torn_key in records and f"st{study}/new.dcm" in records
    assert len(journal.read_text().splitlines()) == len(records)  # compacted, no torn line
    assert new.exists()
    assert len(assert_folder_and_manifest_agree(tmp)) == 7


# Loaded by every Python process of a run (sitecustomize): the shard job's process is
# killed right before it writes the journal record of one file, i.e. after the worker
# renamed that file's TIFF into place -- the window a kill can hit in any real run.
KILL_BEFORE_RECORD = """
import os
import signal

key = os.environ.get("KILL_BEFORE_RECORD_OF")
if key:
    import dicomprep.run.journal as journal

    original = journal.journal_record

    def journal_record(entry, *args, **kwargs):
        if entry["key"] == key:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(entry, *args, **kwargs)

    journal.journal_record = journal_record
"""


def test_a_tiff_renamed_just_before_a_kill_is_removed_once_its_source_is_gone(finished):
    tmp, _ = finished
    new = write_mammogram(tmp / "src" / "st0" / "new.dcm", 0, 90)
    env = environment_with_hook(
        tmp / "hook", KILL_BEFORE_RECORD, KILL_BEFORE_RECORD_OF="st0/new.dcm"
    )
    proc = snakemake(tmp, config=config(tmp), check=False, env=env)
    assert proc.returncode != 0  # the shard job was killed
    assert len(list((tmp / "out").rglob("*.tiff"))) == 7  # its TIFF is there, unrecorded
    new.unlink()  # and its source goes before the next run
    run(tmp)
    manifest = assert_folder_and_manifest_agree(tmp)
    assert sorted(manifest["source"]) == sorted(f"st{k % 3}/m{k}.dcm" for k in range(6))


def test_invalid_bytes_in_state_files_never_stop_the_planner_or_a_shard(finished):
    tmp, _ = finished
    for shard_list in (tmp / "work" / "shards").glob("s*.tsv"):
        shard_list.write_bytes(shard_list.read_bytes()[:30] + b"\xff\xfe" + b"\n")
    for journal in (tmp / "work" / "journal").glob("s*.jsonl"):
        journal.write_bytes(b"\xff\xfe garbage\n" + journal.read_bytes())
    (tmp / "work" / "catalog.parquet").write_bytes(b"PAR1\xff not parquet")
    write_mammogram(tmp / "src" / "st0" / "new.dcm", 0, 60)  # its shard must run
    run(tmp)
    assert summary(tmp)["converted_now"] == 1  # only the new file
    assert len(assert_folder_and_manifest_agree(tmp)) == 7


def test_journals_are_compacted_to_one_record_per_file(finished):
    tmp, files = finished
    for k in range(3):  # three passes that each change one file
        write_mammogram(files[k], k % 3, 100 + k)
        run(tmp)
    lines = sum(len(j.read_text().splitlines()) for j in (tmp / "work" / "journal").glob("*.jsonl"))
    assert lines == 6


# -- outputs changed by hand ------------------------------------------------------------


def test_a_tiff_deleted_by_hand_is_converted_again_alone(finished):
    tmp, _ = finished
    before = tiff_states(tmp / "out")
    victim = sorted(before)[2]
    (tmp / "out" / victim).unlink()
    output = run(tmp)
    assert "Nothing to be done" not in output
    assert summary(tmp)["converted_now"] == 1
    after = tiff_states(tmp / "out")
    assert set(after) == set(before)
    assert {k: v for k, v in after.items() if k != victim} == {
        k: v for k, v in before.items() if k != victim
    }
    assert len(assert_folder_and_manifest_agree(tmp)) == 6


def test_a_tiff_overwritten_by_hand_is_converted_again(finished):
    tmp, _ = finished
    victim = tmp / "out" / sorted(tiff_states(tmp / "out"))[0]
    good = victim.read_bytes()
    victim.write_bytes(b"II*\x00 not the image")
    run(tmp)
    assert summary(tmp)["converted_now"] == 1
    assert victim.read_bytes() == good
    assert_folder_and_manifest_agree(tmp)


# -- the dataset follows the source -------------------------------------------------


def test_outputs_of_deleted_sources_are_removed_and_named(finished):
    tmp, files = finished
    before = read_manifest(tmp / "out" / "manifest.csv")
    gone = files[1]
    gone_output = before.loc[before["source"] == "st1/m1.dcm", "path"].item()
    gone.unlink()
    output = run(tmp)
    assert not (tmp / "out" / gone_output).exists()
    assert "0 converted now, 5 reused, 1 removed" in output
    assert f"listed in {tmp / 'work' / 'removed.txt'}" in output
    assert (tmp / "work" / "removed.txt").read_text().splitlines()[1:] == [
        str(tmp / "out" / gone_output)
    ]
    assert summary(tmp)["converted_now"] == 0
    manifest = assert_folder_and_manifest_agree(tmp)
    assert len(manifest) == 5 and "st1/m1.dcm" not in set(manifest["source"])

    # the next run has nothing to do: it neither repeats the removal nor counts it
    output = run(tmp)
    assert "Nothing to be done" in output and "were removed" not in output
    assert "dicomprep: 0 converted now, 5 reused, 0 removed" in output
    numbers = summary(tmp)
    assert (numbers["removed_now"], numbers["removed"], numbers["converted_now"]) == (0, [], 0)


def test_a_study_deleted_whole_loses_its_outputs(finished):
    tmp, files = finished
    shutil.rmtree(tmp / "src" / "st2")
    run(tmp)
    manifest = assert_folder_and_manifest_agree(tmp)
    assert sorted(manifest["source"]) == ["st0/m0.dcm", "st0/m3.dcm", "st1/m1.dcm", "st1/m4.dcm"]
    assert "Nothing to be done" in run(tmp)  # and the emptied shard does not run again


def test_keep_orphans_keeps_the_tiff_but_not_in_the_manifest(finished):
    tmp, files = finished
    before = read_manifest(tmp / "out" / "manifest.csv")
    gone_output = before.loc[before["source"] == "st0/m3.dcm", "path"].item()
    files[3].unlink()
    run(tmp, keep_orphans=True)
    assert (tmp / "out" / gone_output).exists()
    manifest = read_manifest(tmp / "out" / "manifest.csv")
    assert gone_output not in set(manifest["path"]) and len(manifest) == 5


def test_a_source_replaced_by_another_image_replaces_its_output(finished):
    tmp, files = finished
    before = read_manifest(tmp / "out" / "manifest.csv")
    old_output = before.loc[before["source"] == "st0/m0.dcm", "path"].item()
    write_mammogram(files[0], 0, 77)  # same path, another SOP Instance UID
    run(tmp)
    manifest = assert_folder_and_manifest_agree(tmp)
    assert not (tmp / "out" / old_output).exists()
    new_output = manifest.loc[manifest["source"] == "st0/m0.dcm", "path"].item()
    assert new_output != old_output and len(manifest) == 6
    assert summary(tmp)["converted_now"] == 1


def test_a_source_rewritten_in_place_with_the_same_uids_is_converted_again(finished):
    """Same path, same SOP Instance UID, other pixels: the stale TIFF must not survive
    (the fingerprint holds the file's size and mtime)."""
    tmp, files = finished
    before = read_manifest(tmp / "out" / "manifest.csv").set_index("source")
    output = tmp / "out" / before.loc["st1/m4.dcm", "path"]
    old_bytes = output.read_bytes()
    ds = pydicom.dcmread(files[4])
    pixels = ds.pixel_array
    ds.PixelData = (pixels // 2).astype(pixels.dtype).tobytes()  # darker, same size
    ds.save_as(files[4])
    run(tmp)
    assert summary(tmp)["converted_now"] == 1
    assert output.exists() and output.read_bytes() != old_bytes
    assert_folder_and_manifest_agree(tmp)


def test_moving_the_source_root_converts_nothing(finished):
    tmp, _ = finished
    before = tiff_states(tmp / "out")
    (tmp / "src").rename(tmp / "archive-moved")
    run(tmp, source=tmp / "archive-moved")
    assert summary(tmp)["converted_now"] == 0
    assert tiff_states(tmp / "out") == before
    manifest = assert_folder_and_manifest_agree(tmp)
    assert sorted(manifest["source"])[0] == "st0/m0.dcm"


def test_a_relative_source_path_is_the_same_source(finished):
    tmp, _ = finished
    before = tiff_states(tmp / "out")
    run(tmp, source="src")  # relative to the working directory (tmp)
    assert summary(tmp)["converted_now"] == 0
    assert tiff_states(tmp / "out") == before


# -- duplicates ------------------------------------------------------------------------


def test_a_damaged_first_copy_does_not_cost_the_image(tmp_path):
    good = write_mammogram(tmp_path / "spare" / "m.dcm", 0, 5)
    synthetic.truncated_copy(good, tmp_path / "src" / "a" / "copy.dcm")  # first in path order
    (tmp_path / "src" / "b").mkdir()
    shutil.copy(good, tmp_path / "src" / "b" / "copy.dcm")
    output = run(tmp_path)
    manifest = assert_folder_and_manifest_agree(tmp_path)
    assert list(manifest["source"]) == ["b/copy.dcm"]
    failures = pd.read_csv(tmp_path / "out" / "failures.csv", keep_default_na=False)
    row = failures.set_index("path").loc[str(tmp_path / "src" / "a" / "copy.dcm")]
    assert row["status"] == "failed" and "b/copy.dcm was converted instead" in row["message"]
    assert "1 converted now" in output and "1 failed" in output
    # when the shard runs again (a new file in the study), the journal says the damaged
    # copy fails and the intact one is done: neither is decoded again
    before = tiff_states(tmp_path / "out")
    write_mammogram(tmp_path / "src" / "c.dcm", 0, 6)
    run(tmp_path)
    assert summary(tmp_path)["converted_now"] == 1
    [log] = (tmp_path / "work" / "logs" / "preprocess").glob("*.log")
    assert "copy.dcm" not in log.read_text()
    assert {k: v for k, v in tiff_states(tmp_path / "out").items() if k in before} == before
    failures = pd.read_csv(tmp_path / "out" / "failures.csv", keep_default_na=False)
    assert "b/copy.dcm was converted instead" in failures["message"].item()


def test_the_first_good_copy_wins_and_later_copies_are_duplicates(tmp_path):
    good = write_mammogram(tmp_path / "src" / "a.dcm", 0, 5)
    shutil.copy(good, tmp_path / "src" / "b.dcm")
    shutil.copy(good, tmp_path / "src" / "c.dcm")
    run(tmp_path)
    manifest = assert_folder_and_manifest_agree(tmp_path)
    assert list(manifest["source"]) == ["a.dcm"]
    failures = pd.read_csv(tmp_path / "out" / "failures.csv", keep_default_na=False)
    assert list(failures["status"]) == ["duplicate", "duplicate"]
    assert all(m.endswith("a.dcm") for m in failures["message"])
    # removing the first copy lets the next one win, and the folder still agrees
    os.unlink(good)
    run(tmp_path)
    manifest = assert_folder_and_manifest_agree(tmp_path)
    assert list(manifest["source"]) == ["b.dcm"]


def test_a_file_name_that_is_not_utf8_is_one_failure_line(tmp_path):
    build_source(tmp_path / "src")
    bad = os.path.join(os.fsencode(tmp_path / "src"), b"bad\xff name.dcm")
    with open(bad, "wb") as f:
        f.write(synthetic.encode(synthetic.mammogram(rows=96, columns=72, seed=9)))
    run(tmp_path)
    failures = pd.read_csv(tmp_path / "out" / "failures.csv", keep_default_na=False)
    [row] = failures.itertuples()
    assert row.error_type == "InvalidFileName" and "\\xff" in row.path
    assert len(assert_folder_and_manifest_agree(tmp_path)) == 6
