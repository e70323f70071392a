"""Discovery of a bucket: the same catalog as the same files on disk, unchanged objects
not read again, URL lists, refused and absent objects recorded."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from dicomprep_testdata import synthetic
from pydicom.data import get_testdata_file

from dicomprep.run.discover import build_catalog

from . import test_storage_server as server
from .test_storage_server import s3, upload_tree

moto_server, bucket, proxied = server.moto_server, server.bucket, server.proxied  # fixtures

FILES = ["CT_small.dcm", "MR2_J2KR.dcm", "emri_small.dcm", "rtplan.dcm", "OBXXXX1A.dcm"]
SAME_EVERYWHERE = [c for c in ("key", "size", "status", "reason", "error_type")] + [
    "study_instance_uid",
    "series_instance_uid",
    "sop_instance_uid",
    "modality",
    "rows",
    "columns",
    "number_of_frames",
    "transfer_syntax",
    "photometric_interpretation",
]


def build_source(folder: Path) -> Path:
    for name in FILES:
        (folder / "real").mkdir(parents=True, exist_ok=True)
        shutil.copy(get_testdata_file(name), folder / "real" / name)
    for k in range(3):
        synthetic.write(synthetic.mammogram(rows=96, columns=72, seed=k), folder / f"mg/{k}.dcm")
    (folder / "readme.txt").write_text("not DICOM\n")
    (folder / "empty.dcm").write_bytes(b"")
    return folder


def test_a_bucket_catalogs_like_the_same_files_on_disk(bucket, moto_server, proxied, tmp_path):
    source = build_source(tmp_path / "src")
    upload_tree(source, moto_server.endpoint, f"{bucket}/in")
    on_disk = build_catalog(source)
    in_bucket = build_catalog(f"s3://{bucket}/in", header_concurrency=4)
    pd.testing.assert_frame_equal(in_bucket[SAME_EVERYWHERE], on_disk[SAME_EVERYWHERE])
    assert (in_bucket["path"] == f"s3://{bucket}/in/" + in_bucket["key"]).all()
    fs = s3(moto_server.endpoint)
    etags = {
        f"s3://{k}": v["ETag"].strip('"') for k, v in fs.find(f"{bucket}/in", detail=True).items()
    }
    assert dict(zip(in_bucket["path"], in_bucket["etag"], strict=True)) == etags

    # unchanged objects are not read again: the rerun is the listing alone
    before = proxied.requests
    again = build_catalog(f"s3://{bucket}/in", in_bucket, header_concurrency=4)
    pd.testing.assert_frame_equal(again, in_bucket)
    assert proxied.requests - before == 1

    # an object rewritten with other bytes of the same size is read again (its ETag)
    original = fs.cat_file(f"{bucket}/in/mg/0.dcm")
    changed = synthetic.write(
        synthetic.mammogram(rows=96, columns=72, seed=7), tmp_path / "other.dcm"
    ).read_bytes()
    assert len(changed) == len(original)
    fs.pipe({f"{bucket}/in/mg/0.dcm": changed})
    before = proxied.requests
    third = build_catalog(f"s3://{bucket}/in", again, header_concurrency=4)
    assert proxied.requests - before == 2  # the listing and one ranged read
    row = third.set_index("key").loc["mg/0.dcm"]
    assert row["sop_instance_uid"] != again.set_index("key").loc["mg/0.dcm", "sop_instance_uid"]


def test_url_lists_refused_and_absent_objects(bucket, moto_server, proxied, tmp_path):
    fs = s3(moto_server.endpoint)
    fs.put_file(get_testdata_file("CT_small.dcm"), f"{bucket}/a/ct.dcm")
    fs.put_file(get_testdata_file("MR_small.dcm"), f"{bucket}/a/mr.dcm")
    proxied.refused.add(f"/{bucket}/a/mr.dcm")
    listing = tmp_path / "list.txt"
    urls = [f"s3://{bucket}/a/ct.dcm", f"s3://{bucket}/a/mr.dcm", f"s3://{bucket}/a/gone.dcm"]
    local = synthetic.write(synthetic.mammogram(rows=64, columns=48, seed=1), tmp_path / "l.dcm")
    listing.write_text("# objects and a file\n" + "\n".join(urls) + "\nl.dcm\n")
    catalog = build_catalog(listing).set_index("path")
    assert catalog.loc[urls[0], "status"] == "dicom" and catalog.loc[urls[0], "key"] == urls[0]
    assert catalog.loc[urls[0], "modality"] == "CT"
    assert catalog.loc[str(local), "status"] == "dicom"
    assert catalog.loc[str(local), "key"] == "l.dcm"
    assert catalog.loc[urls[2], "status"] == "missing"
    # refused: reported, and read again next time (it may be allowed by then)
    assert catalog.loc[urls[1], "status"] == "missing"
    assert catalog.loc[urls[1], "error_type"] in ("AccessDenied", "NotFound")
    proxied.refused.clear()
    again = build_catalog(listing, catalog.reset_index()).set_index("path")
    assert again.loc[urls[1], "status"] == "dicom" and again.loc[urls[1], "modality"] == "MR"


def test_an_objects_etag_is_part_of_its_shard_entry_and_fingerprint(bucket, moto_server, tmp_path):
    from dicomprep.run.plan import plan_shards
    from dicomprep.run.shard import file_fingerprint
    from dicomprep.run.shard_list import SHARD_COLUMNS, read_shard_list

    source = build_source(tmp_path / "src")
    upload_tree(source, moto_server.endpoint, f"{bucket}/in")
    plan_shards(f"s3://{bucket}/in", tmp_path / "work-bucket", 1)
    plan_shards(source, tmp_path / "work-disk", 1)
    [bucket_list] = (tmp_path / "work-bucket" / "shards").glob("*.tsv")
    [disk_list] = (tmp_path / "work-disk" / "shards").glob("*.tsv")
    assert disk_list.read_text().splitlines()[0].split("\t") == SHARD_COLUMNS  # unchanged
    entries = read_shard_list(bucket_list)
    fs = s3(moto_server.endpoint)
    etags = {
        f"s3://{k}": v["ETag"].strip('"') for k, v in fs.find(f"{bucket}/in", detail=True).items()
    }
    assert {e["path"]: e["etag"] for e in entries} == {e["path"]: etags[e["path"]] for e in entries}
    entry = entries[0]
    assert file_fingerprint(entry, "o") != file_fingerprint({**entry, "etag": "other"}, "o")
    local = read_shard_list(disk_list)[0]
    assert "etag" not in local


def test_a_prefix_without_objects_is_a_source_error(bucket, moto_server):
    from dicomprep.run.discover import SourceError

    s3(moto_server.endpoint).pipe({f"{bucket}/data/a.dcm": b"x"})
    with pytest.raises(SourceError, match="holds no objects"):
        build_catalog(f"s3://{bucket}/dta")
