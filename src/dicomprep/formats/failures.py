"""What an error that stopped a conversion is called in the tables.

A :class:`DicomError` names its own stage, error type and message.  Any other exception
is named by where it happened — a decoder failing on a frame, the system running out of
memory, the output failing to be written — never by its Python class; the library's own
words follow the message as a detail after `` -- ``, cleaned by :func:`one_line`.
"""

from __future__ import annotations

from dicomprep.core.errors import DicomError, ErrorType, one_line, with_detail

#: Words of pydicom and NumPy saying that the uncompressed pixel data is shorter than the
#: image the header describes (or not a whole number of samples).
_SHORT_DATA_WORDS = (
    "cannot reshape",
    "less than expected",
    "buffer size must be a multiple",
    "buffer is smaller than requested",
    "shorter than",
)

#: What pydicom says of a transfer syntax that none of its decoders handles.
_NOT_SUPPORTED_WORDS = "'Transfer Syntax UID' value of"

#: How pydicom introduces the failures of all its decoding plugins (dropped: the plugins'
#: own words follow it).
_PLUGINS_PREFIX = "Unable to decode as exceptions were raised by all available plugins:"


def decoder_words(exc: BaseException) -> str:
    """A decoder's explanation of ``exc`` in one clean line ('' when it says nothing)."""
    text = str(exc).replace(_PLUGINS_PREFIX, "")
    return one_line(text)


def decode_failure(exc: BaseException, transfer_syntax: str = "", compressed: bool = False):
    """The :class:`DicomError` (stage decode) of a decoder's exception ``exc`` for the pixel
    data of a file in ``transfer_syntax`` (its name or UID; ``compressed`` says whether
    the frames are codestreams).  MemoryError is returned as it is (a failure of the
    whole conversion, see :func:`failure_of`)."""
    if isinstance(exc, (DicomError, MemoryError)):
        return exc
    words = decoder_words(exc)
    if isinstance(exc, OSError) and exc.errno is not None:
        reason = exc.strerror or "an I/O error"
        return DicomError("decode", f"the file cannot be read: {reason}", ErrorType.READ_ERROR)
    if isinstance(exc, NotImplementedError) or _NOT_SUPPORTED_WORDS in str(exc):
        what = transfer_syntax or "the file's transfer syntax"
        message = f"no installed decoder handles {what}"
        return DicomError("decode", message, ErrorType.UNSUPPORTED_SYNTAX)
    if not compressed:
        if any(w in str(exc) for w in _SHORT_DATA_WORDS):
            message = (
                "the pixel data holds fewer bytes than Rows x Columns x Samples per Pixel x "
                "Number of Frames need (truncated?)"
            )
            return DicomError("decode", with_detail(message, words), ErrorType.SHORT_PIXEL_DATA)
        message = "the uncompressed pixel data cannot be read as the header describes it"
        return DicomError(
            "decode", with_detail(message, words), ErrorType.INVALID_IMAGE_DESCRIPTION
        )
    what = f"a frame ({transfer_syntax})" if transfer_syntax else "a compressed frame"
    message = f"{what} cannot be decoded: its codestream is corrupt or cut short"
    return DicomError("decode", with_detail(message, words), ErrorType.CORRUPT_CODESTREAM)


def failure_of(exc: BaseException, what: str = "file") -> tuple[str, ErrorType, str]:
    """(stage, error type, one-line message) of an error that stopped converting a
    ``what`` (file, slice, stack).

    A :class:`DicomError` names its own; running out of memory is ``OutOfMemory`` (stage
    transform); any other OSError happened writing the output (``WriteFailed``, with the
    system's reason and the path); anything else is a ``ProcessingError`` (a bug) whose
    message keeps the library's words as a detail."""
    if isinstance(exc, DicomError):
        return exc.stage, exc.error_type, str(exc)
    if isinstance(exc, MemoryError):
        return "transform", ErrorType.OUT_OF_MEMORY, f"out of memory while converting this {what}"
    if isinstance(exc, OSError):
        reason = exc.strerror or one_line(exc) or "the system refused the write"
        where = f": {exc.filename}" if exc.filename else ""
        return "write", ErrorType.WRITE_FAILED, one_line(f"{reason}{where}")
    message = with_detail(f"an unexpected error while converting this {what}", exc)
    return "transform", ErrorType.PROCESSING_ERROR, one_line(message)


def os_error_type(exc: OSError) -> ErrorType:
    """The error type of a file or object that the system refused to read: absent
    (FileNotFound), not permitted (AccessDenied), or an I/O error (ReadError)."""
    if isinstance(exc, FileNotFoundError):
        return ErrorType.FILE_NOT_FOUND
    if isinstance(exc, PermissionError):
        return ErrorType.ACCESS_DENIED
    return ErrorType.READ_ERROR
