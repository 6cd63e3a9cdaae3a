"""Localisation benchmarks: the LVS / EZ-VSL metric on hand-made maps and boxes, the readers
of the Flickr-SoundNet and VGG-SS layouts, and a tiny Flickr-layout corpus from the
correspondence generator on which the trained avcorr model must beat an untrained one."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from glcm import locbench as L

N = 224 * 224


def rows_map() -> np.ndarray:
    """Higher towards the top: every row its own value, so the median splits rows 0-111 / 112-223."""
    return -np.repeat(np.arange(224.0)[:, None], 224, axis=1)


def flickr_boxes(*raw) -> list:
    return [L.flickr_box(b)[0] for b in raw]


def test_gradient_map_median_split_under_both_rules():
    gt = L.vggss_gt([L.vggss_box((0, 0, 1, 0.5))[0]])            # rows 0-111, all columns
    assert gt.sum() == 112 * 224
    ez, lvs = L.predicted_mask(rows_map()), L.predicted_mask(rows_map(), "lvs")
    assert ez.sum() == 112 * 224 and lvs.sum() == 111 * 224      # >= the median element vs > it
    assert L.ciou(ez, gt) == 1.0
    assert L.ciou(lvs, gt) == pytest.approx(111 / 112)


def test_ties_at_the_median_follow_each_reference():
    quadrant = np.zeros((224, 224))
    quadrant[:112, :112] = 1
    gt = L.vggss_gt([(0, 0, 112, 112)])
    # EZ-VSL: the median element is 0 and `>= 0` takes every pixel; LVS: `> 0` takes the quadrant
    assert L.ciou(L.predicted_mask(quadrant), gt) == pytest.approx(0.25)
    assert L.ciou(L.predicted_mask(quadrant, "lvs"), gt) == 1.0


def test_flickr_consensus_of_three_annotators():
    # 256-scale boxes: two annotators on the top-left quadrant, one on the top-right
    boxes = flickr_boxes((0, 0, 128, 128), (0, 0, 128, 128), (128, 0, 256, 128))
    assert boxes[0] == (0, 0, 112, 112) and boxes[2] == (112, 0, 224, 112)
    gt = L.flickr_gt(boxes)
    assert gt[0, 0] == 1.0 and gt[0, 200] == 0.5 and gt[200, 0] == 0.0
    left = -np.repeat(np.arange(224.0)[None, :], 224, axis=0)    # higher towards the left: cols 0-111
    mask = L.predicted_mask(left)
    assert mask[:, :112].all() and not mask[:, 112:].any()
    # P*G = 112*112 (weight 1); sum G = 112*112 * 1.5; P outside G = bottom-left 112*112
    assert L.ciou(mask, gt) == pytest.approx(1 / (1.5 + 1))
    assert L.ciou(mask, L.vggss_gt(boxes)) == pytest.approx(1 / 3)   # union instead: 1 / (2 + 1)


def test_degenerate_and_outside_boxes():
    box, clipped = L.flickr_box((300, 10, 20, 20))               # x0 past the image, x1 < x0
    assert clipped and box == (224, 8, 17, 17)
    gt = L.flickr_gt([box])
    assert gt.sum() == 0                                          # zero area: nothing to find
    assert L.ciou(L.predicted_mask(rows_map()), gt) == 0.0
    box, clipped = L.vggss_box((-0.25, 0.5, 1.5, 1.0))
    assert clipped and box == (0, 112, 224, 224)
    assert L.vggss_box((0.1, 0.2, 0.3, 0.4)) == ((22, 44, 67, 89), False)     # int(224 v)
    assert L.ciou(np.zeros((224, 224)), np.zeros((224, 224))) == 0.0
    flat = L.predicted_mask(np.full((7, 7), 3.0))
    assert flat.all()                                             # EZ-VSL: a flat map is all >= its median


def test_coarse_map_is_upsampled_bilinearly():
    grid = np.array([[1.0, 0.0], [0.0, 0.0]])
    ez, lvs = L.upsample(grid), L.upsample(grid, "lvs")
    assert ez[0, 0] == 1.0 and ez[0, 223] == 0.0 and ez[111, 0] == pytest.approx(1 - 111 / 223, abs=1e-6)
    assert lvs[:56, :56].min() == 1.0 and lvs[0, 223] == 0.0      # half-pixel centres: flat corners


def test_summary_ap50_auc_mean():
    s = L.summarise([0.0, 0.5, 1.0])
    # success rate: 1 at t=0, 2/3 for t in (0, 0.5], 1/3 for t in (0.5, 1]; trapezoids
    auc = 0.05 * (1 + 2 / 3) / 2 + 9 * 0.05 * 2 / 3 + 0.05 * (2 / 3 + 1 / 3) / 2 + 9 * 0.05 / 3
    assert s == {"samples": 3, "ciou": pytest.approx(2 / 3), "auc": pytest.approx(auc), "ciou_mean": 0.5}
    assert L.summarise([]) == {"samples": 0, "ciou": None, "auc": None, "ciou_mean": None}


def test_flickr_xml_named_and_positional():
    named = ("<annotation><object><bbox><x>1</x><xmin>1</xmin><ymin>2</ymin><xmax>30</xmax><ymax>40</ymax>"
             "</bbox></object></annotation>")
    positional = "<a><o><bbox><id>9</id><a>1</a><b>2</b><c>30</c><d>40</d></bbox></o><o><bbox><id>8</id>" \
                 "<a>5</a><b>6</b><c>7</c><d>8</d></bbox></o></a>"
    assert L.parse_flickr_xml(named) == [(1, 2, 30, 40)]
    assert L.parse_flickr_xml(positional) == [(1, 2, 30, 40), (5, 6, 7, 8)]


def test_readers_of_both_layouts(tmp_path):
    from avprep.testing.locbench import write_flickr, write_vggss
    info = write_flickr(str(tmp_path / "fl"), 2, bad=True)
    bench = L.read_flickr(str(tmp_path / "fl"))
    assert [s.id for s in bench.samples] == info["ids"]
    assert bench.problems == {"missing_xml": info["missing_xml"], "missing_audio": info["missing_audio"]}
    assert bench.clipped_boxes == 1
    xml = (tmp_path / "fl" / "Annotations" / f"{info['ids'][0]}.xml").read_text()
    expect = L.flickr_gt([L.flickr_box(b)[0] for b in L.parse_flickr_xml(xml)])
    assert np.array_equal(bench.samples[0].gt, expect) and len(bench.samples[0].boxes) == 3
    info = write_vggss(str(tmp_path / "vg"), 2, bad=True)
    bench = L.read_vggss(str(tmp_path / "vg"))
    assert [s.id for s in bench.samples] == info["ids"]
    assert bench.problems == {"not_annotated": info["not_annotated"], "missing_audio": info["missing_audio"]}
    assert bench.clipped_boxes == 1
    entry = json.loads((tmp_path / "vg" / "metadata" / "vggss.json").read_text())[-1]
    assert entry["bbox"][0][0] < 0 and bench.samples[-1].boxes[0][0] == 0
    assert L.read_vggss(str(tmp_path / "vg"), ids=[info["ids"][1]]).samples[0].id == info["ids"][1]
    meta = tmp_path / "vg" / "metadata" / "vggss.json"                  # a malformed entry among good ones
    meta.write_text(json.dumps([5, {"bbox": []}] + json.loads(meta.read_text())))  # was: the whole file refused
    bench = L.read_vggss(str(tmp_path / "vg"))
    assert [s.id for s in bench.samples] == info["ids"] and bench.problems["bad_entry"] == ["entry 0", "entry 1"]


def test_benchmark_bad_roots(tmp_path):
    from glcm.config import ConfigError
    (tmp_path / "frames").mkdir()
    with pytest.raises(ConfigError, match="no annotation folder"):
        L.read_flickr(str(tmp_path))
    with pytest.raises(ConfigError, match="vggss.json"):
        L.read_vggss(str(tmp_path))
    with pytest.raises(ConfigError, match="no such folder"):
        L.read_flickr(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no frames/ folder"):
        L.read_vggss(str(tmp_path / "empty"))


def test_eval_localization_user_mistakes_are_one_line(tmp_path):
    """Output paths are checked before any evaluation (a missing folder used to be a
    traceback after it); unknown --ids and a finetuned checkpoint are named."""
    from avprep.testing.locbench import write_flickr
    from conftest import cli, one_line_error
    from glcm.config import load_config
    from glcm.train import Trainer
    root, ckpt = tmp_path / "flickr", tmp_path / "checkpoint.pt"
    write_flickr(str(root), 2)
    base = ["eval-localization", "--benchmark", "flickr", "--root", root, "--device", "cpu", "--checkpoint"]
    code, out = cli(*base, tmp_path / "none.pt", "--save-maps", tmp_path)       # checked before the checkpoint
    assert code == 2 and f"--save-maps {tmp_path} is a folder" in one_line_error(out)
    (tmp_path / "ids.csv").write_text("nope1\nnope2\n")
    code, out = cli(*base, tmp_path / "none.pt", "--ids", tmp_path / "ids.csv")
    assert code == 2 and "none of its 2 ids is a scorable sample" in one_line_error(out)
    Trainer(load_config(preset="smoke"), torch.device("cpu")).save(ckpt)
    code, out = cli(*base, ckpt, "--size", 32, "--out", tmp_path / "new" / "r.json", "--save-maps", tmp_path / "new" / "m.npz")
    assert code == 0, out
    assert json.loads((tmp_path / "new" / "r.json").read_text())["samples"] == 2
    data = torch.load(ckpt, weights_only=True)
    data["config"]["task"] = {"name": "esc50"}
    torch.save(data, tmp_path / "esc.pt")
    code, out = cli(*base, tmp_path / "esc.pt")
    assert code == 2 and "is a finetuned esc50 model (glcm finetune)" in one_line_error(out)


def test_trained_model_localises_on_a_flickr_layout_corpus(avcorr_run, tmp_path):
    from avprep.testing.locbench import write_flickr
    from cli.locinput import evaluate_benchmark
    from conftest import cli
    from glcm.checkpoint import load_model
    from glcm.model import GLCM
    root = tmp_path / "flickr"
    write_flickr(str(root), 24, seed=5, bad=True, crop=40)     # 40 px stills, 22 px objects at their scale
    bench = L.read_flickr(str(root))
    model, cfg = load_model(avcorr_run.checkpoint)
    torch.manual_seed(0)
    trained, untrained = evaluate_benchmark([model, GLCM(cfg.model)], cfg, bench, size=40)
    print("trained", trained.summary, "untrained", untrained.summary)
    assert trained.summary["samples"] == untrained.summary["samples"] == 25
    assert trained.summary["ciou"] >= 0.6 and trained.summary["ciou"] >= untrained.summary["ciou"] + 0.5
    assert trained.summary["auc"] >= untrained.summary["auc"] + 0.25
    assert trained.summary["ciou_mean"] >= untrained.summary["ciou_mean"] + 0.25
    # the CLI on the same corpus: JSON written, problems listed, maps rescore to the same cIoU
    code, out = cli("eval-localization", "--benchmark", "flickr", "--root", root, "--checkpoint",
                    avcorr_run.checkpoint, "--size", 40, "--save-maps", tmp_path / "maps.npz",
                    "--out", tmp_path / "r.json")
    assert code == 0, out
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["ciou"] == pytest.approx(trained.summary["ciou"]) and result["problems"] == {
        "missing_audio": 1, "missing_xml": 1} and result["clipped_boxes"] == 1
    with np.load(tmp_path / "maps.npz", allow_pickle=False) as z:
        maps = {k: z[k] for k in z.files}
    assert len(maps) == 25 and maps[bench.samples[0].id].shape == (224, 224)
    _, rescored = L.score(maps, bench.samples)
    assert rescored == pytest.approx(result["per_sample"])


def test_synthetic_shards_path_reports_the_benchmark_metric(avcorr_run, tmp_path):
    from avprep.testing import avcorr
    from conftest import cli
    # 16 clips: pointing over 4 was one clip from failing (0.5 vs 1.0 for two seeds of one model)
    avcorr.write_shards(avcorr.make_clips(16, seed=2, obj=22), str(tmp_path), per_shard=16, prefix="test")
    code, out = cli("eval-localization", "--checkpoint", avcorr_run.checkpoint,
                    "--shards", tmp_path / "test-000000.tar", "--annotations", tmp_path / "avcorr.json", "--save-maps", tmp_path / "m.npz",
                    "--out", tmp_path / "r.json")
    assert code == 0, out
    result = json.loads((tmp_path / "r.json").read_text())
    # 22 px objects in 64 px frames: a median-thresholded map covers half the picture, so even a
    # perfect map scores about 2 x 22^2 / 64^2 = 0.24 (an untrained one ~0.06)
    assert result["benchmark"]["samples"] == 16 and result["benchmark"]["ciou_mean"] > 0.18
    assert len(result["per_sample"]) == 16 and result["pointing"] >= 0.7     # chance: ~0.12 (box area)
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        assert sorted(z.files) == sorted(result["per_sample"]) and z[z.files[0]].shape == (224, 224)


def test_undecodable_samples_are_recorded_and_none_left_is_one_line(avcorr_run, tmp_path):
    from avprep.testing.locbench import write_flickr
    from conftest import cli, one_line_error
    write_flickr(str(tmp_path), 3, crop=40)
    (tmp_path / "frames" / "01000.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "audio" / "01001.wav").write_bytes(b"RIFF, not a wav")
    args = ["eval-localization", "--benchmark", "flickr", "--root", tmp_path, "--checkpoint", avcorr_run.checkpoint,
            "--size", 40]
    code, out = cli(*args, "--out", tmp_path / "r.json")
    assert code == 0, out
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["samples"] == 1 and result["problems"] == {"bad_frame": 1, "decode_error": 1}
    assert result["problem_ids"] == {"bad_frame": ["01000"], "decode_error": ["01001"]}
    (tmp_path / "frames" / "01002.jpg").write_bytes(b"")
    code, out = cli(*args)
    assert code == 2 and "no sample could be decoded" in one_line_error(out)
    code, out = cli(*args, "--ids", tmp_path / "none.csv")
    assert code == 2 and "--ids" in one_line_error(out)
