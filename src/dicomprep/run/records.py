"""Moved to :mod:`dicomprep.core.records`; kept while callers switch their imports."""

from dicomprep.core.records import *  # noqa: F403
from dicomprep.core.records import (  # noqa: F401
    DUPLICATE,
    FAILED,
    OK,
    REMOVED,
    RESULT_COLUMNS,
    SKIPPED,
    DamagedStateFile,
    FileResult,
    read_results,
    write_results,
)
