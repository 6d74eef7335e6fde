"""Models trained elsewhere, brought into the study: the AdaFace authors' checkpoints, insightface's
arcface_torch backbones and ONNX recognisers.

``marginlab import-model SRC --format FMT --out DIR`` turns a released file into a model folder that every
command taking a model reads (``embed``, ``verify``, ``export-onnx``, the ``released`` stage), through one
loader (:func:`marginlab.released.embedder.load_embedder`). Each format is a module of this package that
registers its importer (:mod:`marginlab.released.importers`). Loading never runs code from the file.
"""
