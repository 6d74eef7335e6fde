"""Data for marginlab, by job.

- :mod:`marginlab.data.formats`: the on-disk face-data formats (RecordIO ``.rec``/``.idx``,
  verification ``.bin``, IJB meta, identity folders and TinyFace sets, image decoding/encoding and
  alignment, the format errors).  Its ``__init__`` is the one public facade: import from
  ``marginlab.data.formats``, never from its modules.
- :mod:`marginlab.data.synthetic`: the synthetic face set (faces, rendering, degradations, which images
  exist, rendering in worker processes, writing in the real formats).
- :mod:`marginlab.data.prepare`: the prepare stage (``run_prepare``): synthetic generation or ingest of
  real data into the prepared-data directory and its manifest.
- training input lives with training, in :mod:`marginlab.train.input` (the dataset over ``train.rec``,
  the train/validation split, the reproducible loader, the AdaFace augmentations).
- :mod:`marginlab.data.model_input`: the network's input convention (resize, channel order,
  normalisation), shared by training and evaluation.
- :mod:`marginlab.data.sample_grid`: the labelled image grid of ``samples.png`` (synthetic and real).

Readers in this package return images as RGB ``uint8`` arrays (H, W, 3); consumers convert to the
channel order they train with (:mod:`marginlab.data.model_input`).
"""
