"""Encoding clips as WebDataset samples and writing reproducible tar shards."""
from __future__ import annotations

import io
import json
import os

import cv2
import numpy as np
import webdataset as wds

from avprep.clips import Clip
from avprep.config import BuildConfig

FORMAT_VERSION = 1


def encode_jpegs(frames: np.ndarray, quality: int) -> tuple[bytes, list[int]]:
    """RGB (T,H,W,3) or grey (T,H,W,1) frames -> concatenated JPEGs and T+1 byte offsets."""
    parts, offsets = [], [0]
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    for frame in frames:
        img = frame[..., 0] if frame.shape[-1] == 1 else cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
        ok, buf = cv2.imencode(".jpg", img, params)
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        parts.append(buf.tobytes())
        offsets.append(offsets[-1] + len(parts[-1]))
    return b"".join(parts), offsets


def decode_jpegs(data: bytes, offsets: list[int], indices=None) -> np.ndarray:
    """Inverse of encode_jpegs for the frames in `indices` (default all): (N,H,W,3) RGB."""
    indices = range(len(offsets) - 1) if indices is None else indices
    out = []
    for i in indices:
        buf = np.frombuffer(data, np.uint8, offsets[i + 1] - offsets[i], offsets[i])
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"frame {i} is not a decodable JPEG")
        out.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    return np.stack(out)


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def load_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def sample_key(clip: Clip) -> str:
    return f"{clip.item.key_stem()}_s{clip.segment:02d}"


def clip_metadata(clip: Clip, cfg: BuildConfig, frames: np.ndarray, offsets: list[int],
                  source_path: str) -> dict:
    item, info, fps = clip.item, clip.info, clip.fps
    v, a = info.video, info.audio
    return {
        "format_version": FORMAT_VERSION,
        "key": sample_key(clip),
        "source": item.source,
        "item_id": item.item_id,
        "split": item.split,
        "source_path": source_path,
        "segment": clip.segment,
        "first_frame": clip.first_frame,
        "num_frames": int(frames.shape[0]),
        "fps": fps,
        "width": int(frames.shape[2]),
        "height": int(frames.shape[1]),
        "channels": int(frames.shape[3]),
        "start_time": round(clip.first_frame / fps, 6),
        "end_time": round((clip.first_frame + clip.num_frames) / fps, 6),
        "cut_start": item.start,
        "cut_end": item.end,
        "has_audio": a is not None,
        "sample_rate": cfg.audio.sample_rate,
        "hop_length": cfg.audio.hop_length,
        "n_fft": cfg.audio.n_fft,
        "n_mels": cfg.audio.n_mels,
        "mel_per_frame": cfg.mel_per_frame(),
        "frame_offsets": offsets,
        "labels": item.labels,
        "extra": item.extra,
        "source_video": {
            "width": v.width, "height": v.height, "sar": str(v.sar), "rotation": v.rotation,
            "fps": v.fps, "codec": v.codec,
            "audio_codec": a.codec if a else None, "audio_channels": a.channels if a else None,
            "audio_sample_rate": a.sample_rate if a else None,
        },
    }


def encode_clip(clip: Clip, cfg: BuildConfig, source_path: str, frames: np.ndarray | None = None,
                extra_members: dict[str, bytes] | None = None, extra_meta: dict | None = None) -> dict:
    """A WebDataset sample dict (all values bytes). `frames` overrides clip.frames (crops)."""
    frames = clip.frames if frames is None else frames
    data, offsets = encode_jpegs(frames, cfg.video.jpeg_quality)
    meta = clip_metadata(clip, cfg, frames, offsets, source_path)
    meta.update(extra_meta or {})
    sample = {"__key__": meta["key"], "frames.mjpeg": data,
              "mel.npy": npy_bytes(clip.mel.astype(np.float16))}
    sample.update(extra_members or {})
    sample["json"] = json.dumps(meta, sort_keys=True).encode()
    return sample


class ShardWriter:
    """Writes samples into `path` via a temporary file; `commit()` renames it into place.

    webdataset's TarWriter with mtime 0 and fixed owner names: byte-reproducible tars.
    """

    def __init__(self, path: str):
        folder, name = os.path.split(path)
        self.path = path
        self.tmp_path = os.path.join(folder, f".{name}.tmp")
        self._file = open(self.tmp_path, "wb")
        self._tar = wds.TarWriter(self._file, user="avprep", group="avprep", mtime=0, encoder=False)
        self.count = 0

    def write(self, sample: dict) -> None:
        self._tar.write(sample)
        self.count += 1

    def commit(self) -> None:
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.tmp_path, self.path)

    def abort(self) -> None:
        self._tar.close()
        self._file.close()
        if os.path.exists(self.tmp_path):
            os.remove(self.tmp_path)


def write_json_atomic(path: str, obj) -> None:
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
