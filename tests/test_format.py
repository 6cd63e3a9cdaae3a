"""avprep.format: one encoder, one validator (verify and training), headers checked before any
allocation, verify as a gate (counts from stats and manifest), no command from a file name."""
from __future__ import annotations

import ast
import dataclasses
import io
import json
import tarfile
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import numpy.lib.format as npy_format
import pytest
import webdataset as wds
from typer.testing import CliRunner

from avprep import format as fmt
from avprep.format import FormatError, SampleMeta, SourceVideo
from avprep.tools import inspect_shards, verify_shards
from cli.avprep_cli import app

ROOT = Path(__file__).resolve().parents[1]
K = 10


def meta_for(key: str, **kw) -> SampleMeta:
    base = dict(key=key, source="test", item_id=key, split="train", source_path=f"{key}.mp4", segment=0,
                first_frame=0, fps=10.0, start_time=0.0, end_time=0.6, cut_start=None, cut_end=None,
                has_audio=True, sample_rate=16000, hop_length=160, n_fft=400, n_mels=80, mel_per_frame=K,
                labels={"label": "x"}, extra={}, source_video=SourceVideo(
                    width=24, height=16, sar="1", rotation=0, fps=25.0, codec="h264", audio_codec="aac",
                    audio_channels="mono", audio_sample_rate=44100))
    return SampleMeta(**{**base, **kw})


def frames_for(t: int = 6, h: int = 16, w: int = 24) -> np.ndarray:
    return np.stack([np.full((h, w, 3), 20 * i, np.uint8) for i in range(t)])


def good(key: str = "k0", t: int = 6, **kw) -> dict:
    mel = np.tile(np.arange(t * K, dtype=np.float32), (80, 1))
    return fmt.encode_sample(meta_for(key, **kw), frames_for(t), mel, 90)


def with_meta(sample: dict, **changes) -> dict:
    obj = json.loads(sample["json"])
    obj.update(changes)
    return {**sample, "json": json.dumps(obj).encode()}


def lying_mel(shape=(80, 10 ** 13)) -> bytes:
    """A 128-byte .npy whose header claims `shape` and that holds no data."""
    buf = io.BytesIO()
    npy_format.write_array_header_1_0(buf, {"descr": "<f2", "fortran_order": False, "shape": shape})
    assert len(buf.getvalue()) == 128
    return buf.getvalue()


def reason(sample: dict, check=fmt.verify_sample) -> str:
    with pytest.raises(FormatError) as exc:
        check(sample)
    return exc.value.reason


# ---- encoder / decoder -------------------------------------------------------------------

def test_encode_then_decode_round_trips():
    raw = good(t=6)
    sample = fmt.verify_sample(raw)
    assert sample.meta == dataclasses.replace(meta_for("k0"), num_frames=6, width=24, height=16, channels=3,
                                              frame_offsets=sample.meta.frame_offsets)
    # crop (crop samples) and has_video (false: audio-only samples) are written only when set
    assert set(json.loads(raw["json"])) == {f.name for f in dataclasses.fields(SampleMeta)} - {"crop", "has_video"}
    levels = sample.frames().reshape(6, -1).mean(axis=1)
    np.testing.assert_allclose(levels, [20 * i for i in range(6)], atol=2)
    assert sample.mel().dtype == np.float16 and sample.mel().shape == (80, 60)
    np.testing.assert_array_equal(sample.mel_window(2, 3)[5], np.arange(20, 50))


def test_metadata_bytes_are_stable():
    """The json member is sorted-key JSON of the dataclass: shards stay byte-identical."""
    meta = dataclasses.replace(meta_for("k0"), num_frames=1, width=24, height=16, frame_offsets=[0, 5])
    assert meta.to_json() == (
        b'{"channels": 3, "cut_end": null, "cut_start": null, "end_time": 0.6, "extra": {}, "first_frame": 0, '
        b'"format_version": 1, "fps": 10.0, "frame_offsets": [0, 5], "has_audio": true, "height": 16, '
        b'"hop_length": 160, "item_id": "k0", "key": "k0", "labels": {"label": "x"}, "mel_per_frame": 10, '
        b'"n_fft": 400, "n_mels": 80, "num_frames": 1, "sample_rate": 16000, "segment": 0, '
        b'"source": "test", "source_path": "k0.mp4", "source_video": {"audio_channels": "mono", '
        b'"audio_codec": "aac", "audio_sample_rate": 44100, "codec": "h264", "fps": 25.0, "height": 16, '
        b'"rotation": 0, "sar": "1", "width": 24}, "split": "train", "start_time": 0.0, "width": 24}')


def test_crop_arrays_are_serialised_and_checked():
    t = 6
    arrays = {fmt.LANDMARKS: np.zeros((t, 68, 2), np.float32), fmt.TRANSFORM: np.zeros((t, 2, 3), np.float32),
              fmt.FACE_STATUS: np.ones(t, np.uint8)}
    crop = {"kind": "lips", "size": 16, "num_frames": t}
    mel = np.zeros((80, t * K), np.float32)
    meta = meta_for("c0", crop=crop)
    raw = fmt.encode_sample(meta, frames_for(t, 16, 16), mel, 90, arrays)
    assert fmt.verify_sample(raw).array(fmt.FACE_STATUS).tolist() == [1] * t
    assert reason({**raw, fmt.LANDMARKS: fmt.npy_bytes(np.zeros((t, 68, 3), np.float32))}) == "bad_array"
    assert reason({k: v for k, v in raw.items() if k != fmt.TRANSFORM}) == "missing_member"
    with pytest.raises(FormatError):       # the encoder refuses what the validator would refuse
        fmt.encode_sample(meta, frames_for(t, 16, 16), mel, 90, {**arrays, fmt.FACE_STATUS: np.ones(t - 1, np.uint8)})


def test_avcorr_samples_carry_every_field():
    from avprep.testing import avcorr
    clip = avcorr.make_clip(np.random.default_rng(0), seconds=1.0, size=32, obj=8)
    sample = fmt.verify_sample(avcorr.clip_sample(clip, "avcorr_0000", "clip_0000.mkv"))
    assert sample.meta.num_frames == 10 and sample.meta.has_audio and sample.meta.channels == 3


# ---- the validator's rules ---------------------------------------------------------------

@pytest.mark.parametrize("change, code", [
    (lambda s: {**s, "json": b"[1, 2]"}, "bad_json"),
    (lambda s: {**s, "json": b'{"key": "\xff\xfe"}'}, "bad_json"),
    (lambda s: {**s, "json": b"{not json"}, "bad_json"),
    (lambda s: {**s, "json": b"[" * 100000}, "bad_json"),
    (lambda s: with_meta(s, format_version=2), "format_version"),
    (lambda s: with_meta(s, format_version=True), "format_version"),
    (lambda s: with_meta(s, num_frames="abc"), "bad_meta"),
    (lambda s: with_meta(s, num_frames=True), "bad_meta"),
    (lambda s: with_meta(s, frame_offsets=None), "bad_meta"),
    (lambda s: with_meta(s, frame_offsets=[0, 1.5, 3]), "bad_meta"),
    (lambda s: with_meta(s, fps=float("nan")), "bad_meta"),
    (lambda s: with_meta(s, width=0), "bad_meta"),
    (lambda s: with_meta(s, height=10 ** 9), "bad_meta"),
    (lambda s: with_meta(s, mel_per_frame=4), "bad_meta"),                # 4 x 160 x 10 != 16000
    (lambda s: with_meta(s, source_video={"width": 1}), "bad_meta"),
    (lambda s: with_meta(s, key="other"), "bad_meta"),
    (lambda s: {k: v for k, v in with_meta(s).items() if k != "json"}, "missing_member"),
    (lambda s: with_meta(s, frame_offsets=json.loads(s["json"])["frame_offsets"][::-1]), "bad_offsets"),
    (lambda s: {**s, "frames.mjpeg": s["frames.mjpeg"] + b"\0"}, "bad_offsets"),
    (lambda s: with_meta(s, num_frames=5), "bad_offsets"),
    (lambda s: {**s, "mel.npy": lying_mel()}, "mel_header"),
    (lambda s: {**s, "mel.npy": fmt.npy_bytes(np.zeros((80, 59), np.float16))}, "mel_header"),
    (lambda s: {**s, "mel.npy": fmt.npy_bytes(np.zeros((80, 60), np.float32))}, "mel_header"),
    (lambda s: {**s, "mel.npy": s["mel.npy"][:-2]}, "mel_header"),
    (lambda s: {**s, "mel.npy": b"\x93NUMPY\x01\x00garbage"}, "mel_header"),
    (lambda s: {**s, "mel.npy": _object_npy()}, "mel_header"),
    (lambda s: {**s, "mel.npy": fmt.npy_bytes(np.full((80, 60), np.inf, np.float16))}, "mel_values"),
    (lambda s: {**s, "frames.mjpeg": b"\0" * len(s["frames.mjpeg"])}, "bad_jpeg"),
])
def test_each_rule_names_its_reason(change, code):
    assert reason(change(good())) == code


def _object_npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array([None, 1], dtype=object), allow_pickle=True)
    return buf.getvalue()


def test_lying_headers_never_allocate():
    """A 128-byte mel.npy claiming (80, 10**13) and a JPEG claiming 60000x60000 are refused
    from their headers: the checks allocate (almost) nothing."""
    mel_lie = {**good(), "mel.npy": lying_mel()}
    raw = good(t=1)
    jpg = bytearray(raw["frames.mjpeg"])
    at = bytes(jpg).index(b"\xff\xc0")
    jpg[at + 5:at + 9] = (60000).to_bytes(2, "big") * 2
    jpeg_lie = {**raw, "frames.mjpeg": bytes(jpg)}
    tracemalloc.start()
    try:
        assert reason(mel_lie) == "mel_header"
        assert reason(jpeg_lie) == "frame_size"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000


def test_random_damage_raises_only_format_errors():
    """Flipped bytes anywhere in the json, cut members: a FormatError or a valid sample, never
    another exception."""
    rng = np.random.default_rng(0)
    base = good(t=3)
    for _ in range(300):
        member = rng.choice(["json", "mel.npy", "frames.mjpeg"])
        data = bytearray(base[member])
        if rng.random() < 0.3:
            data = data[:int(rng.integers(0, len(data)))]
        else:
            for pos in rng.integers(0, len(data), size=int(rng.integers(1, 4))):
                data[pos] = int(rng.integers(0, 256))
        try:
            fmt.verify_sample({**base, member: bytes(data)})
        except FormatError:
            pass


# ---- one owner ---------------------------------------------------------------------------

def _python_files(*folders: str):
    for folder in folders:
        yield from sorted((ROOT / folder).rglob("*.py"))


def test_glcm_imports_only_the_format_and_fsio():
    for path in _python_files("glcm"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module == "avprep":
                names = [f"avprep.{a.name}" for a in node.names]        # from avprep import fsio
            else:
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                if name.startswith("avprep"):
                    assert name in ("avprep.format", "avprep.fsio"), f"{path.name} imports {name}"


def test_no_module_indexes_metadata_by_literal_field_names():
    """Metadata is read through SampleMeta attributes; `meta["num_frames"]` lives nowhere."""
    generic = {"key", "source", "item_id", "split", "extra", "labels", "width", "height", "fps", "sample_rate",
               "crop", "format_version"}     # also names in outcome rows, annotations, configs, manifests
    fields = {f.name for f in dataclasses.fields(SampleMeta)} - generic
    assert {"num_frames", "frame_offsets", "mel_per_frame"} <= fields
    for path in _python_files("avprep", "glcm", "cli"):
        if path.name == "format.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
                assert node.slice.value not in fields, f"{path.relative_to(ROOT)}:{node.lineno}"


def test_glcm_skips_what_verify_rejects():
    """One rule set: samples verify names as bad are skipped in training, with the same reason."""
    from glcm.data import ClipSpec, SkipSample, decode_sample
    spec = ClipSpec(frames=4, crop=16, jitter=False, mel_per_frame=K)
    cases = [{**good(), "mel.npy": lying_mel()}, with_meta(good(), key="other"),
             with_meta(good(), frame_offsets=None), {**good(), "json": b"[1]"}]
    for raw in cases:
        with pytest.raises(SkipSample) as exc:
            decode_sample(raw, spec, np.random.default_rng(0))
        assert exc.value.reason == reason(raw)
    assert decode_sample(good(), spec, np.random.default_rng(0))["frames"].shape == (4, 16, 16, 3)


# ---- verify as a gate, inspect and preview never crash -----------------------------------

runner = CliRunner()


def run(*args, cwd=None):
    res = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "240", "NO_COLOR": "1"})
    return res.exit_code, res.output


def write_shard(path: Path, samples: list[dict]) -> Path:
    with wds.TarWriter(str(path), user="avprep", group="avprep", mtime=0, encoder=False) as sink:
        for s in samples:
            sink.write(s)
    return path


def write_build(folder: Path, per_shard: list[list[dict]]) -> Path:
    """A build folder as avprep writes it: shards, their stats files, manifest.json."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, samples in enumerate(per_shard):
        name = f"b-{i:06d}"
        write_shard(folder / f"{name}.tar", samples)
        (folder / f"{name}.stats.json").write_text(json.dumps({"shard": name + ".tar", "samples": len(samples),
                                                               "outcomes": []}))
        entries.append({"name": name + ".tar", "samples": len(samples), "inputs": len(samples)})
    (folder / "manifest.json").write_text(json.dumps({"format_version": 1, "shards": entries,
                                                      "samples": sum(len(s) for s in per_shard)}))
    return folder


@pytest.fixture
def build(tmp_path) -> Path:
    return write_build(tmp_path / "out", [[good("a0"), good("a1")], [good("b0"), good("b1")]])


def test_verify_passes_a_whole_build(build):
    code, out = run("verify", build)
    assert code == 0 and out.strip().splitlines()[-1] == "OK: 2 shards, 4 samples checked, 0 bad"


def test_shard_cut_at_a_sample_boundary_fails(build):
    path = build / "b-000001.tar"
    with tarfile.open(path) as tar:
        second = [m for m in tar.getmembers() if m.name.startswith("b1.")][0]
    path.write_bytes(path.read_bytes()[:second.offset])          # a clean cut: tar reads without error
    code, out = run("verify", build)
    assert code == 1 and "holds 1 samples, the build wrote 2" in out
    code, out = run("verify", build / "b-*.tar")                 # a glob still has the stats files
    assert code == 1 and "holds 1 samples, the build wrote 2" in out


def test_missing_shard_stray_shard_and_missing_manifest_fail(build):
    (build / "b-000001.tar").unlink()
    code, out = run("verify", build)
    assert code == 1 and "b-000001.tar: missing" in out
    write_shard(build / "b-000001.tar", [good("b0"), good("b1")])
    write_shard(build / "stray.tar", [good("s0")])
    code, out = run("verify", build)
    assert code == 1 and "stray.tar: not listed in manifest.json" in out
    (build / "stray.tar").unlink()
    assert run("verify", build)[0] == 0
    (build / "manifest.json").unlink()
    code, out = run("verify", build)
    assert code == 1 and "no manifest.json" in out
    code, out = run("verify", str(build / "b-{000000..000002}.tar"))
    assert code == 1 and "b-000002.tar: missing shard" in out


def test_malformed_samples_are_named_and_checking_goes_on(tmp_path):
    bad = [{**good("j0"), "json": b"[]"}, with_meta(good("j1"), num_frames="abc"),
           with_meta(good("j2"), frame_offsets=None), {**good("j3"), "json": b'{"a": "\xff"}'},
           {**good("j4"), "mel.npy": lying_mel()}]
    folder = write_build(tmp_path / "out", [bad + [good("ok0")], [good("ok1"), good("ok0")]])
    code, out = run("verify", folder)
    assert code == 1
    for key, why in [("j0", "bad_json"), ("j1", "bad_meta"), ("j2", "bad_meta"), ("j3", "bad_json"),
                     ("j4", "mel_header"), ("ok0", "duplicate key")]:
        assert any(f":{key}: {why}" in line for line in out.splitlines()), (key, out)
    assert "FAILED: 2 shards, 8 samples checked, 6 bad" in out
    code, out = run("inspect", folder)
    assert code == 0 and "2 shards, 4 samples" in out and "bad samples" in out
    png = tmp_path / "p.png"
    code, out = run("preview", folder, "--out", png, "--samples", 2)
    assert code == 0 and "(2 samples; skipped 5 bad" in out and png.read_bytes()[:4] == b"\x89PNG"


def test_glob_without_stats_says_what_it_could_not_check(tmp_path):
    write_shard(tmp_path / "x-000000.tar", [good("a0")])
    code, out = run("verify", tmp_path / "*.tar")
    assert code == 0
    assert "NOT CHECKED" in out and "no stats file beside it" in out and "cannot tell whether shards are missing" in out
    assert out.strip().splitlines()[-1] == "OK: 1 shards, 1 samples checked, 0 bad, 2 checks not done"


# ---- no command from a file name ---------------------------------------------------------

def test_a_file_named_like_a_command_is_only_read(tmp_path, monkeypatch):
    folder = tmp_path / "d"
    folder.mkdir()
    write_shard(folder / "pipe:touch X; cat a.tar #.tar", [good("a0")])
    monkeypatch.chdir(folder)
    for cmd in (["verify"], ["inspect"], ["preview", "--out", tmp_path / "p.png"]):
        code, out = run(*cmd, f"{folder}/*.tar")
        assert code == 0, out
        assert not (folder / "X").exists() and not (tmp_path / "X").exists()
    assert "1 samples checked, 0 bad" in run("verify", f"{folder}/*.tar")[1]


def test_explicit_commands_need_the_flag(tmp_path, monkeypatch):
    write_shard(tmp_path / "a.tar", [good("a0")])
    monkeypatch.chdir(tmp_path)
    for cmd in ("verify", "inspect", "preview"):
        code, out = run(cmd, "pipe:touch Y; cat a.tar")
        assert code == 2 and len(out.strip().splitlines()) == 1 and "--allow-commands" in out
        assert not (tmp_path / "Y").exists()
    code, out = run("verify", "--allow-commands", "pipe:cat a.tar")
    assert code == 0 and "1 samples checked, 0 bad" in out
    assert "runs this command / fetches this URL" in " ".join(run("verify", "--help")[1].split())
