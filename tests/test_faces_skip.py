"""The tracker's frame skipping (TrackOptions.predict_every) on real media: on a steady
track the 68-point model runs on every other frame and the frames between are interpolated;
motion that is not steady, or a frame that does not look like its neighbours, gets a
prediction of its own. Skipped when the shared media folder is absent."""
from pathlib import Path

import numpy as np
import pytest

from avprep.config import CropConfig
from avprep.faces import quality
from avprep.faces.stage import FaceOptions, crop_frames
from avprep.faces.track import MISSING, TRACKED, TrackOptions, track_landmarks
from avprep.faces.video import read_frames

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
pytestmark = pytest.mark.skipif(not MEDIA.is_dir(), reason="shared media folder ../shared/media is absent")
LIPS = CropConfig(kind="lips", size=112)
EVERY = FaceOptions(track=TrackOptions(predict_every=1))


@pytest.fixture(scope="module")
def lrw_length():
    """29 frames (LRW's clip length) of a GRID talking head."""
    frames, fps = read_frames(str(MEDIA / "grid" / "lbax4n.mpg"), max_frames=29)
    return frames, fps


def test_skipping_matches_prediction_on_every_frame(lrw_length):
    frames, fps = lrw_length
    ref = crop_frames(frames, fps, LIPS, opts=EVERY)
    got = crop_frames(frames, fps, LIPS)                       # default: predict_every 3
    assert ref.meta["predicted"] == 29 and got.meta["predicted"] <= 12
    assert (got.meta["detected"], got.meta["tracked"], got.meta["interpolated"]) == (3, 26, 0)
    lm, tf = got.arrays["landmarks.npy"], got.arrays["transform.npy"]
    dev = np.linalg.norm(quality.lip_centres(lm) - quality.lip_centres(ref.arrays["landmarks.npy"]), axis=1)
    dev /= quality.crop_width_px(tf, LIPS.size)
    centres = quality.centre_of_crops(tf, LIPS.size) - quality.centre_of_crops(ref.arrays["transform.npy"], LIPS.size)
    crop_shift = np.linalg.norm(centres, axis=1).max()
    opening = [np.linalg.norm(p[:, 62] - p[:, 66], axis=1) for p in (lm, ref.arrays["landmarks.npy"])]
    opening_err = np.abs(opening[0] - opening[1])
    print(f"predict_every 3 vs 1 on 29 GRID frames: {got.meta['predicted']} predictions, lip-centre "
          f"difference median {np.median(dev):.4f}, max {dev.max():.4f} of the crop width; "
          f"crop centres max {crop_shift:.2f} px apart; stored mouth opening (62-66) differs by "
          f"{opening_err.mean():.2f} px on average, at most {opening_err.max():.2f} (range "
          f"{opening[1].min():.1f}-{opening[1].max():.1f} px)")
    assert np.median(dev) < 0.005 and dev.max() < 0.015 and crop_shift < 1.0
    assert opening_err.mean() < 1.0


def test_motion_that_is_not_steady_is_predicted_on_every_frame(lrw_length):
    frames, _ = lrw_length
    still = frames[5]
    steps = [0, 6, 12, 18, 24, 30, 36, 42, 48, 54]               # 6 px per frame: not steady
    moving = np.stack([np.roll(still, dx, axis=1) for dx in steps])
    track = track_landmarks(moving)
    assert track.predicted.all() and (track.status != 0).all()
    shift = np.diff(track.points[:, :, 0].mean(axis=1))
    assert np.abs(shift - 6).max() < 1.0


def test_a_frame_unlike_its_neighbours_is_not_interpolated(lrw_length):
    frames, _ = lrw_length
    clip = np.stack([frames[5]] * 7)
    every_2nd = TrackOptions(predict_every=2)
    track = track_landmarks(clip, every_2nd)
    assert track.predicted.tolist() == [True, False, True, False, True, False, True]
    assert (track.status == TRACKED).sum() == 6
    clip[3] = 255 - clip[3]                                      # a flash between two predictions
    track = track_landmarks(clip, every_2nd)
    assert track.status[3] == MISSING and not track.predicted[3]   # not interpolated: left to gap filling
    assert track.status[1] == TRACKED and not track.predicted[1]
