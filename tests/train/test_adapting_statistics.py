"""Issue #22: AdaFace's margin adapts at CPU run lengths, and probes measure the network training uses.

- BatchNorm recalibration (:func:`marginlab.train.probe.recalibrated_backbone`) against PyTorch's own
  cumulative-average running statistics (``momentum=None``) and against train-mode outputs;
- a default-length run (108 optimiser steps, as the default preset's 6 epochs × 18 steps) on the tiny
  training set: with ``stats_init: bias_corrected`` the head's σ is within 3× of the probe norms' standard
  deviation at the final epoch and std(ẑ) over the probe is ≥ 0.10; with the official start it is not
  (σ is still ~35 and ẑ ≈ 0: the head is CosFace), so the check can fail.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from tiny_train import N_IMAGES, make_params

from marginlab.train import run_train
from marginlab.train.probe import recalibrated_backbone


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.PReLU(6), nn.Flatten(),
        nn.Linear(6 * 6 * 6, 10), nn.BatchNorm1d(10, affine=False),
    )


def _stale(net: nn.Module, steps: int = 4) -> nn.Module:
    """A few training-mode forwards with shifted inputs: running statistics that lag (as after 4 steps)."""
    net.train()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(steps):
            net(3.0 + 2.0 * torch.randn(8, 3, 8, 8, generator=g))
    return net.eval()


def test_recalibration_matches_cumulative_running_statistics():
    net = _stale(_net())
    before = copy.deepcopy(net.state_dict())
    inputs = torch.randn(40, 3, 8, 8, generator=torch.Generator().manual_seed(2)) * 1.5 - 0.5
    out = recalibrated_backbone(net, inputs, batch_size=8, device=torch.device("cpu"))
    # the reference: PyTorch's own BatchNorm with momentum=None (a cumulative average) over the same batches
    ref = copy.deepcopy(net)
    for m in ref.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    ref.train()
    with torch.no_grad():
        for start in range(0, 40, 8):
            ref(inputs[start : start + 8])
    for (k, a), (_, b) in zip(out.state_dict().items(), ref.state_dict().items()):
        if "running" in k:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6), k
    assert not out.training and out is not net
    for k, v in net.state_dict().items():  # the training network is untouched
        assert torch.equal(v, before[k]), k
    # the copy's own forward is the class's again (eval mode with the new statistics)
    assert all("forward" not in vars(m) for m in out.modules())


def test_recalibrated_eval_equals_train_mode_on_the_calibration_batch():
    """One batch holding every input: eval mode with recalibrated statistics ≈ training mode on that batch
    (up to the unbiased/biased variance factor n/(n-1)); the stale running statistics are far from it."""
    net = _stale(_net())
    x = torch.randn(256, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        train_mode = copy.deepcopy(net).train()(x)
        stale = net(x)
        recal = recalibrated_backbone(net, x, batch_size=256, device=torch.device("cpu"))(x)
    torch.testing.assert_close(recal, train_mode, rtol=2e-2, atol=2e-2)
    assert (stale - train_mode).abs().max() > 0.5


def test_backbone_without_batchnorm_is_returned_as_is():
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    assert recalibrated_backbone(net, torch.randn(4, 3, 2, 2), batch_size=2, device=torch.device("cpu")) is net


# --------------------------------------------------------------------------- the acceptance run
STEPS_PER_EPOCH = N_IMAGES // 16  # 6
EPOCHS = 108 // STEPS_PER_EPOCH  # 18 epochs × 6 steps = 108 optimiser steps, the default run's length


@pytest.fixture(scope="module")
def default_length_runs(tiny_prepared, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("adapting")
    runs = {f"ada-{init}": {"head": "adaface", "head_params": {"stats_init": init}}
            for init in ("official", "bias_corrected")}
    params = make_params(tiny_prepared, tmp, runs=runs,
                         train={"epochs": EPOCHS, "milestones": [0.5, 0.8], "probe_size": N_IMAGES, "probe_progress": []})
    out = {}
    for name in runs:
        run_train(params, name)
        run_dir = tmp / "runs" / name
        model = torch.load(run_dir / "model.pt", weights_only=True)
        probe = pd.read_parquet(run_dir / "probe" / f"epoch_{EPOCHS:02d}.parquet")
        out[name] = (model, probe[probe["pass"] == "clean"])
    return out


def _sigma_and_zhat(run):
    model, probe = run
    sigma = float(model["head"]["batch_std"])
    return sigma, float(np.std(probe["norm"], ddof=1)), float(np.std(probe["z_hat"], ddof=1))


def test_bias_corrected_statistics_adapt_in_a_default_length_run(default_length_runs):
    sigma, norm_std, z_std = _sigma_and_zhat(default_length_runs["ada-bias_corrected"])
    assert norm_std / 3 <= sigma <= 3 * norm_std, (sigma, norm_std)
    assert z_std >= 0.10, z_std
    model = default_length_runs["ada-bias_corrected"][0]
    assert int(model["head"]["mean_updates"]) == 108  # one update per optimiser step
    assert model["resolved_run"]["head_params"]["stats_init"] == "bias_corrected"  # recorded in model.pt


def test_official_statistics_do_not_adapt_in_a_default_length_run(default_length_runs):
    """The failure the option fixes, measured: σ is still far above the norms' spread and ẑ ≈ 0."""
    sigma, norm_std, z_std = _sigma_and_zhat(default_length_runs["ada-official"])
    assert sigma > 3 * norm_std, (sigma, norm_std)
    assert z_std < 0.05, z_std


def test_probe_norms_match_training_mode_after_recalibration(default_length_runs):
    """The recalibrated probe sees the network training uses: its clean-pass norms lie near the head's μ
    (the training batches' own norms, augmented), not at the scale of an artefact."""
    model, probe = default_length_runs["ada-bias_corrected"]
    mu = float(model["head"]["batch_mean"])
    assert 0.5 * mu <= float(probe["norm"].mean()) <= 2.0 * mu


@pytest.mark.parametrize("probe_n, batch, used", [(1024, 128, 512), (300, 128, 300), (4096, 512, 2048)])
def test_recalibration_uses_at_most_512_images_or_four_batches(monkeypatch, probe_n, batch, used):
    """A large probe recalibrates on a shuffled subset: the larger of 512 images and 4 training batches."""
    from marginlab.heads import build_head
    from marginlab.train import probe as probe_mod

    seen = {}

    def spy(backbone, inputs, **kw):
        seen["n"], seen["batch"] = len(inputs), kw["batch_size"]
        return backbone

    monkeypatch.setattr(probe_mod, "recalibrated_backbone", spy)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    p = probe_mod.ProbeSet(np.arange(probe_n), np.zeros(probe_n, dtype=int), torch.randn(probe_n, 3, 2, 2),
                           torch.randn(probe_n, 3, 2, 2), np.zeros((probe_n, 4), dtype=bool))
    p.measure(0, net, build_head("cosface", 4, 2), batch_size=512, device=torch.device("cpu"), passes=("clean",),
              recalibrate_batch=batch)
    assert seen == {"n": used, "batch": batch}
