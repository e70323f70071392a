"""Converting a shard's units whose source or output is in object storage: the source
objects are fetched into a local temporary folder (or taken from the copy the parent
prefetched, :class:`~dicomprep.storage.transfer.Prefetcher`), converted there by
:func:`~dicomprep.pipeline.process_file` or
:func:`~dicomprep.series.volume_file.process_stack`, and an output bound for a bucket is
put once when it is whole (:mod:`dicomprep.storage.transfer`).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from dicomprep.core.records import OK, FileResult, StackResult
from dicomprep.pipeline import process_file
from dicomprep.series.volume_file import process_stack
from dicomprep.storage.objects import fetch_to_file
from dicomprep.storage.transfer import fetch_failure, put_output
from dicomprep.storage.urls import is_url, join_url


def convert_entry(entry: dict, output_root: str | os.PathLike, options, decode_threads: int = 1):
    """The :class:`~dicomprep.core.records.FileResult` of one shard list entry whose source
    or output root (or both) is a URL; ``result.output`` is the output's URL then."""
    from dicomprep.core.records import OK

    source, output_root = entry["path"], str(output_root)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dicomprep-object-") as scratch:
        local = source
        prefetched = entry.get("local_copy")
        if prefetched and Path(prefetched).exists():
            local = Path(scratch) / "source.dcm"
            os.replace(prefetched, local)  # the parent fetched it ahead; removed with scratch
        elif is_url(source):
            local = Path(scratch) / "source.dcm"
            try:
                fetch_to_file(source, local)
            except Exception as exc:  # noqa: BLE001 - recorded as the file's failure
                return FileResult(
                    source=source,
                    **fetch_failure(exc, "cannot fetch the object"),
                    study_instance_uid=entry.get("study_instance_uid", ""),
                    sop_instance_uid=entry.get("sop_instance_uid", ""),
                    seconds=time.perf_counter() - started,
                )
        remote_output = is_url(output_root)
        target_root = Path(scratch) / "out" if remote_output else output_root
        result = process_file(local, target_root, options, decode_threads=decode_threads)
        result.source = source
        if remote_output and result.status == OK:
            relative = Path(result.output).relative_to(target_root).as_posix()
            put_output(result, join_url(output_root, relative))
        result.seconds = time.perf_counter() - started
    return result


def convert_stack_entry(entry: dict, options):
    """The :class:`~dicomprep.core.records.StackResult` of a stack (a shard list
    unit with ``paths`` and ``output``) whose slices or output root are URLs: the slices
    are fetched into a local temporary folder, the volume is written there and put once
    when ``output`` is a URL.  Sources in the result are the slices' URLs."""
    sources, output = [str(p) for p in entry["paths"]], str(entry["output"])
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dicomprep-stack-") as scratch:
        local_of = {}
        for k, source in enumerate(sources):
            local_of[source] = str(Path(scratch) / f"{k}.dcm") if is_url(source) else source
            if not is_url(source):
                continue
            try:
                fetch_to_file(source, local_of[source])
            except Exception as exc:  # noqa: BLE001 - recorded as the stack's failure
                return StackResult(
                    sources=sources,
                    **fetch_failure(exc, f"cannot fetch the object {source}"),
                    study_instance_uid=entry.get("study_instance_uid", ""),
                    seconds=time.perf_counter() - started,
                )
        remote_output = is_url(output)
        target = Path(scratch) / output.rsplit("/", 1)[-1] if remote_output else Path(output)
        result = process_stack([local_of[s] for s in sources], target, options)
        source_of = {local: source for source, local in local_of.items()}
        for placed in result.slices:
            placed.source = source_of.get(placed.source, placed.source)
        for failure in result.left_out:  # damaged slices, named by their URLs too
            failure["source"] = source_of.get(failure["source"], failure["source"])
        result.sources = [source_of.get(p, p) for p in result.sources]
        if remote_output and result.status == OK:
            put_output(result, output)
        result.seconds = time.perf_counter() - started
    return result
