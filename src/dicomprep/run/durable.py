"""Moved to :mod:`dicomprep.core.durable`; kept while callers switch their imports."""

from dicomprep.core.durable import (  # noqa: F401
    atomic_write_bytes,
    atomic_write_text,
    fsync_folder,
    iter_lines,
    open_for_append,
    temporary_path,
)
