"""MIL-NCE losses for GLCM (Miech et al. 2020, HowTo100M), global and local.

Both losses share one form. Each *anchor* has a *bag* of K positive candidates:
  global: anchor = a clip's audio vector, bag = the H*W cells of its global visual grid;
  local:  anchor = one local visual time step, bag = the M audio steps of its window.
Scores x[i, j, k] = anchor_i . bag_j[k] / tau. For anchor i with positive bag i:
  numerator   = logsumexp_k x[i, i, k]
  denominator = logsumexp over the chosen negatives plus the positives:
    "joint"     (HowTo100M reference and the GLCM authors): row x[i, :, :] and column
                x[:, i, :] in one logsumexp (the positives appear in both);
    "symmetric" mean of the row-only and the column-only losses;
    "anchor"    row only (anchor against every bag).
So for the local loss the other windows of the same clip are negatives like any other.
Under DDP the anchors and bags of all ranks are gathered with gradients (an all_gather
whose backward reduce-scatters), so every rank's rows see the global batch.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from glcm.config import LossConfig
from glcm.model import GLCMOut


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _GatherWithGrad(torch.autograd.Function):
    """all_gather along dim 0 whose backward sums every rank's gradient for this rank's rows."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        world, ctx.rank, ctx.rows = dist.get_world_size(), dist.get_rank(), x.shape[0]
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous()
        if dist.get_backend() == "nccl":
            out = grad.new_empty((ctx.rows,) + grad.shape[1:])
            dist.reduce_scatter_tensor(out, grad)
            return out
        grad = grad.clone()
        dist.all_reduce(grad)                     # gloo has no reduce_scatter
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def gather(x: Tensor) -> tuple[Tensor, int]:
    """All ranks' `x` concatenated along dim 0 (gradients flow back to every rank), and
    the offset of this rank's rows in it. Identity when not distributed. Every rank
    must pass the same shape (the loader drops partial batches)."""
    if not distributed():
        return x, 0
    return _GatherWithGrad.apply(x), dist.get_rank() * x.shape[0]


def _at_least_fp32(x: Tensor) -> Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def mil_nce(anchors: Tensor, bags: Tensor, anchors_all: Tensor, bags_all: Tensor,
            offset: int, temperature: float, direction: str = "joint") -> Tensor:
    """Mean MIL-NCE over the local anchors.

    anchors (n, D) and bags (n, K, D) are this rank's; anchors_all (N, D) and bags_all
    (N, K, D) are every rank's, with this rank's rows at [offset, offset + n).
    """
    n = anchors.shape[0]
    anchors, bags, anchors_all, bags_all = (_at_least_fp32(x) for x in (anchors, bags, anchors_all, bags_all))
    rows = torch.einsum("id,jkd->ijk", anchors, bags_all) / temperature    # (n, N, K)
    cols = torch.einsum("jd,ikd->ijk", anchors_all, bags) / temperature    # (n, N, K)
    idx = torch.arange(n, device=anchors.device)
    num = torch.logsumexp(rows[idx, offset + idx], dim=1)
    rows, cols = rows.flatten(1), cols.flatten(1)
    if direction == "joint":
        loss = torch.logsumexp(torch.cat([rows, cols], dim=1), dim=1) - num
    elif direction == "symmetric":
        loss = 0.5 * (torch.logsumexp(rows, dim=1) + torch.logsumexp(cols, dim=1)) - num
    elif direction == "anchor":
        loss = torch.logsumexp(rows, dim=1) - num
    else:
        raise ValueError(f"unknown MIL-NCE direction {direction!r}")
    return loss.mean()


def global_loss(out: GLCMOut, temperature: float, direction: str, gather_all: bool) -> Tensor:
    """Audio vector vs all H*W cells of the clip's global grid (positives)."""
    a, v = out.audio_global, out.visual_grid
    a_all, offset = gather(a) if gather_all else (a, 0)
    v_all, _ = gather(v) if gather_all else (v, 0)
    return mil_nce(a, v, a_all, v_all, offset, temperature, direction)


def local_loss(out: GLCMOut, temperature: float, direction: str, gather_all: bool) -> Tensor:
    """Each local visual step vs the M audio steps of its window (positives)."""
    v = out.visual_local.flatten(0, 1)                      # (B*T, Dl)
    a = out.audio_local.flatten(0, 1)                       # (B*T, M, Dl)
    v_all, offset = gather(v) if gather_all else (v, 0)
    a_all, _ = gather(a) if gather_all else (a, 0)
    return mil_nce(v, a, v_all, a_all, offset, temperature, direction)


def glcm_loss(out: GLCMOut, cfg: LossConfig, temperature: float) -> tuple[Tensor, dict[str, Tensor]]:
    """Weighted sum of both losses, and the detached parts for logging."""
    lg = global_loss(out, temperature, cfg.direction, cfg.gather)
    ll = local_loss(out, temperature, cfg.direction, cfg.gather)
    total = cfg.global_weight * lg + cfg.local_weight * ll
    return total, {"loss": total.detach(), "loss_global": lg.detach(), "loss_local": ll.detach()}
