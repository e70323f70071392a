"""The workflow on a bucket of a real local S3 server: the same dataset as from disk,
incremental reruns, deleted objects, a failing server, and output to a bucket."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
from dicomprep_testdata import synthetic
from pydicom.data import get_testdata_file

from dicomprep.formats.manifest import read_manifest

from . import test_storage_server as server
from .test_storage_server import FlakyProxy, flaky_options, s3, upload_tree
from .workflow_helpers import REAL_FILES, snakemake, tiff_bytes

moto_server, bucket = server.moto_server, server.bucket  # the fixtures

pytestmark = pytest.mark.slow

OPTIONS = {"crop": True, "crop_max": True, "size": [48, 64], "shards": 2}


def build_source(folder: Path) -> None:
    """Real pydicom test files, small synthetic mammograms in two studies, a non-DICOM
    file and an image-less object."""
    for name in REAL_FILES:
        target = folder / "real" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(get_testdata_file(name), target)
    for k in range(4):
        write_mammogram(folder / f"st{k % 2}" / f"m{k}.dcm", k % 2, k)
    (folder / "notes.txt").write_text("not DICOM\n")
    shutil.copy(get_testdata_file("rtplan.dcm"), folder / "rtplan.dcm")


def write_mammogram(path: Path, study: int, seed: int) -> Path:
    ds = synthetic.mammogram(
        rows=96, columns=72, seed=seed, study_uid=str(synthetic.derived_uid("study", study))
    )
    return synthetic.write(ds, path)


def run(workdir: Path, source, output, **extra) -> dict:
    config = {"source": source, "output": output, "work": workdir / "work", **OPTIONS, **extra}
    proc = snakemake(workdir, config=config, timeout=600)
    summary = json.loads((workdir / "work" / "summary.json").read_text())
    summary["log"] = "\n".join(  # why jobs ran, for assertion messages
        line for line in proc.stderr.splitlines() if "reason" in line or "dicomprep" in line
    )
    return summary


def comparable(manifest: pd.DataFrame) -> pd.DataFrame:
    return manifest.drop(columns="inode").reset_index(drop=True)


def failure_kinds(path: Path) -> list[tuple[str, str]]:
    failures = pd.read_csv(path, keep_default_na=False)
    return sorted(zip(failures["status"], failures["error_type"], strict=True))


@pytest.fixture(scope="module")
def on_disk(tmp_path_factory):
    """The source on disk and the workflow's dataset from it."""
    tmp = tmp_path_factory.mktemp("disk")
    build_source(tmp / "src")
    summary = run(tmp, tmp / "src", tmp / "out")
    assert summary["processed"] == len(REAL_FILES) + 4
    return tmp


def test_a_bucket_source_gives_the_dataset_of_the_same_files_on_disk(
    on_disk, moto_server, bucket, tmp_path
):
    upload_tree(on_disk / "src", moto_server.endpoint, f"{bucket}/collection")
    source = f"s3://{bucket}/collection"
    summary = run(tmp_path, source, tmp_path / "out")
    assert tiff_bytes(tmp_path / "out") == tiff_bytes(on_disk / "out")
    manifest = read_manifest(tmp_path / "out" / "manifest.csv")
    pd.testing.assert_frame_equal(
        comparable(manifest), comparable(read_manifest(on_disk / "out" / "manifest.csv"))
    )
    assert failure_kinds(tmp_path / "out" / "failures.csv") == failure_kinds(
        on_disk / "out" / "failures.csv"
    )
    catalog = pd.read_parquet(tmp_path / "work" / "catalog.parquet")
    assert catalog["path"].str.startswith(f"{source}/").all()
    assert (catalog["etag"] != "").all()
    assert summary["converted_now"] == len(REAL_FILES) + 4

    # added objects: only they are converted, no header of the others is read again
    fs = s3(moto_server.endpoint)
    extra = write_mammogram(tmp_path / "extra" / "m9.dcm", 5, 9)
    fs.put_file(str(extra), f"{bucket}/collection/st5/m9.dcm")
    before = catalog.set_index("key")
    summary = run(tmp_path, source, tmp_path / "out")
    assert summary["converted_now"] == 1
    after = pd.read_parquet(tmp_path / "work" / "catalog.parquet").set_index("key")
    assert len(after) == len(before) + 1
    pd.testing.assert_frame_equal(after.loc[before.index], before)

    # a deleted object: its output is removed and named
    gone = manifest.loc[manifest["source"] == "st0/m0.dcm", "path"].item()
    fs.rm_file(f"{bucket}/collection/st0/m0.dcm")
    summary = run(tmp_path, source, tmp_path / "out")
    assert summary["converted_now"] == 0 and summary["removed_now"] == 1
    assert not (tmp_path / "out" / gone).exists()
    assert any(gone in removed for removed in summary["removed"])
    manifest = read_manifest(tmp_path / "out" / "manifest.csv")
    assert gone not in set(manifest["path"]) and len(manifest) == len(REAL_FILES) + 4


def test_a_failing_server_costs_retries_not_files(on_disk, moto_server, bucket, tmp_path):
    upload_tree(on_disk / "src", moto_server.endpoint, f"{bucket}/c")
    proxy = FlakyProxy(moto_server.endpoint, fraction=0.2, seed=5, stall_seconds=2.5)
    try:
        summary = run(
            tmp_path,
            f"s3://{bucket}/c",
            tmp_path / "out",
            storage_options=flaky_options(proxy.endpoint),
        )
    finally:
        proxy.stop()
    assert sum(proxy.faults.values()) >= 3, proxy.faults
    assert summary["converted_now"] == len(REAL_FILES) + 4
    assert tiff_bytes(tmp_path / "out") == tiff_bytes(on_disk / "out")
    manifest = read_manifest(tmp_path / "out" / "manifest.csv")
    assert manifest["sop_instance_uid"].is_unique
    pd.testing.assert_frame_equal(
        comparable(manifest), comparable(read_manifest(on_disk / "out" / "manifest.csv"))
    )


def test_outputs_go_to_a_bucket_one_object_each(on_disk, moto_server, bucket, tmp_path):
    output = f"s3://{bucket}/dataset"
    summary = run(tmp_path, on_disk / "src", output)
    assert summary["converted_now"] == len(REAL_FILES) + 4
    fs = s3(moto_server.endpoint)
    expected = tiff_bytes(on_disk / "out")
    stored = {
        name[len(f"{bucket}/dataset/") :]: fs.cat_file(name)
        for name in fs.find(f"{bucket}/dataset")
        if name.endswith(".tiff")
    }
    assert stored == expected
    manifest_path = tmp_path / "work" / "dataset" / "manifest.csv"
    manifest = read_manifest(manifest_path)
    assert manifest["inode"].isna().all()
    rows = pd.read_csv(manifest_path, dtype=str, keep_default_na=False)
    assert (rows["inode"] == "").all()
    pd.testing.assert_frame_equal(
        comparable(manifest), comparable(read_manifest(on_disk / "out" / "manifest.csv"))
    )
    # a rerun writes no object (LastModified has whole seconds: wait one out)
    stamps = {k: v["LastModified"] for k, v in fs.find(f"{bucket}/dataset", detail=True).items()}
    time.sleep(1.1)
    summary = run(tmp_path, on_disk / "src", output)
    fs.invalidate_cache()
    again = {k: v["LastModified"] for k, v in fs.find(f"{bucket}/dataset", detail=True).items()}
    assert again == stamps, summary["log"]
    # an output deleted from the bucket is converted again, alone
    fs.rm_file(f"{bucket}/dataset/{manifest['path'][0]}")
    summary = run(tmp_path, on_disk / "src", output)
    assert summary["converted_now"] == 1, summary["log"]
    assert fs.cat_file(f"{bucket}/dataset/{manifest['path'][0]}") == expected[manifest["path"][0]]


def test_a_series_in_a_bucket_becomes_one_volume_in_a_bucket(moto_server, bucket, tmp_path):
    """`series: stack` with slices and outputs in object storage: the same volume and
    slices table as from disk to disk; a rerun has nothing to do."""
    from .series_helpers import write_series

    write_series(tmp_path / "src" / "ct", count=5, name="bucket-series")
    stacked = {"series": "stack", "voi": "none"}
    run(tmp_path / "disk", tmp_path / "src", tmp_path / "disk" / "out", **stacked)
    [volume] = tiff_bytes(tmp_path / "disk" / "out").items()

    upload_tree(tmp_path / "src", moto_server.endpoint, f"{bucket}/series")
    output = f"s3://{bucket}/volumes"
    summary = run(tmp_path / "web", f"s3://{bucket}/series", output, **stacked)
    assert summary["converted_now"] == 1, summary["log"]  # one output, the volume
    fs = s3(moto_server.endpoint)
    assert fs.cat_file(f"{bucket}/volumes/{volume[0]}") == volume[1]
    dataset = tmp_path / "web" / "work" / "dataset"
    slices = pd.read_csv(dataset / "slices.csv", dtype=str)
    on_disk = pd.read_csv(tmp_path / "disk" / "out" / "slices.csv", dtype=str)
    assert slices["path"].tolist() == on_disk["path"].tolist() == [volume[0]] * 5
    for column in ("sop_instance_uid", "page", "position", "source"):  # relative sources
        assert slices[column].tolist() == on_disk[column].tolist()
    manifest = read_manifest(dataset / "manifest.csv")
    assert (manifest["path"].tolist(), manifest["slices"].tolist()) == ([volume[0]], [5])

    again = run(tmp_path / "web", f"s3://{bucket}/series", output, **stacked)
    assert again["converted_now"] == 0, again["log"]
