"""Objects through fsspec: a filesystem per URL, paginated listings with the facts that
identify an object's content (size, ETag or version, LastModified), ranged reads,
downloads to local files and single uploads of finished files.  Every request goes
through :func:`~dicomprep.storage.retry.with_retries`.

``storage_options`` are passed to fsspec's filesystem of the URL's protocol (for S3,
s3fs: ``{"client_kwargs": {"endpoint_url": ...}, "key": ..., "config_kwargs": ...}``).
Left out, they come from :func:`configure` (the workflow's ``storage_options`` key, set
for the process and the jobs it starts through an environment variable), and credentials
and endpoints from the protocol's usual environment (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``GOOGLE_APPLICATION_CREDENTIALS``, ``AZURE_STORAGE_*``...).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from dicomprep.storage.retry import RetryPolicy, with_retries
from dicomprep.storage.urls import join_url, protocol_of, relative_url

OPTIONS_VARIABLE = "DICOMPREP_STORAGE_OPTIONS"
S3_CONNECTIONS = 64  # connections botocore keeps per client, unless storage_options say


CONCURRENCY_VARIABLE = "DICOMPREP_HEADER_CONCURRENCY"


def configure(storage_options: Mapping | None, header_concurrency: int | None = None) -> None:
    """Make ``storage_options`` (and the number of threads reading headers) the default of
    this process and of every process it starts (shard jobs, their workers), through the
    :data:`OPTIONS_VARIABLE` and :data:`CONCURRENCY_VARIABLE` environment variables."""
    os.environ[OPTIONS_VARIABLE] = json.dumps(dict(storage_options or {}), sort_keys=True)
    if header_concurrency:
        os.environ[CONCURRENCY_VARIABLE] = str(int(header_concurrency))


def configured_options() -> dict:
    """The storage options set by :func:`configure` (or the environment), else {}."""
    try:
        value = json.loads(os.environ.get(OPTIONS_VARIABLE) or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def filesystem(url: str, storage_options: Mapping | None = None):
    """(fsspec filesystem, path inside it) for ``url``.  fsspec keeps one instance per
    protocol and options in each process (a forked worker gets its own)."""
    from fsspec.core import url_to_fs

    options = configured_options() if storage_options is None else dict(storage_options)
    if protocol_of(url) in ("s3", "s3a"):  # room for every header-reading thread
        config = dict(options.get("config_kwargs") or {})
        config.setdefault("max_pool_connections", S3_CONNECTIONS)
        options["config_kwargs"] = config
    return url_to_fs(url, **options)


@dataclass(frozen=True)
class ObjectFacts:
    """What identifies one object's content without reading it."""

    url: str
    size: int
    mtime_ns: int  # LastModified (0 when the store does not say)
    etag: str  # ETag, generation or version ('' when the store does not say)


def _etag(info: Mapping) -> str:
    for name in ("ETag", "etag", "md5Hash", "generation", "VersionId", "version_id"):
        value = info.get(name)
        if value:
            return str(value).strip('"')
    return ""


def _mtime_ns(info: Mapping) -> int:
    for name in ("LastModified", "last_modified", "mtime", "updated", "modified", "created"):
        value = info.get(name)
        if value is None or value == "":
            continue
        if isinstance(value, datetime):
            return int(value.timestamp() * 1_000_000) * 1000
        if isinstance(value, int | float):
            return int(value * 1_000_000) * 1000
        try:
            stamp = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            continue
        return int(stamp.timestamp() * 1_000_000) * 1000
    return 0


def facts_from_info(fs, info: Mapping) -> ObjectFacts:
    """:class:`ObjectFacts` from one fsspec ``info``/listing entry."""
    return ObjectFacts(
        url=fs.unstrip_protocol(info["name"]),
        size=int(info.get("size") or 0),
        mtime_ns=_mtime_ns(info),
        etag=_etag(info),
    )


def _hidden_or_marker(path: str, root: str) -> bool:
    """Keys that a folder walk would skip: names starting with a dot, folder markers."""
    relative = path[len(root) :].strip("/") if path.startswith(root) else path
    return path.endswith("/") or any(part.startswith(".") for part in relative.split("/"))


def list_objects(
    url: str, storage_options: Mapping | None = None, policy: RetryPolicy | None = None
) -> list[ObjectFacts]:
    """Every object under ``url`` (a prefix, read as a folder; or one object), sorted by
    URL, with its facts: paginated listing requests only (1,000 objects per request on
    S3), no object is read.  Hidden names (a component starting with a dot) and folder
    markers are left out, as a folder walk leaves them out."""
    fs, path = filesystem(url, storage_options)
    root = path.rstrip("/")

    def listing() -> list[dict]:
        fs.invalidate_cache()
        found = fs.find(root, detail=True, withdirs=False)
        if not found:
            try:
                info = fs.info(root)
            except FileNotFoundError:
                return []
            return [info] if info.get("type") == "file" else []
        return list(found.values())

    entries = with_retries(listing, policy)
    objects = [
        facts_from_info(fs, info)
        for info in entries
        if info.get("type", "file") == "file" and not _hidden_or_marker(info["name"], root)
    ]
    return sorted(objects, key=lambda o: o.url)


def object_facts(
    url: str, storage_options: Mapping | None = None, policy: RetryPolicy | None = None
) -> ObjectFacts:
    """The facts of one object (a HEAD request); FileNotFoundError when it is absent."""
    fs, path = filesystem(url, storage_options)

    def fresh_info() -> dict:
        fs.invalidate_cache(path)  # not a listing cached earlier (``refresh`` is s3fs's alone)
        return fs.info(path)

    info = with_retries(fresh_info, policy)
    return facts_from_info(fs, info)


def read_range(
    url: str,
    start: int,
    end: int,
    storage_options: Mapping | None = None,
    policy: RetryPolicy | None = None,
) -> bytes:
    """Bytes ``[start, end)`` of an object (a ranged GET; fewer at its end)."""
    fs, path = filesystem(url, storage_options)
    return with_retries(lambda: fs.cat_file(path, start=start, end=end), policy)


def fetch_to_file(
    url: str,
    local: str | os.PathLike,
    storage_options: Mapping | None = None,
    policy: RetryPolicy | None = None,
) -> Path:
    """Download an object to the local file ``local`` (replaced whole on every try)."""
    fs, path = filesystem(url, storage_options)
    local = Path(local)

    def download() -> None:
        local.unlink(missing_ok=True)
        fs.get_file(path, str(local))

    with_retries(download, policy)
    return local


def put_file(
    local: str | os.PathLike,
    url: str,
    storage_options: Mapping | None = None,
    policy: RetryPolicy | None = None,
) -> None:
    """Upload a finished local file as the object ``url`` (one PUT; readers see the old
    object or the new one, never part of it)."""
    fs, path = filesystem(url, storage_options)
    with_retries(lambda: fs.put_file(str(local), path), policy)


def remove_object(
    url: str, storage_options: Mapping | None = None, policy: RetryPolicy | None = None
) -> bool:
    """Delete an object; False when it was not there."""
    fs, path = filesystem(url, storage_options)
    try:
        with_retries(lambda: fs.rm_file(path), policy)
    except FileNotFoundError:
        return False
    return True


class FolderListings:
    """Facts of objects, found by listing each object's folder (prefix) once: checking a
    million outputs costs a listing request per thousand objects, not a HEAD each."""

    def __init__(self, storage_options: Mapping | None = None):
        self.storage_options = storage_options
        self._folders: dict[str, dict[str, ObjectFacts]] = {}

    def facts(self, url: str) -> ObjectFacts | None:
        """The object's facts, or None when it is not there."""
        folder = url.rsplit("/", 1)[0]
        if folder not in self._folders:
            objects = list_objects(folder, self.storage_options)
            self._folders[folder] = {o.url: o for o in objects}
        return self._folders[folder].get(_canonical(url))


def _canonical(url: str) -> str:
    """The URL as fsspec names listed objects (``s3://bucket/key``)."""
    protocol = protocol_of(url)
    return f"{protocol}://{url[len(protocol) + 3 :].strip('/')}" if protocol else url


__all__ = [
    "FolderListings",
    "ObjectFacts",
    "configure",
    "configured_options",
    "facts_from_info",
    "fetch_to_file",
    "filesystem",
    "join_url",
    "list_objects",
    "object_facts",
    "put_file",
    "read_range",
    "relative_url",
    "remove_object",
]
