"""glcm report's val column (hand-made metrics.json files, values known) and resuming a
`--folds all` finetune with `--resume --out OUT` alone (nothing retyped)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from glcm.report import write_report
from conftest import cli, one_line_error
from test_glcm_finetune import FAST, esc_like


def scored(folder: Path, **fields) -> Path:
    folder.mkdir(parents=True)
    m = {"task": "ucf101", "init": "pretrained", "init_path": "ckpt.pt", "mode": "linear", "features": "both",
         "metric": "top1", "paper": 91.2, "pictures": {}, **fields}
    (folder / "metrics.json").write_text(json.dumps(m))
    return folder


def table(text: str) -> dict[str, list[str]]:
    """Report rows by their first cell, each as its list of cells; the header row too."""
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("| ")]
    return {r[0]: r for r in rows}


def test_report_val_column(tmp_path):
    runs = tmp_path / "runs"
    for n, (test, val) in enumerate([(0.5, 0.25), (0.6, 0.5), (0.7, 0.75)], 1):
        scored(runs / f"s{n}", split=n, value=test, top1=test, val_top1=val)
    scored(runs / "no-val", task="esc50", features="audio", fold=2, value=0.4, top1=0.4)
    scored(runs / "lrs2", task="lrs2", metric="wer", value=0.3, wer=0.3, val_wer=0.35)
    write_report(sorted(runs.iterdir()), tmp_path / "r.md")
    rows = table((tmp_path / "r.md").read_text())
    header = rows["run"]
    assert header[7:10] == ["ours", "val", "paper"], header
    val, ours = header.index("val"), header.index("ours")
    assert [rows[f"[s{n}](runs/s{n})"][val] for n in (1, 2, 3)] == ["25.0", "50.0", "75.0"]
    assert rows["[no-val](runs/no-val)"][val] == ""                     # no --val-shards: an empty cell
    assert rows["[lrs2](runs/lrs2)"][ours - 1:val + 1] == ["wer (lower is better)", "30.0", "35.0"]
    assert rows["(mean)"][ours] == "60.0" and rows["(mean)"][val] == "50.0"    # (25 + 50 + 75) / 3
    assert all(len(r) == len(header) for r in rows.values())


def test_mean_row_leaves_val_empty_unless_every_part_has_one(tmp_path):
    runs = tmp_path / "runs"
    scored(runs / "s1", split=1, value=0.5, top1=0.5, val_top1=0.9)
    scored(runs / "s2", split=2, value=0.5, top1=0.5)
    scored(runs / "s3", split=3, value=0.8, top1=0.8, val_top1=0.9)
    write_report(sorted(runs.iterdir()), tmp_path / "r.md")
    rows = table((tmp_path / "r.md").read_text())
    val = rows["run"].index("val")
    assert rows["(mean)"][val] == "" and rows["(mean)"][rows["run"].index("ours")] == "60.0"


def test_bad_metrics_files_are_listed_and_bad_out_paths_are_one_line(tmp_path):
    """A hand-edited metrics.json (a string value, runs as a list, not JSON) used to end the
    report in a traceback; a missing --out folder too."""
    runs = tmp_path / "runs"
    scored(runs / "good", split=1, value=0.5, top1=0.5)
    scored(runs / "text-value", split=2, value="0.5")
    scored(runs / "runs-list", split="all", value=0.5, runs=["split-1"])
    (runs / "not-json").mkdir()
    (runs / "not-json" / "metrics.json").write_text("{")
    code, out = cli("report", *sorted(runs.iterdir()), "--out", tmp_path / "new" / "r.md")
    assert code == 0, out
    text = (tmp_path / "new" / "r.md").read_text()
    assert [r for r in table(text) if r.startswith("[")] == ["[good](../runs/good)"]
    assert f"Not scored (unreadable metrics.json): {runs / 'not-json'}, {runs / 'runs-list'}, " \
           f"{runs / 'text-value'}" in text
    code, out = cli("report", runs / "good", "--out", runs)
    assert code == 2 and "is a folder; give the report's file name" in one_line_error(out)
    code, out = cli("report", tmp_path / "none", runs / "not-json", "--out", tmp_path / "r.md")
    assert code == 2 and "(not a folder: 1, unreadable metrics.json: 1)" in one_line_error(out)


def read(run: Path, part: str = "") -> dict:
    return json.loads((run / part / "metrics.json").read_text())


def test_folds_all_resumes_with_nothing_retyped(tmp_path):
    shards, run = esc_like(tmp_path / "esc"), tmp_path / "esc-run"
    code, out = cli("finetune", "--task", "esc50", "--shards", shards, "--init", "scratch", "--out", run,
                    "--folds", "all", "--steps", 1, "--clips", 1, "--val-shards", shards, *FAST)
    assert code == 0, out
    assert json.loads((run / "config.json").read_text())["task"]["all_parts"] is True
    kept = {f: (run / f"fold-{f}" / "metrics.json").read_bytes() for f in (1, 2, 3)}
    # fold 4 trained but was not scored, fold 5 never started (as if stopped there)
    (run / "fold-4" / "metrics.json").unlink()
    for p in sorted((run / "fold-5").rglob("*"), reverse=True):
        p.rmdir() if p.is_dir() else p.unlink()
    (run / "metrics.json").unlink()

    code, out = cli("finetune", "--resume", "--out", run, "--fold", 2)       # one part of an all-parts run
    assert code == 2 and "resume it without --split/--fold" in one_line_error(out), out
    code, out = cli("finetune", "--resume", "--out", run)
    assert code == 0, out
    assert {f: (run / f"fold-{f}" / "metrics.json").read_bytes() for f in (1, 2, 3)} == kept   # finished: kept
    folds = [read(run, f"fold-{f}") for f in range(1, 6)]
    assert [(m["fold"], m["steps"], m["videos"], m["val_videos"]) for m in folds] == [(f, 1, 4, 20) for f in range(1, 6)]
    fold4 = [json.loads(line) for line in (run / "fold-4" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in fold4 if "loss" in r] == [1]             # scored from its checkpoint, not retrained
    top = read(run)
    assert top["fold"] == "all" and top["folds"] == {str(f): folds[f - 1]["top1"] for f in range(1, 6)}
    assert top["value"] == pytest.approx(sum(m["top1"] for m in folds) / 5)
    assert top["val_top1"] == pytest.approx(sum(m["val_top1"] for m in folds) / 5)


def test_a_part_is_finished_when_scored_at_its_step_count(tmp_path):
    """More steps on --resume (--set train.steps=N) make every part unfinished again."""
    from glcm.config import FinetuneConfig
    from glcm.finetune import finished_part
    part = FinetuneConfig()
    part.train.out, part.train.steps = str(tmp_path), 4
    assert finished_part(part) is None                                  # no metrics.json
    (tmp_path / "metrics.json").write_text(json.dumps({"top1": 0.5, "steps": 4}))
    assert finished_part(part) == {"top1": 0.5, "steps": 4}
    part.train.steps = 6
    assert finished_part(part) is None
    (tmp_path / "metrics.json").write_text("{truncated")
    assert finished_part(part) is None


def test_a_new_folds_all_run_into_a_used_folder_is_refused(tmp_path):
    shards, run = esc_like(tmp_path / "esc"), tmp_path / "esc-run"
    (run / "fold-1").mkdir(parents=True)
    (run / "fold-1" / "checkpoint.pt").write_bytes(b"x")
    (run / "config.json").write_text("{}")
    code, out = cli("finetune", "--task", "esc50", "--shards", shards, "--init", "scratch", "--out", run,
                    "--folds", "all", "--steps", 1, *FAST)
    assert code == 2 and "fold-1 already holds a checkpoint; add --resume" in one_line_error(out), out
    assert (run / "config.json").read_text() == "{}"                   # nothing overwritten


def test_a_run_never_lands_in_the_folder_of_another_kind_of_run(tmp_path, monkeypatch):
    """--folds all into a single run's folder used to replace its config.json and
    metrics.json; a single run into a --folds all folder replaced the mean."""
    import glcm.finetune as gf
    monkeypatch.setattr(gf, "FinetuneTrainer", lambda *a, **k: pytest.fail("training started"))
    shards, single, every = esc_like(tmp_path / "esc"), tmp_path / "single", tmp_path / "every"
    single.mkdir()
    (single / "checkpoint.pt").write_bytes(b"x")
    (single / "config.json").write_text("{}")
    code, out = cli("finetune", "--task", "esc50", "--shards", shards, "--init", "scratch", "--out", single,
                    "--folds", "all", *FAST)
    assert code == 2 and "holds a single run (checkpoint.pt); give --folds all its own --out" in one_line_error(out)
    assert (single / "config.json").read_text() == "{}"
    every.mkdir()
    (every / "config.json").write_text(json.dumps({"task": {"name": "esc50", "all_parts": True}}))
    code, out = cli("finetune", "--task", "esc50", "--shards", shards, "--init", "scratch", "--out", every,
                    "--fold", 2, *FAST)
    assert code == 2 and "holds a run of every split/fold; give this run another --out" in one_line_error(out)
