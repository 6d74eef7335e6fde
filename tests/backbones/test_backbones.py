"""Tests of marginlab.backbones: shapes, parameter counts, structure, init, layouts, timm, errors."""

from __future__ import annotations

import copy
import math
import socket

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from marginlab.backbones import (
    BACKBONE_NAMES,
    build_backbone,
    count_parameters,
    feature_map_size,
)
from marginlab.backbones.iresnet import IR_UNITS, BasicBlockIR, scaled_channels


def _images(n: int, size: int | tuple[int, int], seed: int = 0) -> torch.Tensor:
    h, w = (size, size) if isinstance(size, int) else size
    return torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _closed_form_ir_params(units, width=1.0, input_size=112, embedding=512) -> int:
    """Hand derivation of the IR-ResNet parameter count (independent of the module code).

    stem: conv3x3 3→c0 (27·c0) + BN (2·c0) + PReLU (c0)
    unit in→out: BN(in) 2in + conv3x3 9·in·out + BN 2out + PReLU out + conv3x3 9·out² + BN 2out
                 + projection shortcut (in·out + 2out) only when in ≠ out
    output: BN2d(c4) 2·c4 + Linear(c4·s·s → E) with bias; BN1d(E, affine=False) has no parameters.
    """
    ch = lambda c: max(8, round(c * width))
    c0 = ch(64)
    total = 27 * c0 + 2 * c0 + c0
    cin = c0
    for n, base in zip(units, (64, 128, 256, 512)):
        cout = ch(base)
        for i in range(n):
            a = cin if i == 0 else cout
            total += 2 * a + 9 * a * cout + 2 * cout + cout + 9 * cout * cout + 2 * cout
            if a != cout:
                total += a * cout + 2 * cout
        cin = cout
    side = math.ceil(input_size / 16)
    total += 2 * cin + cin * side * side * embedding + embedding
    return total


# --------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("name", BACKBONE_NAMES)
def test_every_depth_maps_112_to_embedding(name):
    model = build_backbone(name, embedding_size=64, input_size=112, width=0.0625).eval()
    with torch.no_grad():
        out = model(_images(2, 112))
    assert out.shape == (2, 64)
    assert torch.isfinite(out).all()
    assert model.feature_shape == (32, 7, 7)  # 512 / 16 channels, 112 / 16 = 7


@pytest.mark.parametrize("size, side", [(112, 7), (64, 4), (56, 4), (100, 7), (16, 1), (17, 2), ((112, 96), None)])
def test_small_and_odd_input_sizes(size, side):
    model = build_backbone("ir_18", embedding_size=32, input_size=size, width=0.25)
    out = model(_images(3, size))
    assert out.shape == (3, 32)
    if side is not None:
        assert model.feature_shape == (128, side, side)
        # the stride-2 path really produces the documented side (ceil(n/16))
        assert model.forward_features(_images(2, size)).shape[-2:] == (side, side)
    else:
        assert model.feature_shape == (128, 7, 6)


def test_feature_map_size_is_ceil_of_sixteenth():
    assert [feature_map_size(n) for n in (16, 17, 31, 32, 33, 56, 64, 100, 112, 224)] == [1, 2, 2, 2, 3, 4, 4, 7, 7, 14]
    for n in range(16, 130):
        assert feature_map_size(n) == math.ceil(n / 16)


# --------------------------------------------------------------------------- parameter counts
@pytest.mark.parametrize("name, expected", [("ir_50", 43_585_600), ("ir_100", 65_150_912)])
def test_full_width_parameter_counts(name, expected):
    model = build_backbone(name, embedding_size=512, input_size=112, width=1.0)
    n = count_parameters(model)
    assert n == expected
    assert n == _closed_form_ir_params(IR_UNITS[name])


def test_parameter_counts_match_published_figures():
    # Published: insightface LResNet100E-IR (ArcFace, MXNet) 65.1320 MParams and LResNet34E-IR
    # 34.129 MParams (OpenVINO Open Model Zoo model cards face-recognition-resnet100-arcface-onnx and
    # face-recognition-resnet34-arcface). Those converted graphs fold BatchNorms into convolutions and
    # use a projection shortcut in stage 1, so they differ by < 0.05%. IR-50 "43.6 M" is the figure
    # quoted for the insightface/AdaFace IR-50 (insightface's iresnet50 adds a 64→64 1×1 projection
    # (4,224) and an affine feature BN (1,024): 43,590,848).
    for units, published in ((IR_UNITS["ir_100"], 65.1320e6), (IR_UNITS["ir_34"], 34.129e6)):
        assert abs(_closed_form_ir_params(units) - published) / published < 5e-4
    assert round(_closed_form_ir_params(IR_UNITS["ir_50"]) / 1e5) / 10 == 43.6
    # and the closed form matches the module for a smaller network too (non-multiple-of-16 input)
    model = build_backbone("ir_34", input_size=56, width=0.25, embedding_size=128)
    assert count_parameters(model) == _closed_form_ir_params(IR_UNITS["ir_34"], 0.25, 56, 128)


def test_count_parameters_trainable_only():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, affine=False), nn.Linear(4, 2, bias=False))
    assert count_parameters(model) == 3 * 4 + 4 + 4 * 2
    model[2].weight.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == 16


# --------------------------------------------------------------------------- structure
def test_width_multiplier_channels_and_floor():
    assert [scaled_channels(c, 0.25) for c in (64, 128, 256, 512)] == [16, 32, 64, 128]
    assert [scaled_channels(c, 0.01) for c in (64, 128, 256, 512)] == [8, 8, 8, 8]
    model = build_backbone("ir_18", input_size=32, width=0.01, embedding_size=16)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert {m.out_channels for m in convs} == {8}
    assert model(_images(2, 32)).shape == (2, 16)


def test_block_layout_matches_official_ir():
    model = build_backbone("ir_50", input_size=112, width=0.125, embedding_size=64)
    blocks = [m for m in model.body]
    assert len(blocks) == sum(IR_UNITS["ir_50"]) == 24
    starts = [0, 3, 7, 21]
    for i, block in enumerate(blocks):
        conv2 = block.residual[4]
        assert conv2.stride == ((2, 2) if i in starts else (1, 1))
        kinds = [type(m) for m in block.residual]
        assert kinds == [nn.BatchNorm2d, nn.Conv2d, nn.BatchNorm2d, nn.PReLU, nn.Conv2d, nn.BatchNorm2d]
    # first unit of stage 1 keeps its channels (8 → 8): strided identity; later stage starts project
    assert isinstance(blocks[0].shortcut, nn.MaxPool2d)
    for i in starts[1:]:
        assert isinstance(blocks[i].shortcut[0], nn.Conv2d) and blocks[i].shortcut[0].kernel_size == (1, 1)
    out_bn = model.output_layer[-1]
    assert isinstance(out_bn, nn.BatchNorm1d) and not out_bn.affine
    assert isinstance(model.output_layer[1], nn.Dropout) and model.output_layer[1].p == 0.4


def test_basic_block_strided_identity_shortcut():
    block = BasicBlockIR(4, 4, stride=2).eval()
    x = torch.randn(1, 4, 7, 7)
    torch.testing.assert_close(block.shortcut(x), x[:, :, ::2, ::2])
    with torch.no_grad():
        block.residual[-1].weight.zero_()  # kill the residual branch: output is the shortcut
        block.residual[-1].bias.zero_()
    torch.testing.assert_close(block(x), x[:, :, ::2, ::2])


def test_official_initialisation():
    torch.manual_seed(0)
    model = build_backbone("ir_18", input_size=112, width=1.0)
    conv = model.body[4].residual[1]  # 128→256 3x3 conv, fan_out = 256·9
    std = conv.weight.std().item()
    assert std == pytest.approx(math.sqrt(2.0 / (256 * 9)), rel=0.02)
    linear = model.output_layer[3]
    assert linear.weight.std().item() == pytest.approx(math.sqrt(2.0 / 512), rel=0.02)
    assert torch.count_nonzero(linear.bias) == 0
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
        if isinstance(m, nn.PReLU):
            assert torch.allclose(m.weight, torch.full_like(m.weight, 0.25))


def test_dropout_option_and_train_mode_batchnorm_output():
    model = build_backbone("ir_18", input_size=32, width=0.125, embedding_size=16, dropout=0.0)
    assert model.output_layer[1].p == 0.0
    out = model.train()(_images(64, 32))
    # non-affine BN1d in training mode standardises each embedding dimension over the batch
    torch.testing.assert_close(out.mean(0), torch.zeros(16), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(0, unbiased=False), torch.ones(16), atol=1e-3, rtol=0)


# --------------------------------------------------------------------------- behaviour
def test_eval_mode_is_deterministic_train_mode_uses_dropout():
    model = build_backbone("ir_18", input_size=32, width=0.125, embedding_size=16, dropout=0.4)
    x = _images(8, 32)
    model.eval()
    with torch.no_grad():
        a, b = model(x), model(x)
    assert torch.equal(a, b)
    model.train()
    torch.manual_seed(1)
    c = model(x)
    torch.manual_seed(2)
    d = model(x)
    assert not torch.allclose(c, d)


def test_channels_last_gives_same_outputs_and_gradients():
    torch.manual_seed(0)
    # dropout 0: dropout masks are drawn in memory order, so they differ between layouts by design
    ref = build_backbone("ir_18", input_size=32, width=0.125, embedding_size=16, dropout=0.0).train()
    cl = copy.deepcopy(ref).to(memory_format=torch.channels_last)
    x = _images(6, 32)
    out_ref = ref(x)
    out_cl = cl(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out_cl, out_ref, atol=1e-4, rtol=1e-4)
    out_ref.square().sum().backward()
    out_cl.square().sum().backward()
    for (name, p_ref), p_cl in zip(ref.named_parameters(), cl.parameters()):
        torch.testing.assert_close(p_cl.grad, p_ref.grad, atol=1e-3, rtol=1e-3, msg=name)


def test_ir_sgd_step_reaches_every_parameter():
    torch.manual_seed(0)
    model = build_backbone("ir_18", input_size=32, width=0.125, embedding_size=16)
    head = nn.Linear(16, 5)
    opt = torch.optim.SGD([*model.parameters(), *head.parameters()], lr=0.1)
    x, y = _images(10, 32), torch.arange(10) % 5
    loss = F.cross_entropy(head(model(x)), y)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name  # no unused parameters (DDP-safe)
    opt.step()
    model.eval()
    assert not any(torch.isnan(p).any() for p in model.parameters())


def test_wrong_input_shape_is_a_clear_error():
    model = build_backbone("ir_18", input_size=64, width=0.125)
    with pytest.raises(ValueError, match="built for input 64x64, got 56x56"):
        model(_images(2, 56))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.randn(2, 1, 64, 64))


def test_default_params_model_is_cpu_sized():
    from pathlib import Path

    from marginlab.core.config import load_params

    m = load_params(Path(__file__).resolve().parents[2] / "params.yaml").model
    model = build_backbone(m.backbone, embedding_size=m.embedding_size, input_size=m.input_size, width=m.width, dropout=m.dropout)
    size = m.input_size
    assert model.input_size == (size, size) and model.width == 0.25
    assert model.feature_shape == (128, -(-size // 16), -(-size // 16))
    assert model(_images(2, size)).shape == (2, 512)


# --------------------------------------------------------------------------- timm
@pytest.fixture
def no_network(monkeypatch):
    """Any socket connection or hub download during the test fails loudly."""

    def refuse(*args, **kwargs):
        raise AssertionError("network/hub access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    import timm.models._builder as builder
    import timm.models._hub as hub

    monkeypatch.setattr(builder, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(hub, "hf_hub_download", refuse)
    monkeypatch.setattr(hub, "download_cached_file", refuse)


def test_timm_backbone_trains_one_sgd_step(no_network):
    torch.manual_seed(0)
    model = build_backbone("timm/mobilenetv3_small_050", embedding_size=32, input_size=64)
    head = nn.Linear(32, 4)
    params = [*model.parameters(), *head.parameters()]
    opt = torch.optim.SGD(params, lr=0.05, momentum=0.9)
    x, y = _images(8, 64), torch.arange(8) % 4
    before = [p.detach().clone() for p in params]
    loss0 = F.cross_entropy(head(model(x)), y)
    opt.zero_grad()
    loss0.backward()
    grads = [p.grad for p in params if p.grad is not None]
    assert len(grads) > 0 and all(torch.isfinite(g).all() for g in grads)
    assert model.embedding[0].weight.grad.abs().sum() > 0
    opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, params))
    loss1 = F.cross_entropy(head(model(x)), y)
    assert loss1.item() != pytest.approx(loss0.item(), abs=1e-6)
    # eval mode is deterministic
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_timm_feature_width_is_measured_not_assumed(no_network):
    # MobileNetV3's pooled output (1024 after its head conv) differs from timm's num_features (576)
    model = build_backbone("timm/mobilenetv3_small_100", input_size=32, embedding_size=8)
    assert model.num_features == 1024
    assert model.embedding[0].in_features == 1024
    assert not model.embedding[1].affine


def test_timm_fixed_size_model_runs_at_small_input(no_network):
    # ViTs are declared 224-only in timm; the backbone rebuilds them for the requested size
    model = build_backbone("timm/vit_tiny_patch16_224", input_size=32, embedding_size=8, dropout=0.0).eval()
    with torch.no_grad():
        assert model(_images(2, 32)).shape == (2, 8)


def test_timm_errors():
    with pytest.raises(ValueError, match="unknown timm model 'resnet_does_not_exist'"):
        build_backbone("timm/resnet_does_not_exist")
    with pytest.raises(ValueError, match="pretrained"):
        build_backbone("timm/resnet18", timm_kwargs={"pretrained": True})
    with pytest.raises(ValueError, match="width=0.25 applies to IR-ResNets only"):
        build_backbone("timm/resnet18", width=0.25)
    with pytest.raises(ValueError, match="cannot run on 16x16"):
        build_backbone("timm/vit_tiny_patch16_224", input_size=16, timm_kwargs={"img_size": 224})
    with pytest.raises(ValueError, match="rejected options"):
        build_backbone("timm/resnet18", input_size=32, timm_kwargs={"not_an_arg": 1})


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "name, kwargs, pattern",
    [
        ("ir_51", {}, r"unknown backbone 'ir_51'; allowed: ir_18, ir_34, ir_50, ir_100, ir_200, insightface_r18, .* or 'timm/<name>'"),
        ("timm/", {}, "unknown backbone 'timm/'"),
        (None, {}, "must be a string"),
        ("ir_18", {"depth": 3}, r"unknown option\(s\) \['depth'\] for backbone 'ir_18'; allowed: width, dropout"),
        ("ir_18", {"width": 0.0}, "width must be a positive"),
        ("ir_18", {"width": float("nan")}, "width must be a positive"),
        ("ir_18", {"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ("ir_18", {"input_size": 15}, "at least 16 pixels per side, got 15x15"),
        ("ir_18", {"input_size": (112, 8)}, "at least 16"),
        ("ir_18", {"input_size": "112"}, "input_size must be an int or"),
        ("ir_18", {"embedding_size": 0}, "embedding_size must be a positive int"),
    ],
)
def test_bad_arguments_raise_clear_errors(name, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        build_backbone(name, **kwargs)
