"""The project's error vocabulary: every ``error_type`` that failures.csv, the catalog,
series_report.csv and ``dicom-validate`` can name, each with one line saying what it means
(docs/errors.md lists them; a test holds the two equal).

An error type names what is wrong with the *file* (or the run's set-up), in DICOM's terms,
never the Python exception or library that noticed it.  Messages follow the same rule: the
element, the value found and what was expected, in one line; a decoder's own words may
follow as a detail after ``--``.

:class:`DicomError` is the one exception the pipeline raises for a file it cannot turn into
an output: its ``stage`` (discover, decode, transform, write) says how far the file got.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorType(StrEnum):
    """The closed vocabulary of error types (the value is what the tables hold)."""

    # -- recognising the file and reading its header (stage discover) --
    NOT_DICOM = "NotDicom"
    EMPTY_FILE = "EmptyFile"
    FILE_NOT_FOUND = "FileNotFound"
    ACCESS_DENIED = "AccessDenied"
    READ_ERROR = "ReadError"
    INVALID_HEADER = "InvalidHeader"
    TRUNCATED_ELEMENT = "TruncatedElement"
    TRANSFER_SYNTAX_MISMATCH = "TransferSyntaxMismatch"
    UNSUPPORTED_SYNTAX = "UnsupportedSyntax"
    DECOMPRESSION_BOMB = "DecompressionBomb"
    NO_PIXEL_DATA = "NoPixelData"
    INVALID_UID = "InvalidUID"
    MISSING_UID = "MissingUID"
    DUPLICATE_SOP_INSTANCE_UID = "DuplicateSOPInstanceUID"
    LINK_LOOP = "LinkLoop"
    LINK_OUTSIDE_SOURCE = "LinkOutsideSource"
    SPECIAL_FILE = "SpecialFile"
    LINK_NOT_FOLLOWED = "LinkNotFollowed"
    NOT_FOUND = "NotFound"
    STORAGE_UNAVAILABLE = "StorageUnavailable"
    # -- the image the header describes, and its pixel data (stage decode) --
    EMPTY_IMAGE = "EmptyImage"
    INVALID_IMAGE_DESCRIPTION = "InvalidImageDescription"
    TOO_MANY_FRAMES = "TooManyFrames"
    FRAME_TOO_LARGE = "FrameTooLarge"
    CODESTREAM_MISMATCH = "CodestreamMismatch"
    CORRUPT_CODESTREAM = "CorruptCodestream"
    SHORT_PIXEL_DATA = "ShortPixelData"
    TRUNCATED = "Truncated"
    INVALID_PALETTE = "InvalidPalette"
    INVALID_MODALITY_LUT = "InvalidModalityLUT"
    INVALID_VOI_LUT = "InvalidVOILUT"
    INVALID_WINDOW = "InvalidWindow"
    NO_WINDOW = "NoWindow"
    INVALID_RESCALE = "InvalidRescale"
    NON_FINITE_PIXELS = "NonFinitePixels"
    WORKER_DIED = "WorkerDied"
    OUT_OF_MEMORY = "OutOfMemory"
    # -- geometry, stacks and the output's size (stage transform) --
    NO_PIXEL_SPACING = "NoPixelSpacing"
    INVALID_PIXEL_SPACING = "InvalidPixelSpacing"
    INVALID_ORIENTATION = "InvalidOrientation"
    INVALID_POSITION = "InvalidPosition"
    NO_GEOMETRY = "NoGeometry"
    MIXED = "Mixed"
    MIXED_GEOMETRY = "MixedGeometry"
    MULTI_FRAME = "MultiFrame"
    NOT_A_STACK = "NotAStack"
    SLICE_ORDER = "SliceOrder"
    DUPLICATE_POSITION = "DuplicatePosition"
    OUTPUT_TOO_LARGE = "OutputTooLarge"
    UPSAMPLING_TOO_LARGE = "UpsamplingTooLarge"
    PROCESSING_ERROR = "ProcessingError"
    # -- writing the output (stage write) --
    WRITE_FAILED = "WriteFailed"
    OUTPUT_UNWRITABLE = "OutputUnwritable"


#: One line per error type: what it means and, where there is one, what to do.
DESCRIPTIONS: dict[ErrorType, str] = {
    ErrorType.NOT_DICOM: "the file's content is not DICOM (no preamble, no plausible data set)",
    ErrorType.EMPTY_FILE: "the file has 0 bytes",
    ErrorType.FILE_NOT_FOUND: "a listed path does not exist (or vanished during the run)",
    ErrorType.ACCESS_DENIED: "the file or object cannot be read with the run's permissions",
    ErrorType.READ_ERROR: "the operating system failed to read the file (an I/O error)",
    ErrorType.INVALID_HEADER: "the data set cannot be parsed: an element's tag, VR or "
    "length is malformed",
    ErrorType.TRUNCATED_ELEMENT: "an element's length runs past the end of the file",
    ErrorType.TRANSFER_SYNTAX_MISMATCH: "the data set is not encoded as its Transfer "
    "Syntax UID says (e.g. big endian data under Explicit VR Little Endian)",
    ErrorType.UNSUPPORTED_SYNTAX: "a transfer syntax no installed decoder handles",
    ErrorType.DECOMPRESSION_BOMB: "a deflated data set inflates far beyond any real header",
    ErrorType.NO_PIXEL_DATA: "a DICOM object without an image (SR, RT plan, presentation "
    "state...): skipped, not failed",
    ErrorType.INVALID_UID: "a Study or SOP Instance UID that is not a valid UID (path "
    "characters, letters, over 64 characters)",
    ErrorType.MISSING_UID: "the Study or SOP Instance UID an output is named by is absent",
    ErrorType.DUPLICATE_SOP_INSTANCE_UID: "another copy of the same SOP Instance UID was "
    "converted instead: status duplicate, not failed",
    ErrorType.LINK_LOOP: "a symbolic link that leads back into a folder already walked, "
    "or to itself through a chain of links",
    ErrorType.LINK_OUTSIDE_SOURCE: "a symbolic link whose target lies outside the source "
    "folder (follow_links_outside_source allows it)",
    ErrorType.SPECIAL_FILE: "a FIFO, socket or device in the source folder: never opened",
    ErrorType.LINK_NOT_FOLLOWED: "a symbolic link in the source folder while "
    "follow_symlinks is off: skipped",
    ErrorType.NOT_FOUND: "an object listed or named in a bucket or on a web server is absent",
    ErrorType.STORAGE_UNAVAILABLE: "object storage did not answer after retries (the next "
    "run tries again)",
    ErrorType.EMPTY_IMAGE: "Rows, Columns or Number of Frames is 0 or absent",
    ErrorType.INVALID_IMAGE_DESCRIPTION: "Bits Allocated / Bits Stored / Samples per Pixel "
    "/ Photometric Interpretation are impossible or contradict each other",
    ErrorType.TOO_MANY_FRAMES: "Number of Frames is beyond max_frames",
    ErrorType.FRAME_TOO_LARGE: "Rows x Columns is beyond max_frame_pixels",
    ErrorType.CODESTREAM_MISMATCH: "a compressed frame's own header (JPEG SOF, JPEG 2000 "
    "SIZ, RLE segment table) claims another image than Rows, Columns and bits",
    ErrorType.CORRUPT_CODESTREAM: "a compressed frame that its decoder cannot decode",
    ErrorType.SHORT_PIXEL_DATA: "Pixel Data holds fewer bytes than Rows x Columns x frames "
    "need",
    ErrorType.TRUNCATED: "the file ends inside the pixel data",
    ErrorType.INVALID_PALETTE: "PALETTE COLOR whose lookup table descriptor or data is "
    "malformed",
    ErrorType.INVALID_MODALITY_LUT: "a Modality LUT Sequence whose descriptor or data is "
    "malformed",
    ErrorType.INVALID_VOI_LUT: "a VOI LUT Sequence whose descriptor or data is malformed",
    ErrorType.INVALID_WINDOW: "Window Center / Width that are not numbers or a width <= 0",
    ErrorType.NO_WINDOW: "more than 8 bits of greyscale without Window Center / Width or "
    "VOI LUT: each image is scaled by its own min-max (a dicom-validate warning)",
    ErrorType.INVALID_RESCALE: "Rescale Slope / Intercept that are not finite numbers, or "
    "whose product overflows",
    ErrorType.NON_FINITE_PIXELS: "float pixel data holding NaN or infinite samples",
    ErrorType.WORKER_DIED: "the process converting the file died (a crashing decoder, the "
    "out-of-memory killer)",
    ErrorType.OUT_OF_MEMORY: "the conversion ran out of memory",
    ErrorType.NO_PIXEL_SPACING: "the options need a spacing in mm and the file has neither "
    "Pixel Spacing nor Imager Pixel Spacing",
    ErrorType.INVALID_PIXEL_SPACING: "Pixel Spacing (or Imager Pixel Spacing) is not two "
    "finite numbers > 0",
    ErrorType.INVALID_ORIENTATION: "Image Orientation (Patient) is not two unit, "
    "orthogonal direction vectors",
    ErrorType.INVALID_POSITION: "Image Position (Patient) is not three finite numbers",
    ErrorType.NO_GEOMETRY: "a slice without the position or orientation a stack needs",
    ErrorType.MIXED: "the slices of a stack differ in size or colour",
    ErrorType.MIXED_GEOMETRY: "the slices of a stack differ in orientation or spacing",
    ErrorType.MULTI_FRAME: "a multi-frame file among the single-frame slices of a stack",
    ErrorType.NOT_A_STACK: "fewer than two usable slices are left of a series",
    ErrorType.SLICE_ORDER: "the slices' positions give no consistent order along the normal",
    ErrorType.DUPLICATE_POSITION: "a slice repeats another slice's position: left out of "
    "the stack",
    ErrorType.OUTPUT_TOO_LARGE: "the output would exceed max_output_pixels or "
    "max_output_bytes",
    ErrorType.UPSAMPLING_TOO_LARGE: "the output would enlarge an axis by more than "
    "max_upsampling",
    ErrorType.PROCESSING_ERROR: "an unexpected error while converting the file (a bug: "
    "please report it with the message)",
    ErrorType.WRITE_FAILED: "the output could not be written (disk full, permissions)",
    ErrorType.OUTPUT_UNWRITABLE: "the output folder or bucket refuses writes (checked "
    "before the first conversion)",
}

#: The stages a failure can be found at, in the order a file passes them.
STAGES = ("discover", "decode", "transform", "write")


class DicomError(Exception):
    """A file that cannot be processed, with the pipeline stage where that was found and
    its :class:`ErrorType` (``error_type``; a subclass's name when not given)."""

    def __init__(self, stage: str, message: str, error_type: str | None = None):
        super().__init__(message)
        self.stage = stage
        self.error_type = str(error_type or type(self).__name__)


class NotDicomError(DicomError):
    """The file's content is not DICOM."""


class NoPixelDataError(DicomError):
    """A DICOM object without an image (SR, RT plan, presentation state, ...)."""
