"""The backbone registry: every declared name builds, unknown names list the known ones, a new one plugs in."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from marginlab.core.backbone_specs import BACKBONE_SPECS, BackboneSpec
from marginlab.backbones import BACKBONES, build_backbone
from marginlab.backbones.backbone_registry import register_backbone
from marginlab.core.config import ConfigError, validate_params
from marginlab.models import build_modules

#: One member of each declared family, built like the exact names.
FAMILY_EXAMPLES = {"timm/": "timm/mobilenetv3_small_050"}
NAMES = ("ir_18", "ir_34", "ir_50", "ir_100", "ir_200",
         "insightface_r18", "insightface_r34", "insightface_r50", "insightface_r100", "insightface_r200")
ALLOWED = ", ".join(NAMES) + " or 'timm/<name>'"


def test_every_declaration_has_its_builder_and_back():
    assert BACKBONES.names() == BACKBONE_SPECS.names() == NAMES
    assert BACKBONES.families() == BACKBONE_SPECS.families() == tuple(FAMILY_EXAMPLES)


@pytest.mark.parametrize("name", [*BACKBONE_SPECS.names(), *FAMILY_EXAMPLES.values()])
def test_every_declared_backbone_maps_images_to_embeddings(name):
    options = {} if name.startswith("timm/") else {"width": 0.0625}
    model = build_backbone(name, embedding_size=8, input_size=32, **options).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 8)
    assert validate_params({"model": {"backbone": name}}).model.backbone == name


@pytest.mark.parametrize("name", ["ir_42", "timm/", "resnet18"])
def test_an_unknown_name_lists_the_declared_ones(name):
    pattern = re.escape(f"unknown backbone {name!r}; allowed: {ALLOWED}")
    with pytest.raises(ValueError, match=pattern):
        build_backbone(name)
    with pytest.raises(ConfigError, match=pattern):
        validate_params({"model": {"backbone": name}})


def test_a_builder_without_a_declaration_is_refused():
    with pytest.raises(ValueError, match="has no declaration: add a BackboneSpec"):
        register_backbone("ir_42")(lambda *args, **kwargs: nn.Identity())
    assert "ir_42" not in BACKBONES


class _Pooled(nn.Module):
    """A toy backbone: mean colour → Linear → non-affine BatchNorm1d, like the real ones' output layer."""

    def __init__(self, embedding_size: int, dropout: float):
        super().__init__()
        self.embedding = nn.Sequential(nn.Dropout(dropout), nn.Linear(3, embedding_size),
                                       nn.BatchNorm1d(embedding_size, affine=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding(x.mean(dim=(2, 3)))


@pytest.fixture
def pooled_backbone():
    """``pooled`` declared and registered for one test, as a new backbone module would do."""
    BACKBONE_SPECS.add("pooled", BackboneSpec("pooled", ("width", "dropout")))
    try:
        @register_backbone("pooled")
        def build(name, embedding_size, input_size, *, width=1.0, dropout=0.0):
            return _Pooled(embedding_size, dropout)

        yield build
    finally:
        if "pooled" in BACKBONES:
            BACKBONES.remove("pooled")
        BACKBONE_SPECS.remove("pooled")


def test_a_new_backbone_is_usable_through_the_schema_and_the_build_path(pooled_backbone):
    params = validate_params({"runs": {"r": {"head": "adaface", "model": {"backbone": "pooled", "embedding_size": 16}}}})
    backbone, head = build_modules(params.run("r"), num_classes=3)
    assert isinstance(backbone, _Pooled) and backbone(torch.zeros(4, 3, 8, 8)).shape == (4, 16)
    assert head.weight.shape == (3, 16)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['timm_kwargs'\] for backbone 'pooled'"):
        build_backbone("pooled", timm_kwargs={})

