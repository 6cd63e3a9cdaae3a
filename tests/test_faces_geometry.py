"""Crop geometry, gap filling, smoothing and drawing, on synthetic landmarks (no media)."""

import numpy as np
import pytest

from avprep.config import ConfigError, CropConfig
from avprep.faces import align, draw_landmarks
from avprep.faces.stage import FaceOptions, crop_frames, crops_from_track, options_for
from avprep.faces.temporal import fill_gaps, smooth_poly
from avprep.faces.track import DETECTED, MISSING, Track
from avprep.probe import MediaError


def _rot(deg, scale, tx, ty):
    a = np.deg2rad(deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), tx], [scale * np.sin(a), scale * np.cos(a), ty]])


def _face(m=None):
    """68 points: template-like stable points and a 60 px wide mouth, moved by m."""
    rng = np.random.default_rng(0)
    pts = rng.uniform(60, 200, size=(68, 2))
    pts[align.STABLE] = align.TEMPLATE
    pts[48:68] = np.column_stack([np.linspace(98, 158, 20), 215 + 5 * np.sin(np.linspace(0, 6, 20))])
    pts[48], pts[54] = (98, 215), (158, 215)
    return pts if m is None else align.apply(m, pts)


def test_similarity_recovers_a_known_transform():
    m = _rot(17, 1.7, 30, -12)
    src = np.array([[0, 0], [10, 3], [4, 9.0]])
    assert np.allclose(align.similarity(src, align.apply(m, src)), m)
    assert np.allclose(align.compose(align.invert(m), m), _rot(0, 1, 0, 0), atol=1e-9)


def test_lip_crop_puts_lips_at_centre_spanning_a_third():
    motions = [_rot(5 * np.sin(t), 1 + 0.1 * np.cos(t), 40 * t, 3 * t) for t in np.linspace(0, 2, 9)]
    pts = np.stack([_face(w) for w in motions])
    m, geo = align.lip_transforms(pts, pts, 96, 1 / 3)
    lips = np.stack([align.apply(mt, p[align.MOUTH]).mean(0) for mt, p in zip(m, pts)])
    assert np.allclose(lips, 47.5, atol=1e-6)
    widths = [np.linalg.norm(align.apply(mt, p[54]) - align.apply(mt, p[48])) for mt, p in zip(m, pts)]
    assert np.allclose(widths, 32.0)
    assert geo["lip_width_template"] == pytest.approx(60.0)


def test_lip_crop_scale_is_per_clip_not_per_frame():
    pts = np.stack([_face() for _ in range(5)])
    pts[2, 54, 0] += 30            # one frame's mouth much wider: the crop must not breathe
    m, _ = align.lip_transforms(pts, pts, 112, 1 / 3)
    assert np.allclose([align.scale_of(x) for x in m], align.scale_of(m[0]))


def test_face_crop_is_square_stable_and_centred():
    pts = np.stack([_face(_rot(0, 1, 5 * t, 0)) for t in range(6)])
    m, geo = align.face_transforms(pts, 128, 0.3)
    assert np.allclose([align.scale_of(x) for x in m], 128 / geo["face_side_px"], rtol=1e-4)
    assert np.allclose(np.diff(m[:, 0, 2]), -5 * align.scale_of(m[0]))


def test_warp_follows_the_transform_and_antialiases():
    img = np.zeros((400, 400, 3), np.uint8)
    img[200:, :] = 255
    img[::2, ::2] = 255 - img[::2, ::2]            # a fine checkerboard that must average out
    m = np.array([[0.25, 0, -20.0], [0, 0.25, -20.0]])   # (200, 200) -> (30, 30)
    crop = align.warp(img, m, 64)
    assert crop.shape == (64, 64, 3)
    assert abs(int(crop[10, 40, 0]) - 64) < 12     # top: 1/4 of pixels white
    assert abs(int(crop[50, 40, 0]) - 191) < 12    # bottom: 3/4 white
    assert np.argmax(np.diff(crop[:, 40, 0].astype(int))) in (29, 30)


@pytest.mark.parametrize("scale", [0.6, 0.45, 0.3, 0.17])
def test_shrinking_warp_samples_where_the_transform_says(scale):
    # a linear ramp survives area averaging and bilinear sampling exactly, so every crop pixel
    # must hold the x (or y) that the transform maps it from; a block offset error would not
    ramp_x, ramp_y = np.meshgrid(np.arange(500, dtype=np.float32), np.arange(400, dtype=np.float32))
    img = np.dstack([ramp_x, ramp_y, ramp_x])
    m = _rot(7, scale, -60 * scale, -50 * scale)
    crop = align.warp(img, m, 48)
    uv = np.stack(np.meshgrid(np.arange(48.0), np.arange(48.0)), axis=-1)
    src = align.apply(align.invert(m), uv)
    assert np.abs(crop[..., :2] - src).max() < 0.05
    edge = align.warp(img, _rot(0, scale, -430 * scale, -330 * scale), 48)   # runs past the frame
    assert edge[-1, -1].max() == 0 and edge[0, 0, 0] > 400


def test_landmark_points_are_read_exactly():
    import dlib

    from avprep.faces.detect import _points
    xy = [(-3, 5), (1000000, -7), (0, 0)] + [(i, 2 * i + 1) for i in range(65)]
    shape = dlib.full_object_detection(dlib.rectangle(0, 0, 9, 9), [dlib.point(x, y) for x, y in xy])
    assert _points(shape).tolist() == [[float(x), float(y)] for x, y in xy]

    class Odd:      # a dlib whose text form of points differs: read point by point
        num_parts = 2

        def __init__(self, text):
            self.text = text

        def parts(self):
            return Points(self.text)

    class Points(list):
        def __init__(self, text):
            super().__init__([dlib.point(4, -2), dlib.point(7, 9)])
            self.text = text

        def __str__(self):
            return self.text
    for text in ("[(4, -2), (7, 9)]", "points[(4, -2), (7, 9), (1, 1)]", "points[(4, -2), (7, 9.5)]",
                 "points[(4, -2), (7, 9-)]"):
        assert _points(Odd(text)).tolist() == [[4.0, -2.0], [7.0, 9.0]]


def test_fill_gaps_interpolates_and_refuses_long_gaps():
    x = np.array([np.nan, 1.0, np.nan, np.nan, 4.0, np.nan])[:, None]
    filled, mask = fill_gaps(x, max_gap=2)
    assert filled.ravel().tolist() == [1, 1, 2, 3, 4, 4]
    assert mask.tolist() == [True, False, True, True, False, True]
    with pytest.raises(ValueError, match="3 consecutive"):
        fill_gaps(np.array([1.0, np.nan, np.nan, np.nan, 2.0])[:, None], max_gap=2)
    with pytest.raises(ValueError):
        fill_gaps(np.full((3, 1), np.nan), max_gap=5)


def test_smooth_poly_follows_curved_motion_and_reduces_noise():
    t = np.arange(60, dtype=float)
    curve = np.column_stack([0.02 * t ** 2 - t, 5 * np.sin(t / 8)])
    assert np.abs(smooth_poly(curve, 4) - curve).max() < 0.15      # follows, no lag
    noise = np.random.default_rng(2).normal(size=(300, 2))
    assert smooth_poly(noise, 4).std() < 0.7 * noise.std()
    assert np.array_equal(smooth_poly(curve, 0), curve)
    t1 = np.arange(50, dtype=float)[:, None]
    assert np.allclose(smooth_poly(3 * t1 + 1, 3), 3 * t1 + 1)      # linear motion, ends included
    assert np.allclose(smooth_poly(np.ones((2, 3)), 4), 1.0)         # too short to fit: unchanged


def _track(points):
    status = np.where(np.isnan(points).any(axis=(1, 2)), MISSING, DETECTED).astype(np.int8)
    return Track(points, status, int((status == DETECTED).sum()))


def test_crops_from_track_counts_and_members():
    frames = np.zeros((8, 300, 300, 3), np.uint8)
    pts = np.stack([_face() for _ in range(8)])
    pts[3:5] = np.nan
    out = crops_from_track(frames, _track(pts), 25.0, CropConfig(kind="lips", size=88, grey=True), FaceOptions())
    assert out.frames.shape == (8, 88, 88, 3)
    assert (out.meta["detected"], out.meta["tracked"], out.meta["interpolated"]) == (6, 0, 2)
    assert {k: (v.dtype.str, v.shape) for k, v in out.arrays.items()} == {
        "landmarks.npy": ("<f4", (8, 68, 2)), "transform.npy": ("<f4", (8, 2, 3)), "face_status.npy": ("|u1", (8,))}
    status = out.arrays["face_status.npy"]
    assert status.tolist() == [DETECTED] * 3 + [0, 0] + [DETECTED] * 3


def test_no_face_is_an_error_not_a_whole_frame_crop():
    frames = np.zeros((8, 300, 300, 3), np.uint8)
    pts = np.full((8, 68, 2), np.nan)
    pts[0] = _face()
    with pytest.raises(MediaError) as e:
        crops_from_track(frames, _track(pts), 25.0, CropConfig(kind="lips"), FaceOptions())
    assert e.value.reason == "no_face"
    with pytest.raises(MediaError) as e:                     # real detector, blank frames
        crop_frames(frames, 25.0, CropConfig(kind="face"))
    assert e.value.reason == "no_face"


def test_config_checks():
    frames = np.zeros((2, 64, 64, 3), np.uint8)
    with pytest.raises(ConfigError):
        crop_frames(frames, 25.0, CropConfig(kind="none"))
    with pytest.raises(ConfigError):
        crop_frames(frames, 25.0, CropConfig(kind="lips", size=8))
    assert options_for(CropConfig(kind="lips", detect_every=3)).track.detect_every == 3


def test_draw_landmarks_draws_and_skips_nan():
    frame = np.zeros((300, 300, 3), np.uint8)
    drawn = draw_landmarks(frame, _face())
    assert drawn.shape == frame.shape and frame.sum() == 0
    assert drawn[215, 128].any()                         # on the lip line
    assert draw_landmarks(frame, np.full((68, 2), np.nan)).sum() == 0
    with pytest.raises(ValueError):
        draw_landmarks(frame, np.zeros((5, 2)))


def _umeyama(src, dst):
    """Reference: Umeyama's SVD solution with the reflection fix."""
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    u, sig, vt = np.linalg.svd(d.T @ s / len(src))
    fix = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ fix @ vt
    scale = np.trace(np.diag(sig) @ fix) / (s ** 2).sum(axis=1).mean()
    return np.hstack([scale * rot, (md - scale * rot @ ms)[:, None]])


def test_batched_closed_form_similarity_equals_umeyama():
    rng = np.random.default_rng(5)
    src = rng.normal(size=(40, 3, 2)) * 60 + 200
    dst = align.TEMPLATE + rng.normal(size=(3, 2)) * 3
    got = align.similarities(src, dst)
    want = np.stack([_umeyama(s, dst) for s in src])
    assert np.abs(got - want).max() < 1e-9
    mirrored = src[:, :, ::-1]                 # needs a reflection: both give the best rotation
    assert np.abs(align.similarities(mirrored, dst) - np.stack([_umeyama(s, dst) for s in mirrored])).max() < 1e-9
    assert np.allclose(align.align_all(rng.normal(size=(5, 68, 2)) * 40 + 150)[:, :, :2].shape, (5, 2, 2))


def test_smooth_poly_equals_a_least_squares_fit_per_frame():
    track = np.random.default_rng(6).normal(size=(29, 68, 2))
    got = smooth_poly(track, 5)
    for t in (0, 3, 14, 28):                   # ends (shrunk windows) and the middle
        lo, hi = max(0, t - 5), min(29, t + 6)
        x = np.arange(lo, hi) - t
        coef = np.polynomial.polynomial.polyfit(x, track[lo:hi].reshape(hi - lo, -1), 2)
        assert np.abs(got[t].reshape(-1) - coef[0]).max() < 1e-9


def test_huge_pages_keep_the_contents():
    import ctypes
    import mmap
    from avprep.faces.models import huge_pages
    area = mmap.mmap(-1, 8 << 20)
    data = np.random.default_rng(7).integers(0, 256, 8 << 20, dtype=np.uint8).tobytes()
    area[:] = data
    start = ctypes.addressof(ctypes.c_char.from_buffer(area))
    assert huge_pages(start, start + 1000) is False      # less than one aligned 2 MiB page
    assert huge_pages(start, start + len(data)) in (True, False)   # False where Linux cannot
    assert area[:] == data
