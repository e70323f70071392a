"""Read throughput for training: dicomprep TIFFs through ManifestDataset vs the source DICOMs.

    python bench/read.py [--files 200] [--size 1664x1280] [--out-size 512x640]
                         [--compressions packbits,zstd,uncompressed] [--workers 1,4]
                         [--workdir DIR]

Makes ``--files`` synthetic mammograms with bench/dataset.py (20 % MONOCHROME1, 10 % RLE,
5 % JPEG 2000), converts them once per compression (crop, crop_max, resize to
``--out-size``), then times one epoch per (compression, order, workers):

* TIFFs through :class:`dicomprep.ManifestDataset` (``--dtype``, float32 by default) in
  inode-block order (``--block-size``) and in a random order;
* the same images decoded from the source DICOMs with ``dicomprep.preprocess`` and the
  same options (what a training loop without dicomprep's outputs repeats every epoch).

Every epoch starts with a cold page cache: ``echo 3 > /proc/sys/vm/drop_caches`` when
permitted (root), else ``posix_fadvise(POSIX_FADV_DONTNEED)`` on every file read.  Workers
are processes (``multiprocessing``, fork) that return each array to the parent, as a
DataLoader does; pool start-up is not timed.  Prints files/s, MB/s of files read and the
speed-up of reading TIFFs over decoding sources.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dataset as bench_dataset  # noqa: E402

import dicomprep  # noqa: E402
from dicomprep.formats.manifest import scan_dataset, write_manifest  # noqa: E402
from dicomprep.options import Options  # noqa: E402
from dicomprep.pipeline import process_file  # noqa: E402


def parse_pair(text: str) -> tuple[int, int]:
    a, _, b = text.lower().partition("x")
    return int(a), int(b)


def drop_caches(paths: list[Path]) -> str:
    """Empty the page cache (all of it as root, else these files); say how."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
        return "drop_caches"
    except OSError:
        for path in paths:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
        return "fadvise"


# -- worker side (module globals set once per worker process) ------------------------------

_STATE: dict = {}


def _init_tiff(manifest: str, dtype: str) -> None:
    _STATE["dataset"] = dicomprep.ManifestDataset(manifest, dtype=dtype)


def _read_tiff(index: int) -> np.ndarray:
    return _STATE["dataset"][index][0]


def _init_source(options: Options, dtype: str) -> None:
    _STATE["options"], _STATE["dtype"] = options, dtype


def _read_source(path: str) -> np.ndarray:
    from dicomprep.training.load import convert

    array, _ = dicomprep.preprocess(path, _STATE["options"])
    return convert(array, _STATE["dtype"])


def timed_epoch(
    function, items, workers: int, initializer, initargs, chunk: int, files: list[Path]
) -> tuple[float, str]:
    """Seconds to map ``function`` over ``items`` in ``workers`` processes, and how the
    cache was emptied.  Start-up is not timed: every worker first reads one item (so its
    code is loaded), then the page cache is dropped and the clock starts."""
    with multiprocessing.get_context("fork").Pool(workers, initializer, initargs) as pool:
        pool.map(function, [items[0]] * workers, chunksize=1)
        how = drop_caches(files)
        start = time.perf_counter()
        total = 0
        for array in pool.imap(function, items, chunksize=chunk):
            total += array.nbytes
        seconds = time.perf_counter() - start
    assert total > 0
    return seconds, how


def convert_all(sources: list[Path], root: Path, options: Options) -> float:
    start = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = pool.starmap(process_file, [(s, root, options) for s in sources])
    failed = [r for r in results if r.status != "ok"]
    if failed:
        raise SystemExit(f"{len(failed)} conversions failed, e.g. {failed[0].message}")
    write_manifest(scan_dataset(root), root / "manifest.csv")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=200)
    p.add_argument("--size", type=parse_pair, default=(1664, 1280), help="source ROWSxCOLUMNS")
    p.add_argument("--out-size", type=parse_pair, default=(512, 640), help="output WxH")
    p.add_argument("--compressions", default="packbits,zstd,uncompressed")
    p.add_argument("--workers", default="1,4")
    p.add_argument("--block-size", type=int, default=32)
    p.add_argument("--chunk", type=int, default=8, help="items per task sent to a worker")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--workdir", type=Path, help="keep sources and outputs here")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)

    work = args.workdir or Path(tempfile.mkdtemp(prefix="dicomprep-read-"))
    sources_root = work / "sources"
    info = bench_dataset.generate(sources_root, files=args.files, size=args.size, tomo=0, ct=0)
    sources = sorted(sources_root.rglob("*.dcm"))
    source_mb = sum(s.stat().st_size for s in sources) / 1e6
    workers = [int(w) for w in args.workers.split(",")]
    print(
        f"{len(sources)} mammograms {info.rows}x{info.columns} ({info.rle} RLE, "
        f"{info.jpeg2000} JPEG 2000), {source_mb:.0f} MB; output {args.out_size}, "
        f"dtype {args.dtype}; {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    rng = np.random.default_rng(0)
    results = []
    header = (
        f"{'compression':12} {'read':18} {'workers':>7} {'files/s':>8} {'MB/s':>7} {'cache':>11}"
    )
    source_rates: dict[int, float] = {}
    base = Options(crop=True, crop_max=True, size=args.out_size)
    print(header)
    for workers_n in workers:  # the baseline: decode the sources every epoch
        order = [str(sources[i]) for i in rng.permutation(len(sources))]
        seconds, how = timed_epoch(
            _read_source, order, workers_n, _init_source, (base, args.dtype), args.chunk, sources
        )
        source_rates[workers_n] = len(order) / seconds
        row = dict(compression="source DICOM", order="random, decode", workers=workers_n)
        row.update(files_s=len(order) / seconds, mb_s=source_mb / seconds, cache=how)
        results.append(row)
        print(
            f"{'source DICOM':12} {'random, decode':18} {workers_n:>7} "
            f"{row['files_s']:>8.1f} {row['mb_s']:>7.1f} {how:>11}",
            flush=True,
        )
    for compression in args.compressions.split(","):
        root = work / f"tiff-{compression}"
        options = Options(crop=True, crop_max=True, size=args.out_size, compression=compression)
        if not (root / "manifest.csv").exists():
            convert_all(sources, root, options)
        manifest = str(root / "manifest.csv")
        ds = dicomprep.ManifestDataset(manifest, dtype=args.dtype)
        files = [ds.file(i) for i in range(len(ds))]
        tiff_mb = sum(f.stat().st_size for f in files) / 1e6
        for order_name in ("inode blocks", "random"):
            for workers_n in workers:
                if order_name == "random":
                    order = rng.permutation(len(ds)).tolist()
                else:
                    order = list(ds.sampler(args.block_size, seed=0))
                seconds, how = timed_epoch(
                    _read_tiff,
                    order,
                    workers_n,
                    _init_tiff,
                    (manifest, args.dtype),
                    args.chunk,
                    files,
                )
                rate = len(order) / seconds
                row = dict(compression=compression, order=order_name, workers=workers_n)
                row.update(files_s=rate, mb_s=tiff_mb / seconds, cache=how)
                row["vs_source"] = rate / source_rates[workers_n]
                results.append(row)
                print(
                    f"{compression:12} {order_name:18} {workers_n:>7} {rate:>8.1f} "
                    f"{row['mb_s']:>7.1f} {how:>11}   {row['vs_source']:.1f}x the sources",
                    flush=True,
                )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
