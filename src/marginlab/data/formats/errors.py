"""Exceptions raised by the data-format readers and writers.

Every error is a :class:`DataFormatError` (a :class:`ValueError`), and its message names the file,
the record/key/line concerned and what was expected, so that a bad dataset can be fixed without a
debugger.
"""

from __future__ import annotations


class DataFormatError(ValueError):
    """A data file (or folder) does not follow the format it claims to be in."""


class CorruptImageError(DataFormatError):
    """Encoded image bytes could not be decoded (empty, truncated or not an image)."""


class ImageTooLargeError(CorruptImageError):
    """An image's header declares more pixels than ``data.max_image_pixels``; refused before decoding.

    A subclass of :class:`CorruptImageError` so that ``data.skip_corrupt`` skips and counts it the same way.
    """


class RecordIOError(DataFormatError):
    """A RecordIO ``.rec``/``.idx`` pair is malformed."""


class MissingFileError(DataFormatError, FileNotFoundError):
    """A file the format needs does not exist (also catchable as :class:`FileNotFoundError`)."""


class MissingIndexError(RecordIOError, MissingFileError):
    """The ``.idx`` file that must sit beside a ``.rec`` is missing."""


class TruncatedRecordError(RecordIOError):
    """A record (or the ``.idx`` offset of one) extends past the end of the ``.rec`` file."""


class BadMagicError(RecordIOError):
    """A record does not start with the RecordIO magic word (wrong offset or corrupt file)."""


class VerificationBinError(DataFormatError):
    """A verification ``.bin`` pickle is malformed (structure, types or pair count)."""


class IJBFormatError(DataFormatError):
    """IJB meta files are malformed or inconsistent with each other."""


class FolderFormatError(DataFormatError):
    """An identity-folder or identification-set tree does not have the expected layout."""


class EmptyFolderError(FolderFormatError):
    """A folder that must contain images (a class folder, a dataset root) contains none."""
