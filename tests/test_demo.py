"""The demo's downstream step (cli/demo.py, `avprep demo` after pretraining) at small size,
on conftest's session GLCM run: a generated ESC-50-layout corpus through `avprep build
esc50`, linear probes of the pretrained and of random encoders (`glcm finetune`), `glcm
report`, and the printed figure. The whole demo (pretraining included) is `./run.sh demo`."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from avprep.config import ConfigError
from avprep.testing.downstream import COLOURS
from cli.demo import downstream_demo
from test_cli import run

CLIPS, STEPS = 20, 8


def test_downstream_step_builds_probes_reports_and_prints_the_figure(avcorr_run, tmp_path):
    lines: list[str] = []
    found = downstream_demo(str(tmp_path), str(avcorr_run.checkpoint), CLIPS, STEPS, 1, lines.append)
    text = "\n".join(lines)
    assert f"{CLIPS} inputs: {CLIPS} ok, 0 failed" in text and f"audio-only): {CLIPS}" in text, text
    runs = {init: json.loads((tmp_path / f"esc50-{init}" / "metrics.json").read_text()) for init in ("pretrained", "scratch")}
    for init, m in runs.items():
        assert (m["task"], m["init"], m["mode"], m["fold"], m["steps"]) == ("esc50", init, "linear", 1, STEPS)
        assert m["videos"] == CLIPS // 5                                 # fold 1 = every 5th sound
        assert set(m["per_class"]) <= set(COLOURS)
    figure = re.search(r"pretrained (\d+\.\d)% vs scratch (\d+\.\d)% .*; report (\S+)$", lines[-1])
    assert figure, lines[-1]
    assert [float(figure[1]), float(figure[2])] == [round(100 * runs[k]["top1"], 1) for k in ("pretrained", "scratch")]
    assert figure[3] == found["report"] == str(tmp_path / "report.md")
    report = Path(found["report"]).read_text()
    assert "| [esc50-pretrained](esc50-pretrained) | esc50 | pretrained | linear | audio | fold 1 | top1 |" in report
    assert "| [esc50-scratch](esc50-scratch) | esc50 | scratch | linear | audio | fold 1 | top1 |" in report


@pytest.mark.parametrize("args,says", [
    (["--videos", "0"], "error: --videos 0: must be 1 or more"),
    (["--train-steps", "-1"], "error: --train-steps -1: must be 0 (skip) or more"),
    (["--workers", "0"], "error: workers must be >= 1, got 0"),
])
def test_demo_refuses_bad_values_before_any_work(tmp_path, args, says):
    code, out = run("demo", *args, "--out", tmp_path / "demo")
    assert code == 2 and out.startswith(says) and out.count("\n") == 1, out
    assert not (tmp_path / "demo").exists()


def test_demo_out_a_file_is_one_line(tmp_path):
    (tmp_path / "f").write_text("mine")
    code, out = run("demo", "--out", tmp_path / "f")
    assert code == 2 and out == f"error: output path {tmp_path / 'f'} is a file, not a folder; give a folder " \
                                "for --out\n", out
    assert (tmp_path / "f").read_text() == "mine"


def test_demo_refuses_negative_probe_steps(tmp_path):
    code, out = run("demo", "--probe-steps", "-1", "--out", tmp_path / "demo")
    assert code == 2 and "error: --probe-steps -1" in out and not (tmp_path / "demo").exists(), out


def test_a_corpus_made_with_other_settings_is_not_reused(tmp_path, monkeypatch):
    """The demo reused OUT/corpus whenever train.csv existed, even one made with another
    --videos; now it records what it was made with and refuses another (one line, rc 2)."""
    import cli.demo as demo
    made = []

    def fake(kind, name):
        def make(root, n, **kw):
            made.append((kind, n, kw["seed"]))
            os.makedirs(root, exist_ok=True)
            Path(root, name).write_text("x\n")
        return make

    monkeypatch.setattr(demo, "make_kinetics_corpus", fake("kinetics", "train.csv"))
    monkeypatch.setattr(demo, "make_avspeech_corpus", fake("avspeech", "avspeech_train.csv"))
    corpus = tmp_path / "demo" / "corpus"
    demo.make_demo_corpus(str(corpus), 2)
    demo.make_demo_corpus(str(corpus), 2)                        # the same settings: reused
    assert made == [("kinetics", 2, 0), ("avspeech", 2, 1)]
    with pytest.raises(ConfigError, match="generated with --videos 2, not --videos 3: rerun with the same"):
        demo.make_demo_corpus(str(corpus), 3)
    code, out = run("demo", "--videos", "3", "--out", tmp_path / "demo")
    assert code == 2 and out.startswith(f"error: {corpus} was generated with --videos 2") and out.count("\n") == 1, out
    assert sorted(os.listdir(tmp_path / "demo")) == ["corpus"] and len(made) == 2
    (corpus / demo.MADE_WITH).unlink()                           # an older demo's corpus: no record
    with pytest.raises(ConfigError, match="holds a corpus of an older demo"):
        demo.make_demo_corpus(str(corpus), 2)
