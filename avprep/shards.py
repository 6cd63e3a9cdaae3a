"""Encoding clips as WebDataset samples (avprep.format) and writing reproducible tar shards."""
from __future__ import annotations

import contextlib
import hashlib
import io
import tarfile

import numpy as np

from avprep import fsio
from avprep.clips import Clip
from avprep.config import BuildConfig
# The format's helpers, re-exported for older callers (avprep.format owns them).
from avprep.format import (FORMAT_VERSION, SampleMeta, SourceVideo, decode_jpegs, encode_jpegs,  # noqa: F401
                           encode_sample, load_npy, npy_bytes)


def sample_key(clip: Clip) -> str:
    return f"{clip.item.key_stem()}_s{clip.segment:02d}"


def clip_metadata(clip: Clip, cfg: BuildConfig, source_path: str, crop: dict | None = None) -> SampleMeta:
    """The sample metadata of `clip`; the stream fields are set by the encoder."""
    item, info, fps = clip.item, clip.info, clip.fps
    v, a = info.video, info.audio
    return SampleMeta(
        key=sample_key(clip), source=item.source, item_id=item.item_id, split=item.split,
        source_path=source_path, segment=clip.segment, first_frame=clip.first_frame, fps=fps,
        start_time=round(clip.first_frame / fps, 6), end_time=round((clip.first_frame + clip.num_frames) / fps, 6),
        cut_start=item.start, cut_end=item.end, has_audio=clip.mel is not None,
        sample_rate=cfg.audio.sample_rate, hop_length=cfg.audio.hop_length, n_fft=cfg.audio.n_fft,
        n_mels=cfg.audio.n_mels, mel_per_frame=cfg.mel_per_frame(), labels=item.labels, extra=item.extra,
        source_video=SourceVideo(
            width=v.width if v else None, height=v.height if v else None, sar=str(v.sar) if v else None,
            rotation=v.rotation if v else None, fps=v.fps if v else None, codec=v.codec if v else None,
            audio_codec=a.codec if a else None, audio_channels=a.channels if a else None,
            audio_sample_rate=a.sample_rate if a else None),
        crop=crop)


def encode_clip(clip: Clip, cfg: BuildConfig, source_path: str, frames: np.ndarray | None = None,
                arrays: dict[str, np.ndarray] | None = None, crop: dict | None = None) -> dict:
    """A WebDataset sample dict (all values bytes). `frames` overrides clip.frames (crops);
    `arrays` are extra .npy members and `crop` the crop stage's json["crop"]. A clip without
    frames or without a mel becomes an audio-only or visual-only sample (docs/format.md)."""
    frames = clip.frames if frames is None else frames
    meta = clip_metadata(clip, cfg, source_path, crop)
    return encode_sample(meta, frames, clip.mel, cfg.video.jpeg_quality, arrays)


class ShardWriter:
    """Writes samples into `path` through `fsio.atomic_writer` (a temporary name unique to this
    process); `commit()` fsyncs and renames it into place, `abort()` removes it.

    Tar members as webdataset's TarWriter writes them (`_TarWriter`), with mtime 0 and fixed
    owner names: byte-reproducible tars. The
    byte count and sha256 of the tar are kept for the shard's stats. An OS error (full disk,
    read-only folder) removes the temporary file and is an OutputError naming the path.
    """

    def __init__(self, path: str):
        self.path = path
        self._target = fsio.atomic_writer(path, "wb")
        file = self._target.__enter__()
        self.tmp_path = file.name
        self._out = _HashingFile(file)
        self._tar = _TarWriter(self._out)
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


class _TarWriter:
    """The bytes webdataset's `TarWriter(f, user="avprep", group="avprep", mtime=0,
    encoder=False)` writes, from the standard library: importing webdataset imports torch,
    seconds of every build's start-up (tests/test_startup.py compares the two)."""

    def __init__(self, fileobj):
        self.tar = tarfile.open(fileobj=fileobj, mode="w|")

    def write(self, sample: dict) -> None:
        key = sample["__key__"]
        names = sorted(k for k in sample if not k.startswith("_"))
        for name in names:
            if not isinstance(sample[name], (bytes, bytearray, memoryview)):
                raise ValueError(f"{name} doesn't map to a bytes after encoding ({type(sample[name])})")
        for name in names:
            info = tarfile.TarInfo(key + "." + name)
            info.size, info.mtime, info.mode = len(sample[name]), 0, 0o444
            info.uname = info.gname = "avprep"
            self.tar.addfile(info, io.BytesIO(sample[name]))

    def close(self) -> None:
        self.tar.close()


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
