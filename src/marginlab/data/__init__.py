"""Data access for marginlab: on-disk formats (:mod:`marginlab.data.formats`), datasets and augmentation.

Readers in this package return images as RGB ``uint8`` arrays (H, W, 3); consumers convert to the
channel order they train with.
"""
