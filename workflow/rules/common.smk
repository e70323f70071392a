import functools
import gc
import logging
import sys
import threading
from pathlib import Path

from snakemake.common import NOTHING_TO_BE_DONE_MSG
from snakemake.exceptions import WorkflowError
from snakemake.logging import logger as snakemake_logger
from snakemake.utils import validate

from dicomprep.run.collect import current_summary
from dicomprep.run.discover import SourceError
from dicomprep.run.failures import summary_line
from dicomprep.options import (
    Options,
    OptionsError,
    check_config_keys,
    check_config_types,
    code_hash,
    coerce_command_line_values,
    load_schema,
)
from dicomprep.storage import is_url
from dicomprep.storage.objects import configure as configure_storage
from dicomprep.run.guards import OutputError, check_owner, claim_output
from dicomprep.run.removal import REMOVED, RemovalRefused
from dicomprep.run.plan import (
    WorkFolderLocked,
    lock_work_folder,
    non_dicom_paths,
    plan_shards,
    run_started_ns,
    saved_shards,
    shard_resources,
    shards_to_run,
)


def stop(message):
    """End the run with one line on stderr: a user's mistake, found before any job ran.
    (Snakemake prints a WorkflowError raised in an input function with a traceback,
    and one raised while parsing with the file and line; an exit prints nothing else.)
    """
    print(message, file=sys.stderr, flush=True)
    raise SystemExit(1)


CONFIG_SCHEMA = "../schemas/config.schema.yaml"
config.update(coerce_command_line_values(config))
try:  # one line naming the key, not the whole 100-line schema and the value
    check_config_keys(config, load_schema(workflow.source_path(CONFIG_SCHEMA)))
    check_config_types(config, load_schema(workflow.source_path(CONFIG_SCHEMA)))
except OptionsError as exc:
    stop(f"config: {exc}")
validate(config, schema=CONFIG_SCHEMA)

try:
    OPTIONS = Options.from_mapping(config)
except OptionsError as exc:
    stop(f"config: {exc}")

WORK = Path(config["work"])
# Object storage (docs/object-storage.md): the options reach the shard jobs through the
# environment; with `output` a URL the TIFFs go to the bucket and the manifest, failures
# table and report to {work}/dataset.
configure_storage(config["storage_options"], config["header_concurrency"])
OUTPUT_ROOT = str(config["output"])
OUTPUT = WORK / "dataset" if is_url(OUTPUT_ROOT) else Path(OUTPUT_ROOT)


def available_cores():
    """The cores given to Snakemake (--cores), 1 when there is no such local number."""
    try:
        cores = workflow.cores
    except WorkflowError:
        return 1
    return cores if isinstance(cores, int) and 0 < cores < 4096 else 1


# Worker processes of a shard job, and of the report's thumbnail rendering (the shard
# jobs render the thumbnails of the files they convert; the report renders the others).
SHARD_THREADS = config["shard_threads"] or available_cores()
REPORT_PROCESSES = min(4, available_cores())
REPORT_SAMPLES = config.get("report", {}).get("samples_per_modality", 24)


@functools.cache
def planned_shards():
    """The shards of this run.  Only the main process walks the source, and only when
    Snakemake builds the DAG (not for --unlock, --lint or listing rules); jobs, local or
    on a cluster, read the saved plan."""
    if not workflow.is_main_process:
        return saved_shards(WORK)
    try:
        lock_work_folder(WORK)
        check_owner(OUTPUT_ROOT, WORK)
        shards, catalog = plan_shards(
            config["source"],
            WORK,
            config["shards"],
            series=OPTIONS.series,
            local=workflow.local_exec,
            follow_symlinks=config["follow_symlinks"],
            follow_links_outside_source=config["follow_links_outside_source"],
            rediscover=config["rediscover"],
            processes=max(1, workflow.cores or 1),
            output_root=OUTPUT_ROOT,
            allow_removal=config["allow_removal"],
            keep_orphans=config["keep_orphans"],
            volume_format=OPTIONS.volume_format,
        )
        if not workflow.dryrun:  # writable, and this work folder's from now on
            claim_output(OUTPUT_ROOT, WORK)
    except SourceError as exc:
        stop(f"config: {exc}")
    except (WorkFolderLocked, RemovalRefused, OutputError) as exc:
        stop(f"dicomprep: {exc}")
    if config["strict"] and non_dicom_paths(catalog):
        stop(
            "strict: these inputs are not DICOM: " + ", ".join(non_dicom_paths(catalog))
        )
    return shards


def shard_results(wildcards):
    """The results table of every shard."""
    return [f"{WORK}/shards/{shard}.results.jsonl" for shard in planned_shards()]


def shard_threads(wildcards):
    """Worker processes of one shard job: `shard_threads`, or by default the cores given;
    when several shards run on this machine, the cores are shared among them so that
    they run side by side (each job start costs about a second of one core)."""
    if config["shard_threads"] or not workflow.local_exec:
        return SHARD_THREADS
    return max(1, SHARD_THREADS // max(1, min(running_shard_count(), SHARD_THREADS)))


@functools.cache
def running_shard_count():
    """How many shard jobs this run starts (the main process, after planning)."""
    if not workflow.is_main_process:
        return 1
    return len(shards_to_run(WORK, planned_shards()))


def shard_mem_mb(wildcards, threads):
    """Memory for one shard job, estimated from the largest image it holds."""
    return shard_resources(WORK, wildcards.shard, config["shard_mem_mb"], threads)[
        "mem_mb"
    ]


def final_outputs():
    targets = [
        f"{OUTPUT}/manifest.csv",
        f"{OUTPUT}/manifest.parquet",
        f"{OUTPUT}/failures.csv",
        f"{OUTPUT}/report/index.html",
    ]
    if config["strict"]:
        targets.append(f"{WORK}/strict.ok")
    return targets


def print_summary():
    numbers = current_summary(WORK / "summary.json", run_started_ns(WORK))
    if numbers is not None:
        print(summary_line(numbers, OUTPUT_ROOT))
        if numbers.get("removed_now"):
            print(
                f"dicomprep: {numbers['removed_now']} output(s) whose source is gone were "
                f"removed; they are listed in {WORK / REMOVED}"
            )
        print(
            f"dicomprep: manifest {OUTPUT}/manifest.csv, failures {OUTPUT}/failures.csv"
        )


class SummaryOnNoOp(logging.Handler):
    """Prints the run summary when Snakemake finds nothing to do (it then skips the
    `onsuccess` hook), so a no-op rerun ends with the same lines as a real run."""

    def emit(self, record):
        if record.getMessage() == NOTHING_TO_BE_DONE_MSG and not workflow.dryrun:
            print_summary()
            end_quickly()


if workflow.is_main_process:
    snakemake_logger.addHandler(SummaryOnNoOp())


def end_quickly():
    """Once the run is over, let Snakemake's process end without waiting.

    - Snakemake's job rate limiter re-evaluates the schedule with a non-daemon
      threading.Timer (1 s by default); the last one keeps the interpreter from exiting
      for up to a second after the last job.  Nothing is scheduled any more: cancel them.
    - The interpreter's final garbage collections walk every object Snakemake, pandas
      and the plugins made (~0.3 s); freezing them skips that.
    """
    for thread in threading.enumerate():
        if isinstance(thread, threading.Timer):
            thread.cancel()
    gc.freeze()
