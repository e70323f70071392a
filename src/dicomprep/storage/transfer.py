"""Moving files between object storage and local disk for shard jobs: a source object
is fetched into a local temporary file (converted there by
:mod:`dicomprep.run.remote`, which composes these helpers with the converters) and the
temporary removed; a TIFF bound for a bucket is written to a local temporary folder and
put once (one PUT per finished file: readers see the whole object or none).

A shard job's parent fetches the objects of the next few files while its workers convert
(:class:`Prefetcher`, at most a few objects ahead), so transfer overlaps decoding; a
worker converts the local copy and removes it, or fetches the object itself when the
copy is not there; a stack's worker fetches its slices into a temporary folder for the
time the volume takes.  A shard never copies its source to local disk.
Transient errors are retried (:mod:`.retry`); an object that is gone or refused is a
failure of stage ``read``; one still unreachable after the retries is a failure that is
not remembered (error type :data:`UNAVAILABLE`), so the next run tries it again.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from dicomprep.core.errors import ErrorType, one_line
from dicomprep.core.records import FAILED
from dicomprep.storage.objects import (
    ObjectFacts,
    fetch_to_file,
    list_objects,
    object_facts,
    put_file,
)
from dicomprep.storage.objects import remove_object as _remove_object
from dicomprep.storage.retry import is_transient
from dicomprep.storage.urls import is_url

UNAVAILABLE = ErrorType.STORAGE_UNAVAILABLE  # retried on the next run, never journaled
LISTING_TTL_SECONDS = 60


def read_failure_type(exc: BaseException) -> ErrorType:
    """The error type of a source object that could not be fetched: absent (NotFound),
    refused (AccessDenied), unreachable after the retries (StorageUnavailable), or
    another failure to read it (ReadError)."""
    if isinstance(exc, FileNotFoundError):
        return ErrorType.NOT_FOUND
    if isinstance(exc, PermissionError):
        return ErrorType.ACCESS_DENIED
    return UNAVAILABLE if is_transient(exc) else ErrorType.READ_ERROR


def put_failure_type(exc: BaseException) -> ErrorType:
    """The error type of an output object that could not be put: refused (AccessDenied),
    unreachable after the retries (StorageUnavailable), else WriteFailed."""
    if isinstance(exc, PermissionError):
        return ErrorType.ACCESS_DENIED
    return UNAVAILABLE if is_transient(exc) else ErrorType.WRITE_FAILED


def _reason(exc: BaseException) -> str:
    """What went wrong, in one line (the storage library's words, cleaned)."""
    return one_line(exc) or "the storage refused the request"


def fetch_failure(exc: BaseException, what: str) -> dict:
    """The failure fields of a result whose source object could not be fetched."""
    return {
        "status": FAILED,
        "stage": "read",
        "error_type": read_failure_type(exc),
        "message": f"{what}: {_reason(exc)}",
    }


def put_output(result, url: str) -> None:
    """Put a converted result's local output at ``url`` (its output then); a put that
    fails makes it a failure of stage ``write`` (the shard fails for it, a rerun retries)."""
    try:
        put_file(result.output, url)
        result.output = url
    except Exception as exc:  # noqa: BLE001
        result.status, result.stage, result.output = FAILED, "write", ""
        result.error_type = put_failure_type(exc)
        result.message = f"cannot put the output object {url}: {_reason(exc)}"


class Prefetcher:
    """Fetches the source objects of upcoming shard entries into local files on a few
    threads, at most ``ahead`` at a time, so that workers find their object on disk.

    A fetch that fails leaves no copy: the worker then fetches the object itself and
    records what goes wrong.  :meth:`close` removes whatever was not taken."""

    def __init__(self, ahead: int):
        self.ahead = max(1, ahead)
        self.folder = Path(tempfile.mkdtemp(prefix="dicomprep-prefetch-"))
        self._pool = ThreadPoolExecutor(self.ahead, thread_name_prefix="prefetch")
        self._fetches: dict[object, Future] = {}
        self._count = 0

    def want(self, key, entry: dict) -> None:
        """Start fetching ``entry``'s object unless it is fetched already or too many
        fetches are under way."""
        if key in self._fetches or not is_url(entry["path"]) or len(self._fetches) >= self.ahead:
            return
        if "paths" in entry:  # a stack: its worker fetches every slice
            return
        self._count += 1
        local = self.folder / f"{self._count}.dcm"
        self._fetches[key] = self._pool.submit(fetch_to_file, entry["path"], local)

    def take(self, key, entry: dict) -> dict:
        """``entry``, with ``local_copy`` naming its fetched object when there is one
        (waits for a fetch under way)."""
        future = self._fetches.pop(key, None)
        if future is None:
            return entry
        try:
            return {**entry, "local_copy": str(future.result())}
        except Exception:  # noqa: BLE001 - the worker fetches it and reports the error
            return entry

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self.folder, ignore_errors=True)


def output_facts(url: str) -> ObjectFacts:
    """The facts of a just-written output object (a HEAD request)."""
    return object_facts(url)


_listings: dict[str, tuple[float, dict[str, ObjectFacts]]] = {}


def listed_facts(url: str) -> ObjectFacts | None:
    """An object's facts from a listing of its folder (one listing request per thousand
    objects, kept :data:`LISTING_TTL_SECONDS`), or None when it is not there."""
    folder = url.rsplit("/", 1)[0]
    now = time.monotonic()
    listed_at, objects = _listings.get(folder, (0.0, {}))
    if now - listed_at > LISTING_TTL_SECONDS:
        objects = {o.url: o for o in list_objects(folder)}
        _listings[folder] = (now, objects)
    return objects.get(url)


def output_intact(url: str, size, mtime_ns) -> bool:
    """True when the output object is still the one recorded (same size and
    LastModified, to the second: a HEAD answer has no finer time than that, a listing
    has); False when it is gone, changed, or cannot be listed."""
    try:
        facts = listed_facts(url)
    except Exception:  # noqa: BLE001 - unknown counts as changed: converted again
        return False
    if facts is None or facts.size != size or not isinstance(mtime_ns, int):
        return False
    return facts.mtime_ns // 10**9 == mtime_ns // 10**9


def output_exists(url: str) -> bool:
    try:
        return listed_facts(url) is not None
    except Exception:  # noqa: BLE001
        return False


def remove_output(url: str) -> bool:
    """Delete an output object; False when it was not there."""
    _listings.pop(url.rsplit("/", 1)[0], None)
    return _remove_object(url)
