"""Shard jobs: worker processes, largest-first order, dead workers, resources, imports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from dicomprep_testdata import synthetic
from pydicom.uid import RLELossless

from dicomprep.core.records import FAILED, OK, read_results
from dicomprep.options import Options
from dicomprep.run.collect import collect_run
from dicomprep.run.plan import WorkPaths, plan_shards, run_started_ns, shard_resources
from dicomprep.run.shard import run_shard
from dicomprep.run.shard_list import read_shard_list

OPTIONS = Options(crop=True, crop_max=True, size=(96, 128))


def make_source(src: Path) -> dict[str, Path]:
    """Small mammograms, one bigger RLE-compressed one and a tomosynthesis volume."""
    files = {
        f"m{k}": synthetic.write(
            synthetic.mammogram(rows=96, columns=72, seed=k), src / f"m{k}.dcm"
        )
        for k in range(6)
    }
    files["rle"] = synthetic.write(
        synthetic.mammogram(rows=128, columns=80, seed=40), src / "rle.dcm", RLELossless
    )
    files["tomo"] = synthetic.write(
        synthetic.tomosynthesis(frames=6, rows=128, columns=96, seed=41), src / "tomo.dcm"
    )
    return files


def plan_one_shard(src: Path, work: Path) -> Path:
    [shard], _ = plan_shards(src, work, 1)
    return WorkPaths(work).shard_list(shard)


def run(shard_list: Path, tmp: Path, name: str, workers: int, log=None):
    out = tmp / name
    summary = run_shard(
        shard_list,
        out,
        OPTIONS,
        journal=tmp / f"{name}.journal.jsonl",
        results=tmp / f"{name}.results.jsonl",
        log=log,
        workers=workers,
    )
    return out, summary


def tiff_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.tiff"))}


def test_two_workers_write_the_same_bytes_and_results_as_one(tmp_path):
    make_source(tmp_path / "src")
    shard_list = plan_one_shard(tmp_path / "src", tmp_path / "work")
    one, summary_one = run(shard_list, tmp_path, "one", workers=1)
    two, summary_two = run(shard_list, tmp_path, "two", workers=2)
    assert summary_one.processed == summary_two.processed == 8
    assert len(tiff_bytes(one)) == 8
    assert tiff_bytes(one) == tiff_bytes(two)
    entries = read_shard_list(shard_list)
    for name in ("one", "two"):
        rows = read_results(tmp_path / f"{name}.results.jsonl")
        # results follow the shard list, whatever order the workers finished in
        assert [r["source"] for r in rows] == [e["path"] for e in entries]
        assert {r["status"] for r in rows} == {OK}


def test_outliers_start_first_and_the_rest_keeps_path_order(tmp_path):
    files = make_source(tmp_path / "src")
    shard_list = plan_one_shard(tmp_path / "src", tmp_path / "work")
    cost = {Path(e["path"]).stem: e["cost"] for e in read_shard_list(shard_list)}
    assert cost["tomo"] == 6 * 128 * 96  # 10.7 x the mammograms: an outlier
    assert cost["rle"] == 4 * 128 * 80  # compressed: 4 x its pixels, 5.9 x the mammograms
    assert cost["m0"] == 96 * 72
    with open(tmp_path / "shard.log", "w") as log:
        run(shard_list, tmp_path, "out", workers=1, log=log)
    finished = [line.split("\t") for line in (tmp_path / "shard.log").read_text().splitlines()]
    order = [Path(fields[-1]).stem for fields in finished if fields[0] == "ok"]
    assert order == ["tomo", "m0", "m1", "m2", "m3", "m4", "m5", "rle"]
    assert sorted(order) == sorted(files)


def children_of(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


SHARD_IN_A_PROCESS = (
    "import sys\n"
    "from dicomprep.options import Options\n"
    "from dicomprep.run.shard import run_shard\n"
    "run_shard(sys.argv[1], sys.argv[2], Options(crop=True, crop_max=True, size=(96, 128)),"
    " journal=sys.argv[3], results=sys.argv[4], log=sys.stderr, workers=2)\n"
)


def run_shard_killing_workers(tmp_path: Path, shard_list: Path, kill) -> tuple[str, list]:
    """Run a shard (2 workers) in a process of its own while ``kill(proc, killed)`` runs
    in a thread, SIGKILLing worker processes and appending their pids to ``killed``;
    return the shard's log and the pids killed.  The shard must still end well."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SHARD_IN_A_PROCESS,
            str(shard_list),
            str(tmp_path / "out"),
            str(tmp_path / "journal.jsonl"),
            str(tmp_path / "results.jsonl"),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    killed: list[int] = []
    killer = threading.Thread(target=kill, args=(proc, killed))
    killer.start()
    _, log = proc.communicate(timeout=120)
    killer.join()
    assert proc.returncode == 0, log
    assert killed, "no worker process was seen"
    return log, killed


def rerun_without_kills(tmp_path: Path, shard_list: Path):
    return run_shard(
        shard_list,
        tmp_path / "out",
        OPTIONS,
        journal=tmp_path / "journal.jsonl",
        results=tmp_path / "results.jsonl",
        workers=2,
    )


def test_a_dead_worker_costs_only_its_files_and_the_shard_goes_on(tmp_path):
    """Every worker process is killed while it converts (as the out-of-memory killer
    would): the shard still ends, lists those files as failed, and a rerun converts
    them."""
    make_source(tmp_path / "src")
    shard_list = plan_one_shard(tmp_path / "src", tmp_path / "work")

    def kill_every_worker(proc, killed):
        while proc.poll() is None:
            for child in children_of(proc.pid):
                if child not in killed:
                    killed.append(child)
                    os.kill(child, signal.SIGKILL)
            time.sleep(0.001)

    log, _ = run_shard_killing_workers(tmp_path, shard_list, kill_every_worker)
    rows = read_results(tmp_path / "results.jsonl")
    assert len(rows) == 8
    dead = [r for r in rows if r["status"] == FAILED]
    assert dead, "every worker was killed, yet nothing failed"
    for r in dead:
        assert r["error_type"] == "WorkerDied" and r["stage"] == "decode"
    assert all(r["status"] in (OK, FAILED) for r in rows)
    assert "converting" in log and "one by one" in log
    assert not list((tmp_path / "out").rglob(".*.tmp")), "a killed worker left a temporary file"
    # nothing kills the rerun: it converts what failed and keeps what was done
    rerun = rerun_without_kills(tmp_path, shard_list)
    assert (rerun.failed, rerun.processed) == (0, len(dead))
    assert rerun.reused == 8 - len(dead)


def test_one_dead_worker_costs_a_retry_of_the_files_in_flight_only(tmp_path):
    """The first worker process is killed once, mid-shard: the files it and its sibling
    held are converted again alone, the rest go on in a fresh pool, nothing fails, and a
    rerun finds every file done."""
    make_source(tmp_path / "src")
    for k in range(6, 30):  # enough files that most are not in flight at the kill
        synthetic.write(
            synthetic.mammogram(rows=96, columns=72, seed=k), tmp_path / "src" / f"m{k}.dcm"
        )
    shard_list = plan_one_shard(tmp_path / "src", tmp_path / "work")

    def kill_one_worker(proc, killed):
        while proc.poll() is None and not killed:
            children = children_of(proc.pid)
            if children:
                time.sleep(0.05)  # let it take a few files first
                os.kill(children[0], signal.SIGKILL)
                killed.append(children[0])
            time.sleep(0.001)

    log, _ = run_shard_killing_workers(tmp_path, shard_list, kill_one_worker)
    rows = read_results(tmp_path / "results.jsonl")
    assert len(rows) == 32 and {r["status"] for r in rows} == {OK}
    match = [line for line in log.splitlines() if "one by one" in line]
    if match:  # the kill may land between files: then nothing was in flight
        n = int(match[0].split("converting ")[1].split(" ")[0])
        assert 1 <= n <= 2 * 2, "only the files in flight are retried alone"
    rerun = rerun_without_kills(tmp_path, shard_list)
    assert (rerun.processed, rerun.reused, rerun.failed) == (0, 32, 0)


def test_memory_request_grows_with_workers_and_the_largest_image(tmp_path):
    src = tmp_path / "src"
    synthetic.write(synthetic.mammogram(rows=96, columns=72), src / "small.dcm")
    plan_shards(src, tmp_path / "work", 1)
    [shard] = json.loads(WorkPaths(tmp_path / "work").shard_index.read_text())
    one = shard_resources(tmp_path / "work", shard, 100, workers=1)["mem_mb"]
    four = shard_resources(tmp_path / "work", shard, 100, workers=4)["mem_mb"]
    assert four > one >= 100
    assert shard_resources(tmp_path / "work", shard, 10_000, workers=4)["mem_mb"] == 10_000

    synthetic.write(synthetic.mammogram(rows=3328, columns=2560), src / "big.dcm")
    plan_shards(src, tmp_path / "work", 1)
    big = shard_resources(tmp_path / "work", shard, 100, workers=1)["mem_mb"]
    # the working copies of an 8.5 Mpixel frame: ~195 MiB more than for the small image
    assert big - one == pytest.approx(24 * 3328 * 2560 / 2**20, abs=2)


def test_collect_counts_only_what_this_run_converted(tmp_path):
    src, work, out = tmp_path / "src", tmp_path / "work", tmp_path / "out"
    for k in range(4):
        synthetic.write(synthetic.mammogram(rows=96, columns=72, seed=k), src / f"m{k}.dcm")
    shards, _ = plan_shards(src, work, 2)
    paths = WorkPaths(work)

    def run_all(names):
        for name in names:
            run_shard(
                paths.shard_list(name),
                out,
                OPTIONS,
                journal=work / "journal" / f"{name}.jsonl",
                results=work / "shards" / f"{name}.results.jsonl",
            )
        return collect_run(
            [work / "shards" / f"{name}.results.jsonl" for name in shards],
            paths.catalog,
            out,
            out / "manifest.csv",
            out / "manifest.parquet",
            out / "failures.csv",
            work / "summary.json",
            run_started_ns=run_started_ns(work),
        ).numbers

    first = run_all(shards)
    assert (first["processed"], first["converted_now"], first["reused"]) == (4, 4, 0)
    time.sleep(0.01)
    # a new file lands in one shard; only that shard runs again
    before = {s: paths.shard_list(s).read_text() for s in shards}
    synthetic.write(synthetic.mammogram(rows=96, columns=72, seed=9), src / "new.dcm")
    shards, _ = plan_shards(src, work, 2)
    changed = [s for s in shards if paths.shard_list(s).read_text() != before.get(s)]
    second = run_all(changed)
    assert (second["processed"], second["converted_now"], second["reused"]) == (5, 1, 4)
    assert second["seconds_now"] > 0


def test_a_shard_job_does_not_import_pandas():
    """pandas costs a shard job a third of a second before it converts anything."""
    code = "import sys, dicomprep.run.shard; print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_collect_tables_keep_nanosecond_mtimes_exactly(tmp_path):
    """A results file whose rows mix recorded outputs and removed ones (no size or mtime)
    must not pass the mtimes through float64: planning compares them to the disk."""
    from dicomprep.core.records import write_results
    from dicomprep.run.collect import cached_shard_table, shard_table

    output = tmp_path / "out" / "1.2" / "1.2.3.tiff"
    output.parent.mkdir(parents=True)
    output.write_bytes(b"II*\x00")
    mtime_ns = 1795988786720731484  # not representable in float64
    os.utime(output, ns=(mtime_ns, mtime_ns))
    results = tmp_path / "s0000.results.jsonl"
    write_results(
        [
            {
                "source": "a.dcm",
                "status": OK,
                "output": str(output),
                "output_size": 4,
                "output_mtime_ns": mtime_ns,
            },
            {"source": "gone.dcm", "status": "removed", "output": str(output)},
        ],
        results,
    )
    table = shard_table(results, tmp_path / "out")
    assert int(table.loc[0, "output_mtime_ns"]) == mtime_ns == output.stat().st_mtime_ns
    assert int(cached_shard_table(results).loc[0, "output_mtime_ns"]) == mtime_ns


ORPHAN = """
import os, signal, sys, time
from dicomprep.run.processes import worker_pool

pool = worker_pool(2)
pids = set()
for future in [pool.submit(os.getpid) for _ in range(8)]:
    pids.add(future.result())
pool.submit(time.sleep, 60)
print(" ".join(map(str, sorted(pids))), flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # as the out-of-memory killer would
"""


def test_workers_do_not_outlive_a_killed_parent():
    """A shard job killed outright (SIGKILL) takes its workers with it: none is left
    waiting for work, holding memory and the job's output pipes."""
    proc = subprocess.run(
        [sys.executable, "-c", ORPHAN], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == -signal.SIGKILL
    pids = [int(p) for p in proc.stdout.split()]
    assert pids
    deadline = time.monotonic() + 10
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in pids if Path(f"/proc/{p}").exists() and not _zombie(p)]
        time.sleep(0.05)
    assert alive == []


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except OSError:
        return False
