"""The tiny synthetic set and params shared by the prepare tests (tests/data/)."""

from __future__ import annotations

from marginlab.core.config import validate_params

TINY_SYNTH = {
    "image_size": 64,
    "train_identities": 4,
    "train_images_per_identity": 3,
    "verification_identities": 4,
    "verification_pairs": 20,
    "ijb_identities": 2,
    "ijb_templates_per_identity": 2,
    "ijb_images_per_template": 2,
    "tinyface_identities": 2,
    "tinyface_distractors": 3,
}


def tiny_params(**data):
    # a batch the tiny synthetic set can fill: the validator refuses a grid that could not train (issue #21)
    return validate_params({"seed": data.pop("seed", 1), "data": data, "train": {"batch_size": 4}}, source="test")
