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

import re
from enum import StrEnum


class ErrorType(StrEnum):
    """The closed vocabulary of error types (the value is what the tables hold)."""

    # -- recognising the file and reading its header (stage discover) --
    NOT_DICOM = "NotDicom"
    EMPTY_FILE = "EmptyFile"
    FILE_NOT_FOUND = "FileNotFound"
    ACCESS_DENIED = "AccessDenied"
    READ_ERROR = "ReadError"
    INVALID_FILE_NAME = "InvalidFileName"
    INVALID_HEADER = "InvalidHeader"
    TRUNCATED_ELEMENT = "TruncatedElement"
    TRANSFER_SYNTAX_MISMATCH = "TransferSyntaxMismatch"
    UNSUPPORTED_SYNTAX = "UnsupportedSyntax"
    UNKNOWN_TRANSFER_SYNTAX = "UnknownTransferSyntax"
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
    ErrorType.INVALID_FILE_NAME: "a file name that is not valid UTF-8 or holds a tab or "
    "line break: rename the file to convert it",
    ErrorType.INVALID_HEADER: "the data set cannot be parsed: an element's tag, VR or "
    "length is malformed",
    ErrorType.TRUNCATED_ELEMENT: "an element's length runs past the end of the file",
    ErrorType.TRANSFER_SYNTAX_MISMATCH: "the data set is not encoded as its Transfer "
    "Syntax UID says (e.g. big endian data under Explicit VR Little Endian)",
    ErrorType.UNSUPPORTED_SYNTAX: "a transfer syntax no installed decoder handles",
    ErrorType.UNKNOWN_TRANSFER_SYNTAX: "a file without file meta information whose pixel "
    "data does not show which transfer syntax it is in",
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
    ErrorType.CORRUPT_CODESTREAM: "compressed pixel data (a frame's codestream, or a deflated "
    "data set's stream) that its decoder cannot decode",
    ErrorType.SHORT_PIXEL_DATA: "Pixel Data holds fewer bytes than Rows x Columns x frames need",
    ErrorType.TRUNCATED: "the file ends inside the pixel data",
    ErrorType.INVALID_PALETTE: "PALETTE COLOR whose lookup table descriptor or data is malformed",
    ErrorType.INVALID_MODALITY_LUT: "a Modality LUT Sequence whose descriptor or data is malformed",
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
    ErrorType.DUPLICATE_POSITION: "a slice repeats another slice's position: left out of the stack",
    ErrorType.OUTPUT_TOO_LARGE: "the output would exceed max_output_pixels or max_output_bytes",
    ErrorType.UPSAMPLING_TOO_LARGE: "the output would enlarge an axis by more than max_upsampling",
    ErrorType.PROCESSING_ERROR: "an unexpected error while converting the file (a bug: "
    "please report it with the message)",
    ErrorType.WRITE_FAILED: "the output could not be written (disk full, permissions)",
    ErrorType.OUTPUT_UNWRITABLE: "the output folder or bucket refuses writes (checked "
    "before the first conversion)",
}

#: The stages a failure can be found at, in the order a file passes them, with one line each.
STAGE_DESCRIPTIONS: dict[str, str] = {
    "discover": "finding the file and reading its header (before any pixel is decoded)",
    "read": "fetching a source object from a bucket or web server",
    "decode": "decoding the pixel data, and checking the image the header describes",
    "transform": "the intensity mapping, geometry, stacking and the output's size",
    "write": "writing the output (or putting it into its bucket)",
}
STAGES = tuple(STAGE_DESCRIPTIONS)

#: The statuses of failures.csv rows, with one line each.
STATUS_DESCRIPTIONS: dict[str, str] = {
    "skipped": "not an image to convert (not DICOM, empty, no pixel data, a link or "
    "special file passed over): reported, the run still succeeds",
    "duplicate": "another copy of the same SOP Instance UID was converted",
    "failed": "an image that could not be converted; the run's exit status is 1",
}


class DicomError(Exception):
    """A file that cannot be processed: ``stage`` (one of :data:`STAGES`) says how far it
    got, ``error_type`` (an :class:`ErrorType`; the class's :attr:`default_type` when not
    given) what is wrong, and the message says it in the file's terms, in one line.

    An error type outside the vocabulary is refused (ValueError): tables hold no other."""

    default_type = ErrorType.PROCESSING_ERROR

    def __init__(self, stage: str, message: str, error_type: ErrorType | str | None = None):
        super().__init__(one_line(message))
        self.stage = stage
        self.error_type = ErrorType(error_type or self.default_type)


class NotDicomError(DicomError):
    """The file's content is not DICOM (or it is skipped rather than failed)."""

    default_type = ErrorType.NOT_DICOM


class NoPixelDataError(DicomError):
    """A DICOM object without an image (SR, RT plan, presentation state, ...)."""

    default_type = ErrorType.NO_PIXEL_DATA


# -- one-line messages --------------------------------------------------------------

#: The longest message a table holds (longer ones end in "...").
MESSAGE_LIMIT = 300

_TRACEBACK = re.compile(r"Traceback \(most recent call last\):(?:\n[ \t].*)*\n?")
_OBJECT_REPR = re.compile(r"<[^<>]*? at 0x[0-9a-fA-F]+>")
_ADDRESS = re.compile(r"\s*\b0x[0-9a-fA-F]{6,}\b")
_NUMPY_ALIAS = re.compile(r"Alias '[^']*' was removed in NumPy [\d.]*\d\.?(\s*Use [^.]*\.)?")
_DTYPE_REPR = re.compile(
    r"dtype\(\s*'?[^')]*'?\s*\)|<class '[^']*'>"
    r"|\b(?:numpy|np)\.(?:u?int\d*|float\d*|complex\d*|bool_?|ndarray|dtype|generic)\b"
)
_CLASS_NAME = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Warning|Exit)$")
_CLASS_PREFIX = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Warning): ")
_EMPTY_PARTS = re.compile(r"(?:\s*[:;,]\s*)+(?=$|[;,:])|^\s*[:;,]\s*")


def one_line(text: object) -> str:
    """``text`` (an exception's or a library's words) fit for a table cell: one line of at
    most :data:`MESSAGE_LIMIT` characters, without a traceback, a memory address, an
    object's repr (``<_io.BytesIO object at ...>``) or NumPy's type names; '' when nothing
    but an exception class name is left."""
    text = _TRACEBACK.sub("", str(text))
    text = _OBJECT_REPR.sub("", text)
    text = _ADDRESS.sub("", text)
    text = _NUMPY_ALIAS.sub("", text)
    text = _DTYPE_REPR.sub("", text)
    text = _CLASS_PREFIX.sub("", " ".join(text.split()))
    text = _EMPTY_PARTS.sub("", text).strip(" :;,")
    if _CLASS_NAME.match(text):
        return ""
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 3] + "..."


def with_detail(message: str, detail: object) -> str:
    """``message`` in the file's terms, then `` -- `` and a library's own words
    (:func:`one_line` of ``detail``) when they say anything."""
    said = one_line(detail)
    return f"{message} -- {said}" if said and said not in message else message
