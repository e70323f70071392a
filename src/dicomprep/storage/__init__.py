"""Object storage in and out: sources and outputs given as URLs (``s3://bucket/prefix``,
``gs://``, ``az://``, ``https://``, any fsspec protocol), read and written through fsspec
(docs/object-storage.md).

Discovery lists objects and reads headers with ranged reads (:mod:`.discovery`,
:mod:`.headers`); shard jobs stream each object through a local temporary file and put
each finished TIFF with a single upload (:mod:`.transfer`); every request is retried
with backoff and jitter while it fails transiently (:mod:`.retry`).  Local paths never
come here: :func:`is_url` is False for them.

Only :mod:`.urls` is imported by this package itself: fsspec and s3fs (the ``s3``
extra) are imported when an object is first touched.
"""

from dicomprep.storage.urls import is_url, join_url, protocol_of, relative_url

__all__ = ["is_url", "join_url", "protocol_of", "relative_url"]
