"""The prepare stage: build the prepared-data directory from ``params.data``.

Layout of ``<out_dir>`` (the cross-module contract; every path is named by :class:`marginlab.core.layouts.PreparedLayout`,
and each evaluation-set folder is read by its format in :mod:`marginlab.evalsets`)::

    train.rec, train.idx          InsightFace RecordIO (JPEG payloads)
    train_meta.parquet            index (reader position), label [, synthetic ground truth]
    verification/<name>.bin       verification pairs [, <name>_meta.parquet for synthetic]
    ijb/<name>/                   IJB meta layout (meta/*.txt, loose_crop/) [, meta.parquet]
    tinyface/                     identification set: synthetic, or data.tinyface (.ingest_tinyface) [, meta.parquet]
    samples.png                   grid of samples (by identity; synthetic also by quality)
    alignment.parquet             data.align detect: one row per input photo (status, score, landmarks)
    manifest.json                 counts, sources, sha256 of every file, channel order, image policy,
                                  skipped items, decoder warnings, ...

Sources (``data.source``):

* ``synthetic``: :func:`marginlab.data.synthetic.write_synthetic` (images drawn at
  ``data.synthetic.image_size``; its worker processes die with prepare).
* ``recordio``: ``data.train_rec`` and the ``.idx`` beside it, checked in one pass (every record read,
  its label checked, its image decoded), then hard-linked as they are or rewritten with the conformed
  images (:mod:`.ingest_recordio`).
* ``folders``: identity folders converted by :func:`marginlab.data.formats.folders_to_recordio`
  (every image decoded and conformed; :mod:`.ingest_folders`).
* ``folders`` with ``data.align: detect``: raw photos; every training-folder, ``data.val_bins`` and
  ``data.tinyface`` image is detected (MTCNN), the ``data.alignment`` policy keeps a face or drops the image, and the
  face is warped to the ArcFace template at ``data.image_size`` (:mod:`.ingest_aligned`,
  :mod:`marginlab.data.align`); ``manifest["alignment"]`` counts the outcomes per set and status.
  The image policy's resize rule is not used then. Detections are cached in
  ``data.alignment.cache_dir`` (outside ``out_dir``), keyed by image sha256.
* either, with ``data.subset_index``: only the images the index file selects, in torchvision
  ImageFolder order of the tree (of AdaFace's ``convert.py`` folder for a ``.rec``), identities with
  fewer than 5 of them dropped, the rest numbered 0..K-1 (:mod:`.subset`, the paper's Table 1
  subset); ``manifest["subset"]`` records the file, its sha256 and the counts (``null`` without it).

Image policy (``data.image_size``, ``data.resize``; recorded as ``manifest["image_policy"]``): every
ingested real image (training records, identity-folder images, ``.bin`` images) is brought to
``image_size`` x ``image_size`` once, here: a non-square image is made square by a centre crop
(``center_crop``) or black padding (``pad``), then resized (area interpolation when shrinking,
bilinear when enlarging) and re-encoded as JPEG quality 95 (a resized PNG in a ``.bin`` becomes a
JPEG too).  Images already at that size keep their bytes (an identity-folder PNG is still
re-encoded to JPEG, pixels unchanged).  The counts of changed images are
``counts["train_ingest"]["resized"]`` and ``counts["verification"][<bin>]["resized"]``
(:func:`marginlab.data.formats.conform_encoded`).  Images are decoded one at a time, so a folder of
6000x4000 photos never holds more than one of them decoded.  IJB loose crops need no resizing: they
are aligned to the 112x112 ArcFace template from their landmarks when read
(:meth:`marginlab.data.formats.IJBSet.load_aligned`).

Errors and warnings: with ``data.skip_corrupt: false`` the first bad image or record raises a
:class:`~marginlab.data.formats.DataFormatError` naming the params key, the user's file (never the
copy in the temporary output) and the key/position, e.g. ``data.train_rec: /data/train.rec record
key 37 (position 36): truncated JPEG ...``; with ``true`` it is skipped and listed in
``manifest["skipped"]``.  Images that decode but make libjpeg print a warning (``Corrupt JPEG data:
2 extraneous bytes before marker 0xd9``, see :func:`marginlab.data.formats.decode_image_checked`)
are kept and listed in ``manifest["warnings"]`` (``source``, ``key``/``image``, ``message``) and
counted in ``counts["warnings"]``.  A ``.bin`` with 0 pairs is rejected.

In every case each ``data.val_bins`` file is checked image by image and linked or rewritten to
``verification/<stem>.bin`` (:mod:`.ingest_bins`), and each ``data.ijb`` entry gets its meta files
copied and its loose crops referenced, not copied (:mod:`.ingest_ijb`).

The user's files are never modified: inputs are hard-linked into the output and a linked file is
never chmod-ed (:mod:`.files`).

Everything is written into a temporary sibling directory that replaces ``out_dir`` only when
complete; temporaries left by a killed prepare are removed on the next start (:mod:`.stale`).
``manifest.json`` lists the sha256 of every regular file written.  The driver is :mod:`.driver`.
"""

from marginlab.data.prepare.driver import image_policy, run_prepare

__all__ = ["image_policy", "run_prepare"]
