"""Where an output's frames come from: a file's frames or a stack's slices.

:class:`FrameSource` is what :func:`dicomprep.series.render.render` reads: the number of
frames in position order, the header each frame's intensities come from, the frames decoded
at a wavelet level, and the context that names a frame's failure.  A file's frames
(:class:`dicomprep.pipeline.FileFrames`) share one header; a stack's slices
(:class:`dicomprep.series.volume_file.StackSlices`) have one header each.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

import numpy as np
from pydicom import Dataset

from dicomprep.formats.decode import ImageInfo


class FrameSource(Protocol):
    """The frames of one output, indexed ``0 .. count - 1`` in position order."""

    #: The first frame's header facts; every frame has its size and colour.
    info: ImageInfo
    #: Frames in position order.
    count: int
    #: (dataset, image facts) of each header the frames come from (a file: one).
    headers: Sequence[tuple[Dataset, ImageInfo]]
    #: Positions along the slice normal in mm (a stack's slices), else None.
    positions: Sequence[float] | None

    def frame_of(self, index: int) -> tuple[int, int]:
        """(header number, frame number inside that header) of frame ``index``."""
        ...

    def decode(self, indices: list[int], level: int) -> Iterator[np.ndarray]:
        """Frames ``indices`` decoded at wavelet ``level`` (0: full resolution), in order;
        a failure is a DicomError of stage decode (or the frame's own error type)."""
        ...

    def guard(self, index: int) -> AbstractContextManager[None]:
        """The context that turns an error of frame ``index`` into its failure."""
        ...

    def level_for(self, width: int, height: int, region_width: int, region_height: int) -> int:
        """The coarsest wavelet level at which a ``region_width x region_height`` region of
        every frame still has ``width x height`` pixels (0: frames decode only in full)."""
        ...
