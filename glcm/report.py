"""`glcm report`: every finetuning run's metrics.json side by side in one Markdown table,
with the paper's number and links to the run's pictures (relative to the report).

A `--split all` / `--folds all` folder gives its mean row and a row per part; separate
runs of all three splits (or five folds) of one task, init, mode and features also get a
mean row (the protocols' figure). Folders without metrics.json are listed as not scored.
The val column is the top-1 on --val-shards (a mean row: the parts' mean when all have one).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from avprep.fsio import OutputError, atomic_write, make_output_dir
from glcm import metrics
from glcm.config import PAPER_NUMBERS, TASKS, ConfigError

PARTS = {"split": (1, 2, 3), "fold": (1, 2, 3, 4, 5)}
HEADER = ("run", "task", "init", "mode", "features", "split/fold", "metric", "ours", "val", "paper", "input, pool",
          "pictures")


def read_metrics(folder: Path) -> dict | None:
    m = metrics_file(folder)
    return m if isinstance(m, dict) else None


def metrics_file(folder: Path) -> dict | str:
    """A run's metrics.json, or why it gives no row: none there, or one that is not JSON or
    whose fields are not the types the table reads (hand-edited, another tool's)."""
    if not folder.is_dir():
        return "not a folder"
    try:
        data = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "no metrics.json"
    except (OSError, ValueError):          # a folder named metrics.json, not UTF-8, not JSON
        return "unreadable metrics.json"
    return data if well_formed(data) else "unreadable metrics.json"


def well_formed(m) -> bool:
    number = (int, float)
    return (isinstance(m, dict) and isinstance(m.get("task"), str) and isinstance(m.get("value"), number)
            and not isinstance(m["value"], bool)
            and all(isinstance(m.get(k, ""), (int, str)) for k in PARTS)
            and all(isinstance(m.get(k, {}), dict) and all(isinstance(v, str) for v in m.get(k, {}).values())
                    for k in ("runs", "pictures")))


def part_of(m: dict) -> tuple[str, object]:
    for protocol in PARTS:
        if protocol in m:
            return protocol, m[protocol]
    return "", ""


def collect(folders: list[Path]) -> tuple[list[tuple[Path, dict]], dict[str, list[Path]]]:
    """(run folder, metrics) for each scored run, parts of an `all` run after it; the
    unscored folders by reason."""
    runs, unscored = [], {}
    for folder in folders:
        m = metrics_file(folder)
        if not isinstance(m, dict):
            unscored.setdefault(m, []).append(folder)
            continue
        runs.append((folder, m))
        for sub in (m.get("runs") or {}).values():
            sm = read_metrics(folder / sub)
            if sm is not None:
                runs.append((folder / sub, sm))
    return runs, unscored


def mean_rows(runs: list[tuple[Path, dict]]) -> list[tuple[Path | None, dict]]:
    """A mean row for each group of separate runs that covers every split (or fold)."""
    groups: dict[tuple, dict] = {}
    for folder, m in runs:
        protocol, number = part_of(m)
        if protocol and isinstance(number, int) and "runs" not in m:
            key = (m["task"], str(m.get("init_path")), str(m.get("mode")), str(m.get("features")), protocol,
                   folder.parent)
            groups.setdefault(key, {})[number] = m
    out = []
    for (task, _, mode, features, protocol, _), parts in groups.items():
        if sorted(parts) == list(PARTS[protocol]) and not any(m.get(protocol) == "all" for _, m in runs
                                                              if m["task"] == task):
            first = next(iter(parts.values()))
            mean = metrics.mean_of([p["value"] for p in parts.values()])
            row = {**first, protocol: f"mean of {len(parts)}", "value": mean, "pictures": {}}
            row.pop("val_top1", None)
            if all("val_top1" in p for p in parts.values()):
                row["val_top1"] = metrics.mean_of([p["val_top1"] for p in parts.values()])
            out.append((None, row))
    return out


def link(folder: Path | None, name: str, base: Path) -> str:
    if folder is None or not (folder / name).exists():
        return ""
    return f"[{Path(name).stem}]({os.path.relpath(folder / name, base)})"


def percent(value) -> str:
    """A fraction as a percent cell; empty when absent (a run without --val-shards)."""
    return f"{100 * value:.1f}" if isinstance(value, (int, float)) else ""


def input_pool(m: dict) -> str:
    """What the visual head saw (crops / full-frames) and how it pooled over space (mean /
    attention) in an lrw / dfdc run, so a crop run and an attention run read side by side;
    "" for the other tasks and older runs."""
    return ", ".join(str(m[k]) for k in ("input", "pool") if m.get(k))


def row(folder: Path | None, m: dict, base: Path) -> str:
    protocol, number = part_of(m)
    paper = PAPER_NUMBERS.get(m["task"])
    pictures = " ".join(filter(None, (link(folder, p, base) for p in (m.get("pictures") or {}).values())))
    name = f"[{folder.name}]({os.path.relpath(folder, base)})" if folder is not None else "(mean)"
    metric = TASKS[m["task"]].metric if m["task"] in TASKS else m.get("metric", "")
    metric = "wer (lower is better)" if metric == "wer" else metric          # LRS2: word error rate
    cells = (name, m["task"], m.get("init", ""), m.get("mode", ""), m.get("features", ""),
             f"{protocol} {number}".strip(), metric, f"{100 * m['value']:.1f}", percent(m.get("val_top1", m.get("val_wer"))),
             f"{paper:.1f}" if paper is not None else "", input_pool(m), pictures)
    return "| " + " | ".join(str(c) for c in cells) + " |"


def render(runs: list[tuple[Path | None, dict]], unscored: dict[str, list[Path]], base: Path) -> str:
    lines = ["# glcm finetuning report", "",
             "ours and paper in percent (top-1 video accuracy; DFDC: video ROC AUC; LRS2: WER); val: top-1 "
             "on --val-shards (LRS2: WER; empty: the run had none).", "",
             "| " + " | ".join(HEADER) + " |", "|" + " --- |" * len(HEADER)]
    lines += [row(folder, m, base) for folder, m in runs]
    for reason, folders in unscored.items():
        lines += ["", f"Not scored ({reason}): " + ", ".join(str(f) for f in folders)]
    return "\n".join(lines) + "\n"


def write_report(folders: list[Path], out: Path) -> int:
    """Write the report; return the number of table rows."""
    runs, unscored = collect([Path(f) for f in folders])
    if not runs:
        why = ", ".join(f"{reason}: {len(found)}" for reason, found in unscored.items())
        raise ConfigError(f"none of the {len(folders)} folders holds a metrics.json of glcm finetune ({why}); "
                          "give run folders (glcm finetune --out)")
    if out.is_dir():
        raise OutputError(f"--out {out} is a folder; give the report's file name, e.g. {out / 'report.md'}")
    make_output_dir(out.parent)
    table = runs + mean_rows(runs)
    base = out.resolve().parent
    try:
        atomic_write(out, render([(f.resolve() if f else None, m) for f, m in table], unscored, base))
    except FileNotFoundError as exc:          # atomic_writer passes this one on (e.g. under /proc)
        raise OutputError(f"cannot write {out}: {exc.strerror}; choose another --out") from None
    return len(table)
