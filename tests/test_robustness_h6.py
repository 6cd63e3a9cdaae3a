"""Small robustness holes: inspect's exit code for an unreadable tar, hidden folders are no
classes, list names match files in either Unicode normal form, huge config values and a
checkpoint whose saved config was edited are one line each."""
from __future__ import annotations

import io
import os
import tarfile
import unicodedata

import pytest
import torch
from typer.testing import CliRunner

from avprep.recipes import prepare_esc50, prepare_hmdb51, prepare_ucf101
from avprep.recipes.lrs2 import prepare_lrs2
from avprep.recipes.lrw import prepare_lrw
from avprep.tools import inspect_shards
from cli.avprep_cli import app
from cli.glcm_cli import app as glcm
from glcm import checkpoint as ckpt
from glcm.config import ConfigError, load_config, load_finetune_config
from glcm.finetune import init_model

NFC, NFD = "Caf\u00e9", unicodedata.normalize("NFD", "Caf\u00e9")


def write(path, text=""):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


# ---- 1. inspect ---------------------------------------------------------------------------

def test_inspect_exits_1_when_a_tar_cannot_be_read(tmp_path):
    """It printed `unreadable: ...` and exited 0, as if the counts were whole."""
    with tarfile.open(tmp_path / "a-000000.tar", "w") as tar:     # readable (its sample breaks a rule)
        info = tarfile.TarInfo("a0.json")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
    runner = CliRunner()
    assert runner.invoke(app, ["inspect", str(tmp_path)]).exit_code == 0
    (tmp_path / "a-000001.tar").write_bytes(b"garbage" * 100)
    res = runner.invoke(app, ["inspect", str(tmp_path)])
    assert res.exit_code == 1 and "2 shards" in res.output and "bad samples" in res.output
    assert not inspect_shards(str(tmp_path)).ok
    assert f"unreadable: {tmp_path / 'a-000001.tar'}: ReadError" in res.output, res.output


# ---- 2. hidden entries --------------------------------------------------------------------

def test_hidden_folders_are_no_lrw_words(tmp_path):
    """`.ipynb_checkpoints/train` became a word and shifted every label index."""
    data = tmp_path / "lipread_mp4"
    for word in (".ipynb_checkpoints", ".X", "ABOUT"):
        write(str(data / word / "train" / "ABOUT_00001.mp4"))
    write(str(data / ".DS_Store"))
    items = prepare_lrw(str(tmp_path))
    assert [(i.item_id, i.labels["label_index"]) for i in items] == [("ABOUT/train/ABOUT_00001", 0)]


def test_hidden_list_files_are_not_read(tmp_path):
    """macOS's `._<class>_test_split1.txt` was read as a split list of class `._<class>`."""
    write(str(tmp_path / "v" / "brush_hair" / "a.avi"))
    write(str(tmp_path / "s" / "brush_hair_test_split1.txt"), "a.avi 1\n")
    write(str(tmp_path / "s" / "._brush_hair_test_split1.txt"), "\x00\x05 junk\n")
    items = prepare_hmdb51(str(tmp_path / "v"), str(tmp_path / "s"))
    assert [(i.item_id, i.labels["label_index"], i.failed) for i in items] == [("brush_hair/a", 0, None)]


# ---- 3. Unicode normal forms --------------------------------------------------------------

def test_listed_names_match_files_in_the_other_normal_form(tmp_path):
    """Lists in NFC, files written in NFD (macOS): each was `missing` plus an `unlisted` file."""
    ucf = tmp_path / "ucf"
    write(str(ucf / "UCF-101" / NFD / f"v_{NFD}_g01_c01.avi"))
    write(str(ucf / "ucfTrainTestlist" / "classInd.txt"), f"1 {NFC}\n")
    write(str(ucf / "ucfTrainTestlist" / "trainlist01.txt"), f"{NFC}/v_{NFC}_g01_c01.avi 1\n")
    [item] = prepare_ucf101(str(ucf / "UCF-101"))
    assert not item.missing and item.failed is None and NFD in item.path     # opened by its own name

    esc = tmp_path / "esc"
    write(str(esc / "audio" / f"1-{NFD}-A-0.wav"))
    write(str(esc / "meta" / "esc50.csv"), "filename,fold,target,category,esc10,src_file,take\n"
                                           f"1-{NFC}-A-0.wav,1,0,dog,True,x,A\n")
    [item] = prepare_esc50(str(esc))
    assert not item.missing and item.failed is None

    lrs2 = tmp_path / "lrs2" / "mvlrs_v1"
    write(str(lrs2 / "main" / NFD / "00001.mp4"))
    write(str(lrs2 / "main" / NFD / "00001.txt"), "Text:  HELLO\n")
    write(str(lrs2 / "train.txt"), f"{NFC}/00001\n")
    [item] = prepare_lrs2(str(tmp_path / "lrs2"))
    assert not item.missing and item.extra["text"] == "HELLO" and NFD in item.path


# ---- 4. huge but legal config values ------------------------------------------------------

@pytest.mark.parametrize("pair, says", [
    ("model.width=100000", "model.width must be at most 1024"),           # was a 1 TB allocation traceback
    ("train.batch_size=100000", "train.batch_size must be at most 4096"),  # a MemoryError traceback / OOM kill
    ("data.frames=100000", "data.frames must be at most 1024"),
    ("model.blocks=2,2,2,1000", "model.blocks entries must be at most 64"),
])
def test_huge_config_values_are_one_line(pair, says):
    with pytest.raises(ConfigError, match=says):
        load_config(preset="smoke", overrides=[pair])


def test_huge_task_values_are_one_line():
    with pytest.raises(ConfigError, match="task.clips must be at most 100"):
        load_finetune_config(preset="smoke", overrides=["task.name=esc50", "task.clips=100000"])


# ---- 5. a checkpoint's saved config is validated --------------------------------------------

def test_an_edited_saved_config_is_one_line_naming_the_checkpoint(tmp_path):
    """width=-3 was exported as an encoder file (exit 0) and reached finetune --init without
    the checkpoint's name; an unknown key said nothing of the file in finetune."""
    edited, old = tmp_path / "edited.pt", tmp_path / "old.pt"
    torch.save({"format": ckpt.CHECKPOINT_FORMAT, "config": {"model": {"width": -3}}, "model": {}}, edited)
    torch.save({"format": ckpt.ENCODER_FORMAT, "name": "audio", "model_config": {"gone": 1}, "state": {}}, old)
    for path, why in ((edited, "model.width must be positive, got -3"), (old, "'model.gone': unknown field")):
        for load in (ckpt.load_training, init_model, lambda p: ckpt.load_encoder(p, "audio")):
            with pytest.raises(ckpt.CheckpointError) as err:
                load(str(path))
            assert str(err.value).startswith(f"{path}: its saved config cannot be used ({why}")
    res = CliRunner().invoke(glcm, ["export-encoder", "--checkpoint", str(edited), "--encoder", "audio",
                                    "--out", str(tmp_path / "e.pt")])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and str(edited) in res.output, res.output
    assert not (tmp_path / "e.pt").exists()
