"""Downstream recipes on tiny corpora in the exact dataset layouts (UCF101, HMDB51, ESC-50,
a Kinetics label subset), built end to end; visual-only and audio-only samples in the format."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from avprep import format as fmt
from avprep.config import BuildConfig, ConfigError
from avprep.format import FormatError, SampleMeta, SourceVideo
from avprep.pipeline import process_item
from avprep.recipes import RECIPES, build_recipe, prepare_esc50, prepare_hmdb51, prepare_kinetics, prepare_ucf101
from avprep.testing.corpus import make_kinetics_corpus
from avprep.testing.downstream import make_esc50_corpus, make_hmdb51_corpus, make_ucf101_corpus
from avprep.tools import inspect_shards, verify_shards
from test_cli import run

from conftest import read_outcomes, read_samples

K = 10


@pytest.fixture(scope="module")
def ucf(tmp_path_factory):
    return make_ucf101_corpus(str(tmp_path_factory.mktemp("ucf")))


@pytest.fixture(scope="module")
def hmdb(tmp_path_factory):
    return make_hmdb51_corpus(str(tmp_path_factory.mktemp("hmdb")))


@pytest.fixture(scope="module")
def esc(tmp_path_factory):
    return make_esc50_corpus(str(tmp_path_factory.mktemp("esc")))


def _check_items(corpus, items, source):
    """Every entry of the corpus comes out as the recipe must make it."""
    by_id = {i.item_id: i for i in items}
    assert sorted(by_id) == sorted(e.item_id for e in corpus.entries) and len(by_id) == len(items)
    for e in corpus.entries:
        item = by_id[e.item_id]
        assert item.source == source
        if not e.listed:
            assert item.failed[0] == "unlisted" and not item.missing
            continue
        assert item.failed is None and item.missing == (e.path is None)
        assert item.labels == {"label": e.label, "label_index": e.label_index}
        if e.path:
            assert item.path == e.path


# ---- UCF101 -------------------------------------------------------------------------------

def test_ucf101_items_labels_splits_and_the_naming_quirk(ucf):
    items = prepare_ucf101(ucf.root, ucf.lists)
    _check_items(ucf, items, "ucf101")
    by_id = {i.item_id: i for i in items}
    for e in ucf.entries:
        if e.listed:
            assert by_id[e.item_id].extra == {"splits": e.splits}
    # listed as v_HandstandPushups_*, on disk as v_HandStandPushups_*: matched, not missing
    quirk = by_id["HandstandPushups/v_HandstandPushups_g01_c01"]
    assert not quirk.missing and quirk.path.endswith("v_HandStandPushups_g01_c01.avi")
    assert quirk.labels == {"label": "HandstandPushups", "label_index": 1}
    # without --splits the recipe finds ucfTrainTestlist/ beside the corpus folder
    assert prepare_ucf101(ucf.root) == items


@pytest.fixture(scope="module")
def ucf_build(ucf, tmp_path_factory):
    out = tmp_path_factory.mktemp("ucf-out") / "shards"
    code, text = run("build", "ucf101", ucf.root, "--splits", ucf.lists, "--out", out, "--workers", 1)
    assert code == 0, text
    return out, text


def test_ucf101_build_visual_only_samples(ucf, ucf_build):
    out, text = ucf_build
    present = ucf.present
    silent = [e for e in present if not e.has_audio]
    assert silent and len(silent) < len(present)
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["ok"], summary["missing"], summary["failed"]) == (len(present), len(ucf.missing), 1)
    assert summary["reasons"] == {"missing": 1, "unlisted": 1}          # never no_audio
    assert (summary["visual_only"], summary["audio_only"]) == (len(silent), 0)
    assert f"samples without audio (visual-only): {len(silent)}" in text
    samples = read_samples(out)
    assert len(samples) == len(present)
    for raw in samples:
        meta = fmt.verify_sample(raw).meta
        e = ucf.entry(meta.item_id)
        assert meta.labels == {"label": e.label, "label_index": e.label_index}
        assert meta.extra == {"splits": e.splits} and meta.split is None
        assert meta.has_audio == e.has_audio and meta.has_video
        assert meta.num_frames == 40 and (meta.width, meta.height) == (170, 128)     # short side 128
        members = set(raw) - {"__key__", "__url__", "__local_path__"}
        assert members == ({"frames.mjpeg", "mel.npy", "json"} if e.has_audio else {"frames.mjpeg", "json"})
        assert json.loads(raw["json"])["source_video"]["audio_codec"] == ("pcm_s16le" if e.has_audio else None)
    streams = {o["item_id"]: o["streams"] for o in read_outcomes(out)}
    assert all(streams[e.item_id] == ("audio+video" if e.has_audio else "video") for e in present)


def test_ucf101_build_passes_verify_inspect_and_preview(ucf, ucf_build, tmp_path):
    out, _ = ucf_build
    res = verify_shards(str(out))
    assert res.ok and res.checked == len(ucf.present), res.bad
    report = inspect_shards(str(out)).report()
    silent = sum(not e.has_audio for e in ucf.present)
    assert f"visual-only samples (no audio): {silent}, audio-only samples (no video): 0" in report
    code, text = run("preview", out, "--out", tmp_path / "p.png", "--samples", len(ucf.present))
    assert code == 0 and f"({len(ucf.present)} samples)" in text and (tmp_path / "p.png").stat().st_size > 0


def test_audio_is_optional_only_where_the_recipe_says(ucf):
    """The same file without audio: a visual-only sample under ucf101's defaults, a no_audio
    failure with --require-audio or under a recipe that needs audio."""
    silent = next(e for e in ucf.present if not e.has_audio)
    item = next(i for i in prepare_ucf101(ucf.root, ucf.lists) if i.item_id == silent.item_id)
    outcome, samples = process_item(item, RECIPES["ucf101"].config())
    assert (outcome["status"], outcome["streams"], len(samples)) == ("ok", "video", 1)
    for cfg in (RECIPES["ucf101"].config({"audio.require_audio": True}), RECIPES["kinetics"].config()):
        outcome, samples = process_item(item, cfg)
        assert (outcome["status"], outcome["reason"], samples) == ("failed", "no_audio", [])


@pytest.mark.parametrize("damage, words", [
    ("no_splits", "--splits"),
    ("unknown_class", "classInd.txt does not list"),
    ("wrong_label", "but classInd.txt gives"),
])
def test_ucf101_user_mistakes_are_one_line(ucf, tmp_path, damage, words):
    lists = tmp_path / "lists"
    lists.mkdir()
    for name in Path(ucf.lists).iterdir():
        (lists / name.name).write_bytes(name.read_bytes())
    args = ["--splits", lists]
    if damage == "no_splits":
        args = ["--splits", tmp_path / "nowhere"]
    elif damage == "unknown_class":
        with open(lists / "testlist02.txt", "a") as f:
            f.write("Juggling/v_Juggling_g01_c01.avi\r\n")
    else:
        data = (lists / "trainlist01.txt").read_bytes().replace(b" 1\r\n", b" 3\r\n", 1)
        (lists / "trainlist01.txt").write_bytes(data)
    out = tmp_path / "out"
    code, text = run("build", "ucf101", ucf.root, *args, "--out", out)
    assert code == 2 and words in text and "Traceback" not in text
    assert len(text.strip().splitlines()) == 1 and not out.exists()


def test_build_options_and_where_they_apply(ucf, tmp_path):
    code, text = run("build", "--help")
    assert code == 0 and all(opt in text for opt in ("--splits", "--classes", "--audio-optional"))
    code, text = run("build", "ucf101", ucf.root, "--classes", tmp_path / "c.txt", "--out", tmp_path / "o")
    assert code == 2 and "does not take --classes" in text


def test_ucf101_without_a_split_folder_says_what_to_pass(tmp_path):
    (tmp_path / "UCF-101" / "YoYo").mkdir(parents=True)
    code, text = run("build", "ucf101", tmp_path / "UCF-101", "--out", tmp_path / "out")
    assert code == 2 and "pass --splits ucfTrainTestlist/" in text and len(text.strip().splitlines()) == 1


# ---- HMDB51 -------------------------------------------------------------------------------

def test_hmdb51_items_tags_and_sorted_class_index(hmdb):
    items = prepare_hmdb51(hmdb.root, hmdb.lists)
    _check_items(hmdb, items, "hmdb51")
    by_id = {i.item_id: i for i in items}
    assert {by_id[e.item_id].labels["label"]: by_id[e.item_id].labels["label_index"]
            for e in hmdb.entries if e.listed} == {"brush_hair": 0, "cartwheel": 1, "chew": 2}
    for e in hmdb.entries:
        if e.listed:
            assert by_id[e.item_id].extra == {"splits": e.splits}
    assert {"train", "test", "unused"} <= {role for e in hmdb.entries for role in e.splits.values()}


def test_hmdb51_build_end_to_end(hmdb, tmp_path):
    done = build_recipe(RECIPES["hmdb51"], {"root": hmdb.root, "splits": hmdb.lists}, str(tmp_path / "out"),
                        workers=1, progress=False)
    summary = done[0].result.summary
    silent = [e for e in hmdb.present if not e.has_audio]
    assert (summary["ok"], summary["missing"], summary["reasons"]) == (len(hmdb.present), 1,
                                                                       {"missing": 1, "unlisted": 1})
    assert (summary["visual_only"], summary["audio_only"]) == (len(silent), 0)
    assert verify_shards(str(tmp_path / "out")).ok
    for raw in read_samples(tmp_path / "out"):
        meta = fmt.open_sample(raw).meta
        e = hmdb.entry(meta.item_id)
        assert (meta.labels["label_index"], meta.extra["splits"], meta.has_audio) == \
            (e.label_index, e.splits, e.has_audio)
        assert ("mel.npy" in raw) == e.has_audio


def test_hmdb51_bad_tag_and_packed_archives_are_one_line(hmdb, tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "chew_test_split1.txt").write_text("a.avi 7\n")
    code, text = run("build", "hmdb51", hmdb.root, "--splits", lists, "--out", tmp_path / "o1")
    assert code == 2 and "tag 0 (unused), 1 (train) or 2 (test)" in text
    packed = tmp_path / "hmdb51_org"
    packed.mkdir()
    (packed / "chew.rar").write_bytes(b"Rar!")
    code, text = run("build", "hmdb51", packed, "--splits", hmdb.lists, "--out", tmp_path / "o2")
    assert code == 2 and "unpack them first" in text and len(text.strip().splitlines()) == 1


# ---- ESC-50: audio-only samples ------------------------------------------------------------

def test_esc50_items(esc):
    items = prepare_esc50(esc.root)
    _check_items(esc, items, "esc50")
    for item in items:
        if not item.failed:
            assert item.extra == esc.entry(item.item_id).extra


def test_esc50_build_audio_only_samples(esc, tmp_path):
    out = tmp_path / "out"
    code, text = run("build", "esc50", esc.root, "--out", out, "--workers", 1)
    assert code == 0, text
    summary = json.loads((out / "summary.json").read_text())
    present = esc.present
    assert (summary["ok"], summary["missing"], summary["reasons"]) == (len(present), 1,
                                                                       {"missing": 1, "unlisted": 1})
    assert (summary["audio_only"], summary["visual_only"]) == (len(present), 0)
    peaks = {}
    for raw in read_samples(out):
        sample = fmt.verify_sample(raw)
        meta, obj = sample.meta, json.loads(raw["json"])
        e = esc.entry(meta.item_id)
        assert set(raw) - {"__key__", "__url__", "__local_path__"} == {"mel.npy", "json"}
        assert obj["has_video"] is False and obj["has_audio"] is True
        assert all(obj[k] is None for k in ("width", "height", "channels", "frame_offsets"))
        assert obj["source_video"] == {"width": None, "height": None, "sar": None, "rotation": None, "fps": None,
                                       "codec": None, "audio_codec": "pcm_s16le", "audio_channels": "mono",
                                       "audio_sample_rate": 44100}
        # 5 s at 44.1 kHz, resampled to 16 kHz: 50 slots of the 10 fps grid, 500 mel columns
        assert (meta.num_frames, meta.sample_rate, meta.end_time) == (50, 16000, 5.0)
        assert sample.mel().shape == (80, 500)
        assert meta.labels == {"label": e.label, "label_index": e.label_index} and meta.extra == e.extra
        peaks[e.label_index] = int(np.argmax(sample.mel_window(0, 50).mean(axis=1)))
        with pytest.raises(FormatError) as exc:
            sample.frame(0)
        assert exc.value.reason == "audio_only"
    # each file's tone is 300 + 40 * target Hz: the loudest mel band rises with the target
    assert [peaks[t] for t in sorted(peaks)] == sorted(peaks.values()) and len(set(peaks.values())) == len(peaks)
    assert verify_shards(str(out)).ok
    assert "audio-only samples (no video): 4" in inspect_shards(str(out)).report()
    code, text = run("preview", out, "--out", tmp_path / "p.png")
    assert code == 0 and (tmp_path / "p.png").exists()


def test_a_wav_is_no_video_unless_the_recipe_allows_audio_only(esc):
    item = next(i for i in prepare_esc50(esc.root) if not i.failed and not i.missing)
    outcome, _ = process_item(item, BuildConfig())
    assert (outcome["status"], outcome["reason"]) == ("failed", "no_video")
    with pytest.raises(ConfigError, match="crops need video"):
        build_recipe(RECIPES["esc50"], {"root": esc.root}, "/nonexistent", {"crop.kind": "face"})


def test_esc50_without_meta_is_one_line(tmp_path):
    (tmp_path / "audio").mkdir()
    code, text = run("build", "esc50", tmp_path, "--out", tmp_path / "out")
    assert code == 2 and "meta/esc50.csv" in text and len(text.strip().splitlines()) == 1


# ---- the format's rules for the new shapes --------------------------------------------------

def _meta(key="k0", **kw) -> SampleMeta:
    base = dict(key=key, source="t", item_id=key, split=None, source_path="x.avi", segment=0, first_frame=0,
                fps=10.0, start_time=0.0, end_time=0.6, cut_start=None, cut_end=None, has_audio=True,
                sample_rate=16000, hop_length=160, n_fft=400, n_mels=80, mel_per_frame=K, labels={}, extra={},
                source_video=SourceVideo(width=24, height=16, sar="1", rotation=0, fps=25.0, codec="mpeg4",
                                         audio_codec=None, audio_channels=None, audio_sample_rate=None))
    return SampleMeta(**{**base, **kw})


def _frames(t=6):
    return np.stack([np.full((16, 24, 3), 30 * i, np.uint8) for i in range(t)])


def _mel(t=6):
    return np.tile(np.arange(t * K, dtype=np.float32), (80, 1))


NO_VIDEO = SourceVideo(width=None, height=None, sar=None, rotation=None, fps=None, codec=None,
                       audio_codec="pcm_s16le", audio_channels="mono", audio_sample_rate=44100)


def _reason(raw, **kw):
    with pytest.raises(FormatError) as exc:
        fmt.verify_sample(raw) if not kw else fmt.open_sample(raw, **kw)
    return exc.value.reason


def _with_meta(raw, **changes):
    obj = json.loads(raw["json"])
    obj.update(changes)
    return {**raw, "json": json.dumps(obj).encode()}


def test_visual_only_and_audio_only_samples_round_trip_and_are_checked():
    visual = fmt.encode_sample(_meta(), _frames(), None, 90)
    assert set(visual) == {"__key__", "frames.mjpeg", "json"}
    v = fmt.verify_sample(visual)
    assert not v.has_audio and v.has_video and v.frames().shape == (6, 16, 24, 3)
    assert "has_video" not in json.loads(visual["json"])          # written only when false
    audio = fmt.encode_sample(_meta(source_video=NO_VIDEO), None, _mel(), 90)
    assert set(audio) == {"__key__", "mel.npy", "json"}
    a = fmt.verify_sample(audio)
    assert a.has_audio and not a.has_video and a.meta.num_frames == 6 and a.meta.frame_offsets is None
    np.testing.assert_array_equal(a.mel_window(2, 1)[0], np.arange(20, 30))
    # pretraining (glcm) asks for both streams: each shape is refused with its own reason
    assert _reason(visual, require_video=True, require_audio=True) == "visual_only"
    assert _reason(audio, require_video=True, require_audio=True) == "audio_only"
    with pytest.raises(FormatError, match="visual_only"):
        v.mel()
    # broken shapes
    assert _reason({**audio, "frames.mjpeg": visual["frames.mjpeg"]}) == "bad_meta"
    assert _reason(_with_meta(audio, width=24)) == "bad_meta"
    assert _reason(_with_meta(audio, has_audio=False)) == "bad_meta"
    assert _reason(_with_meta(audio, has_video=True)) == "bad_meta"           # frame fields null
    assert _reason(_with_meta(visual, has_audio=True)) == "missing_member"    # says audio, has no mel
    assert _reason({k: v for k, v in visual.items() if k != "frames.mjpeg"}) == "missing_member"
    assert _reason(_with_meta(audio, source_video=dict(dataclasses.asdict(NO_VIDEO), codec="h264"))) == "bad_meta"
    with pytest.raises(ValueError):
        fmt.encode_sample(_meta(), None, None, 90)
    with pytest.raises(ValueError, match="multiple of mel_per_frame"):
        fmt.encode_sample(_meta(source_video=NO_VIDEO), None, _mel()[:, :55], 90)


def test_version_1_samples_without_audio_still_read():
    """Before visual-only samples, an input without audio (require_audio off) stored the mel of
    silence with has_audio false: such samples still verify, and pretraining skips them."""
    old = _with_meta(fmt.encode_sample(_meta(), _frames(), _mel(), 90), has_audio=False)
    sample = fmt.verify_sample(old)
    assert not sample.has_audio and sample.mel().shape == (80, 60)
    assert _reason(old, require_audio=True) == "visual_only"
    assert dataclasses.replace(sample.meta, has_audio=True).to_json() == fmt.open_sample(
        fmt.encode_sample(_meta(), _frames(), _mel(), 90)).meta.to_json()


def test_glcm_skips_samples_without_both_streams():
    gdata = pytest.importorskip("glcm.data")
    spec = gdata.ClipSpec(frames=4, crop=16, mel_per_frame=K)
    rng = np.random.default_rng(0)
    assert gdata.decode_sample(fmt.encode_sample(_meta(), _frames(), _mel(), 90), spec, rng)["mel"].shape == (80, 40)
    for raw, why in ((fmt.encode_sample(_meta(), _frames(), None, 90), "visual_only"),
                     (fmt.encode_sample(_meta(source_video=NO_VIDEO), None, _mel(), 90), "audio_only")):
        with pytest.raises(gdata.SkipSample) as exc:
            gdata.decode_sample(raw, spec, rng)
        assert exc.value.reason == why


# ---- Kinetics: a label subset (--classes) ---------------------------------------------------

@pytest.fixture(scope="module")
def kin(tmp_path_factory):
    return make_kinetics_corpus(str(tmp_path_factory.mktemp("kin") / "kin"), n=6, seed=4, missing_every=0)


def test_kinetics_classes_match_loosely_and_report_the_unmatched(kin, tmp_path):
    classes = tmp_path / "sounds.txt"
    classes.write_text("# Kinetics-Sounds, early names\nPlaying Drums\n tap  dancing \nmowing the lawn\n\n")
    items = prepare_kinetics(kin.root, classes=str(classes))
    kept = [i for i in items if not i.failed]
    rows = [r for r in kin.rows if r.label in ("playing_drums", "tap_dancing")]
    assert sorted(i.item_id for i in kept) == sorted(f"{r.vid}_{int(r.start):06d}_{int(r.end):06d}" for r in rows)
    assert {(i.labels["label"], i.labels["label_index"]) for i in kept} == {("playing_drums", 0), ("tap_dancing", 1)}
    (unmatched,) = [i for i in items if i.failed]
    assert unmatched.failed[0] == "unmatched_class" and "'mowing the lawn'" in unmatched.failed[1]
    none = tmp_path / "none.txt"
    none.write_text("skydiving\n")
    with pytest.raises(ConfigError, match="no class of --classes"):
        prepare_kinetics(kin.root, classes=str(none))


def test_kinetics_classes_build_into_the_corpus_folder_reruns(kin, tmp_path):
    """--out equal to the Kinetics folder: a rerun must not read the build's own failures.csv
    as an annotation CSV."""
    classes = tmp_path / "sounds.txt"
    classes.write_text("playing drums\nmowing lawn\n")
    for attempt in range(2):
        code, text = run("build", "kinetics", kin.root, "--classes", classes, "--out", kin.root, "--workers", 1)
        assert code == 0, (attempt, text)
        assert "unmatched_class: 1" in text
    drums = [r for r in kin.rows if r.label == "playing_drums"]
    assert json.loads((Path(kin.root) / "summary.json").read_text())["ok"] == len(drums)
    assert verify_shards(kin.root).ok
