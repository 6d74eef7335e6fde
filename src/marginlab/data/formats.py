"""Public facade of the real-world data formats (readers return RGB ``uint8`` images).

- RecordIO ``.rec``/``.idx`` (InsightFace training sets): :func:`open_recordio`, :func:`write_recordio`
- verification ``.bin`` (LFW, CFP-FP, AgeDB-30, ...): :func:`read_bin`, :func:`read_bin_encoded`, :func:`write_bin`
- IJB-B/C style 1:1 sets: :func:`read_ijb` (-> :class:`IJBSet`), :func:`write_ijb_meta`
- identity folders: :func:`list_image_folder`, :func:`folders_to_recordio`; TinyFace-style
  identification sets: :func:`read_identification_set`
- images: :func:`decode_image`, :func:`encode_jpeg`, :func:`align_face` (ArcFace 5-point template)
- errors: :class:`DataFormatError` and its subclasses

Implementations live in the sibling modules; import from here.
"""

from marginlab.data.errors import (
    BadMagicError,
    CorruptImageError,
    DataFormatError,
    EmptyFolderError,
    FolderFormatError,
    IJBFormatError,
    MissingFileError,
    MissingIndexError,
    RecordIOError,
    TruncatedRecordError,
    VerificationBinError,
)
from marginlab.data.folders import (
    IDENTIFICATION_PARTS,
    IMAGE_EXTENSIONS,
    folders_to_recordio,
    list_image_folder,
    read_identification_set,
)
from marginlab.data.ijb import IJBSet, ijb_meta_paths, read_ijb, write_ijb_meta
from marginlab.data.images import (
    ARCFACE_TEMPLATE_112,
    align_face,
    arcface_template,
    decode_image,
    encode_jpeg,
    encode_png,
    estimate_similarity,
    transform_points,
)
from marginlab.data.recordio import (
    IRHeader,
    RecordIOReader,
    open_recordio,
    write_recordio,
)
from marginlab.data.verification_bin import read_bin, read_bin_encoded, write_bin

__all__ = [
    "ARCFACE_TEMPLATE_112",
    "IDENTIFICATION_PARTS",
    "IMAGE_EXTENSIONS",
    "BadMagicError",
    "CorruptImageError",
    "DataFormatError",
    "EmptyFolderError",
    "FolderFormatError",
    "IJBFormatError",
    "IJBSet",
    "IRHeader",
    "MissingFileError",
    "MissingIndexError",
    "RecordIOError",
    "RecordIOReader",
    "TruncatedRecordError",
    "VerificationBinError",
    "align_face",
    "arcface_template",
    "decode_image",
    "encode_jpeg",
    "encode_png",
    "estimate_similarity",
    "folders_to_recordio",
    "ijb_meta_paths",
    "list_image_folder",
    "open_recordio",
    "read_bin",
    "read_bin_encoded",
    "read_identification_set",
    "read_ijb",
    "transform_points",
    "write_bin",
    "write_ijb_meta",
    "write_recordio",
]
