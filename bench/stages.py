"""Per-stage timings of the pixel pipeline on one core, and the memory of a volume.

    python bench/stages.py [--repeat N] [--volume-repeat M] [--profile]

A synthetic 3328x2560 12-bit mammogram (uncompressed, zero background, burned-in label) is
written to a temporary folder and converted with crop + crop_max, size 1024x1280, triangle,
packbits. Every stage is timed on its own (median and min over N repeats, after one warm-up
call), then the whole ``process_file`` end to end. The read time of the produced TIFF with
``tifffile.imread`` is what training pays per image and epoch.

A 50-frame 1664x1280 tomosynthesis volume is then converted with ``volume: keep`` in a fresh
subprocess per repeat, which reports its own time and peak resident memory (ru_maxrss); the
peak is compared with the size of the output (target: peak <= 2 x output + 300 MB).

``--profile`` adds a cProfile listing of ``process_file`` on the mammogram.

``--end-to-end`` times only ``process_file`` on the mammogram (wall and CPU time per call):
for a before/after pair, run it alternately with ``PYTHONPATH`` at each checkout's ``src``.

``--syntaxes`` converts the same mammogram stored in each transfer syntax (uncompressed, RLE,
JPEG lossless, JPEG-LS, JPEG 2000 lossless/lossy, HTJ2K lossless) with ``decode_resolution``
``auto`` and ``full`` (and, for uncompressed, JPEG 2000 and HTJ2K lossless, resampled to
0.2 mm pixels with ``spacing`` instead of a size), compares the reduced-resolution outputs
with full decoding on a bench set of mammograms (PSNR and largest difference in output
units, next to the difference two resize filters make), and converts a JPEG 2000
tomosynthesis volume with ``decode_threads`` 1 and 2.  ``--only-syntaxes`` skips
everything else.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tifffile
from dicomprep_testdata import synthetic

from dicomprep.formats.codestreams import codestream_frames
from dicomprep.formats.decode import frame_intensity, image_info, iter_frames, read_header
from dicomprep.formats.geometry import Geometry
from dicomprep.formats.tiff import read_frames, read_geometry, write_tiff
from dicomprep.options import COMPRESSIONS, FILTERS, Options
from dicomprep.pipeline import process_file
from dicomprep.pixels.crop import crop, foreground_box
from dicomprep.pixels.intensity import apply_lut, gray_lut, output_dtype
from dicomprep.pixels.pad import pad, padding_offsets
from dicomprep.pixels.resize import fit_size, resize

TARGET_MS = 60.0
OPTIONS = Options(
    crop=True, crop_max=True, size=(1024, 1280), filter="triangle", compression="packbits"
)


def timed(fn: Callable[[], object], repeat: int, warmup: int = 1) -> list[float]:
    """Seconds of ``repeat`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def row(name: str, times: list[float], note: str = "") -> tuple[str, float, float, str]:
    return name, statistics.median(times) * 1e3, min(times) * 1e3, note


def print_table(title: str, rows: list[tuple[str, float, float, str]]) -> None:
    print(f"\n{title}")
    print(f"| {'stage':<36} | {'median ms':>9} | {'min ms':>8} | note")
    print(f"|{'-' * 38}|{'-' * 11}|{'-' * 10}|------")
    for name, median, minimum, note in rows:
        print(f"| {name:<36} | {median:9.1f} | {minimum:8.1f} | {note}")


# -- mammogram ---------------------------------------------------------------------------------


def bench_mammogram(tmp: Path, repeat: int) -> tuple[list, float]:
    source = synthetic.write(synthetic.mammogram(seed=0), tmp / "mg.dcm")
    ds, _ = read_header(source)
    info = image_info(ds)
    intensity = frame_intensity(ds, 0)
    out_dtype = output_dtype(info.bits_stored)
    rows: list[tuple[str, float, float, str]] = []

    rows.append(row("header (read_header)", timed(lambda: read_header(source), repeat)))

    def decode() -> np.ndarray:
        return next(iter_frames(source, ds, [0]))

    rows.append(row("decode (iter_frames, native read)", timed(decode, repeat)))
    raw = decode()

    def build() -> np.ndarray:
        return gray_lut(raw.dtype, intensity, OPTIONS.voi, out_dtype, info.inverted)

    lut = build()
    build_t = timed(build, repeat)
    apply_t = timed(lambda: apply_lut(raw, lut), repeat)
    rows.append(row("LUT build (gray_lut)", build_t, f"{lut.size} entries"))
    rows.append(row("LUT apply (apply_lut)", apply_t, f"{raw.size / 1e6:.1f} Mpixel"))
    rows.append(row("LUT build + apply", [b + a for b, a in zip(build_t, apply_t, strict=True)]))
    mapped = apply_lut(raw, lut)

    def crop_stage() -> np.ndarray:
        return crop(mapped, foreground_box(mapped, OPTIONS.crop_max))

    rows.append(row("crop (foreground_box + slice)", timed(crop_stage, repeat)))
    box = foreground_box(mapped, OPTIONS.crop_max)
    cropped = crop_stage()
    crop_h, crop_w = cropped.shape
    new_w, new_h = fit_size(crop_w, crop_h, *OPTIONS.size)
    for name in FILTERS:
        note = f"{crop_w}x{crop_h} -> {new_w}x{new_h}"
        times = timed(lambda name=name: resize(cropped, new_w, new_h, name), repeat)
        rows.append(row(f"resize {name}", times, note if name == "triangle" else ""))
    resized = resize(cropped, new_w, new_h, OPTIONS.filter)

    canvas_w, canvas_h = OPTIONS.size

    def pad_stage() -> np.ndarray:
        left, top = padding_offsets(resized, canvas_w, canvas_h, OPTIONS.padding)
        return pad(resized, canvas_w, canvas_h, left, top)

    rows.append(row("pad (padding_offsets + pad)", timed(pad_stage, repeat)))
    padded = pad_stage()
    left, top = padding_offsets(resized, canvas_w, canvas_h, OPTIONS.padding)
    x0, y0, x1, y1 = box
    geometry = (
        Geometry.identity(info.columns, info.rows)
        .with_crop(x0, y0, x1 - x0, y1 - y0)
        .with_resize(new_w, new_h)
        .with_padding(canvas_w, canvas_h, left, top)
    )
    read_rows = []
    for name in COMPRESSIONS:
        target = tmp / f"page_{name}.tiff"

        def write(name=name, target=target) -> None:
            write_tiff(target, [padded], num_frames=1, geometry=geometry, compression=name)

        times = timed(write, repeat)
        size_mb = target.stat().st_size / 1e6
        rows.append(row(f"write {name}", times, f"{size_mb:.2f} MB"))
        read_t = timed(lambda target=target: tifffile.imread(target), repeat)
        read_rows.append(row(f"read {name} (tifffile.imread)", read_t, f"{size_mb:.2f} MB"))

    output = tmp / "out"
    end = timed(lambda: process_file(source, output, OPTIONS), repeat)
    result = process_file(source, output, OPTIONS)
    if result.status != "ok":
        raise SystemExit(f"process_file failed: {result.message}")
    default_stages = (
        "header (read_header)",
        "decode (iter_frames, native read)",
        "LUT build + apply",
        "crop (foreground_box + slice)",
        "resize triangle",
        "pad (padding_offsets + pad)",
        "write packbits",
    )
    stage_sum = sum(r[1] for r in rows if r[0] in default_stages)
    rows.append(("sum of the stages above (packbits)", stage_sum, float("nan"), "medians"))
    median_ms = statistics.median(end) * 1e3
    rows.append(row("process_file end to end", end, f"{1e3 / median_ms:.1f} files/s per core"))
    return rows + read_rows, median_ms


def bench_end_to_end(tmp: Path, repeat: int) -> None:
    """Wall and CPU milliseconds of ``process_file`` on the mammogram, median and min."""
    source = synthetic.write(synthetic.mammogram(seed=0), tmp / "mg.dcm")
    output = tmp / "out"
    process_file(source, output, OPTIONS)  # warm-up
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = process_file(source, output, OPTIONS)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        if result.status != "ok":
            raise SystemExit(f"process_file failed: {result.message}")
    for name, times in (("wall", wall), ("CPU", cpu)):
        median, least = statistics.median(times) * 1e3, min(times) * 1e3
        print(f"process_file end to end, {name}: {median:.1f} ms median, {least:.1f} ms min")


# -- tomosynthesis -----------------------------------------------------------------------------

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from dicomprep.options import Options
from dicomprep.pipeline import process_file
source, output, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
def peak_kb():
    # VmHWM is this process's own high-water mark; ru_maxrss would keep the parent's peak
    # across fork + exec on Linux.
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
base = peak_kb()
start = time.perf_counter()
result = process_file(source, output, Options.from_mapping(options))
seconds = time.perf_counter() - start
peak = peak_kb()
print(json.dumps({"status": result.status, "message": result.message, "seconds": seconds,
                  "base_kb": base, "peak_kb": peak, "output": result.output}))
"""


def bench_volume(tmp: Path, repeat: int, frames: int) -> list[dict]:
    ds = synthetic.tomosynthesis(frames=frames, rows=1664, columns=1280, seed=0)
    source = synthetic.write(ds, tmp / "bto.dcm")
    del ds
    options = Options(**{**OPTIONS.to_dict(), "size": OPTIONS.size, "volume": "keep"})
    runs = []
    for i in range(repeat):
        output = tmp / f"bto_out_{i}"
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, str(source), str(output), json.dumps(options.to_dict())],
            check=True,
            capture_output=True,
            text=True,
        )
        run = json.loads(proc.stdout.strip().splitlines()[-1])
        if run["status"] != "ok":
            raise SystemExit(f"volume failed: {run['message']}")
        run["output_bytes"] = Path(run["output"]).stat().st_size
        run["source_bytes"] = source.stat().st_size
        runs.append(run)
    return runs


def print_volume(runs: list[dict], frames: int) -> None:
    mb = 1 / 2**20
    seconds = [r["seconds"] for r in runs]
    peak = statistics.median(r["peak_kb"] for r in runs) / 1024
    base = statistics.median(r["base_kb"] for r in runs) / 1024
    out_mb = runs[0]["output_bytes"] * mb
    limit = 2 * out_mb + 300
    print(f"\nTomosynthesis {frames}x1664x1280 12-bit, volume keep (fresh process per run)")
    print(f"| {'measure':<36} | {'median':>9} | {'min':>8} | note")
    print(f"|{'-' * 38}|{'-' * 11}|{'-' * 10}|------")
    print(
        f"| {'process_file seconds':<36} | {statistics.median(seconds):9.2f} | "
        f"{min(seconds):8.2f} | {frames / statistics.median(seconds):.1f} frames/s"
    )
    print(f"| {'source size MiB':<36} | {runs[0]['source_bytes'] * mb:9.1f} | {'':8} |")
    print(f"| {'output size MiB (packbits)':<36} | {out_mb:9.1f} | {'':8} |")
    print(f"| {'RSS after imports MiB':<36} | {base:9.1f} | {'':8} |")
    verdict = "meets" if peak <= limit else "MISSES"
    note = f"{verdict} target <= 2 x output + 300 = {limit:.0f} MiB"
    print(f"| {'peak RSS MiB':<36} | {peak:9.1f} | {'':8} | {note}")
    print(f"| {'peak RSS - RSS after imports MiB':<36} | {peak - base:9.1f} | {'':8} |")


# -- transfer syntaxes, reduced-resolution decoding, parallel frames ---------------------------

SYNTAXES = {
    "uncompressed": "1.2.840.10008.1.2.1",
    "RLE lossless": "1.2.840.10008.1.2.5",
    "JPEG lossless": "1.2.840.10008.1.2.4.57",
    "JPEG-LS lossless": "1.2.840.10008.1.2.4.80",
    "JPEG 2000 lossless": "1.2.840.10008.1.2.4.90",
    "JPEG 2000 lossy (PSNR 60)": "1.2.840.10008.1.2.4.91",
    "HTJ2K lossless": "1.2.840.10008.1.2.4.201",
}
J2K_TARGET_MS, J2K_TARGET_RATIO, HTJ2K_TARGET_RATIO = 150.0, 8.0, 3.0


def encode_frame(frame: np.ndarray, syntax: str, bits_stored: int) -> bytes:
    """One frame's codestream in ``syntax`` (imagecodecs encoders)."""
    import imagecodecs

    if syntax == SYNTAXES["JPEG lossless"]:
        return imagecodecs.ljpeg_encode(frame, bitspersample=bits_stored)
    if syntax == SYNTAXES["JPEG-LS lossless"]:
        return imagecodecs.jpegls_encode(frame)
    if syntax == SYNTAXES["JPEG 2000 lossless"]:
        return imagecodecs.jpeg2k_encode(
            frame, level=0, codecformat="j2k", reversible=True, bitspersample=bits_stored
        )
    if syntax == SYNTAXES["JPEG 2000 lossy (PSNR 60)"]:
        return imagecodecs.jpeg2k_encode(
            frame, level=60, codecformat="j2k", reversible=False, bitspersample=bits_stored
        )
    if syntax == SYNTAXES["HTJ2K lossless"]:
        return imagecodecs.htj2k_encode(frame)
    raise ValueError(syntax)


def write_syntax(ds, path: Path, syntax: str) -> Path:
    """``ds`` written in ``syntax``: natively by :func:`synthetic.write`, else encapsulated."""
    if syntax in (SYNTAXES["uncompressed"], SYNTAXES["RLE lossless"]):
        return synthetic.write(ds, path, syntax)
    import copy

    from pydicom.encaps import encapsulate

    out = copy.deepcopy(ds)
    frames = ds.pixel_array.reshape((-1, ds.Rows, ds.Columns))
    out.PixelData = encapsulate([encode_frame(f, syntax, int(ds.BitsStored)) for f in frames])
    out["PixelData"].VR = "OB"
    out["PixelData"].is_undefined_length = True
    out.file_meta.TransferSyntaxUID = syntax
    out.save_as(path, enforce_file_format=True)
    return path


SPACING = (0.2, 0.2)  # mm, for the spacing rows (the synthetic mammogram has 0.07 mm pixels)


def with_options(**changes) -> Options:
    return Options(**{**OPTIONS.to_dict(), "size": OPTIONS.size, **changes})


def bench_syntaxes(tmp: Path, repeat: int) -> tuple[list, dict]:
    """process_file per transfer syntax, with and without reduced-resolution decoding."""
    ds = synthetic.mammogram(seed=0)
    rows, medians = [], {}
    for name, syntax in SYNTAXES.items():
        source = write_syntax(ds, tmp / f"mg_{syntax}.dcm", syntax)
        size_mb = source.stat().st_size / 1e6
        modes = ("auto", "full") if "2000" in name or "HTJ2K" in name else ("full",)
        for mode in modes:
            options = with_options(decode_resolution=mode)
            out = tmp / f"out_{syntax}_{mode}"
            result = process_file(source, out, options)
            if result.status != "ok":
                raise SystemExit(f"{name}: {result.message}")
            times = timed(
                lambda source=source, out=out, o=options: process_file(source, out, o), repeat
            )
            label = f"{name}" + (f", decode {mode}" if len(modes) > 1 else "")
            rows.append(row(label, times, f"{size_mb:.1f} MB source"))
            medians[(name, mode)] = statistics.median(times) * 1e3
        if name in ("uncompressed", "JPEG 2000 lossless", "HTJ2K lossless"):
            for mode in modes:  # 0.07 mm pixels resampled to 0.2 mm instead of a size
                options = with_options(decode_resolution=mode, size=None, spacing=SPACING)
                times = timed(
                    lambda source=source, o=options: process_file(source, tmp / "sp", o), repeat
                )
                label = f"{name}, spacing {SPACING[0]} mm" + (
                    f", decode {mode}" if len(modes) > 1 else ""
                )
                rows.append(row(label, times, f"{size_mb:.1f} MB source"))
    base = medians[("uncompressed", "full")]
    rows = [(n, m, mi, f"{note}, {m / base:.1f}x uncompressed") for n, m, mi, note in rows]
    return rows, medians


def psnr(a: np.ndarray, b: np.ndarray, top: float = 65535.0) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(top * top / mse)


def bench_quality(tmp: Path, seeds: int) -> list[str]:
    """Reduced vs full decoding of JPEG 2000 lossless mammograms, in output units (uint16)."""
    lines = []
    for seed in range(seeds):
        for laterality in ("L", "R"):
            ds = synthetic.mammogram(seed=seed, laterality=laterality)
            source = write_syntax(
                ds, tmp / f"q{seed}{laterality}.dcm", SYNTAXES["JPEG 2000 lossless"]
            )
            outputs, geometries = {}, {}
            for key, options in (
                ("auto", with_options(decode_resolution="auto")),
                ("full", with_options(decode_resolution="full")),
                ("full catmull-rom", with_options(decode_resolution="full", filter="catmull-rom")),
            ):
                out = tmp / f"q{seed}{laterality}_{key}.tiff"
                result = process_file(source, options=options, output_path=out)
                if result.status != "ok":
                    raise SystemExit(result.message)
                outputs[key] = read_frames(out)[0]
                geometries[key] = read_geometry(out)
            full = outputs["full"]
            difference = np.abs(outputs["auto"].astype(np.int64) - full)
            filters = np.abs(outputs["full catmull-rom"].astype(np.int64) - full)
            lines.append(
                f"| mammogram seed {seed} {laterality} | {psnr(outputs['auto'], full):6.1f} | "
                f"{int(difference.max()):6d} | {np.percentile(difference, 99):6.0f} | "
                f"{psnr(outputs['full catmull-rom'], full):6.1f} | {int(filters.max()):6d} | "
                f"{geometries['auto'] == geometries['full']} |"
            )
    return lines


def bench_threads(tmp: Path, repeat: int, frames: int) -> dict:
    """A JPEG 2000 tomosynthesis volume converted with decode_threads 1 and 2."""
    ds = synthetic.tomosynthesis(frames=frames, rows=1664, columns=1280, seed=0)
    source = write_syntax(ds, tmp / "bto_j2k.dcm", SYNTAXES["JPEG 2000 lossless"])
    del ds
    options = with_options(volume="keep")
    header, _ = read_header(source)
    codestreams = codestream_frames(source, header, image_info(header))
    seconds, cpu, decode_seconds = {}, {}, {}
    for threads in (1, 2):
        out = tmp / f"bto_j2k_{threads}.tiff"

        def run(threads=threads, out=out) -> None:
            result = process_file(source, options=options, output_path=out, decode_threads=threads)
            if result.status != "ok":
                raise SystemExit(result.message)

        cpu_start = time.process_time()
        seconds[threads] = statistics.median(timed(run, repeat, warmup=0))
        cpu[threads] = (time.process_time() - cpu_start) / repeat

        def decode_only(threads=threads) -> None:
            for _ in codestreams.frames(range(frames), 0, threads):
                pass

        decode_seconds[threads] = statistics.median(timed(decode_only, repeat, warmup=0))
    same = np.array_equal(read_frames(tmp / "bto_j2k_1.tiff"), read_frames(tmp / "bto_j2k_2.tiff"))
    return {
        "seconds": seconds,
        "cpu": cpu,
        "decode_seconds": decode_seconds,
        "same_output": same,
        "source_mb": source.stat().st_size / 1e6,
    }


def print_syntaxes(rows, medians, quality, threads, frames) -> None:
    print_table(
        "Mammogram 3328x2560 12-bit per transfer syntax -> crop+crop_max, 1024x1280, one core "
        "(process_file end to end)",
        rows,
    )
    base = medians[("uncompressed", "full")]
    j2k = medians[("JPEG 2000 lossless", "auto")]
    ht = medians[("HTJ2K lossless", "auto")]
    for label, value, limit in (
        ("JPEG 2000 lossless, auto", j2k, min(J2K_TARGET_MS, J2K_TARGET_RATIO * base)),
        ("HTJ2K lossless, auto", ht, HTJ2K_TARGET_RATIO * base),
    ):
        verdict = "meets" if value <= limit else "MISSES"
        print(
            f"{label}: {value:.0f} ms, {value / base:.1f}x uncompressed, "
            f"{verdict} <= {limit:.0f} ms"
        )
    print("\nReduced-resolution (auto) vs full decoding, JPEG 2000 lossless, output uint16 units;")
    print("for scale, the last two columns compare two resize filters (catmull-rom vs triangle)")
    print("| image | PSNR dB | max abs | p99 abs | filters PSNR dB | filters max abs | same tags |")
    print("|---|---|---|---|---|---|---|")
    for line in quality:
        print(line)
    if threads is None:
        return
    one, two = threads["seconds"][1], threads["seconds"][2]
    print(
        f"\nTomosynthesis {frames}x1664x1280 JPEG 2000 lossless ({threads['source_mb']:.0f} MB), "
        "volume keep, crop, 1024x1280"
    )
    print("| decode_threads | process_file s | CPU s | frames decoded only, s |")
    print("|---|---|---|---|")
    for n in (1, 2):
        print(
            f"| {n} | {threads['seconds'][n]:.2f} | {threads['cpu'][n]:.2f} | "
            f"{threads['decode_seconds'][n]:.2f} |"
        )
    d1, d2 = threads["decode_seconds"][1], threads["decode_seconds"][2]
    print(f"decoding alone: {d1 / d2:.2f}x faster with 2 threads")
    verdict = "meets" if one / two >= 1.7 else "MISSES"
    print(
        f"speed-up {one / two:.2f}x ({verdict} the 1.7x target); identical output: "
        f"{threads['same_output']}"
    )


# -- main --------------------------------------------------------------------------------------


def profile(tmp: Path, calls: int = 20, top: int = 25) -> None:
    source = tmp / "mg.dcm"
    process_file(source, tmp / "out", OPTIONS)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        process_file(source, tmp / "out", OPTIONS)
    profiler.disable()
    print(f"\ncProfile of {calls} process_file calls (sorted by own time, ms are totals)")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20, help="timed calls per stage")
    parser.add_argument(
        "--volume-repeat", type=int, default=3, help="subprocess runs of the volume (0: skip)"
    )
    parser.add_argument("--frames", type=int, default=50, help="frames of the volume")
    parser.add_argument("--profile", action="store_true", help="cProfile process_file too")
    parser.add_argument(
        "--end-to-end", action="store_true", help="only process_file on the mammogram"
    )
    parser.add_argument("--syntaxes", action="store_true", help="per transfer syntax, too")
    parser.add_argument("--only-syntaxes", action="store_true", help="only the syntax tables")
    parser.add_argument("--quality-seeds", type=int, default=3, help="mammogram seeds (x L/R)")
    parser.add_argument(
        "--threads-repeat", type=int, default=2, help="runs of the JPEG 2000 volume (0: skip)"
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="dicomprep-bench-") as name:
        tmp = Path(name)
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, repeat {args.repeat}")
        print("load average at start: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
        if args.end_to_end:
            bench_end_to_end(tmp, args.repeat)
            return
        if args.syntaxes or args.only_syntaxes:
            rows, medians = bench_syntaxes(tmp, args.repeat)
            quality = bench_quality(tmp, args.quality_seeds)
            threads = (
                bench_threads(tmp, args.threads_repeat, args.frames)
                if args.threads_repeat
                else None
            )
            print_syntaxes(rows, medians, quality, threads, args.frames)
            if args.only_syntaxes:
                return
        rows, median_ms = bench_mammogram(tmp, args.repeat)
        print_table(
            "Mammogram 3328x2560 12-bit uncompressed -> crop+crop_max, 1024x1280, one core",
            rows,
        )
        verdict = "meets" if median_ms <= TARGET_MS else "MISSES"
        print(f"\nend to end: {median_ms:.1f} ms median, {verdict} the {TARGET_MS:.0f} ms target")
        if args.profile:
            profile(tmp)
        if args.volume_repeat > 0:
            print_volume(bench_volume(tmp, args.volume_repeat, args.frames), args.frames)
        print("\nload average at end: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()
