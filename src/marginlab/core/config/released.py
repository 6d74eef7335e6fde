"""The ``released:`` section: models trained elsewhere, probed by the ``released`` stage (one per entry).

A released checkpoint (the AdaFace authors' IR-18 ... IR-101, arcface_torch's backbones, an ONNX recogniser)
was trained at the paper's scale, which CPU training here is ~10⁴ times below; probing one says whether the
norm–quality relation holds at that scale. Each entry names the file (read only, never written), its format
and architecture, and what is known of its training, which the report shows beside every number.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field, field_validator

from marginlab.core.config.sections import Strict

__all__ = ["RELEASED_FORMATS", "ReleasedModel"]

#: The import formats (:mod:`marginlab.released.importers` implements each).
RELEASED_FORMATS = ("adaface", "insightface", "onnx")


class ReleasedModel(Strict):
    # The released file: an AdaFace .ckpt, an arcface_torch backbone.pth or an .onnx file (a DVC dependency;
    # a relative path is relative to the pipeline root). Only read.
    file: str
    format: Literal["adaface", "insightface", "onnx"]
    # adaface: ir_18 | ir_34 | ir_50 | ir_101; insightface: r18 ... r200 (both inferred from the keys when
    # omitted); onnx: the input convention (sface | insightface | adaface; none for a marginlab export).
    arch: Optional[str] = None
    trained_on: str = ""  # e.g. "MS1MV2", "WebFace4M": shown beside the model's numbers
    images_seen: Optional[Annotated[int, Field(ge=1)]] = None  # training images seen (epochs × images), if known
    # The prepared data is this model's own training data: its training-set sample is then the paper's setting
    # (Fig. 2's 0.52 was measured on the training set), not an out-of-distribution set.
    own_data: bool = False
    sample_size: Annotated[int, Field(ge=20, le=100_000)] = 1000  # training-set images probed (clean + augmented)

    @field_validator("file")
    @classmethod
    def _file(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("file must name the released model file")
        return v
