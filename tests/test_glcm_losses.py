"""MIL-NCE losses against brute-force loops, and the cross-rank gather path (gloo, 2 ranks)."""
from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from glcm.config import LossConfig
from glcm.losses import global_loss, glcm_loss, local_loss, mil_nce
from glcm.model import GLCMOut



@pytest.fixture(autouse=True)
def float64():
    """Exact comparisons in double precision, for this module's tests only."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def lse(values: list[float]) -> float:
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


def brute_mil_nce(anchors, bags, tau, direction):
    """Loop version: anchor i's positives are bag i's K items."""
    n, k = bags.shape[0], bags.shape[1]
    dot = lambda i, j, c: float(anchors[i] @ bags[j, c]) / tau  # noqa: E731
    total = 0.0
    for i in range(n):
        pos = [dot(i, i, c) for c in range(k)]
        row = [dot(i, j, c) for j in range(n) for c in range(k)]      # anchor i vs every bag
        col = [dot(j, i, c) for j in range(n) for c in range(k)]      # every anchor vs bag i
        if direction == "joint":
            total += lse(row + col) - lse(pos)
        elif direction == "symmetric":
            total += 0.5 * (lse(row) + lse(col)) - lse(pos)
        else:
            total += lse(row) - lse(pos)
    return total / n


def random_out(b=3, t=4, m=3, h=2, w=3, dg=5, dl=4, seed=0) -> GLCMOut:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return GLCMOut(r(b, dg), r(b, h * w, dg), r(b, t, m, dl), r(b, t, dl), torch.rand(b, h, w, generator=g))


@pytest.mark.parametrize("direction", ["joint", "symmetric", "anchor"])
def test_global_loss_matches_loop(direction):
    out = random_out()
    tau = 0.7
    # global: the audio vector is the anchor, the H*W cells of the same clip its positives
    expected = brute_mil_nce(out.audio_global, out.visual_grid, tau, direction)
    got = global_loss(out, tau, direction, gather_all=False)
    assert got.item() == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("direction", ["joint", "symmetric", "anchor"])
def test_local_loss_matches_loop(direction):
    out = random_out(seed=1)
    tau = 0.3
    b, t, m, d = out.audio_local.shape
    # local: each (clip, step) visual vector is an anchor; its positives are the M audio
    # steps of the same window; other windows (same clip or not) are negatives
    anchors = out.visual_local.reshape(b * t, d)
    bags = out.audio_local.reshape(b * t, m, d)
    expected = brute_mil_nce(anchors, bags, tau, direction)
    got = local_loss(out, tau, direction, gather_all=False)
    assert got.item() == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_local_loss_treats_other_windows_of_the_same_clip_as_negatives():
    out = random_out(b=1, t=3, seed=2)
    base = local_loss(out, 1.0, "anchor", False).item()
    # making window 1's audio identical to window 0's raises step 0's negative score
    out.audio_local[0, 1] = out.audio_local[0, 0] * 5
    out.visual_local[0, 0] = out.audio_local[0, 0].mean(0)
    worse = local_loss(out, 1.0, "anchor", False).item()
    assert worse > base


def test_total_is_weighted_sum():
    out = random_out(seed=3)
    cfg = LossConfig(direction="joint", gather=True, global_weight=0.25, local_weight=2.0)
    total, parts = glcm_loss(out, cfg, 0.5)
    assert total.item() == pytest.approx(0.25 * parts["loss_global"].item() + 2.0 * parts["loss_local"].item())


def test_loss_is_low_when_pairs_match_and_high_when_shuffled():
    g = torch.Generator().manual_seed(4)
    a = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=1)
    bags = a[:, None, :].repeat(1, 4, 1)
    good = mil_nce(a, bags, a, bags, 0, 0.1, "joint").item()
    bad = mil_nce(a, bags.roll(1, 0), a, bags.roll(1, 0), 0, 0.1, "joint").item()
    assert good < 1.0 < bad


# ---- cross-rank gather ------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, anchors, bags, results):
    torch.set_default_dtype(torch.float64)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        n = anchors.shape[0] // world
        a = anchors[rank * n:(rank + 1) * n].clone().requires_grad_(True)
        v = bags[rank * n:(rank + 1) * n].clone().requires_grad_(True)
        out = GLCMOut(a, v, torch.zeros(n, 1, 1, 1), torch.zeros(n, 1, 1), torch.zeros(n, 1, 1))
        loss = global_loss(out, 0.5, "joint", gather_all=True)
        loss.backward()
        results[rank] = (loss.detach(), a.grad.clone(), v.grad.clone())
    finally:
        dist.destroy_process_group()


def test_gathered_loss_and_gradients_match_one_big_batch():
    g = torch.Generator().manual_seed(5)
    anchors, bags = torch.randn(6, 4, generator=g), torch.randn(6, 3, 4, generator=g)
    world = 2
    results = mp.Manager().dict()
    mp.spawn(_rank_main, args=(world, _free_port(), anchors, bags, results), nprocs=world, join=True)

    a = anchors.clone().requires_grad_(True)
    v = bags.clone().requires_grad_(True)
    full = mil_nce(a, v, a, v, 0, 0.5, "joint")
    full.backward()
    # every anchor sees all 6 clips' negatives: the mean of the rank losses is the full loss
    assert torch.stack([results[r][0] for r in range(world)]).mean().item() == pytest.approx(full.item(), rel=1e-12)
    # gradients reach the rank that owns each embedding, summed over all ranks' losses,
    # i.e. world x the full-batch gradient (DDP then divides the parameter grads by world)
    for r in range(world):
        rows = slice(3 * r, 3 * r + 3)
        torch.testing.assert_close(results[r][1], world * a.grad[rows], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(results[r][2], world * v.grad[rows], rtol=1e-10, atol=1e-12)
