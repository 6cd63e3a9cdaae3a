"""LRW, LRS2 and DFDC recipes on tiny corpora laid out as distributed."""
import json
import os

import pytest

from avprep.recipes.dfdc import prepare_dfdc
from avprep.recipes.lrs2 import parse_transcript, prepare_lrs2
from avprep.recipes.lrw import parse_duration, prepare_lrw


def _touch(path, text=""):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


LRW_TXT = "Text: ABOUT\nConf: 3\n\nDuration: 0.53 seconds\n"


def test_lrw_labels_splits_durations_and_missing(tmp_path):
    root = tmp_path / "lipread_mp4"
    for word in ("WORLD", "ABOUT"):
        for split, num in (("train", 1), ("val", 2), ("test", 3)):
            stem = f"{word}_{num:05d}"
            _touch(str(root / word / split / f"{stem}.mp4"))
            _touch(str(root / word / split / f"{stem}.txt"), LRW_TXT.replace("0.53", f"0.{num}"))
    os.remove(root / "WORLD" / "val" / "WORLD_00002.mp4")   # listed by its .txt only
    _touch(str(root / "WORLD" / "train" / "notes.md"))      # not a clip
    items = prepare_lrw(str(tmp_path))                      # the parent of lipread_mp4 works too
    assert [i.item_id for i in items] == [f"{w}/{s}/{w}_0000{n}" for w in ("ABOUT", "WORLD")
                                          for s, n in (("train", 1), ("val", 2), ("test", 3))]
    about, world = items[0], items[3]
    assert about.labels == {"label": "ABOUT", "label_index": 0}
    assert world.labels == {"label": "WORLD", "label_index": 1}
    assert [i.split for i in items[:3]] == ["train", "val", "test"]
    assert items[2].extra["word_duration"] == pytest.approx(0.3)
    missing = [i for i in items if i.missing]
    assert [i.item_id for i in missing] == ["WORLD/val/WORLD_00002"]
    assert all(i.source == "lrw" and i.path.endswith(".mp4") for i in items)
    assert prepare_lrw(str(root)) == items


def test_lrw_duration_regex_not_line_number():
    assert parse_duration("Duration: 0.53 seconds") == pytest.approx(0.53)
    assert parse_duration("Text: X\n\n\nsomething\nDuration:1.2 seconds\n") == pytest.approx(1.2)
    assert parse_duration("Text: X\n") is None


def test_lrw_missing_root_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        prepare_lrw(str(tmp_path / "nope"))


def _lrs2_tree(tmp_path):
    data = tmp_path / "mvlrs_v1"
    _touch(str(data / "main" / "5535415699068794046" / "00001.mp4"))
    _touch(str(data / "main" / "5535415699068794046" / "00001.txt"), "Text:  HELLO THERE\nConf:  5\n")
    _touch(str(data / "main" / "6330311066473698535" / "00011.mp4"))
    _touch(str(data / "main" / "6330311066473698535" / "00011.txt"), "Text:  GOOD MORNING\nConf:  4\n")
    _touch(str(data / "pretrain" / "5540794146462098424" / "00002.mp4"))
    _touch(str(data / "pretrain" / "5540794146462098424" / "00002.txt"),
           "Text:  IT WAS\nConf:  3\n\nWORD START END ASDSCORE\nIT 0.10 0.25 1.9\nWAS 0.25 0.60 2.4\n")
    _touch(str(tmp_path / "train.txt"), "5535415699068794046/00001\n")
    _touch(str(tmp_path / "val.txt"), "")
    _touch(str(tmp_path / "test.txt"), "6330311066473698535/00011 NF\n6330311066473698535/00012 MV\n")
    _touch(str(tmp_path / "pretrain.txt"), "5540794146462098424/00002\n")
    return data


def test_lrs2_split_lists_transcripts_and_missing(tmp_path):
    _lrs2_tree(tmp_path)
    items = prepare_lrs2(str(tmp_path))
    by_id = {i.item_id: i for i in items}
    assert list(by_id) == ["pretrain/5540794146462098424/00002", "main/5535415699068794046/00001",
                           "main/6330311066473698535/00011", "main/6330311066473698535/00012"]
    pre = by_id["pretrain/5540794146462098424/00002"]
    assert pre.split == "pretrain" and pre.extra["text"] == "IT WAS"
    assert pre.extra["words"] == [["IT", 0.10, 0.25], ["WAS", 0.25, 0.60]]
    assert by_id["main/5535415699068794046/00001"].extra["text"] == "HELLO THERE"
    assert by_id["main/6330311066473698535/00011"].split == "test"
    assert [i.missing for i in items] == [False, False, False, True]
    assert prepare_lrs2(str(tmp_path), splits=("test",))[0].item_id == "main/6330311066473698535/00011"


def test_lrs2_without_split_lists_scans_folders(tmp_path):
    data = _lrs2_tree(tmp_path)
    for name in ("train", "val", "test", "pretrain"):
        os.remove(tmp_path / f"{name}.txt")
    items = prepare_lrs2(str(data))
    assert [(i.item_id, i.split) for i in items] == [
        ("pretrain/5540794146462098424/00002", "pretrain"),
        ("main/5535415699068794046/00001", None), ("main/6330311066473698535/00011", None)]


def test_lrs2_transcript_parser_and_bad_split(tmp_path):
    assert parse_transcript("Text:  A B C\nConf:  2\n") == {"text": "A B C"}
    with pytest.raises(ValueError):
        prepare_lrs2(str(_lrs2_tree(tmp_path)), splits=("dev",))


def test_dfdc_labels_originals_parts_and_missing(tmp_path):
    for part, meta in ((10, {"b.mp4": {"label": "REAL", "split": "train"}}),
                       (2, {"x.mp4": {"label": "FAKE", "split": "train", "original": "y.mp4"},
                            "y.mp4": {"label": "REAL", "split": "train"}})):
        folder = tmp_path / f"dfdc_train_part_{part}"
        _touch(str(folder / "metadata.json"), json.dumps(meta))
        for name in meta:
            if name != "y.mp4":
                _touch(str(folder / name))
    items = prepare_dfdc(str(tmp_path))
    assert [i.item_id for i in items] == ["dfdc_train_part_2/x.mp4", "dfdc_train_part_2/y.mp4",
                                          "dfdc_train_part_10/b.mp4"]
    fake, real = items[0], items[1]
    assert fake.labels == {"label": "FAKE", "label_index": 1}
    assert fake.extra["original"] == "dfdc_train_part_2/y.mp4"
    assert real.labels["label_index"] == 0 and "original" not in real.extra
    assert [i.missing for i in items] == [False, True, False]
    assert prepare_dfdc(str(tmp_path / "dfdc_train_part_10"))[0].item_id == "dfdc_train_part_10/b.mp4"


def test_dfdc_bad_label_is_an_error(tmp_path):
    _touch(str(tmp_path / "dfdc_train_part_0" / "metadata.json"), json.dumps({"a.mp4": {"label": "MAYBE"}}))
    with pytest.raises(ValueError, match="MAYBE"):
        prepare_dfdc(str(tmp_path))
