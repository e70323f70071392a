"""Moved to :mod:`dicomprep.core.errors` (the bottom layer); this name stays the same
module while callers switch their imports."""

import sys

from dicomprep.core import errors as _errors

sys.modules[__name__] = _errors
