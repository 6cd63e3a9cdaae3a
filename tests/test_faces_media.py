"""The face stage on real media (../shared/media): 300-W accuracy, GRID tracking, known motion.

Skipped when the shared media folder is absent. Figures are printed (run with -s).
"""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from avprep.config import CropConfig
from avprep.faces import align, quality
from avprep.faces.naive import naive_track
from avprep.faces.stage import FaceOptions, crop_frames, crops_from_track, options_for
from avprep.faces.track import DETECTED, TRACKED, track_landmarks
from avprep.faces.video import read_frames
from avprep.probe import MediaError

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
pytestmark = pytest.mark.skipif(not MEDIA.is_dir(), reason="shared media folder ../shared/media is absent")
LIPS = CropConfig(kind="lips", size=112)


@pytest.fixture(scope="module")
def grid():
    return {name: read_frames(str(MEDIA / "grid" / f"{name}.mpg")) for name in ("swwp2s", "bbaf2n")}


def _rgb(path):
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_landmarks_match_human_300w_annotations():
    data = json.loads((MEDIA / "300w" / "test_300w.json").read_text())
    for image in data["images"]:
        ann = next(a for a in data["annotations"] if a["image_id"] == image["id"])
        truth = np.array(ann["keypoints"], dtype=float).reshape(68, 3)[:, :2]
        still = _rgb(MEDIA / "300w" / image["file_name"])
        track = track_landmarks(np.stack([still] * 4))       # frame 0 detected, 1..3 tracked
        assert track.status.tolist() == [DETECTED, TRACKED, TRACKED, TRACKED]
        errors = [quality.nme(p, truth) for p in track.points]
        print(f"300-W {image['file_name']}: NME (outer-eye-corner normalised) {errors[0]:.4f} detected, "
              f"{max(errors[1:]):.4f} tracked")
        assert max(errors) < 0.07


def test_tracked_lips_match_per_frame_detection_and_are_steadier(grid):
    for name, (frames, fps) in grid.items():
        ours = crop_frames(frames, fps, LIPS)
        naive = naive_track(frames)
        assert naive.count(DETECTED) == len(frames)
        ref = crops_from_track(frames, naive, fps, LIPS, options_for(LIPS))
        lm = ours.arrays["landmarks.npy"]
        tf = ours.arrays["transform.npy"]
        assert lm.shape == (len(frames), 68, 2) and tf.shape == (len(frames), 2, 3)
        dev = np.linalg.norm(quality.lip_centres(lm) - quality.lip_centres(naive.points), axis=1)
        dev /= quality.crop_width_px(tf, LIPS.size)
        jit_ours = quality.jitter(quality.centre_of_crops(tf, LIPS.size))
        ref_tf = ref.arrays["transform.npy"]
        jit_ref = quality.jitter(quality.centre_of_crops(ref_tf, LIPS.size))
        print(f"GRID {name}: {ours.meta['detected']} detected / {ours.meta['tracked']} tracked; lip-centre "
              f"deviation from per-frame detection median {np.median(dev):.4f}, max {dev.max():.4f} of crop "
              f"width; crop-centre jitter {jit_ours:.3f} px/frame tracked vs {jit_ref:.3f} per-frame detection")
        assert ours.meta["tracked"] > 0.8 * len(frames)
        assert np.median(dev) < 0.02 and dev.max() < 0.05
        assert jit_ours <= jit_ref * 1.1


def _moving(still, n, rotate=6.0, zoom=0.08, seed=0):
    """n frames of `still` under smooth known similarity motions about its centre."""
    h, w = still.shape[:2]
    t = np.linspace(0, 2 * np.pi, n)
    phase = np.random.default_rng(seed).uniform(0, 2 * np.pi, 4)
    motions = []
    for ti in t:
        ang, s = rotate * np.sin(ti + phase[0]), 1 + zoom * np.sin(ti + phase[1])
        m = cv2.getRotationMatrix2D((w / 2, h / 2), ang, s)
        m[:, 2] += [25 * np.sin(ti + phase[2]), 12 * np.sin(2 * ti + phase[3])]
        motions.append(m)
    frames = np.stack([cv2.warpAffine(still, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
                       for m in motions])
    return frames, np.stack(motions)


@pytest.mark.parametrize("kind", ["lips", "face"])
def test_crop_follows_known_motion(grid, kind):
    # a face crop is an axis-aligned box of fixed size per clip: it follows translation only
    rotate, zoom = (6.0, 0.08) if kind == "lips" else (0.0, 0.0)
    frames, motions = _moving(grid["swwp2s"][0][10], 50, rotate, zoom)
    out = crop_frames(frames, 25.0, CropConfig(kind=kind, size=112))
    tf = out.arrays["transform.npy"]
    err = quality.motion_error(tf, motions, 112)
    print(f"known motion ({kind}, GRID still, 50 frames, +-{rotate:g} deg, +-{zoom:.0%} scale, +-25 px): "
          f"crop pixel error mean {err.mean():.2f}, max {err.max():.2f}; {out.meta['tracked']} tracked")
    assert err.mean() < 1.0 and err.max() < 2.5
    assert out.meta["tracked"] >= 40
    static = crop_frames(np.stack([frames[0]] * 50), 25.0, CropConfig(kind=kind, size=112))
    assert quality.motion_error(static.arrays["transform.npy"], motions, 112).mean() > 5


def test_stored_landmarks_and_transform_describe_the_crop(grid):
    frames, fps = grid["bbaf2n"]
    out = crop_frames(frames[:20], fps, CropConfig(kind="lips", size=96, grey=True))
    lm = out.arrays["landmarks.npy"]
    tf = out.arrays["transform.npy"]
    assert out.frames.shape == (20, 96, 96, 3)
    assert np.array_equal(out.frames[..., 0], out.frames[..., 2])        # grey replicated
    lips = np.stack([align.apply(m.astype(float), p[align.MOUTH]).mean(0) for m, p in zip(tf, lm)])
    assert np.abs(lips - 47.5).max() < 96 * 0.06                          # lips near the centre
    assert set(out.meta) >= {"detected", "tracked", "interpolated", "scale", "kind", "size"}
    json.dumps(out.meta)


def test_hint_picks_the_face_and_largest_wins_without_hint(grid):
    big = grid["swwp2s"][0][0]
    small = cv2.resize(grid["bbaf2n"][0][0], None, fx=0.8, fy=0.8)
    canvas = np.zeros((288, 720, 3), np.uint8)
    canvas[:, :360] = big
    canvas[:small.shape[0], 360:360 + small.shape[1]] = small
    frames = np.stack([canvas] * 6)
    x_of = lambda hint: np.nanmean(track_landmarks(frames, hint=hint).points[..., 0])  # noqa: E731
    assert x_of(None) < 360
    assert x_of((0.7, 0.4)) > 360
    assert x_of((0.2, 0.5)) < 360


def test_cuts_and_faceless_shots_are_reported(grid):
    """Hamilton: shot changes, long stretches without a usable face."""
    frames, fps = read_frames(str(MEDIA / "misc" / "short_hamilton_clip.mp4"), max_frames=150)
    with pytest.raises(MediaError) as e:
        crop_frames(frames, fps, LIPS)
    assert e.value.reason == "no_face"
    lenient = FaceOptions(max_gap_s=4.0, min_face_fraction=0.2)
    out = crop_frames(frames, fps, LIPS, opts=lenient)
    meta = out.meta
    print(f"hamilton (150 frames, lenient gaps): {meta['detected']} detected, {meta['tracked']} tracked, "
          f"{meta['interpolated']} interpolated, {meta['detector_runs']} detector runs")
    assert meta["interpolated"] > 30 and meta["detected"] + meta["tracked"] + meta["interpolated"] == 150


@pytest.mark.parametrize("name", ["indoor_020.png", "indoor_029.png"])
def test_lip_crop_follows_known_motion_of_300w_stills(name):
    """A 300-W still animated with known similarity motions: the lip crop moves with it."""
    frames, motions = _moving(_rgb(MEDIA / "300w" / name), 40, rotate=5.0, zoom=0.06, seed=1)
    out = crop_frames(frames, 25.0, LIPS)
    err = quality.motion_error(out.arrays["transform.npy"], motions, 112)
    print(f"known motion (300-W {name}, 40 frames): crop pixel error mean {err.mean():.2f}, max {err.max():.2f}")
    assert err.mean() < 1.5 and err.max() < 3.5
    # control: a crop that ignores the motion errs several times more (so this test can fail)
    static = crop_frames(np.stack([frames[0]] * 40), 25.0, LIPS)
    static_err = quality.motion_error(static.arrays["transform.npy"], motions, 112)
    print(f"  motion ignored: mean {static_err.mean():.2f}")
    assert static_err.mean() > max(3.0, 5 * err.mean())


def test_coarse_search_skips_the_fine_pass_only_when_no_smaller_face_could_win(grid, monkeypatch):
    from avprep.faces import track as track_mod
    calls = []
    real = track_mod.detect

    def counted(grey, min_face, roi=None, threshold=0.0):
        if roi is None:
            calls.append(round(min_face))
        return real(grey, min_face, roi, threshold)

    monkeypatch.setattr(track_mod, "detect", counted)
    face = grid["bbaf2n"][0][0]
    close = np.stack([cv2.resize(face, (720, 576))] * 2)          # a 250 px face: the coarse pass decides
    far = np.zeros((2, 720, 1280, 3), np.uint8)                   # a 124 px face: below the coarse size
    far[:, 200:488, 400:760] = face
    for frames, passes in ((close, 1), (far, 2)):
        calls.clear()
        got = track_landmarks(frames)
        assert len(calls) == passes and got.status[0] == DETECTED
        calls.clear()
        monkeypatch.setattr(track_mod, "MARGIN", 1e9)             # fine pass only: the same face
        ref = track_landmarks(frames)
        monkeypatch.setattr(track_mod, "MARGIN", 1.2)
        assert calls == [64] and np.abs(got.points[0] - ref.points[0]).mean() < 0.1 * np.ptp(ref.points[0, :, 0])
