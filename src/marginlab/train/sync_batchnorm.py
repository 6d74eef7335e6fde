"""Batch normalisation over the global batch of data-parallel training (``train.distributed.sync_batchnorm``).

On CUDA this is PyTorch's :class:`torch.nn.SyncBatchNorm`. That class refuses CPU modules ("SyncBatchNorm
layers only work with GPU modules"), so CPU runs (gloo) use :class:`GlobalBatchNorm`: in training, with
more than one process, the per-channel mean and the biased variance of the normalisation are computed
from sums all-reduced over the processes (two passes: the mean first, then the centred squares), through
:class:`_SumOverProcesses` (an all-reduce whose backward all-reduces the gradients), so the
gradients equal those of one process normalising the whole global batch. The running statistics are
updated as ``nn.BatchNorm`` does (momentum, unbiased variance with the global count). In eval mode, or
with one process, it is plain batch normalisation.

Conversion keeps the parameter and buffer objects (and so the state-dict keys): a checkpoint written
with or without synchronised batch norm loads into either, and the optimiser must be built after the
conversion (:func:`convert_sync_batchnorm` is called before it).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class _SumOverProcesses(torch.autograd.Function):
    """``y = Σ_ranks x`` on every process; ``∂L/∂x = Σ_ranks ∂L_rank/∂y`` (the sum's adjoint)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        out = grad.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out


class GlobalBatchNorm(_BatchNorm):
    """Batch norm whose training statistics are those of the global batch over all processes (any device)."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, x.shape[1]] + [1] * (x.dim() - 2)
        local_count = torch.full((1,), x.numel() // x.shape[1], dtype=x.dtype, device=x.device)
        sums = _SumOverProcesses.apply(torch.cat([x.sum(dims), local_count]))
        count = sums[-1]
        mean = sums[:-1] / count
        centred = x - mean.view(shape)
        var = _SumOverProcesses.apply(centred.pow(2).sum(dims)) / count
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
                n = float(count)
                unbiased = var.detach() * (n / max(n - 1.0, 1.0))
                self.running_mean.mul_(1.0 - momentum).add_(mean.detach(), alpha=momentum)
                self.running_var.mul_(1.0 - momentum).add_(unbiased, alpha=momentum)
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` with every batch-norm layer synchronised over the process group (see the module doc)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _to_global(module)


def _to_global(module: nn.Module) -> nn.Module:
    if isinstance(module, _BatchNorm) and not isinstance(module, GlobalBatchNorm):
        out = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        if module.track_running_stats:
            out.running_mean, out.running_var = module.running_mean, module.running_var
            out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
        return out
    for name, child in module.named_children():
        new = _to_global(child)
        if new is not child:
            setattr(module, name, new)
    return module
