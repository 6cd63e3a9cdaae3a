"""glcm finetune for LRW (temporal-conv backend, word boundary) and DFDC (video ROC AUC,
Chugh et al. list files): the pieces by hand, both end to end, their bad inputs as one line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import numpy as np

from avprep.format import FACE_STATUS, LANDMARKS, TRANSFORM, SampleMeta, SourceVideo, encode_sample
from glcm.config import ConfigError
from glcm.labelled import dfdc_key, read_list, word_boundary
from conftest import cli, one_line_error
from test_glcm_finetune import FAST, picture, write

SRC = SourceVideo(width=40, height=40, sar="1", rotation=0, fps=25.0, codec="h264", audio_codec=None,
                  audio_channels=None, audio_sample_rate=None)


def sample(item_id: str, label: str, index: int, split: str, seed: int, frames: int = 29, crop: str | None = "lips",
           mel: bool = False, **extra) -> dict:
    """A 40x40 sample; `crop` (lips / face) makes it a crop sample as the face stage writes
    it (json crop + landmark/transform/status arrays; their values do not matter here),
    None a whole-frame one; `mel` adds a log-mel (4 columns per frame)."""
    meta = SampleMeta(key=f"k{seed}", source="t", item_id=item_id, split=split, source_path=item_id, segment=0,
                      first_frame=0, fps=25.0, start_time=0.0, end_time=frames / 25, cut_start=None, cut_end=None,
                      has_audio=False, sample_rate=16000, hop_length=160, n_fft=400, n_mels=80, mel_per_frame=4,
                      labels={"label": label, "label_index": index}, extra=extra, source_video=SRC,
                      crop={"kind": crop, "size": 40, "num_frames": frames} if crop else None)
    arrays = {LANDMARKS: np.zeros((frames, 68, 2), np.float32), TRANSFORM: np.zeros((frames, 2, 3), np.float32),
              FACE_STATUS: np.ones(frames, np.uint8)} if crop else None
    spectrum = np.random.default_rng(seed).normal(-40, 5, (80, 4 * frames)).astype(np.float32) if mel else None
    return encode_sample(meta, picture(index, seed, frames), spectrum, 90, arrays)


def test_word_boundary_is_the_centred_span():
    meta = json.loads(sample("W/test/W_00001", "W", 0, "test", 0, word_duration=0.4)["json"])
    from avprep.format import parse_meta
    vec = word_boundary(parse_meta(json.dumps(meta).encode()))
    assert vec.tolist() == [0.0] * 9 + [1.0] * 10 + [0.0] * 10          # 0.4 s x 25 fps = 10 of 29, centred
    meta["extra"] = {"word_duration": None}
    assert word_boundary(parse_meta(json.dumps(meta).encode())).tolist() == [1.0] * 29


def test_dfdc_keys_and_list_files(tmp_path):
    assert dfdc_key("dfdc_train_part_3/abc.mp4") == dfdc_key("abc.dfdc_train_part_03") == (3, "abc")
    assert dfdc_key("abc.mp4.dfdc_train_part_3") == (3, "abc") and dfdc_key("abc.mp4") is None
    (tmp_path / "l.txt").write_text("abc.dfdc_train_part_03\n\nxyz.dfdc_train_part_1 extra\n")
    assert read_list(str(tmp_path / "l.txt")) == {(3, "abc"), (1, "xyz")}
    (tmp_path / "bad.txt").write_text("abc.dfdc_train_part_03\nnot-a-line\n")
    with pytest.raises(ConfigError, match=r"bad.txt:2: expected `<id>.dfdc_train_part_NN`"):
        read_list(str(tmp_path / "bad.txt"))


@pytest.fixture(scope="module")
def lrw(tmp_path_factory):
    """Three words; per-split builds as `avprep build lrw` writes them (OUT/train, OUT/test)."""
    root = tmp_path_factory.mktemp("lrw")
    words = ("ABOUT", "BLACK", "CHIEF")
    for split, n in (("train", 6), ("test", 3)):
        (root / split).mkdir()
        write(root / split / "lrw-000000.tar",
              [sample(f"{words[i % 3]}/{split}/{words[i % 3]}_{i:05d}", words[i % 3], i % 3, split, 10 * i + len(split),
                      word_duration=0.3 + 0.1 * (i % 3)) for i in range(n)])
    return root


def test_lrw_with_the_word_boundary_end_to_end(lrw, tmp_path):
    run = tmp_path / "lrw"
    code, out = cli("finetune", "--task", "lrw", "--shards", lrw / "train", "--test-shards", lrw / "test", "--init",
                    "scratch", "--out", run, "--steps", 2, *FAST, "--set", "data.frames=28",
                    "--set", "task.boundary=true", "--set", "task.temporal_width=16")
    assert code == 0, out
    m = json.loads((run / "metrics.json").read_text())
    assert (m["task"], m["split"], m["videos"], m["clips_per_video"], m["metric"]) == ("lrw", "test", 3, 1, "top1")
    assert 0 <= m["top1"] <= m["top5"] <= 1
    state = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    # smoke encoders: 32 + 32 channels per frame, plus the boundary channel
    assert state["backend.blocks.0.branches.0.0.weight"].shape[1] == 65
    assert state["fc.weight"].shape == (500, 16)


def test_dfdc_lists_and_video_auc_end_to_end(tmp_path):
    samples, lines = [], {"train": [], "test": []}
    for i in range(8):
        label = "FAKE" if i % 2 else "REAL"
        samples.append(sample(f"dfdc_train_part_{i % 2}/v{i}.mp4", label, i % 2, "train", i, frames=12, crop="face"))
        lines["test" if i < 4 else "train"].append(f"v{i}.dfdc_train_part_{i % 2:02d}")
    shards = write(tmp_path / "dfdc-000000.tar", samples)
    for role, ids in lines.items():
        (tmp_path / f"{role}.txt").write_text("\n".join(ids) + "\n")
    run = tmp_path / "run"
    code, out = cli("finetune", "--task", "dfdc", "--shards", shards, "--init", "scratch", "--out", run, "--steps", 2,
                    "--clips", 2, *FAST, "--set", f"task.train_list={tmp_path / 'train.txt'}",
                    "--set", f"task.test_list={tmp_path / 'test.txt'}")
    assert code == 0, out
    m = json.loads((run / "metrics.json").read_text())
    rows = (run / "predictions.csv").read_text().splitlines()[1:]
    assert m["videos"] == 4 and sorted(r.split(",")[0] for r in rows) == [
        "dfdc_train_part_0/v0.mp4", "dfdc_train_part_0/v2.mp4", "dfdc_train_part_1/v1.mp4", "dfdc_train_part_1/v3.mp4"]
    # the value is the ROC AUC of the mean P(fake) per video, recomputed from predictions.csv
    from sklearn.metrics import roc_auc_score
    fake = [float(r.split(",")[5]) if r.split(",")[1] == "1" else 1 - float(r.split(",")[5]) for r in rows]
    assert m["metric"] == "auc" and m["value"] == m["auc"] == pytest.approx(
        roc_auc_score([int(r.split(",")[1]) for r in rows], fake), abs=1e-5)
    assert (run / "roc.png").stat().st_size > 1000 and m["pictures"]["roc"] == "roc.png"
    code, out = cli("report", run, "--out", tmp_path / "r.md")
    text = (tmp_path / "r.md").read_text()
    assert code == 0 and "| dfdc | scratch | full | both | split lists | auc |" in text and "| crops, mean |" in text


def dfdc_shards(t: Path) -> str:
    return write(t / "d.tar", [sample(f"dfdc_train_part_0/v{i}.mp4", "FAKE" if i % 2 else "REAL", i % 2, "train", i,
                                      frames=8, crop="face") for i in range(4)])


def one_class_list(t: Path) -> list:
    shards = dfdc_shards(t)
    (t / "test.txt").write_text("v0.dfdc_train_part_0\nv2.dfdc_train_part_0\n")      # both REAL
    return ["--task", "dfdc", "--shards", shards, "--set", f"task.test_list={t / 'test.txt'}"]


BAD = [
    ("lrw without a test split", lambda t, lrw: ["--task", "lrw", "--shards", lrw / "train"],
     "--shards: no samples with split 'test' (an `avprep build lrw` split folder); give --test-shards"),
    ("lrw --split", lambda t, lrw: ["--task", "lrw", "--shards", lrw / "train", "--split", 1], "lrw has no --split"),
    ("dfdc without a test set", lambda t, lrw: ["--task", "dfdc", "--shards", dfdc_shards(t)],
     "dfdc: give --test-shards, or --set task.test_list=FILE"),
    ("dfdc test of one class", lambda t, lrw: one_class_list(t), "the dfdc test samples are all of one class"),
    ("dfdc unreadable list", lambda t, lrw: ["--task", "dfdc", "--shards", dfdc_shards(t), "--set",
                                             f"task.test_list={t / 'none.txt'}"], "cannot read list"),
    ("lrw folds all", lambda t, lrw: ["--task", "lrw", "--shards", lrw / "train", "--folds", "all"], "lrw has no"),
]


@pytest.mark.parametrize("case,args,says", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_line(case, args, says, lrw, tmp_path, monkeypatch):
    import glcm.finetune as gf
    monkeypatch.setattr(gf, "FinetuneTrainer", lambda *a, **k: pytest.fail("training started"))
    code, out = cli("finetune", *args(tmp_path, lrw), "--init", "scratch", "--out", tmp_path / "run", *FAST)
    assert code == 2, out
    assert says in one_line_error(out)
    assert not (tmp_path / "run").exists() or not (tmp_path / "run" / "checkpoint.pt").exists()


def test_bench_prints_finetune_clips_per_second(tmp_path):
    from avprep.testing import avcorr
    avcorr.write_shards(avcorr.make_clips(4, seed=0, min_seconds=3.3, max_seconds=3.5), str(tmp_path), per_shard=4)
    code, out = cli("bench", "--shards", tmp_path, "--preset", "smoke", "--device", "cpu", "--batch-sizes", 2,
                    "--steps", 1, "--loader-batches", 1, "--task", "lrw")
    assert code == 0, out
    line = next(x for x in out.splitlines() if x.startswith("finetune lrw: "))
    assert float(line.split()[2]) > 0 and "28 frames" in line                  # LRW's task default
    code, out = cli("bench", "--shards", tmp_path, "--task", "kinetics")
    assert code == 2 and "--task 'kinetics': must be one of" in one_line_error(out)
