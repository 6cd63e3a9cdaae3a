"""glcm finetune and glcm report: recipe -> finetune -> report end to end on a tiny UCF101
corpus, ESC-50 --folds all, a model that learns a separable task, linear probe vs full
finetune from a checkpoint, and every bad input as one line (exit 2) before training."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds

from avprep.format import SampleMeta, SourceVideo, encode_sample
from avprep.testing import avcorr
from avprep.testing.downstream import make_ucf101_corpus
from glcm import checkpoint as ckpt
from glcm.config import load_config
from glcm.train import Trainer
from conftest import cli, one_line_error

# smoke-sized model on the CPU, 8-frame clips, no loader workers
FAST = ["--preset", "smoke", "--device", "cpu", "--workers", 0, "--set", "data.frames=8",
        "--set", "train.log_every=1", "--set", "train.warmup_steps=1"]


def last_json(output: str) -> dict:
    return json.loads(output[output.rindex("\n{") + 1:] if "\n{" in output else output[output.index("{"):])


NO_VIDEO = SourceVideo(width=None, height=None, sar=None, rotation=None, fps=None, codec=None,
                       audio_codec="pcm_s16le", audio_channels="mono", audio_sample_rate=16000)
VIDEO = SourceVideo(width=40, height=40, sar="1", rotation=0, fps=10.0, codec="mpeg4", audio_codec=None,
                    audio_channels=None, audio_sample_rate=None)


def meta(key: str, labels: dict, extra: dict, video: bool) -> SampleMeta:
    return SampleMeta(key=key, source="t", item_id=key, split=None, source_path=key + ".x", segment=0,
                      first_frame=0, fps=10.0, start_time=0.0, end_time=2.0, cut_start=None, cut_end=None,
                      has_audio=True, sample_rate=16000, hop_length=160, n_fft=400, n_mels=80, mel_per_frame=10,
                      labels=labels, extra=extra, source_video=VIDEO if video else NO_VIDEO)


def sound(label: int, seed: int, frames: int = 20) -> np.ndarray:
    """A log-mel where class `label` is a loud band (bands 8*label .. 8*label+7) over noise."""
    rng = np.random.default_rng(seed)
    mel = rng.normal(-60, 3, (80, frames * 10)).astype(np.float32)
    mel[8 * label:8 * label + 8] += 40
    return mel


def picture(label: int, seed: int, frames: int = 12) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = rng.integers(0, 60, (frames, 40, 40, 3)).astype(np.uint8)
    out[..., label % 3] += 150
    return out


def audio_sample(key: str, label: int, fold: int, seed: int) -> dict:
    return encode_sample(meta(key, {"label": f"c{label}", "label_index": label}, {"fold": fold}, False),
                         None, sound(label, seed), 90)


def write(path: Path, samples: list[dict]) -> str:
    with wds.TarWriter(str(path)) as sink:
        for s in samples:
            sink.write(s)
    return str(path)


def esc_like(folder: Path, per_fold: int = 4, classes: int = 2, corrupt: bool = False) -> str:
    """Audio-only samples with labels and folds 1-5 (the esc50 recipe's metadata)."""
    folder.mkdir(parents=True, exist_ok=True)
    samples = [audio_sample(f"f{f}-{i}", i % classes, f, 100 * f + i) for f in range(1, 6) for i in range(per_fold)]
    if corrupt:
        samples.insert(3, {**samples[0], "__key__": "broken", "json": b"{not json"})
    return write(folder / "esc-000000.tar", samples)


@pytest.fixture(scope="module")
def ucf_build(tmp_path_factory):
    """The tiny UCF101 corpus (avprep.testing.downstream) through `avprep build ucf101`."""
    from test_cli import run
    base = tmp_path_factory.mktemp("ucf")
    corpus = make_ucf101_corpus(str(base / "corpus"), seconds=2.0)
    code, text = run("build", "ucf101", corpus.root, "--splits", corpus.lists, "--out", base / "shards",
                     "--workers", 1)
    assert code == 0, text
    return base / "shards", corpus


def test_recipe_finetune_report_end_to_end(ucf_build, tmp_path):
    shards, corpus = ucf_build
    code, out = cli("finetune", "--task", "ucf101", "--shards", shards, "--init", "scratch", "--out",
                    tmp_path / "runs" / "ucf-s1", "--split", 1, "--steps", 2, "--clips", 3, *FAST)
    assert code == 0, out
    run = tmp_path / "runs" / "ucf-s1"
    m = json.loads((run / "metrics.json").read_text())
    tests = sorted(e.item_id for e in corpus.present if e.splits["1"] == "test")
    assert (m["task"], m["split"], m["init"], m["mode"], m["features"]) == ("ucf101", 1, "scratch", "full", "both")
    assert m["videos"] == len(tests) and m["clips_per_video"] == 3 and 0 <= m["top1"] <= 1
    rows = (run / "predictions.csv").read_text().splitlines()
    assert rows[0] == "id,label,label_name,prediction,score,label_score,top5"
    assert sorted(r.split(",")[0] for r in rows[1:]) == tests
    assert {r.split(",")[2] for r in rows[1:]} == {"ApplyEyeMakeup", "HandstandPushups", "YoYo"}
    for png in ("confusion.png", "per_class.png", "curves.png"):
        assert (run / png).stat().st_size > 1000, png
    saved = json.loads((run / "config.json").read_text())
    assert saved["task"]["name"] == "ucf101" and saved["task"]["clips"] == 3 and saved["model"]["width"] == 4

    # --resume of a finished run re-scores it, nothing retyped
    code, out = cli("finetune", "--resume", "--out", run)
    assert code == 0, out
    assert json.loads((run / "metrics.json").read_text())["videos"] == len(tests)

    code, out = cli("report", tmp_path / "runs" / "ucf-s1", "--out", tmp_path / "report.md")
    assert code == 0, out
    text = (tmp_path / "report.md").read_text()
    assert "| [ucf-s1](runs/ucf-s1) | ucf101 | scratch | full | both | split 1 | top1 |" in text
    assert "| 91.2 |" in text and "(runs/ucf-s1/confusion.png)" in text


def test_esc50_folds_all_writes_the_mean_and_counts_unreadable_samples(tmp_path):
    shards = esc_like(tmp_path / "esc", corrupt=True)
    code, out = cli("finetune", "--task", "esc50", "--shards", shards, "--init", "scratch", "--out",
                    tmp_path / "esc-run", "--folds", "all", "--steps", 2, "--clips", 2, *FAST)
    assert code == 0, out
    top = json.loads((tmp_path / "esc-run" / "metrics.json").read_text())
    folds = [json.loads((tmp_path / "esc-run" / f"fold-{f}" / "metrics.json").read_text()) for f in range(1, 6)]
    assert [f["fold"] for f in folds] == [1, 2, 3, 4, 5] and all(f["videos"] == 4 for f in folds)
    assert top["fold"] == "all" and top["value"] == pytest.approx(np.mean([f["top1"] for f in folds]))
    assert top["folds"] == {str(f["fold"]): f["top1"] for f in folds}
    # the broken sample (fold unknown) is skipped and counted while training, never fatal
    assert any(f["train_skipped"].get("bad_json", 0) >= 1 for f in folds), [f["train_skipped"] for f in folds]
    assert all(f["skipped"] == {"bad_json": 1} for f in folds)    # and at test time, in every fold
    code, out = cli("report", tmp_path / "esc-run", "--out", tmp_path / "r.md")
    assert code == 0, out
    text = (tmp_path / "r.md").read_text()
    assert "| esc50 | scratch | full | audio | fold all | top1 |" in text and "| 80.1 |" in text
    assert text.count("| esc50 |") == 6                          # the mean and the five folds


def test_a_separable_task_is_learnt(tmp_path):
    """Two classes told apart by a loud mel band: 40 steps take test accuracy from chance to 1."""
    shards = esc_like(tmp_path / "esc", per_fold=8)
    code, out = cli("finetune", "--task", "esc50", "--shards", shards, "--init", "scratch", "--out", tmp_path / "r",
                    "--fold", 1, "--steps", 40, "--clips", 2, *FAST, "--set", "train.lr=3e-3",
                    "--set", "task.classes=2", "--batch-size", 8)
    assert code == 0, out
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert m["videos"] == 8 and m["top1"] == 1.0, m
    log = [json.loads(line) for line in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    assert np.mean([r["loss"] for r in log[-5:]]) < 0.5 * np.mean([r["loss"] for r in log[:5]])


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A smoke-preset training checkpoint (random weights; what matters is the format)."""
    path = tmp_path_factory.mktemp("pre") / "checkpoint.pt"
    Trainer(load_config(preset="smoke"), torch.device("cpu")).save(path)
    return path


def test_linear_probe_keeps_the_encoder_full_finetune_changes_it(pretrained, tmp_path):
    shards = esc_like(tmp_path / "esc")
    start = torch.load(pretrained, weights_only=True)["model"]
    for mode, same in (("linear", True), ("full", False)):
        run = tmp_path / mode
        code, out = cli("finetune", "--task", "esc50", "--shards", shards, "--init", pretrained, "--out", run,
                        "--mode", mode, "--steps", 3, "--val-shards", shards, *FAST)
        assert code == 0, out
        assert json.loads((run / "metrics.json").read_text())["val_videos"] == 20      # every val sample
        state = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
        ours = {k[len("backbones.audio."):]: v for k, v in state.items() if k.startswith("backbones.audio.")}
        theirs = {k[len("encoders.audio.backbone."):]: v for k, v in start.items()
                  if k.startswith("encoders.audio.backbone.")}
        assert ours.keys() == theirs.keys()
        equal = all(torch.equal(ours[k], theirs[k]) for k in ours)
        assert equal == same, mode
        assert json.loads((run / "metrics.json").read_text())["init"] == "pretrained"


def visual_shards(folder: Path, splits: dict | None = None, labels: dict | None = None) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    samples = []
    for i in range(6):
        split = splits if splits is not None else {"1": "train" if i % 2 else "test", "2": "test" if i % 2 else "train"}
        lab = labels if labels is not None else {"label": f"c{i % 3}", "label_index": i % 3}
        m = meta(f"v{i}", lab, {"splits": split}, True)
        samples.append(encode_sample(m, picture(i % 3, i), None, 90))
    return write(folder / "v-000000.tar", samples)


def unlabelled(t: Path, pre: Path) -> list:
    folder = t / "av"
    folder.mkdir()
    avcorr.write_shards(avcorr.make_clips(2, seed=0, min_seconds=1.0, max_seconds=1.0), str(folder), per_shard=2)
    return ["--task", "ucf101", "--shards", folder, "--init", "scratch"]


def other_width(t: Path, pre: Path) -> list:
    path = t / "w8.pt"
    Trainer(load_config(preset="smoke", overrides=["model.width=8"]), torch.device("cpu")).save(path)
    return ["--task", "ucf101", "--shards", visual_shards(t / "v"), "--init", path]


def audio_encoder_file(t: Path, pre: Path) -> list:
    data = torch.load(pre, weights_only=True)
    ckpt.save_encoder(data["model"], load_config(preset="smoke").model, "audio", t / "audio.pt")
    return ["--task", "ucf101", "--shards", visual_shards(t / "v"), "--init", t / "audio.pt"]


def finetuned_file(t: Path, pre: Path) -> list:
    data = torch.load(pre, weights_only=True)
    data["config"]["task"] = {"name": "esc50"}            # what a glcm finetune checkpoint records
    torch.save(data, t / "esc.pt")
    return ["--task", "esc50", "--shards", esc_like(t / "e"), "--init", t / "esc.pt"]


def split_build(t: Path) -> Path:
    """The top folder of `avprep build lrw`: OUT/train/*.tar, OUT/test/*.tar."""
    for split in ("test", "train"):
        (t / "lrw" / split).mkdir(parents=True)
        (t / "lrw" / split / "lrw-000000.tar").write_bytes(b"")
    return t / "lrw"


def text_file(t: Path) -> Path:
    (t / "notes.txt").write_text("hello\n")
    return t / "notes.txt"


def foreign_tar(t: Path, p: Path) -> list:
    """Another tool's tar (an image/class WebDataset): --shards names what it holds."""
    write(t / "other.tar", [{"__key__": f"a{i}", "jpg": b"x", "cls": b"1"} for i in range(2)])
    return ["--task", "ucf101", "--shards", t / "other.tar", "--init", "scratch"]


def lying_tar(t: Path, p: Path) -> list:
    """A json member whose header claims 200 GiB: refused from the header, never allocated."""
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.addfile(tarfile.TarInfo("k1.json"), io.BytesIO())
    raw = bytearray(buf.getvalue())
    raw[124:136] = b"\x80" + (200 << 30).to_bytes(11, "big")       # base-256 size field
    raw[148:156] = b" " * 8
    raw[148:156] = b"%06o\0 " % sum(raw[:512])
    (t / "lying.tar").write_bytes(bytes(raw))
    return ["--task", "ucf101", "--shards", t / "lying.tar", "--init", "scratch"]


# (case, arguments, what the one line says); each exits 2 before any training
BAD = [
    ("no labels", unlabelled, "carry no labels (labels.label_index); task ucf101 needs shards built by"),
    ("label out of range", lambda t, p: ["--task", "ucf101", "--shards", visual_shards(t / "v"), "--init", "scratch",
                                         "--set", "task.classes=2"], "label_index 2 outside 0..1"),
    ("label not a number", lambda t, p: ["--task", "ucf101", "--init", "scratch", "--shards", visual_shards(
        t / "v", labels={"label": "x", "label_index": "3"})], "label_index '3' outside 0..100"),
    ("missing split", lambda t, p: ["--task", "ucf101", "--shards", visual_shards(t / "v"), "--init", "scratch",
                                    "--split", 3], "no sample has split 3 (extra.splits names 1, 2)"),
    ("split with no test", lambda t, p: ["--task", "hmdb51", "--init", "scratch", "--shards", visual_shards(
        t / "v", splits={"1": "train"})], "split 1 holds no test sample"),
    ("samples without folds", lambda t, p: ["--task", "esc50", "--init", "scratch", "--shards", write(
        t / "e.tar", [encode_sample(meta("a", {"label_index": 0}, {}, False), None, sound(0, 0), 90)])],
     "no sample is in fold 1 (folds present: none; the samples carry no extra.fold)"),
    ("audio task on visual-only", lambda t, p: ["--task", "esc50", "--init", "scratch", "--shards", visual_shards(
        t / "v", splits={"1": "train"})], "task esc50 reads the audio, but every sample is visual-only"),
    ("fold absent", lambda t, p: ["--task", "esc50", "--init", "scratch", "--shards", write(
        t / "e.tar", [audio_sample(f"a{i}", 0, 1 + i % 2, i) for i in range(4)]), "--fold", 4],
     "no sample is in fold 4 (folds present: 1, 2)"),
    ("folds all, fold 3 absent", lambda t, p: ["--task", "esc50", "--init", "scratch", "--shards", write(
        t / "e.tar", [audio_sample(f"a{i}", 0, 1 + i % 2, i) for i in range(4)]), "--folds", "all"],
     "no sample is in fold 3 (folds present: 1, 2)"),
    ("another architecture", other_width, "is another architecture (model.width: 4 here, 8 there; "
                                          "backbones.global.stem.0.weight (8, 3, 3, 7, 7) there, (4, 3, 3, 7, 7) here"),
    ("one encoder for two", audio_encoder_file, "holds only the audio encoder; this task needs global and local"),
    ("init missing", lambda t, p: ["--task", "esc50", "--shards", esc_like(t / "e"), "--init", t / "no.pt"],
     "does not exist"),
    ("init a finetuned model", finetuned_file, "esc.pt is a finetuned esc50 model (glcm finetune); give a "
                                               "pretraining run's checkpoint.pt (glcm train) or an export-encoder file"),
    ("init a text file", lambda t, p: ["--task", "esc50", "--shards", esc_like(t / "e"), "--init", text_file(t)],
     "notes.txt is not a readable GLCM checkpoint (not a PyTorch file)"),      # was a KeyError traceback
    ("split 4", lambda t, p: ["--task", "ucf101", "--shards", "x", "--init", "scratch", "--split", 4],
     "--split '4': must be 1, 2, 3 or all"),
    ("clips 0", lambda t, p: ["--task", "esc50", "--shards", "x", "--init", "scratch", "--clips", 0],
     "--clips 0: must be a positive number"),                                   # was silently the default 10
    ("folds 3", lambda t, p: ["--task", "esc50", "--shards", "x", "--init", "scratch", "--folds", 3], "only 'all'"),
    ("esc50 split", lambda t, p: ["--task", "esc50", "--shards", "x", "--init", "scratch", "--split", 1],
     "esc50 has folds, not splits"),
    ("no task", lambda t, p: ["--shards", "x", "--init", "scratch"], "give --task"),
    ("unknown task", lambda t, p: ["--task", "lrw9", "--shards", visual_shards(t / "v"), "--init", "scratch"],
     "task.name must be one of ucf101, hmdb51, esc50, lrw, dfdc"),
    ("a foreign tar", foreign_tar, "--shards: no readable sample (no samples; tar members not read: .cls, .jpg)"),
    ("a json member claiming 200 GiB", lying_tar, "--shards: no readable sample"),
    ("no shards", lambda t, p: ["--task", "ucf101", "--shards", t / "none-*.tar", "--init", "scratch"],
     "no shards found"),
    ("a per-split build's top folder", lambda t, p: ["--task", "lrw", "--shards", split_build(t), "--init", "scratch"],
     "--shards: no shards found at"),                 # and the hint, checked in the test
]


def test_one_check_says_what_kind_of_checkpoint_a_file_is(tmp_path):
    """load_training (localize, export-encoder) and finetune's --init refused a finetuned model
    with two different checks and messages; both now ask checkpoint.require_pretraining."""
    from glcm.finetune import init_model
    finetuned, encoder = tmp_path / "esc.pt", tmp_path / "audio.pt"
    torch.save({"format": ckpt.CHECKPOINT_FORMAT, "config": {"model": {"width": 4}, "task": {"name": "esc50"}}},
               finetuned)
    torch.save({"format": ckpt.ENCODER_FORMAT, "name": "audio", "model_config": {"width": 4}, "state": {}}, encoder)
    said = "is a finetuned esc50 model (glcm finetune); give a pretraining run's checkpoint.pt (glcm train)"
    with pytest.raises(ckpt.CheckpointError) as exc:
        ckpt.load_training(finetuned)
    assert str(exc.value) == f"{finetuned} {said}"
    with pytest.raises(ckpt.CheckpointError) as exc:
        init_model(str(finetuned))
    assert str(exc.value) == f"--init {finetuned} {said} or an export-encoder file"
    with pytest.raises(ckpt.CheckpointError) as exc:
        ckpt.load_training(encoder)
    assert str(exc.value) == (f"{encoder} holds only the audio encoder (glcm export-encoder), not a whole model; "
                              "give a pretraining run's checkpoint.pt (glcm train)")
    assert init_model(str(encoder)) == {"width": 4}                  # an encoder file is a fine --init
    assert [ckpt.kind_of(torch.load(p, weights_only=True)) for p in (finetuned, encoder)] == ["finetuned", "encoder"]


@pytest.mark.parametrize("case,args,says", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_before_training(case, args, says, pretrained, tmp_path, monkeypatch):
    import glcm.finetune as gf
    monkeypatch.setattr(gf, "FinetuneTrainer", lambda *a, **k: pytest.fail("training started"))
    argv = args(tmp_path, pretrained)
    code, out = cli("finetune", *argv, "--out", tmp_path / "run", *FAST)
    assert code == 2, out
    line = one_line_error(out)
    assert says is None or says in line, line
    if case == "a per-split build's top folder":
        assert line.endswith(f"it holds per-split folders (test, train): give one, e.g. {tmp_path / 'lrw' / 'test'}")
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_resume_refuses_another_fold_or_task(tmp_path, monkeypatch):
    """--resume with --fold 3 of a fold-1 run used to score fold 3 with a model trained on
    it and overwrite fold 1's metrics.json; now one line, before training, nothing written."""
    import glcm.finetune as gf
    from glcm.config import load_finetune_config
    monkeypatch.setattr(gf, "FinetuneTrainer", lambda *a, **k: pytest.fail("training started"))
    run = tmp_path / "run"
    run.mkdir()
    load_finetune_config(None, ["task.name=esc50", "task.init=scratch", f"data.shards={esc_like(tmp_path / 'e')}",
                                f"train.out={run}"], "smoke").save(run / "config.json")
    before = (run / "config.json").read_text()
    for args, says in ((["--fold", 3], "task.fold 1 there, 3 here"), (["--task", "ucf101"], "task.name 'esc50' there"),
                       (["--mode", "linear"], "task.mode 'full' there, 'linear' here")):
        code, out = cli("finetune", "--resume", "--out", run, *args)
        assert code == 2 and says in one_line_error(out), out
    assert (run / "config.json").read_text() == before
    code, out = cli("train", "--resume", "--out", run)                  # was "'task.name': unknown section"
    assert code == 2 and "is a glcm finetune run; continue it with glcm finetune --resume" in one_line_error(out)
    (tmp_path / "pre").mkdir()
    load_config(preset="smoke").save(tmp_path / "pre" / "config.json")
    code, out = cli("finetune", "--resume", "--out", tmp_path / "pre")  # was read as a ucf101 run
    assert code == 2 and "is a glcm train run, not a finetune run" in one_line_error(out)


def test_torchrun_two_processes_score_the_test_set_together(tmp_path):
    """DDP on gloo: each rank scores half of the test samples; rank 0 merges them and every
    rank ends together (a rank leaving early used to abort the run)."""
    import subprocess
    import sys
    shards = esc_like(tmp_path / "esc")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "cli.glcm_cli",
           "finetune", "--task", "esc50", "--shards", shards, "--init", "scratch", "--out", str(tmp_path / "run"),
           "--fold", "2", "--steps", "2", "--clips", "2", *map(str, FAST)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=Path(__file__).resolve().parents[1])
    assert res.returncode == 0, res.stderr[-2000:]
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["videos"] == 4 and m["fold"] == 2
    assert not list((tmp_path / "run").glob(".eval-*"))           # the ranks' share files are merged and gone


def test_probe_benches_share_their_options_and_refuse_bad_ones_in_one_line(tmp_path, monkeypatch, capsys):
    """bench/attention_pool.py and bench/finetune_pretraining.py parse the pretrained
    checkpoint, steps, clips and seeds with one parser; `--seeds 0,x` was a ValueError
    traceback after pretraining and a missing --checkpoint one after the shards were written."""
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "bench"))
    import attention_pool
    import finetune_pretraining as fp
    (tmp_path / "c.pt").write_bytes(b"")
    args = fp.probe_parser("x", "--steps", 60, "0").parse_args(["--seeds", "2, 3", "--checkpoint", str(tmp_path / "c.pt")])
    assert (args.seeds, args.steps, args.clips, args.checkpoint) == ([2, 3], 60, 64, str(tmp_path / "c.pt"))
    assert attention_pool.probe_parser is fp.probe_parser
    for bad, says in ((["--seeds", "0,x"], "expected whole numbers separated by commas"),
                      (["--steps", "0"], "expected a positive whole number"),
                      (["--checkpoint", str(tmp_path / "no.pt")], "is not a file")):
        with pytest.raises(SystemExit) as exc:
            fp.probe_parser("x", "--steps", 60, "0").parse_args(bad)
        assert exc.value.code == 2 and says in capsys.readouterr().err.strip().splitlines()[-1]
