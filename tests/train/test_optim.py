"""SGD parameter groups (no weight decay on BN/PReLU/bias) and the step schedule, checked by hand."""

import pytest
import torch
from torch import nn

from marginlab.train.optim import (
    StepSchedule,
    build_optimizer,
    build_schedule,
    build_scheduler,
    milestone_steps,
    param_groups,
    split_decay,
)


class TinyHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(5, 4))


def tiny_net():
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, bias=False),
        nn.BatchNorm2d(4),
        nn.PReLU(4),
        nn.Flatten(),
        nn.Linear(4, 4),
        nn.BatchNorm1d(4, affine=False),
    )


def test_split_decay_by_module_type():
    net, head = tiny_net(), TinyHead()
    decay, no_decay = split_decay(net)
    assert {id(p) for p in decay} == {id(net[0].weight), id(net[4].weight)}
    assert {id(p) for p in no_decay} == {id(net[1].weight), id(net[1].bias), id(net[2].weight), id(net[4].bias)}
    groups = param_groups([net, head], 5e-4)
    by_name = {g["name"]: g for g in groups}
    assert by_name["decay"]["weight_decay"] == 5e-4 and by_name["no_decay"]["weight_decay"] == 0.0
    assert any(p is head.weight for p in by_name["decay"]["params"])  # the head's centres are decayed


def test_shared_and_frozen_parameters_appear_once_or_not_at_all():
    net = tiny_net()
    net[0].weight.requires_grad_(False)
    groups = param_groups([net, net], 1e-3)  # same module twice
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert id(net[0].weight) not in ids


def test_weight_decay_acts_only_on_the_decay_group():
    """With zero gradients, momentum 0 and lr 1, one SGD step scales decayed params by (1 - wd)."""
    torch.manual_seed(0)
    net, head = tiny_net(), TinyHead()
    before = {n: p.detach().clone() for n, p in list(net.named_parameters()) + [("head", head.weight)]}
    opt = build_optimizer([net, head], lr=1.0, momentum=0.0, weight_decay=0.1)
    for p in list(net.parameters()) + [head.weight]:
        p.grad = torch.zeros_like(p)
    opt.step()
    after = dict(list(net.named_parameters()) + [("head", head.weight)])
    for name in ("0.weight", "4.weight", "head"):
        torch.testing.assert_close(after[name].detach(), before[name] * 0.9)
    for name in ("1.weight", "1.bias", "2.weight", "4.bias"):
        torch.testing.assert_close(after[name].detach(), before[name])


def test_iresnet_batchnorm_and_prelu_have_no_decay():
    from marginlab.backbones import build_backbone

    bb = build_backbone("ir_18", embedding_size=16, input_size=32, width=0.125)
    decay, no_decay = split_decay(bb)
    nd = {id(p) for p in no_decay}
    for m in bb.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.PReLU)):
            assert all(id(p) in nd for p in m.parameters(recurse=False))
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            assert id(m.weight) in {id(p) for p in decay}
    assert len(decay) + len(no_decay) == len([p for p in bb.parameters() if p.requires_grad])


@pytest.mark.parametrize(
    "milestones, epochs, spe, expected",
    [
        ([12 / 26, 20 / 26, 24 / 26], 26, 10, [120, 200, 240]),  # paper: epochs 12, 20, 24 of 26
        ([12 / 26, 20 / 26, 24 / 26], 6, 18, [50, 83, 100]),  # 49.85, 83.08, 99.69 steps of 108
        ([0.5], 6, 18, [54]),
        ([2, 4], 6, 10, [20, 40]),  # epoch numbers
        ([1.0], 3, 7, [7]),  # 1 is an epoch, not "the end"
    ],
)
def test_milestone_steps(milestones, epochs, spe, expected):
    assert milestone_steps(milestones, epochs, spe) == expected


@pytest.mark.parametrize("bad", [[2.5], [0.0], [-1]])
def test_bad_milestones_raise(bad):
    with pytest.raises(ValueError, match="milestone"):
        milestone_steps(bad, 6, 10)


def test_step_schedule_factors_by_hand():
    sched = StepSchedule(milestones=[6, 12], gamma=0.1, warmup_steps=4)
    got = [sched(k) for k in range(14)]
    expected = [0.25, 0.5, 0.75, 1, 1, 1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.01, 0.01]
    assert got == pytest.approx(expected)
    # warm-up overlapping a milestone multiplies both
    assert StepSchedule([1], 0.1, 4)(2) == pytest.approx(0.75 * 0.1)


def test_scheduler_drives_sgd_lr_per_step():
    net = tiny_net()
    opt = build_optimizer([net], lr=0.1, momentum=0.9, weight_decay=5e-4)
    schedule = build_schedule([2, 4], gamma=0.1, warmup_epochs=0.5, epochs=5, steps_per_epoch=4)
    assert schedule.warmup_steps == 2 and schedule.milestones == [8, 16]
    sch = build_scheduler(opt, schedule)
    lrs = []
    for _ in range(20):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sch.step()
    assert all(len(set(x)) == 1 for x in lrs)  # both groups follow the same schedule
    flat = [x[0] for x in lrs]
    expected = [0.05, 0.1] + [0.1] * 6 + [0.01] * 8 + [0.001] * 4
    assert flat == pytest.approx(expected)


def test_scheduler_state_round_trip():
    net = tiny_net()
    opt = build_optimizer([net], lr=0.1, momentum=0.9, weight_decay=5e-4)
    sch = build_scheduler(opt, build_schedule([0.5], 0.1, 0.0, 2, 3))
    for _ in range(4):
        opt.step()
        sch.step()
    state = sch.state_dict()
    opt2 = build_optimizer([tiny_net()], lr=0.1, momentum=0.9, weight_decay=5e-4)
    sch2 = build_scheduler(opt2, build_schedule([0.5], 0.1, 0.0, 2, 3))
    sch2.load_state_dict(state)
    assert sch2.last_epoch == 4
    opt2.step()
    sch2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.01)


def test_negative_warmup_rejected():
    with pytest.raises(ValueError, match="warmup"):
        build_schedule([0.5], 0.1, -1.0, 2, 3)
