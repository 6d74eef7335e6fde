"""``train.compile``: a compiled training step matches the eager one, and the "auto" rule decides as documented.

The numerics check compiles a tiny IR-ResNet (one unit per stage, width 1/8, 16×16 input) with inductor
on the CPU; see :mod:`marginlab.train.compiled` for the measured speed-ups and the rule.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pydantic
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from marginlab.backbones import build_backbone
from marginlab.backbones.iresnet import IResNet
from marginlab.core.config import TrainConfig, load_params
from marginlab.heads import build_head
from marginlab.train import compiled
from marginlab.train.compiled import CPU_MIN_WORK, CUDA_MIN_STEPS, compile_backbone, cpu_work, decide, is_compiled
from marginlab.train.optim import build_optimizer
from marginlab.train.runtime import determinism

REPO = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")

#: One step, compiled vs eager (fp32): relative loss difference, and per gradient tensor max|Δ| / max|g|.
#: Measured ≤ 1e-6 and ≤ 1e-5 on this model; the bound leaves room for other CPUs' kernels.
LOSS_RTOL = 1e-5
GRAD_RTOL = 1e-3
#: Gradient tensors below this share of the largest are zero in exact arithmetic (a bias in front of a
#: training-mode BatchNorm): only rounding noise, compared in absolute terms.
ZERO_SHARE = 1e-4


def _tiny_backbone() -> IResNet:
    return IResNet((1, 1, 1, 1), embedding_size=32, input_size=16, width=0.125, dropout=0.4)


# --------------------------------------------------------------------------- configuration
def test_train_compile_key():
    assert TrainConfig().compile == "auto"
    assert TrainConfig(compile="off").compile == "off"
    with pytest.raises(pydantic.ValidationError):
        TrainConfig(compile="sometimes")


PRESETS = sorted(p.stem for p in (REPO / "configs").glob("*.yaml"))


def test_the_default_sets_train_compile_and_every_preset_keeps_a_valid_choice():
    assert "\n  compile: " in (REPO / "params.yaml").read_text(), "params.yaml: train.compile missing"
    assert load_params(REPO / "params.yaml").train.compile in ("auto", "on", "off")
    from pipeline_helpers import preset

    from marginlab.core.config import validate_params

    for name in PRESETS:
        assert validate_params(preset(name)).train.compile in ("auto", "on", "off"), name


# --------------------------------------------------------------------------- the auto rule
def _params_default_run():
    """params.yaml's first run: its backbone, per-step batch and number of steps."""
    params = load_params(REPO / "params.yaml")
    run = params.run(next(iter(params.runs)))
    syn = params.data.synthetic
    steps = run.train.epochs * ((syn.train_identities * syn.train_images_per_identity) // run.train.batch_size)
    backbone = build_backbone(run.model.backbone, embedding_size=run.model.embedding_size,
                              input_size=run.model.input_size, width=run.model.width)
    return backbone, run.train.batch_size, steps


def test_auto_keeps_the_default_cpu_run_eager():
    backbone, batch, steps = _params_default_run()
    work = cpu_work(backbone, batch, steps)
    assert work is not None and work < CPU_MIN_WORK / 5  # ~8e6: compiling would cost more than it saves
    d = decide("auto", CPU, steps_total=steps, batch_size=batch, backbone=backbone)
    assert not d.compile and "does not repay" in d.reason
    assert compile_backbone(backbone, mode="auto", device=CPU, steps_total=steps, batch_size=batch) is backbone


def test_auto_compiles_a_long_ir18_112_cpu_run(monkeypatch):
    monkeypatch.setattr(compiled, "_cpp_compiler", lambda: "g++")
    backbone = build_backbone("ir_18", embedding_size=512, input_size=112, width=1.0)
    # the module docstring's threshold: 200 steps of batch 32 at 112x112
    assert decide("auto", CPU, steps_total=200, batch_size=32, backbone=backbone).compile
    assert not decide("auto", CPU, steps_total=199, batch_size=32, backbone=backbone).compile


def test_auto_cuda_and_other_backbones(monkeypatch):
    monkeypatch.setattr(compiled, "_cpp_compiler", lambda: "g++")
    cuda = torch.device("cuda")  # a device object only; nothing runs there
    assert decide("auto", cuda, steps_total=CUDA_MIN_STEPS, batch_size=128).compile
    assert not decide("auto", cuda, steps_total=CUDA_MIN_STEPS - 1, batch_size=128).compile
    other = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten())  # not an IR-ResNet: not measured on the CPU
    assert not decide("auto", CPU, steps_total=10**9, batch_size=128, backbone=other).compile
    assert not decide("auto", CPU, steps_total=10**9, batch_size=128).compile


def test_auto_stays_eager_with_synchronised_batchnorm(monkeypatch):
    monkeypatch.setattr(compiled, "_cpp_compiler", lambda: "g++")
    backbone = build_backbone("ir_18", embedding_size=512, input_size=112, width=1.0)
    assert decide("auto", CPU, steps_total=10**6, batch_size=32, backbone=backbone).compile

    class OtherBatchNorm(nn.BatchNorm2d):  # what sync_batchnorm's conversion puts in
        pass

    backbone.stem[1] = OtherBatchNorm(backbone.stem[1].num_features)
    d = decide("auto", CPU, steps_total=10**6, batch_size=32, backbone=backbone)
    assert not d.compile and "synchronised BatchNorm" in d.reason
    assert decide("on", CPU, steps_total=1, batch_size=32, backbone=backbone).compile


def test_on_off_and_bad_modes(monkeypatch):
    backbone = _tiny_backbone()
    assert not decide("off", CPU, steps_total=10**9, batch_size=512, backbone=backbone).compile
    assert compile_backbone(backbone, mode="off", device=CPU, steps_total=10**9, batch_size=512) is backbone
    with pytest.raises(ValueError, match="auto, on or off"):
        decide("yes", CPU, steps_total=1, batch_size=1, backbone=backbone)
    monkeypatch.setattr(compiled, "_cpp_compiler", lambda: None)
    with pytest.raises(RuntimeError, match="C\\+\\+ compiler"):
        decide("on", CPU, steps_total=1, batch_size=1, backbone=backbone)
    big = build_backbone("ir_18", embedding_size=512, input_size=112, width=1.0)
    d = decide("auto", CPU, steps_total=10**6, batch_size=32, backbone=big)
    assert not d.compile and "no C++ compiler" in d.reason


def test_compiled_module_wraps_the_original(monkeypatch):
    monkeypatch.setattr(compiled, "_cpp_compiler", lambda: "g++")
    backbone = _tiny_backbone()
    keys = list(backbone.state_dict())
    fn = compile_backbone(backbone, mode="on", device=CPU, steps_total=1, batch_size=8)  # lazy: nothing compiles yet
    assert is_compiled(fn) and not is_compiled(backbone)
    assert fn._orig_mod is backbone
    assert list(backbone.state_dict()) == keys  # checkpoints keep using the original module
    assert all(a is b for a, b in zip(fn.parameters(), backbone.parameters()))


def test_compiled_backbone_inherits_torchs_deterministic_mode(monkeypatch):
    """runtime.determinism leaves inductor's config alone; compile_backbone passes the flag itself."""
    monkeypatch.setattr(compiled, "_cpp_compiler", lambda: "g++")
    seen = {}
    monkeypatch.setattr(torch, "compile", lambda module, **kw: seen.update(kw) or module)
    with determinism(CPU):
        compile_backbone(_tiny_backbone(), mode="on", device=CPU, steps_total=1, batch_size=8)
    assert seen["options"]["deterministic"] is True and seen["options"]["fallback_random"] is True


@pytest.mark.slow
def test_determinism_sets_and_restores_torchs_flags_without_importing_inductor():
    code = (
        "import sys, torch\n"
        "from marginlab.train.runtime import determinism\n"
        "with determinism(torch.device('cpu')):\n"
        "    assert torch.are_deterministic_algorithms_enabled()\n"
        "    assert torch.is_deterministic_algorithms_warn_only_enabled()\n"
        "    assert not torch.utils.deterministic.fill_uninitialized_memory\n"
        "assert not torch.are_deterministic_algorithms_enabled()\n"
        "assert torch.utils.deterministic.fill_uninitialized_memory\n"
        "assert 'torch._inductor.config' not in sys.modules, 'inductor config imported'\n"
        "import torch._inductor.config as c\n"
        "with determinism(torch.device('cpu')):\n"
        "    assert c.deterministic\n"
        "assert not c.deterministic\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


# --------------------------------------------------------------------------- numerics
def _train_steps(compile_it: bool, x: torch.Tensor, y: torch.Tensor, steps: int = 2):
    torch.manual_seed(0)
    backbone = _tiny_backbone().to(memory_format=torch.channels_last)
    head = build_head("adaface", 32, 10)
    opt = build_optimizer([backbone, head], lr=0.05, momentum=0.9, weight_decay=5e-4)
    fn = compile_backbone(backbone, mode="on" if compile_it else "off", device=CPU, steps_total=steps,
                          batch_size=len(y))
    losses, first_grads = [], None
    for step in range(steps):
        torch.manual_seed(100 + step)  # the same dropout masks in both (inductor's fallback_random)
        loss = F.cross_entropy(head(fn(x), y), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if first_grads is None:
            first_grads = {k: p.grad.clone() for k, p in [*backbone.named_parameters(), *head.named_parameters()]}
        opt.step()
        losses.append(loss.item())
    return losses, first_grads, backbone, head


@pytest.mark.slow  # compiling even this tiny network: 42 s on 2 quiet cores (cold cache), 6 s warm
def test_compiled_training_step_matches_eager():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(8, 3, 16, 16, generator=gen).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (8,), generator=gen)
    with determinism(CPU):  # as run_train runs the step
        eager = _train_steps(False, x, y)
        comp = _train_steps(True, x, y)
    (l_e, g_e, b_e, h_e), (l_c, g_c, b_c, h_c) = eager, comp
    for a, b in zip(l_e, l_c):
        assert abs(a - b) <= LOSS_RTOL * abs(a), (l_e, l_c)
    top = max(float(g.abs().max()) for g in g_e.values())
    for k, g in g_e.items():
        diff = float((g_c[k] - g).abs().max())
        scale = float(g.abs().max())
        if scale >= ZERO_SHARE * top:
            assert diff <= GRAD_RTOL * scale, (k, diff, scale)
        else:
            assert diff <= ZERO_SHARE * top, (k, diff, top)
    # the compiled steps trained the original modules: weights and BatchNorm statistics moved alike
    # (max|Δ| within 1e-4 of the tensor's scale; a bias in front of a BatchNorm stays at rounding noise)
    def close(a: torch.Tensor, b: torch.Tensor) -> bool:
        return float((a - b).abs().max()) <= 1e-4 * max(float(b.abs().max()), 0.1)

    for (k, p_e), p_c in zip(b_e.state_dict().items(), b_c.state_dict().values()):
        if p_e.is_floating_point():
            assert close(p_c, p_e), k
    assert float(b_c.stem[1].running_mean.abs().max()) > 0  # the compiled forward updated the original's buffers
    assert close(h_c.weight.detach(), h_e.weight.detach())
    assert close(h_c.batch_mean, h_e.batch_mean) and close(h_c.batch_std, h_e.batch_std)
