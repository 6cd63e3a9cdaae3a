"""Loader: exact window/mel slicing, only the window's JPEGs decoded, corrupt samples
skipped and counted, pickled members never loaded, fixed epoch length with workers."""
from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import tarfile

import cv2
import numpy as np
import numpy.lib.format as npy_format
import pytest
import torch
import webdataset as wds

import glcm.data as gdata
from avprep.format import SampleMeta, SourceVideo, encode_sample
from glcm.config import DataConfig
from glcm.data import ClipSpec, decode_sample, make_dataset, make_loader

K = 10


def grey_level(i: int) -> int:
    return (10 + 5 * i) % 250


def encoded(key: str, frames: np.ndarray) -> dict:
    """A sample made by the format's encoder; mel column j holds the value j in every band."""
    t, h, w = frames.shape[:3]
    source = SourceVideo(width=w, height=h, sar="1", rotation=0, fps=10.0, codec="h264", audio_codec="aac",
                         audio_channels="mono", audio_sample_rate=16000)
    meta = SampleMeta(key=key, source="test", item_id=key, split="train", source_path=key + ".mp4", segment=0,
                      first_frame=0, fps=10.0, start_time=0.0, end_time=t / 10, cut_start=None, cut_end=None,
                      has_audio=True, sample_rate=16000, hop_length=160, n_fft=400, n_mels=80, mel_per_frame=K,
                      labels={}, extra={}, source_video=source)
    return encode_sample(meta, frames, np.tile(np.arange(t * K, dtype=np.float32), (80, 1)), 95)


def sample(key: str, t: int = 40, h: int = 48, w: int = 64, version: int = 1) -> dict:
    """Frame i is flat grey level 10+5i."""
    raw = encoded(key, np.stack([np.full((h, w, 3), grey_level(i), np.uint8) for i in range(t)]))
    return set_meta(raw, format_version=version) if version != 1 else raw


def set_meta(raw: dict, **changes) -> dict:
    meta = json.loads(raw["json"])
    meta.update(changes)
    return {**raw, "json": json.dumps(meta).encode()}


def write(path, samples) -> str:
    with wds.TarWriter(str(path)) as sink:
        for s in samples:
            sink.write(s)
    return str(path)


SPEC = ClipSpec(frames=32, crop=32, flip_prob=0.5, grey_prob=0.5, jitter=True, mel_per_frame=K)


def test_window_frames_and_mel_slice_are_exact():
    raw = sample("a")
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(30):
        out = decode_sample(raw, SPEC, rng)
        s = out["start"]
        starts.add(s)
        assert out["frames"].shape == (32, 32, 32, 3) and out["frames"].dtype == np.uint8
        levels = out["frames"].reshape(32, -1).mean(axis=1)
        np.testing.assert_allclose(levels, [grey_level(s + i) for i in range(32)], atol=2)
        assert out["mel"].shape == (80, 320) and out["mel"].dtype == np.float32
        np.testing.assert_array_equal(out["mel"][7], np.arange(K * s, K * (s + 32)))
    assert len(starts) > 3 and max(starts) <= 8        # jitter over all 9 possible starts


def test_no_jitter_takes_the_first_frames():
    spec = ClipSpec(frames=32, crop=32, jitter=False, mel_per_frame=K)
    out = decode_sample(sample("a"), spec, np.random.default_rng(1))
    assert out["start"] == 0
    assert out["mel"][0, 0] == 0 and out["mel"][0, -1] == 319


def test_only_the_window_is_decoded(monkeypatch):
    calls = []
    real = cv2.imdecode
    monkeypatch.setattr(gdata.cv2, "imdecode", lambda buf, flags: calls.append(1) or real(buf, flags))
    decode_sample(sample("a", t=100), SPEC, np.random.default_rng(2))
    assert len(calls) == 32


def test_the_shuffle_buffer_holds_only_the_window():
    # cut before the shuffle buffer: the window's JPEG bytes, copied (the sample's own
    # frames member is not kept alive by a view), its mel columns, frames re-numbered from 0
    raw = sample("a", t=100)
    window = gdata.cut_window(raw, SPEC, np.random.default_rng(4))
    offsets = json.loads(raw["json"])["frame_offsets"]
    s = window.start
    kept = window.sample.members[gdata.FRAMES]
    assert type(kept) is bytes and kept == raw["frames.mjpeg"][offsets[s]:offsets[s + 32]]
    assert list(window.sample.members) == [gdata.FRAMES] and window.sample.meta.num_frames == 32
    np.testing.assert_array_equal(window.mel[3], np.arange(K * s, K * (s + 32)))
    levels = [window.sample.frame(i).mean() for i in (0, 31)]
    np.testing.assert_allclose(levels, [grey_level(s), grey_level(s + 31)], atol=2)


def test_a_local_tar_gives_only_the_window_s_bytes_read_by_range(tmp_path):
    # frames stay in the file (TarMember) until the cut reads the window: same window as
    # from the bytes; a tar that ends inside the member is a `truncated` skip, and no file
    # descriptor outlives the samples
    path = write(tmp_path / "s.tar", [sample("a", t=100, h=16, w=16)])
    (raw,) = gdata.read_shard(path, pytest.fail, lazy=frozenset({gdata.FRAMES}))
    assert isinstance(raw[gdata.FRAMES], gdata.TarMember)
    (eager,) = gdata.read_shard(path, pytest.fail)
    lazy_window = gdata.cut_window(raw, SPEC, np.random.default_rng(7))
    window = gdata.cut_window(eager, SPEC, np.random.default_rng(7))
    assert lazy_window.sample.members == window.sample.members and lazy_window.start == window.start
    fds = len(os.listdir("/proc/self/fd"))
    del raw
    assert len(os.listdir("/proc/self/fd")) == fds - 1
    cut = tmp_path / "cut.tar"
    with tarfile.open(cut, "w") as tar:                        # frames last, then cut short
        for member in ("json", "mel.npy", gdata.FRAMES):
            info = tarfile.TarInfo(f"a.{member}")
            info.size = len(eager[member])
            tar.addfile(info, io.BytesIO(eager[member]))
    data = cut.read_bytes()
    cut.write_bytes(data[:data.index(b"\xff\xd9") + 2])        # ends after the first JPEG
    (raw,) = gdata.read_shard(str(cut), lambda exc: True, lazy=frozenset({gdata.FRAMES}))
    with pytest.raises(gdata.SkipSample, match="truncated"):
        gdata.cut_window(raw, SPEC, np.random.default_rng(7))
    huge = gdata.TarMember(raw[gdata.FRAMES].file, 0, 2**40)     # a header's claim: nothing allocated
    with pytest.raises(gdata.FormatError, match="ends inside"):
        huge.read(0, 2**40)


@pytest.mark.parametrize("stage", ["select", "cut"])
def test_skips_before_the_shuffle_buffer_do_not_add_up_while_it_fills(stage, tmp_path):
    # 2 of every 3 samples dropped (not selected / too short) while 12 good ones fill the
    # buffer: "in a row" counts each stage in its own order, so skip_limit 5 is not reached
    n = [40 if i % 3 == 0 or stage == "select" else 8 for i in range(36)]
    raws = [set_meta(sample(f"k{i:02d}", t=t, h=8, w=8), split="train" if i % 3 == 0 else "val")
            for i, t in enumerate(n)]
    cfg = DataConfig(resample=False, workers=0, shuffle_buffer=20, initial_buffer=12, skip_limit=5)
    spec = ClipSpec(frames=32, crop=8, mel_per_frame=K)
    select = (lambda meta: meta.split == "train") if stage == "select" else None
    batches = list(make_dataset(write(tmp_path / "s.tar", raws), cfg, 4, spec, select=select))
    assert sorted(k for b in batches for k in b["key"]) == [f"k{i:02d}" for i in range(0, 36, 3)]


def test_samples_that_pass_the_cut_but_never_decode_end_with_no_batch(tmp_path):
    # the cut's successes must not reset the decode stage's count, else this ends silently
    raws = [set_meta(sample(f"k{i}", t=40, h=8, w=8), height=16, width=16) for i in range(8)]
    cfg = DataConfig(resample=False, workers=0, shuffle_buffer=4, initial_buffer=2, skip_limit=5)
    with pytest.raises(gdata.NoBatchError, match="5 samples in a row .* frame_size 5"):
        list(make_dataset(write(tmp_path / "s.tar", raws), cfg, 2, ClipSpec(frames=32, crop=8, mel_per_frame=K)))


def test_flip_and_grey_apply_to_the_whole_clip():
    frames = np.zeros((32, 48, 64, 3), np.uint8)
    frames[:, :, :32, 2] = 200                                    # left half blue (RGB)
    raw = encoded("a", frames)
    spec = ClipSpec(frames=32, crop=48, flip_prob=1.0, grey_prob=0.0, jitter=False, mel_per_frame=K)
    out = decode_sample(raw, spec, np.random.default_rng(3))["frames"]
    # crop is 48 wide at x in [0, 16]; flipped, the blue (RGB index 2) half is on the right in every frame
    assert (out[:, :, -1, 2] > 150).all() and (out[:, :, 0, 2] < 50).all()
    grey = decode_sample(raw, ClipSpec(frames=32, crop=48, flip_prob=0.0, grey_prob=1.0, jitter=False,
                                       mel_per_frame=K), np.random.default_rng(3))["frames"]
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    # decoded from the JPEGs' luma: the BT.601 luma of the same clip in colour (same draws),
    # up to rounding, and chroma blur in the colour decode at the sharp blue/black edge
    colour = decode_sample(raw, ClipSpec(frames=32, crop=48, flip_prob=0.0, grey_prob=0.0, jitter=False,
                                         mel_per_frame=K), np.random.default_rng(3))["frames"]
    luma = colour.astype(np.float64) @ [0.299, 0.587, 0.114]
    diff = np.abs(grey[..., 0] - luma)
    assert np.percentile(diff, 95) <= 1 and diff.max() <= 8 and grey[..., 0].std() > 5
    flipped = decode_sample(raw, ClipSpec(frames=32, crop=48, flip_prob=1.0, grey_prob=1.0, jitter=False,
                                          mel_per_frame=K), np.random.default_rng(3))["frames"]
    np.testing.assert_array_equal(flipped, grey[:, :, ::-1])


class Evil:
    """Unpickling this creates a file: proof that a member was unpickled."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def corrupt_shard(tmp_path) -> tuple[str, str]:
    marker = str(tmp_path / "PWNED")
    good = [sample(f"good{i}") for i in range(3)]
    good[0]["pyd"] = pickle.dumps(Evil(marker))                  # extra member: must be ignored
    good[1]["pickle"] = pickle.dumps(Evil(marker))
    bad_jpeg = sample("badjpeg")
    data = bytearray(bad_jpeg["frames.mjpeg"])
    data[:] = b"\x00" * len(data)
    bad_jpeg["frames.mjpeg"] = bytes(data)
    bad_mel = sample("badmel")
    buf = io.BytesIO()
    np.save(buf, np.zeros((80, 7), np.float16))
    bad_mel["mel.npy"] = buf.getvalue()
    pickled_mel = sample("pickledmel")
    buf = io.BytesIO()
    np.save(buf, np.array([Evil(marker)], dtype=object), allow_pickle=True)
    pickled_mel["mel.npy"] = buf.getvalue()
    huge_mel = sample("hugemel")                                   # 128 bytes claiming (80, 10**13)
    buf = io.BytesIO()
    npy_format.write_array_header_1_0(buf, {"descr": "<f2", "fortran_order": False, "shape": (80, 10 ** 13)})
    huge_mel["mel.npy"] = buf.getvalue()
    no_json = sample("nojson")
    del no_json["json"]
    bad_json = sample("badjson")
    bad_json["json"] = b"{not json"
    list_json = {**sample("listjson"), "json": b"[1, 2]"}
    abc = set_meta(sample("abc"), num_frames="abc")
    null_offsets = set_meta(sample("nulloffsets"), frame_offsets=None)
    v2 = sample("v2", version=2)
    short = sample("short", t=20)
    samples = [good[0], bad_jpeg, bad_mel, good[1], pickled_mel, huge_mel, no_json, bad_json, list_json, abc,
               null_offsets, v2, short, good[2]]
    write(tmp_path / "mixed-000000.tar", samples)
    # a second shard cut short in the middle of a member
    whole = write(tmp_path / "whole.tar", [sample(f"t{i}") for i in range(2)])
    with tarfile.open(whole) as tar:
        last = tar.getmembers()[-1]                                # t1's last member
    blob = open(whole, "rb").read()
    (tmp_path / "mixed-000001.tar").write_bytes(blob[: last.offset_data + last.size // 2])
    return str(tmp_path / "mixed-{000000..000001}.tar"), marker


def test_corrupt_samples_are_skipped_and_counted(tmp_path):
    urls, marker = corrupt_shard(tmp_path)
    cfg = DataConfig(resample=False, workers=0, shuffle_buffer=1, initial_buffer=1)
    ds = make_dataset(urls, cfg, 1, SPEC)
    batches = list(ds)
    keys = [b["key"][0] for b in batches]
    assert sorted(keys) == ["good0", "good1", "good2", "t0"]
    assert batches[3]["skipped"]["bad_jpeg"] == 1              # batches carry the running counts
    counts = dict(ds.skip_counter.counts)
    assert counts.pop("shard_error") >= 1       # webdataset may report one cut tar at two levels
    # the format's reason codes; missing_member: "nojson", and "t1" whose members the cut tar lost;
    # mel_header: wrong shape, pickled, a header claiming (80, 10**13) (refused before any allocation)
    assert counts == {"bad_jpeg": 1, "mel_header": 3, "bad_json": 2, "bad_meta": 2, "missing_member": 2,
                      "format_version": 1, "too_short": 1}
    assert not (tmp_path / "PWNED").exists()


def test_resampled_epochs_have_a_fixed_length_with_workers(tmp_path):
    urls = [write(tmp_path / f"s-{i}.tar", [sample(f"s{i}_{j}", t=32, h=32, w=32) for j in range(3)])
            for i in range(2)]
    cfg = DataConfig(resample=True, workers=2, shuffle_buffer=4, initial_buffer=2, seed=3)
    spec = ClipSpec(frames=32, crop=32, mel_per_frame=K)
    loader = make_loader(urls, cfg, 2, spec, epoch_batches=6)
    for _ in range(2):
        batches = list(loader)
        assert len(batches) == 6
        assert {b["worker"] for b in batches} == {0, 1}
        assert all(b["frames"].shape == (2, 32, 32, 32, 3) for b in batches)
        # the frames reached this process intact (decoded into shared memory by the worker)
        levels = torch.stack([b["frames"].float().mean(dim=(2, 3, 4)) for b in batches])
        np.testing.assert_allclose(levels.numpy(), np.broadcast_to([grey_level(i) for i in range(32)], levels.shape),
                                   atol=2)


def test_shard_without_expected_version_is_refused_by_count_not_crash(tmp_path):
    path = write(tmp_path / "v9.tar", [sample("x", version=9)])
    cfg = DataConfig(resample=False, workers=0)
    assert list(make_dataset(path, cfg, 1, SPEC)) == []


@pytest.mark.parametrize("member", ["frames.mjpeg", "mel.npy", "json"])
def test_only_expected_members_are_read(member):
    assert gdata.is_member(f"key_1.{member}")
    assert not gdata.is_member("key_1.pyd") and not gdata.is_member("key_1.pickle")
    assert not gdata.is_member("key_1.npy")


def test_batches_are_the_clips_decoded_in_order_and_never_overwritten(tmp_path):
    # each clip is decoded straight into its batch row: every batch, held while later ones
    # are made, equals decode_sample's clips with the stage's generator, in order
    path = write(tmp_path / "s.tar", [sample(f"k{i}", t=34, h=32, w=40) for i in range(6)])
    cfg = DataConfig(resample=False, workers=0, shuffle_buffer=1, initial_buffer=1, seed=5)
    made = list(make_dataset(path, cfg, 2, SPEC))
    # starts drawn before the shuffle buffer (its own generator), crops etc. after it
    cut_rng, rng = gdata.worker_rng(5 + gdata.CUT_SEED, 0), gdata.worker_rng(5, 0)
    raws = list(wds.tarfile_samples(iter([{"url": path}])))
    expected = [gdata.decode_cut(gdata.cut_window(raw, SPEC, cut_rng), SPEC, rng) for raw in raws]
    assert len(made) == 3
    for b, batch in enumerate(made):
        assert batch["key"] == [f"k{2 * b}", f"k{2 * b + 1}"]
        for j in range(2):
            np.testing.assert_array_equal(batch["frames"][j].numpy(), expected[2 * b + j]["frames"])
            np.testing.assert_array_equal(batch["mel"][j].numpy(), expected[2 * b + j]["mel"])


@pytest.mark.parametrize("how", ["gzip", "pipe"])
def test_compressed_and_command_shards_read_as_plain_files(how, tmp_path):
    path = write(tmp_path / "s.tar", [sample(f"k{i}", t=4, h=8, w=8) for i in range(2)])
    if how == "gzip":
        url = str(tmp_path / "s.tar.gz")
        (tmp_path / "s.tar.gz").write_bytes(gzip.compress(open(path, "rb").read()))
    else:
        url = f"pipe:cat {path}"
    counter = gdata.SkipCounter()
    plain, other = (list(gdata.ReadStage(counter)(iter([{"url": u}]))) for u in (path, url))
    assert [s["__key__"] for s in plain] == ["k0", "k1"] and plain == [{**s, "__url__": path} for s in other]
    assert not counter.counts


def test_member_size_beyond_the_file_is_a_shard_error(tmp_path):
    path = write(tmp_path / "s.tar", [sample("k0", t=4, h=8, w=8)])
    blob = bytearray(open(path, "rb").read())
    header = tarfile.TarInfo.frombuf(bytes(blob[:512]), "utf-8", "surrogateescape")
    header.size = 1 << 60                                          # an exabyte claimed by a 20 KB file
    blob[:512] = header.tobuf(tarfile.GNU_FORMAT)
    (tmp_path / "s.tar").write_bytes(bytes(blob))
    counter = gdata.SkipCounter()
    assert list(gdata.ReadStage(counter)(iter([{"url": path}]))) == []
    assert dict(counter.counts) == {"shard_error": 1}


def test_no_batch_names_the_members_a_foreign_tar_holds(tmp_path):
    path = str(tmp_path / "other.tar")
    with tarfile.open(path, "w") as tar:
        for name in ("a.jpg", "a.cls", "b.jpg", "b.cls"):
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(gdata.NoBatchError) as err:
        list(gdata.batches(make_dataset(path, DataConfig(workers=0), 1, SPEC, epoch_batches=1)))
    message = str(err.value)
    assert "\n" not in message and "none of the 1 shards gave a sample" in message
    assert message.endswith("tar members not read: .cls, .jpg") and ".frames.mjpeg" in message
