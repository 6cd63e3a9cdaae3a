"""Encoding clips as WebDataset samples and writing reproducible tar shards."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json

import cv2
import numpy as np
import webdataset as wds

from avprep import fsio
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
    """Writes samples into `path` through `fsio.atomic_writer` (a temporary name unique to this
    process); `commit()` fsyncs and renames it into place, `abort()` removes it.

    webdataset's TarWriter with mtime 0 and fixed owner names: byte-reproducible tars. The
    byte count and sha256 of the tar are kept for the shard's stats. An OS error (full disk,
    read-only folder) removes the temporary file and is an OutputError naming the path.
    """

    def __init__(self, path: str):
        self.path = path
        self._target = fsio.atomic_writer(path, "wb")
        file = self._target.__enter__()
        self.tmp_path = file.name
        self._out = _HashingFile(file)
        self._tar = wds.TarWriter(self._out, user="avprep", group="avprep", mtime=0, encoder=False)
        self.count = 0

    @property
    def nbytes(self) -> int:
        return self._out.nbytes

    @property
    def sha256(self) -> str:
        return self._out.sha.hexdigest()

    def write(self, sample: dict) -> None:
        try:
            self._tar.write(sample)
        except OSError as exc:
            self.abort()
            raise fsio.OutputError(fsio.describe_os_error(exc, self.path)) from exc
        self.count += 1

    def commit(self) -> None:
        try:
            self._tar.close()
        except OSError as exc:
            self.abort()
            raise fsio.OutputError(fsio.describe_os_error(exc, self.path)) from exc
        target, self._target = self._target, None
        target.__exit__(None, None, None)    # flush, fsync, rename; OutputError on failure

    def abort(self) -> None:
        """Drop the temporary file (safe to call twice, or after commit)."""
        if self._target is not None:
            target, self._target = self._target, None
            with contextlib.suppress(Exception):   # the tar's end blocks go to the doomed temp file
                self._tar.close()
            target.__exit__(_Aborted, _Aborted(), None)


class _HashingFile:
    """The stream TarWriter writes to: passes bytes on, counting and hashing them."""

    def __init__(self, file):
        self.file = file
        self.sha = hashlib.sha256()
        self.nbytes = 0

    def write(self, data: bytes) -> int:
        self.file.write(data)
        self.sha.update(data)
        self.nbytes += len(data)
        return len(data)


class _Aborted(Exception):
    pass


def write_json_atomic(path: str, obj) -> None:
    """Kept for old callers: `fsio.atomic_write_json`."""
    fsio.atomic_write_json(path, obj)
