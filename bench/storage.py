"""Object storage benchmark on a local S3 server (moto_server on 127.0.0.1).

    python bench/storage.py [--objects 10000] [--latency-ms 0] [--files 200]

1. Discovery: ``--objects`` small DICOM objects (64 x 48 synthetic mammograms, ~6 KB,
   each with its own UIDs) are listed and their headers read with ranged reads, with
   ``header_concurrency`` 1 and 32; headers per second.  ``--latency-ms`` puts a proxy
   in front of the server that delays every request (a distant store: S3 answers a
   small GET in ~10-30 ms), which is where concurrency pays.
2. End to end: ``--files`` synthetic mammograms (832 x 640, 12-bit) converted by the
   workflow from the bucket and from local disk (same files, same options); seconds.

The server is the tests' (tests/test_storage_server.py); it runs in one Python process,
so the numbers measure the client side against a fast but single-process store.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dicomprep_testdata import synthetic  # noqa: E402

from dicomprep.run.discover import build_catalog  # noqa: E402
from tests.test_storage_server import FlakyProxy, MotoServer, s3, s3_environment  # noqa: E402
from tests.workflow_helpers import snakemake  # noqa: E402


def small_objects(count: int) -> dict[str, bytes]:
    """{key: DICOM bytes} of ``count`` tiny mammograms, each with its own UIDs."""
    ds = synthetic.mammogram(rows=64, columns=48, seed=1)
    objects = {}
    for i in range(count):
        ds.StudyInstanceUID = str(synthetic.derived_uid("bench-study", i // 4))
        ds.SOPInstanceUID = str(synthetic.derived_uid("bench-sop", i))
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        objects[f"{i // 1000:03d}/{i:06d}.dcm"] = buffer.getvalue()
    return objects


def put_all(fs, bucket: str, prefix: str, objects: dict[str, bytes]) -> None:
    items = list(objects.items())
    for start in range(0, len(items), 500):
        fs.pipe({f"{bucket}/{prefix}/{k}": v for k, v in items[start : start + 500]})


def discovery(url: str, endpoint: str, concurrency: int, expected: int) -> dict:
    from dicomprep.storage.objects import configure

    configure({"client_kwargs": {"endpoint_url": endpoint}}, concurrency)
    started = time.perf_counter()
    catalog = build_catalog(url, header_concurrency=concurrency)
    seconds = time.perf_counter() - started
    assert len(catalog) == expected and (catalog["status"] == "dicom").all()
    return {
        "concurrency": concurrency,
        "seconds": round(seconds, 2),
        "headers_per_s": round(expected / seconds, 1),
    }


def end_to_end(fs, bucket: str, endpoint: str, files: int, work: Path) -> dict:
    source = work / "src"
    for i in range(files):
        ds = synthetic.mammogram(
            rows=832,
            columns=640,
            seed=i % 8,
            study_uid=str(synthetic.derived_uid("e2e-study", i // 4)),
        )
        ds.SOPInstanceUID = str(synthetic.derived_uid("e2e-sop", i))
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        synthetic.write(ds, source / f"{i // 4:04d}" / f"{i:05d}.dcm")
    for path in sorted(source.rglob("*.dcm")):
        fs.put_file(str(path), f"{bucket}/e2e/{path.relative_to(source).as_posix()}")
    options = {"crop": True, "crop_max": True, "size": [512, 640], "shards": 1}
    seconds = {}
    for name, src in (("disk", source), ("bucket", f"s3://{bucket}/e2e")):
        run = work / name
        config = {"source": src, "output": run / "out", "work": run / "work", **options}
        started = time.perf_counter()
        snakemake(run, config=config, timeout=1200)
        seconds[name] = round(time.perf_counter() - started, 2)
        summary = json.loads((run / "work" / "summary.json").read_text())
        assert summary["processed"] == files, summary
    return {
        "files": files,
        "seconds": seconds,
        "files_per_s": {k: round(files / v, 1) for k, v in seconds.items()},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--concurrency", default="1,32", help="header_concurrency values")
    parser.add_argument("--skip-end-to-end", action="store_true")
    args = parser.parse_args(argv)
    server = MotoServer()
    os.environ.update(s3_environment(server.endpoint))
    proxy = None
    try:
        fs = s3(server.endpoint)
        bucket = f"bench-{os.getpid()}"
        fs.mkdir(bucket)
        started = time.perf_counter()
        put_all(fs, bucket, "small", small_objects(args.objects))
        print(f"uploaded {args.objects} objects in {time.perf_counter() - started:.1f} s")
        endpoint = server.endpoint
        if args.latency_ms:
            proxy = FlakyProxy(server.endpoint, 0.0, 0, latency_seconds=args.latency_ms / 1000)
            endpoint = proxy.endpoint
        results = {"objects": args.objects, "latency_ms": args.latency_ms, "discovery": []}
        for concurrency in [int(c) for c in args.concurrency.split(",")]:
            row = discovery(f"s3://{bucket}/small", endpoint, concurrency, args.objects)
            results["discovery"].append(row)
            print(row, flush=True)
        if not args.skip_end_to_end:
            with tempfile.TemporaryDirectory(prefix="dicomprep-bench-") as work:
                results["end_to_end"] = end_to_end(fs, bucket, endpoint, args.files, Path(work))
                print(results["end_to_end"], flush=True)
        print(json.dumps(results, indent=1))
    finally:
        if proxy is not None:
            proxy.stop()
        server.stop()


if __name__ == "__main__":
    main()
