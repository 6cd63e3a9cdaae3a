"""LRS2 sentence lip reading: the recipe's transcripts and curriculum cuts, CTC learning a
synthetic sentence task (avprep/testing/sentences.py), and the LRS2 layout built from real
GRID clips run end to end: layout -> `avprep build lrs2` -> `glcm finetune --task lrs2` ->
metrics.json / predictions.csv -> `glcm report`."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from avprep.recipes.lrs2 import prepare_lrs2
from avprep.testing import sentences
from conftest import MEDIA, cli, one_line_error
from glcm import ctc

# GRID file names spell their sentences (../shared/media/SOURCES.md); swwp2s.align times the words.
GRID = {"bbaf2n": "BIN BLUE AT F TWO NOW", "lbax4n": "LAY BLUE AT X FOUR NOW", "swwp2s": "SET WHITE WITH P TWO SOON"}
needs_media = pytest.mark.skipif(not (MEDIA / "grid" / "swwp2s.align").is_file(), reason="../shared/media is absent")


def _write(path: Path, text: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _align_rows(path: Path) -> list[str]:
    """GRID .align (start end word, in 1/1000 of a 25 fps frame) -> LRS2 `WORD START END ASDSCORE` rows."""
    rows = []
    for line in path.read_text().split("\n"):
        if line.strip() and line.split()[2] != "sil":
            start, end, word = line.split()
            rows.append(f"{word.upper()} {int(start) / 25000:.3f} {int(end) / 25000:.3f} 5.0")
    return rows


def make_lrs2_layout(root: Path, media: Path | None) -> None:
    """mvlrs_v1 from GRID clips: main train bbaf2n, main test lbax4n, pretrain swwp2s with its
    real word timings, and a main train clip whose transcript is empty."""
    data = root / "mvlrs_v1"
    clips = {("main", "6330311066473698535/00011"): "bbaf2n", ("main", "6330311066473698535/00012"): "lbax4n",
             ("pretrain", "5540794146462098424/00002"): "swwp2s", ("main", "5535415699068794046/00001"): "bbaf2n"}
    for (subset, clip), name in clips.items():
        mp4 = data / subset / f"{clip}.mp4"
        mp4.parent.mkdir(parents=True, exist_ok=True)
        if media is not None:
            shutil.copy(media / "grid" / f"{name}.mpg", mp4)
        else:
            mp4.write_bytes(b"")
    _write(data / "main" / "6330311066473698535" / "00011.txt", f"Text:  {GRID['bbaf2n']}\nConf:  5\n")
    _write(data / "main" / "6330311066473698535" / "00012.txt", f"Text:  {GRID['lbax4n']}\nConf:  5\n")
    _write(data / "main" / "5535415699068794046" / "00001.txt", "Text:  \nConf:  3\n")
    table = _align_rows(media / "grid" / "swwp2s.align") if media is not None else [
        "SET 0.490 0.770 5.0", "WHITE 0.770 1.090 5.0", "WITH 1.090 1.220 5.0", "P 1.220 1.440 5.0",
        "TWO 1.440 1.730 5.0", "SOON 1.730 2.210 5.0"]
    _write(data / "pretrain" / "5540794146462098424" / "00002.txt",
           f"Text:  {GRID['swwp2s']}\nConf:  4\n\nWORD START END ASDSCORE\n" + "\n".join(table) + "\n")
    _write(root / "train.txt", "6330311066473698535/00011\n5535415699068794046/00001 NF\n")
    _write(root / "test.txt", "6330311066473698535/00012\n")
    _write(root / "pretrain.txt", "5540794146462098424/00002\n")


def test_recipe_cuts_timed_pretrain_utterances_and_fails_empty_transcripts(tmp_path):
    make_lrs2_layout(tmp_path, None)
    whole = {i.item_id: i for i in prepare_lrs2(str(tmp_path))}
    empty = whole["main/5535415699068794046/00001"]
    assert empty.failed[0] == "empty_transcript" and not empty.missing
    assert whole["pretrain/5540794146462098424/00002"].extra["text"] == GRID["swwp2s"]
    cut = [i for i in prepare_lrs2(str(tmp_path), max_words=4) if i.split == "pretrain"]
    assert [i.item_id for i in cut] == ["pretrain/5540794146462098424/00002@0", "pretrain/5540794146462098424/00002@4"]
    assert [(i.extra["text"], i.start, i.end) for i in cut] == [("SET WHITE WITH P", 0.49, 1.44),
                                                               ("TWO SOON", 1.44, 2.21)]
    assert cut[1].extra["words"] == [["TWO", 0.0, 0.29], ["SOON", 0.29, 0.77]]    # relative to the cut
    assert cut[1].extra["span"] == [1.44, 2.21] and cut[1].extra["utterance"] == "pretrain/5540794146462098424/00002"
    with pytest.raises(Exception, match="--max-words"):
        prepare_lrs2(str(tmp_path), max_words=-1)


def _finetune_args(shards, out, *extra):
    return ("finetune", "--task", "lrs2", "--shards", shards, "--init", "scratch", "--out", out, "--preset", "smoke",
            *extra)


def test_ctc_learns_synthetic_sentences_and_skips_bad_samples(tmp_path):
    root = tmp_path / "sent"
    bad = sentences.bad_samples(16)
    sentences.write_shards(list(bad.values()) + sentences.make_samples(256, 1, "train", 16), str(root), "train", 130)
    sentences.write_shards(sentences.make_samples(24, 2, "test", 16), str(root), "test")
    out = tmp_path / "run"
    code, output = cli(*_finetune_args(root / "train-{000000..000001}.tar", out, "--test-shards",
                                       root / "test-000000.tar", "--steps", 100, "--batch-size", 8,
                                       "--set", "train.lr=2e-2", "--set", "train.warmup_steps=5",
                                       "--set", "task.dropout=0", "--set", "task.temporal_width=32",
                                       "--set", "data.crop=16", "--set", "model.blocks=1,0,0,0",
                                       "--set", "model.output_stride=4", "--set", "model.width=8",
                                       "--set", "task.max_frames=60",
                                       "--set", "model.local_width=8", "--set", "train.epoch_batches=50"))
    assert code == 0, output
    m = json.loads((out / "metrics.json").read_text())
    # chance is a WER of ~100 % (random letters); a model that reads the colours gets far below it
    assert m["wer"] < 0.5 and m["greedy_wer"] < 0.5 and m["cer"] < 0.25, m
    assert m["utterances"] == 24 and m["metric"] == "wer" and m["value"] == m["wer"]
    assert set(m["train_skipped"]) == set(bad)                         # each bad sample skipped with its reason
    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:6] == ["id", "reference", "greedy", "beam", "wer", "cer"]
    refs, beams = [r["reference"] for r in rows], [r["beam"] for r in rows]
    assert ctc.wer(refs, beams) == pytest.approx(m["wer"])              # metrics.json = predictions.csv
    assert float(rows[0]["wer"]) == pytest.approx(ctc.wer([refs[0]], [beams[0]]), abs=1e-4)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert log[-1]["loss"] < 0.5 * log[0]["loss"] and (out / "curves.png").stat().st_size > 0


def test_lrs2_on_shards_without_transcripts_is_one_line(tmp_path):
    bad = sentences.bad_samples(16)
    sentences.write_shards([bad["no_transcript"]], str(tmp_path), "plain")
    code, output = cli(*_finetune_args(tmp_path / "plain-000000.tar", tmp_path / "run"))
    assert code == 2 and "carry no transcripts" in one_line_error(output) and "avprep build lrs2" in output
    sentences.write_shards(sentences.make_samples(2, 1, "test", 16), str(tmp_path), "tested")
    code, output = cli(*_finetune_args(tmp_path / "tested-000000.tar", tmp_path / "run"))
    assert code == 2 and "no transcribed sample with split train (splits present: test)" in one_line_error(output)
    code, output = cli(*_finetune_args(tmp_path / "tested-000000.tar", tmp_path / "run", "--split", "1"))
    assert code == 2 and "lrs2 has no --split" in one_line_error(output)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


@needs_media
def test_grid_lrs2_layout_end_to_end(tmp_path):
    from avprep.format import parse_meta
    from cli.avprep_cli import app as avprep
    from glcm.sentence import sample_text
    root, shards, run = tmp_path / "lrs2", tmp_path / "shards", tmp_path / "run"
    make_lrs2_layout(root, MEDIA)
    res = CliRunner().invoke(avprep, ["build", "lrs2", str(root), "--out", str(shards), "--max-words", "3",
                                      "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "5 inputs: 4 ok, 1 failed" in res.output and "empty_transcript" in (shards / "failures.csv").read_text()
    metas = {m["item_id"]: m for m in (json.loads(line) for line in _jsons(shards))}
    assert sorted(metas) == ["main/6330311066473698535/00011", "main/6330311066473698535/00012",
                             "pretrain/5540794146462098424/00002@0", "pretrain/5540794146462098424/00002@3"]
    first, second = metas["pretrain/5540794146462098424/00002@0"], metas["pretrain/5540794146462098424/00002@3"]
    assert (first["extra"]["text"], second["extra"]["text"]) == ("SET WHITE WITH", "P TWO SOON")
    # each cut holds frames up to its last word's end (0.49-1.22 s and 1.22-2.21 s at 25 fps);
    # the text a sample trains on is the timed words inside the frames it holds
    for meta, span in ((first, 0.73), (second, 0.99)):
        assert abs(meta["first_frame"] + meta["num_frames"] - span * 25) <= 2 and meta["end_time"] <= span + 0.04
        said = sample_text(parse_meta(json.dumps(meta).encode())).split()
        assert said == meta["extra"]["text"].split()[-len(said):] and len(said) >= 2
    assert first["cut_start"] == 0.49 and metas["main/6330311066473698535/00012"]["extra"]["text"] == GRID["lbax4n"]
    code, output = cli(*_finetune_args(shards, run, "--steps", 3, "--batch-size", 2,
                                       "--set", "task.train_splits=pretrain,train", "--set", "data.resize_short=32"))
    assert code == 0, output
    m = json.loads((run / "metrics.json").read_text())
    assert m["task"] == "lrs2" and m["utterances"] == 1 and 0 <= m["cer"] and m["wer"] >= 0
    with open(run / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["id"], r["reference"]) for r in rows] == [("main/6330311066473698535/00012", GRID["lbax4n"])]
    assert float(rows[0]["wer"]) == pytest.approx(ctc.wer([GRID["lbax4n"]], [rows[0]["beam"]]), abs=1e-4)
    code, output = cli("report", run, "--out", tmp_path / "report.md")
    assert code == 0, output
    line = next(r for r in (tmp_path / "report.md").read_text().splitlines() if "| lrs2 |" in r)
    assert "wer (lower is better)" in line and f"{100 * m['wer']:.1f}" in line


def _jsons(folder: Path):
    import tarfile
    for tar in sorted(folder.glob("*.tar")):
        with tarfile.open(tar) as t:
            for member in t:
                if member.name.endswith(".json"):
                    yield t.extractfile(member).read()


def test_bench_times_the_ctc_sentence_model():
    import torch

    from glcm.config import smoke
    from glcm.sentence import sentence_rate
    cfg = smoke()
    cfg.data.frames, cfg.train.batch_size = 8, 2
    rate, frames = sentence_rate(cfg, torch.device("cpu"), steps=1, warmup=0)
    assert frames == 8 and 0 < rate < 1e6
