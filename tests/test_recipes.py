"""Recipes on tiny generated corpora in the real layouts (Kinetics, AVSpeech, K-AV, folders)."""
from __future__ import annotations

import os

import numpy as np
import pytest

from avprep.clips import iter_clips
from avprep.config import BuildConfig, ClipConfig, ConfigError, override, validate
from avprep.pipeline import build_dataset
from avprep.recipes import RECIPES, build_recipe, prepare_avspeech, prepare_kav, prepare_kinetics, prepare_videos
from avprep.recipes.avspeech import read_avspeech_csv
from avprep.testing.corpus import make_avspeech_corpus, make_kinetics_corpus

from conftest import read_outcomes


@pytest.fixture(scope="module")
def kin_per_label(tmp_path_factory):
    return make_kinetics_corpus(str(tmp_path_factory.mktemp("k") / "kin"), n=8, seed=1, layout="per_label")


@pytest.fixture(scope="module")
def kin_whole(tmp_path_factory):
    return make_kinetics_corpus(str(tmp_path_factory.mktemp("kw") / "kin"), n=4, seed=2, layout="flat",
                                whole_downloads=True)


@pytest.fixture(scope="module")
def avs(tmp_path_factory):
    return make_avspeech_corpus(str(tmp_path_factory.mktemp("a") / "avs"), n=6, seed=3)


def _check_kinetics(corpus, items):
    assert [i.item_id for i in items] == [f"{r.vid}_{int(r.start):06d}_{int(r.end):06d}" for r in corpus.rows]
    labels = sorted({r.label for r in corpus.rows})
    for item, row in zip(items, corpus.rows):
        assert item.source == "kinetics" and item.split == "train"
        assert item.labels == {"label": row.label, "label_index": labels.index(row.label)}
        assert item.missing == (row.path is None)
        if row.path:
            assert item.path == row.path
    assert sum(i.missing for i in items) == len(corpus.missing) >= 1


def test_kinetics_per_label(kin_per_label):
    c = kin_per_label
    assert all(os.path.basename(os.path.dirname(r.path)) == r.label for r in c.present)
    items = prepare_kinetics(c.root)
    _check_kinetics(c, items)
    assert all(i.start is None and i.end is None for i in items)     # pre-cut clips


def test_kinetics_flat(tmp_path):
    c = make_kinetics_corpus(str(tmp_path / "flat"), n=4, seed=5, layout="flat")
    assert all(os.path.dirname(r.path) == c.root for r in c.present)
    _check_kinetics(c, prepare_kinetics(c.root))


def test_kinetics_whole_downloads_are_cut(kin_whole, tmp_path):
    c = kin_whole
    items = prepare_kinetics(c.root)
    _check_kinetics(c, items)
    present = [i for i in items if not i.missing]
    for item, row in zip(present, c.present):
        assert (item.start, item.end) == (row.start, row.end) and row.file_seconds > row.end - row.start
    out = tmp_path / "out"
    build_dataset(items, str(out), BuildConfig(videos_per_shard=10), workers=1, root=c.root,
                  recipe="kinetics", progress=False)
    outcomes = read_outcomes(out)
    assert [o["status"] for o in outcomes] == ["missing" if i.missing else "ok" for i in items]
    for o, item in zip(outcomes, items):
        if not item.missing:
            assert o["seconds"] == pytest.approx(item.end - item.start)   # 4 s cut, not the whole file
    from conftest import read_samples
    import json
    metas = [json.loads(s["json"]) for s in read_samples(out)]
    assert len(metas) == len(present)
    for m in metas:
        assert m["num_frames"] == 40 and m["first_frame"] == 0
        assert m["cut_end"] - m["cut_start"] == 4.0
        assert m["labels"]["label"]


def test_kinetics_test_csv_without_labels(tmp_path):
    c = make_kinetics_corpus(str(tmp_path / "kt"), n=4, seed=6, layout="flat", with_labels=False, split="test")
    header = open(c.csv_path).readline().strip()
    assert header == "youtube_id,time_start,time_end,split"
    items = prepare_kinetics(c.root)
    assert len(items) == 4 and all(i.labels == {} for i in items)
    assert [i.missing for i in items] == [False, False, False, True]
    assert all(i.split == "test" for i in items)


def test_kinetics_folder_without_csv(kin_per_label, tmp_path):
    import shutil
    root = tmp_path / "nocsv"
    shutil.copytree(kin_per_label.root, root, ignore=shutil.ignore_patterns("*.csv"))
    items = prepare_kinetics(str(root))
    assert len(items) == len(kin_per_label.present)
    assert all(i.labels["label"] == os.path.basename(os.path.dirname(i.path)) for i in items)


def test_avspeech_headerless_face_centre_and_cut(avs, tmp_path):
    first = open(avs.csv_path).readline()
    assert not first.startswith("youtube") and len(first.split(",")) == 5
    assert len(read_avspeech_csv(avs.csv_path)) == 6
    items = prepare_avspeech(avs.root)
    assert len(items) == 6 and sum(i.missing for i in items) == 2
    for item, row in zip(items, avs.rows):
        assert item.source == "avspeech" and item.split == "train"
        assert item.extra == {"face_x": row.x, "face_y": row.y}
        assert item.missing == (row.path is None)
        if row.path:
            assert (item.start, item.end) == (pytest.approx(row.start), pytest.approx(row.end))
    item = next(i for i in items if not i.missing)
    cfg = BuildConfig(clip=ClipConfig(min_frames=16))
    (clip,) = list(iter_clips(item, cfg))
    # 3.5 s cut out of a longer file at a start between two source frames (x.25 s): the
    # frame straddling the cut may be dropped, but the clip ends at the cut end
    assert clip.first_frame in (0, 1)
    assert clip.first_frame + clip.num_frames == 35


def test_avspeech_precut_clips(tmp_path):
    c = make_avspeech_corpus(str(tmp_path / "pc"), n=3, seed=7, whole_downloads=False)
    items = prepare_avspeech(c.root)
    assert [i.missing for i in items] == [False, False, True]
    assert all(i.start is None for i in items if not i.missing)


def test_avspeech_csv_with_header_is_refused(tmp_path):
    (tmp_path / "avspeech_train.csv").write_text("youtube_id,start,end,x,y\nabc,1,2,0.5,0.5\n")
    with pytest.raises(ValueError, match="no header"):
        prepare_avspeech(str(tmp_path))


def test_clip_fn_is_used(tmp_path):
    calls = []

    def grey(rng, seconds, fps, sr, w, h):
        calls.append((seconds, fps, sr, w, h))
        n = int(round(seconds * fps))
        return np.full((n, h, w, 3), 77, np.uint8), np.zeros(int(seconds * sr), np.float32)

    c = make_kinetics_corpus(str(tmp_path / "g"), n=2, seed=0, missing_every=0, clip_fn=grey)
    assert len(calls) == 2 and calls[0] == (4.0, 10.0, 16000, 96, 64)
    (clip,) = list(iter_clips(prepare_kinetics(c.root)[0], BuildConfig()))
    assert abs(clip.frames.astype(int).mean() - 77) < 3


def test_corpus_is_deterministic(tmp_path):
    a = make_kinetics_corpus(str(tmp_path / "a"), n=3, seed=11)
    b = make_kinetics_corpus(str(tmp_path / "b"), n=3, seed=11)
    assert [(r.vid, r.start) for r in a.rows] == [(r.vid, r.start) for r in b.rows]
    assert open(a.csv_path).read() == open(b.csv_path).read()


def test_kav_draws_mixes_and_is_deterministic(kin_per_label, avs):
    kin_all, avs_all = prepare_kinetics(kin_per_label.root), prepare_avspeech(avs.root)
    items = prepare_kav(kin_per_label.root, avs.root, per_source=3, seed=0)
    assert len(items) == 6
    assert sum(i.source == "kinetics" for i in items) == 3 and sum(i.source == "avspeech" for i in items) == 3
    ids = {i.item_id for i in items}
    assert ids <= {i.item_id for i in kin_all} | {i.item_id for i in avs_all}
    assert len(ids) == 6
    again = prepare_kav(kin_per_label.root, avs.root, per_source=3, seed=0)
    assert [i.item_id for i in again] == [i.item_id for i in items]
    draws = {tuple(i.item_id for i in prepare_kav(kin_per_label.root, avs.root, per_source=3, seed=s))
             for s in range(6)}
    assert len(draws) > 1                      # the seed changes the draw
    srcs = {tuple(i.source for i in prepare_kav(kin_per_label.root, avs.root, per_source=3, seed=s))
            for s in range(6)}
    assert any(s != tuple(sorted(s)) and s != tuple(sorted(s, reverse=True)) for s in srcs)   # mixed
    # more than a source has: everything from it
    big = prepare_kav(kin_per_label.root, avs.root, per_source=100, seed=0)
    assert len(big) == len(kin_all) + len(avs_all)


def test_kav_only_present(kin_per_label, avs):
    items = prepare_kav(kin_per_label.root, avs.root, per_source=100, seed=1, only_present=True)
    assert items and not any(i.missing for i in items)
    assert len(items) == len(kin_per_label.present) + len(avs.present)
    with_missing = prepare_kav(kin_per_label.root, avs.root, per_source=100, seed=1)
    assert any(i.missing for i in with_missing)


def test_videos_folder_recipe(small_videos):
    items = prepare_videos(str(small_videos))
    rel = [os.path.relpath(i.path, small_videos) for i in items]
    assert rel == sorted(rel)
    assert rel == ["cats/broken.mp4", "cats/clip_00.mp4", "cats/clip_02.mp4", "dogs/clip_01.mp4",
                   "dogs/clip_03.mp4", "long/long_12s.mp4"]
    assert [i.item_id for i in items][0] == "cats/broken"
    assert {i.labels["label"]: i.labels["label_index"] for i in items} == {"cats": 0, "dogs": 1, "long": 2}
    assert all(i.source == "videos" and not i.missing for i in items)


# ---------------------------------------------------------------- the registry and the config rules

def test_registry_holds_every_recipe_module():
    """Adding a corpus = a module with prepare + RECIPE, registered; the CLI's choices follow."""
    import importlib
    import inspect
    import pkgutil

    import avprep.recipes as pkg
    from cli.avprep_cli import RecipeName
    modules = [m.name for m in pkgutil.iter_modules(pkg.__path__) if m.name not in ("common", "registry")]
    declared = [importlib.import_module(f"avprep.recipes.{m}").RECIPE for m in modules]
    assert sorted(r.name for r in declared) == sorted(RECIPES)
    assert all(RECIPES[r.name] is r for r in declared)
    assert [r.value for r in RecipeName] == list(RECIPES)
    for name, recipe in RECIPES.items():
        params = inspect.signature(recipe.prepare).parameters
        assert set(recipe.args.values()) <= set(params), name
        assert set(recipe.required) | set(recipe.folders) <= set(recipe.args), name
        assert recipe.defaults.shard_prefix == name
        validate(recipe.defaults)


def test_recipe_defaults_and_explicit_values_win():
    lrs2, videos, dfdc, lrw = (RECIPES[n] for n in ("lrs2", "videos", "dfdc", "lrw"))
    cfg = lrs2.config()
    assert (cfg.video.fps, cfg.video.short_side, cfg.crop.kind, cfg.crop.size) == (25.0, 0, "lips", 112)
    assert lrs2.config({"video.short_side": 128}).video.short_side == 128     # was silently 0 (same as the default)
    assert lrs2.config({"video.short_side": None}) == cfg                    # None = not given
    assert lrs2.config({"crop.kind": "lips"}) == cfg
    assert (dfdc.config().crop.kind, dfdc.config().crop.size) == ("face", 128)
    assert dfdc.config({"crop.kind": "none"}).video.short_side == 128       # whole frames again
    # another crop kind brings its defaults, under the explicit values
    lips = videos.config({"crop.kind": "lips"})
    assert (lips.video.short_side, lips.crop.size, lips.video.fps) == (0, 112, 10.0)
    assert videos.config({"crop.kind": "face"}).crop.size == 128
    assert videos.config({"crop.kind": "face", "crop.size": 96, "video.short_side": 256}).crop.size == 96
    assert videos.config({"crop.kind": "face", "video.short_side": 256}).video.short_side == 256
    assert lrw.per_split and not videos.per_split
    assert (lrw.config().clip.max_seconds, lrw.config().videos_per_shard) == (2.0, 1000)
    with pytest.raises(ConfigError, match="no field"):
        videos.config({"video.colour": 1})


def test_recipe_arguments_are_checked():
    kav = RECIPES["k-av"]
    with pytest.raises(ConfigError, match="needs --avspeech"):
        kav.items({"kinetics": "k"})
    with pytest.raises(ConfigError, match="does not take --csv"):
        RECIPES["lrs2"].items({"root": "r", "csv": ["a.csv"]})
    with pytest.raises(ConfigError, match="per_source must be >= 1"):
        kav.items({"kinetics": "no-k", "avspeech": "no-a", "per_source": 0})
    assert kav.root({"kinetics": "/data/k700", "avspeech": "/data/avs"}) == "/data"


def test_unreadable_corpus_is_a_config_error(tmp_path):
    (tmp_path / "avspeech_train.csv").write_text("youtube_id,start,end,x,y\nabc,1,2,0.5,0.5\n")
    with pytest.raises(ConfigError, match="cannot read the avspeech corpus: .*no header"):
        RECIPES["avspeech"].items({"root": str(tmp_path)})


BAD = [{"video.fps": 0.0}, {"video.fps": float("nan")}, {"video.fps": float("inf")}, {"audio.hop_length": 0},
       {"video.jpeg_quality": 101}, {"crop.size": -5}, {"shard_prefix": "../evil"}, {"shard_prefix": "a\0b"},
       {"shard_prefix": ""}, {"videos_per_shard": 0}, {"clip.max_seconds": -1.0}, {"crop.align": "perspective"},
       {"crop.kind": "mouth"}, {"crop.max_gap_s": -0.1}, {"timeout_base_s": float("inf")}]


@pytest.mark.parametrize("bad", BAD, ids=[str(b) for b in BAD])
def test_validate_refuses(bad):
    with pytest.raises(ConfigError):
        validate(override(BuildConfig(), bad))


def test_library_refuses_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="fps"):
        build_dataset([], str(tmp_path / "o"), override(BuildConfig(), {"video.fps": 0.0}), progress=False)
    with pytest.raises(ConfigError, match="workers"):       # checked before the (absent) corpus is listed
        build_recipe(RECIPES["videos"], {"root": str(tmp_path / "none")}, str(tmp_path / "o"), workers=0)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("reader,name", [
    ("avprep.recipes.esc50:read_esc50_csv", "esc50.csv"),
    ("avprep.recipes.kinetics:read_kinetics_csv", "train.csv"),
    ("avprep.recipes.kinetics:read_classes", "classes.txt"),
    ("avprep.recipes.avspeech:read_avspeech_csv", "avspeech_train.csv"),
    ("avprep.recipes.dfdc:prepare_dfdc", "metadata.json"),
])
def test_a_binary_annotation_file_is_named(tmp_path, reader, name):
    import importlib
    module, func = reader.split(":")
    (tmp_path / name).write_bytes(bytes(range(128, 256)) * 4)
    target = tmp_path if name == "metadata.json" else tmp_path / name
    with pytest.raises(ConfigError, match="is not a UTF-8 text file") as err:
        getattr(importlib.import_module(module), func)(str(target))
    assert str(tmp_path / name) in str(err.value)


@pytest.mark.parametrize("text,says", [
    ("", "is empty"),
    ("hello world\n", "is not a Kinetics annotation CSV (its header lacks youtube_id,time_start,time_end"),
    ("youtube_id,time_start,time_end\n", "lists no clips"),
    ("label,youtube_id,time_start,time_end\nx,abc,zz,3\n", ":2: time_start and time_end must be seconds"),
])
def test_a_csv_that_lists_no_kinetics_clips_is_named(tmp_path, text, says):
    """`--csv notes.txt` said only "found no inputs in ROOT": the CSV and its columns are named."""
    (tmp_path / "notes.txt").write_text(text)
    (tmp_path / "v").mkdir()
    with pytest.raises(ConfigError) as err:
        build_recipe(RECIPES["kinetics"], {"root": str(tmp_path / "v"), "csv": [str(tmp_path / "notes.txt")]},
                     str(tmp_path / "o"))
    assert f"{tmp_path / 'notes.txt'}" in str(err.value) and says in str(err.value), err.value
    assert "youtube_id" in str(err.value) or says.startswith(":2")
    assert not (tmp_path / "o").exists()


def test_an_empty_avspeech_csv_is_named(tmp_path):
    (tmp_path / "avspeech_train.csv").write_text("\n")
    with pytest.raises(ConfigError, match=r"avspeech_train.csv lists no clips \(expected headerless rows"):
        build_recipe(RECIPES["avspeech"], {"root": str(tmp_path)}, str(tmp_path / "o"))
