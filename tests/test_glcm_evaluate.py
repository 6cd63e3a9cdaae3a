"""Localisation scores on hand-made maps with known IoU and pointing results."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from glcm.evaluate import localisation_scores, upsample_map


def box_map(size: int, y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
    m = torch.zeros(size, size)
    m[y0:y1, x0:x1] = 1.0
    return m


def test_full_resolution_map_is_not_resampled():
    m = torch.rand(32, 32)
    assert torch.allclose(upsample_map(m, 32), m, atol=1e-6)


def test_iou_of_exact_and_half_overlapping_boxes():
    pred = box_map(32, 10, 20, 0, 20)                                    # rows 10-19, cols 0-19: 200 px
    iou, hit = localisation_scores(pred, np.array([0, 10, 20, 20]), 32)    # x0, y0, x1, y1: same box
    assert iou == pytest.approx(1.0) and hit
    iou, hit = localisation_scores(pred, np.array([10, 10, 30, 20]), 32)   # overlap 100, union 300
    assert iou == pytest.approx(1 / 3) and not hit                        # argmax (10, 0) is outside


def test_threshold_is_applied_to_the_min_max_normalised_map():
    m = box_map(32, 0, 32, 0, 16) * 0.4 + box_map(32, 0, 32, 16, 32) * 0.8 + 0.2   # 0.6 | 1.0 -> 0 | 1
    iou, hit = localisation_scores(m, np.array([16, 0, 32, 32]), 32, threshold=0.5)
    assert iou == pytest.approx(1.0) and hit
    iou, _ = localisation_scores(m, np.array([16, 0, 32, 32]), 32, threshold=0.0)   # everything predicted
    assert iou == pytest.approx(0.5)


def test_flat_map_predicts_nothing_and_coarse_cell_lands_on_its_centre():
    iou, _ = localisation_scores(torch.ones(4, 4), np.array([0, 0, 16, 16]), 64)
    assert iou == 0.0                                          # no contrast: no predicted pixel
    coarse = torch.zeros(4, 4)
    coarse[1, 2] = 1.0                                         # cell (1, 2) is centred on pixel (16, 32)
    up = upsample_map(coarse, 64)
    assert np.unravel_index(int(up.argmax()), up.shape) == (16, 32)


def test_benchmark_metric_on_a_grid_map_and_a_pixel_box():
    from glcm.evaluate import benchmark_ciou
    rows = -torch.arange(16.0)[:, None].repeat(1, 16)             # higher towards the top
    assert benchmark_ciou(rows, np.array([0, 0, 64, 32]), 64) == pytest.approx(1.0)       # top half
    # box = cols 0-55 (224 * 16/64), all rows; prediction = rows 0-111: P*G = 56*112, P outside = 168*112
    assert benchmark_ciou(rows, np.array([0, 0, 16, 64]), 64) == pytest.approx(56 * 112 / (56 * 224 + 168 * 112))


def test_shards_of_another_tool_name_the_members_they_hold(tmp_path):
    import webdataset as wds
    from glcm.evaluate import load_eval_clips
    with wds.TarWriter(str(tmp_path / "other.tar")) as sink:
        for i in range(2):
            sink.write({"__key__": f"a{i}", "jpg": b"x", "cls": b"1"})
    with pytest.raises(ValueError, match=r"\(not avprep shards\?\); tar members not read: \.cls, \.jpg$"):
        load_eval_clips(str(tmp_path / "other.tar"), {})
