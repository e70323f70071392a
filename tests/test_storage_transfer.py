"""One shard entry at a time: an object fetched, converted and its TIFF put, against the
same file converted from disk; refused and absent objects are one failure line each."""

from __future__ import annotations

from pathlib import Path

from pydicom.data import get_testdata_file

from dicomprep.options import Options
from dicomprep.pipeline import process_file
from dicomprep.run.remote import convert_entry
from dicomprep.storage import retry
from dicomprep.storage.objects import configure
from dicomprep.storage.transfer import UNAVAILABLE

from . import test_storage_server as server
from .test_storage_server import FlakyProxy, flaky_options, s3

moto_server, bucket, proxied = server.moto_server, server.bucket, server.proxied  # fixtures

OPTIONS = Options(crop=True, crop_max=True, size=(48, 64))


def entry(url: str) -> dict:
    return {
        "path": url,
        "key": url.rsplit("/", 1)[-1],
        "study_instance_uid": "",
        "sop_instance_uid": "",
    }


def test_an_object_becomes_the_tiff_of_the_same_file(bucket, moto_server, proxied, tmp_path):
    local = get_testdata_file("MR2_J2KR.dcm")
    fs = s3(moto_server.endpoint)
    fs.put_file(local, f"{bucket}/src/mr.dcm")
    expected = process_file(local, tmp_path / "disk", OPTIONS)
    result = convert_entry(entry(f"s3://{bucket}/src/mr.dcm"), tmp_path / "local", OPTIONS)
    assert result.status == "ok" and result.source == f"s3://{bucket}/src/mr.dcm"
    relative = expected.output[len(str(tmp_path / "disk")) + 1 :]
    assert result.output == str(tmp_path / "local" / relative)
    assert (tmp_path / "local" / relative).read_bytes() == (
        tmp_path / "disk" / relative
    ).read_bytes()

    # both ends in the bucket: one object, the same bytes
    result = convert_entry(entry(f"s3://{bucket}/src/mr.dcm"), f"s3://{bucket}/out", OPTIONS)
    assert result.status == "ok" and result.output == f"s3://{bucket}/out/{relative}"
    assert fs.cat_file(f"{bucket}/out/{relative}") == (tmp_path / "disk" / relative).read_bytes()
    assert fs.find(f"{bucket}/out") == [f"{bucket}/out/{relative}"]  # no temporaries


def test_a_file_that_does_not_convert_puts_nothing_and_is_one_failure(
    bucket, moto_server, proxied, tmp_path
):
    fs = s3(moto_server.endpoint)
    data = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    fs.pipe_file(f"{bucket}/src/cut.dcm", data[: len(data) - 4000])  # pixel data cut short
    result = convert_entry(entry(f"s3://{bucket}/src/cut.dcm"), f"s3://{bucket}/out", OPTIONS)
    assert (result.status, result.stage, result.output) == ("failed", "decode", "")
    assert not fs.exists(f"{bucket}/out")


def test_refused_absent_and_unreachable_objects_are_one_failure_each(
    bucket, moto_server, proxied, tmp_path, monkeypatch
):
    fs = s3(moto_server.endpoint)
    fs.put_file(get_testdata_file("CT_small.dcm"), f"{bucket}/src/ct.dcm")
    proxied.refused.add(f"/{bucket}/src/ct.dcm")
    refused = convert_entry(entry(f"s3://{bucket}/src/ct.dcm"), tmp_path / "out", OPTIONS)
    assert (refused.status, refused.stage, refused.error_type) == ("failed", "read", "AccessDenied")
    absent = convert_entry(entry(f"s3://{bucket}/src/none.dcm"), tmp_path / "out", OPTIONS)
    assert (absent.status, absent.stage, absent.error_type) == ("failed", "read", "NotFound")
    for result in (refused, absent):
        assert "\n" not in result.message and result.message
    assert not (tmp_path / "out").exists()

    # a server that fails every request: retried, then a failure the next run retries
    down = FlakyProxy(moto_server.endpoint, fraction=1.0, seed=1, stall_seconds=0.1)
    down.max_in_a_row = 10**6
    configure(flaky_options(down.endpoint))
    monkeypatch.setattr(retry, "DEFAULT_POLICY", retry.RetryPolicy(3, 0.01, 0.05))
    try:
        result = convert_entry(entry(f"s3://{bucket}/src/ct.dcm"), tmp_path / "out", OPTIONS)
    finally:
        down.stop()
    assert (result.status, result.stage, result.error_type) == ("failed", "read", UNAVAILABLE)
    assert down.requests >= 3  # the client library may retry inside each of ours too


def test_the_parent_fetches_a_few_objects_ahead_and_workers_use_the_copies(
    bucket, moto_server, proxied, tmp_path
):
    """A prefetcher fetches at most `ahead` objects; a worker given the local copy
    converts it without a request of its own, to the same TIFF; nothing is left behind."""
    from dicomprep.storage.transfer import Prefetcher

    local = get_testdata_file("CT_small.dcm")
    fs = s3(moto_server.endpoint)
    urls = [f"s3://{bucket}/src/ct{k}.dcm" for k in range(3)]
    for url in urls:
        fs.put_file(local, url[len("s3://") :])
    prefetcher = Prefetcher(ahead=2)
    for k, url in enumerate(urls):
        prefetcher.want(k, entry(url))
    first = prefetcher.take(0, entry(urls[0]))
    third = prefetcher.take(2, entry(urls[2]))  # beyond the two fetched ahead
    assert Path(first["local_copy"]).read_bytes() == Path(local).read_bytes()
    assert "local_copy" not in third
    before = proxied.requests
    result = convert_entry(first, tmp_path / "out", OPTIONS)
    assert result.status == "ok" and result.source == urls[0]
    assert proxied.requests == before  # converted from the copy: no request
    expected = process_file(local, tmp_path / "disk", OPTIONS)
    relative = expected.output[len(str(tmp_path / "disk")) + 1 :]
    assert (tmp_path / "out" / relative).read_bytes() == (tmp_path / "disk" / relative).read_bytes()
    prefetcher.close()
    assert not prefetcher.folder.exists()
