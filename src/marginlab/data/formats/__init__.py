"""The on-disk face-data formats: the one public facade (readers return RGB ``uint8`` images).

- RecordIO ``.rec``/``.idx`` (InsightFace training sets): :func:`open_recordio` (-> :class:`RecordIOReader`),
  :func:`write_recordio`, :func:`idx_path_for`; the framing primitives :func:`frame_record`,
  :func:`pack_payload`, :func:`unpack_payload`
- verification ``.bin`` (LFW, CFP-FP, AgeDB-30, ...): :func:`read_bin`, :func:`read_bin_encoded`, :func:`write_bin`
- IJB-B/C style 1:1 sets: :func:`read_ijb` (-> :class:`IJBSet`), :func:`write_ijb_meta`, :func:`ijb_meta_paths`,
  and a prepared set's reference to its crops (:data:`IMAGE_DIR_FILE`, :func:`write_image_dir_ref`)
- identity folders: :func:`list_image_folder`, :func:`folders_to_recordio`; TinyFace-style
  identification sets: :func:`read_identification_set`
- images: :func:`decode_image`, :func:`decode_image_checked`, :func:`encode_jpeg`, :func:`encode_png`,
  :func:`align_face` (ArcFace 5-point template), and the one-size ingest policy
  (:class:`ImagePolicy`, :func:`conform_encoded`, :func:`square_resize`)
- errors: :class:`DataFormatError` and its subclasses

Implementations live in the modules of this package (``recordio`` framing, ``recordio_reader``,
``recordio_writer``, ``verification_bin``, ``ijb``, ``folders``, ``images``, ``errors``); every caller
outside it imports from here.
"""

from marginlab.data.formats.errors import (
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
from marginlab.data.formats.folders import (
    IDENTIFICATION_PARTS,
    IMAGE_EXTENSIONS,
    folders_to_recordio,
    list_image_folder,
    read_identification_set,
)
from marginlab.data.formats.ijb import (
    IMAGE_DIR_FILE,
    IJBSet,
    ijb_meta_paths,
    read_ijb,
    write_ijb_meta,
    write_image_dir_ref,
)
from marginlab.data.formats.five_point_alignment import (
    ARCFACE_TEMPLATE_112,
    align_face,
    arcface_template,
    estimate_similarity,
    transform_points,
)
from marginlab.data.formats.images import (
    ImagePolicy,
    conform_encoded,
    decode_image,
    decode_image_checked,
    encode_jpeg,
    encode_png,
    square_resize,
)
from marginlab.data.formats.recordio import IRHeader, frame_record, idx_path_for, pack_payload, unpack_payload
from marginlab.data.formats.recordio_reader import RecordIOReader, open_recordio
from marginlab.data.formats.recordio_writer import write_recordio
from marginlab.data.formats.verification_bin import read_bin, read_bin_encoded, write_bin

__all__ = [
    "ARCFACE_TEMPLATE_112",
    "IDENTIFICATION_PARTS",
    "IMAGE_DIR_FILE",
    "IMAGE_EXTENSIONS",
    "BadMagicError",
    "CorruptImageError",
    "DataFormatError",
    "EmptyFolderError",
    "FolderFormatError",
    "IJBFormatError",
    "IJBSet",
    "IRHeader",
    "ImagePolicy",
    "MissingFileError",
    "MissingIndexError",
    "RecordIOError",
    "RecordIOReader",
    "TruncatedRecordError",
    "VerificationBinError",
    "align_face",
    "arcface_template",
    "conform_encoded",
    "decode_image",
    "decode_image_checked",
    "encode_jpeg",
    "encode_png",
    "estimate_similarity",
    "folders_to_recordio",
    "frame_record",
    "idx_path_for",
    "ijb_meta_paths",
    "list_image_folder",
    "open_recordio",
    "pack_payload",
    "read_bin",
    "read_bin_encoded",
    "read_identification_set",
    "read_ijb",
    "square_resize",
    "transform_points",
    "unpack_payload",
    "write_bin",
    "write_ijb_meta",
    "write_image_dir_ref",
    "write_recordio",
]
