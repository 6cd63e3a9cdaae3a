"""The shard format (docs/format.md): one module owns it.

What is here: the version, the member names, the sample metadata (`SampleMeta`, whose
field names are the JSON keys), the encoder (`encode_sample`), the decoder (`Sample`) and
the one validator: `open_sample` checks a sample's structure (members, metadata, frame
offsets, the mel's .npy header) before anything is allocated from it, `verify_sample`
adds the content (every JPEG, every mel value, the crop arrays). `avprep verify` runs
`verify_sample`; training (glcm) runs `open_sample` and the same content rules on the
window it decodes. Every rule raises `FormatError` with a short reason code. A sample holds
frames and a mel, or only one of them (visual-only: has_audio false; audio-only: has_video
false); a reader that needs both asks `open_sample` for them (reasons visual_only, audio_only).

glcm imports this module (and avprep.fsio) and nothing else of avprep's internals.
"""
from __future__ import annotations

import dataclasses
import functools
import glob
import io
import json
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.lib.format as npy_format

# Still 1 with visual-only (no mel.npy) and audio-only (no frames.mjpeg) samples: a reader
# written before them requires both members and refuses those samples, it cannot misread them
# (docs/format.md). Audio-visual samples are byte-identical to before.
FORMAT_VERSION = 1
FRAMES, MEL, META = "frames.mjpeg", "mel.npy", "json"
MEMBERS = (FRAMES, MEL, META)
# The crop stage's arrays: member -> (dtype, shape after the leading T).
LANDMARKS, TRANSFORM, FACE_STATUS = "landmarks.npy", "transform.npy", "face_status.npy"
CROP_ARRAYS = {LANDMARKS: (np.dtype("<f4"), (68, 2)), TRANSFORM: (np.dtype("<f4"), (2, 3)),
               FACE_STATUS: (np.dtype("u1"), ())}
MEL_DTYPE = np.dtype("<f2")

# Bounds checked before anything is allocated from the metadata.
MAX_FRAMES = 1_000_000          # frames of one sample
MAX_SIDE = 16384                # width / height of a stored frame
MAX_MELS = 1024
MAX_MEL_PER_FRAME = 10_000
MAX_SAMPLE_RATE = 384_000
MAX_FPS = 1000.0
MAX_META_BYTES = 64 << 20        # a json member (1e6 frame offsets take ~12 MB)
KEY_RE = re.compile(r"[A-Za-z0-9_-]+")
ARRAY_MEMBER_RE = re.compile(r"[a-z0-9_]+\.npy")

COMMAND_PREFIX = "pipe:"


class FormatError(ValueError):
    """A sample that breaks a rule of the format; `reason` is a short code for counts."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


# ---- metadata (the `json` member) -------------------------------------------------------

@dataclass(frozen=True)
class SourceVideo:
    """The input file's streams as probed (before any resampling). The video fields are null
    for an input without a video stream (audio-only samples), the audio fields for one
    without an audio stream."""
    width: int | None
    height: int | None
    sar: str | None
    rotation: int | None
    fps: float | None
    codec: str | None
    audio_codec: str | None
    audio_channels: str | None
    audio_sample_rate: int | None


@dataclass(frozen=True)
class SampleMeta:
    """The `json` member. Field names are the JSON keys; `crop` is written only when set,
    `has_video` only when false (an audio-only sample), so audio-visual samples read as before.

    The stream fields (has_audio, has_video, num_frames .. frame_offsets) are filled by
    `encode_sample` from what it encodes. An audio-only sample has no frames: width, height,
    channels and frame_offsets are null and num_frames counts the slots of the fps grid its
    mel spans. A visual-only sample (has_audio false) has no mel member."""
    key: str
    source: str
    item_id: str
    split: str | None
    source_path: str
    segment: int
    first_frame: int
    fps: float
    start_time: float
    end_time: float
    cut_start: float | None
    cut_end: float | None
    has_audio: bool
    sample_rate: int
    hop_length: int
    n_fft: int
    n_mels: int
    mel_per_frame: int
    labels: dict
    extra: dict
    source_video: SourceVideo
    num_frames: int = 0
    width: int | None = 0
    height: int | None = 0
    channels: int | None = 3
    frame_offsets: list[int] | None = field(default_factory=list)
    crop: dict | None = None
    has_video: bool = True
    format_version: int = FORMAT_VERSION

    @property
    def mel_columns(self) -> int:
        return self.num_frames * self.mel_per_frame

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        for name, default in OPTIONAL_FIELDS.items():
            if out[name] == default:
                del out[name]
        return out

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True).encode("utf-8")


# Fields that may be absent from the JSON (read as the default, and not written when equal to
# it): crop samples only carry `crop`, audio-only samples only carry `has_video`.
OPTIONAL_FIELDS = {"crop": None, "has_video": True}


def _checker(tp):
    """A fast test of a JSON value against a field type (int, float, str, bool, dict,
    list[int], X | None); bool is never an int and floats must be finite."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        tests = [_checker(t) for t in typing.get_args(tp)]
        return lambda v: any(test(v) for test in tests)
    if tp is type(None):
        return lambda v: v is None
    if tp is int:
        return lambda v: type(v) is int
    if tp is float:
        return lambda v: type(v) is int or (type(v) is float and math.isfinite(v))
    if typing.get_origin(tp) is list:
        item = _checker(typing.get_args(tp)[0])
        return lambda v: type(v) is list and all(map(item, v))
    return lambda v: isinstance(v, tp)


@functools.cache
def _schema(cls) -> tuple:
    """(name, type, nested dataclass or None, value test) for each field of `cls`."""
    hints = typing.get_type_hints(cls)
    return tuple((f.name, hints[f.name], hints[f.name] if dataclasses.is_dataclass(hints[f.name]) else None,
                  _checker(hints[f.name])) for f in dataclasses.fields(cls))


def _from_dict(cls, obj: dict, where: str = ""):
    """Build dataclass `cls` from a JSON object, checking every field's presence and type."""
    values = {}
    for name, tp, nested, test in _schema(cls):
        if name not in obj:
            if cls is SampleMeta and name in OPTIONAL_FIELDS:
                continue
            raise FormatError("bad_meta", f"field {where}{name} is missing")
        value = obj[name]
        if nested is not None:
            if not isinstance(value, dict):
                raise FormatError("bad_meta", f"field {where}{name} must be an object")
            value = _from_dict(nested, value, f"{where}{name}.")
        elif not test(value):
            raise FormatError("bad_meta", f"field {where}{name} must be {_type_name(tp)}, got {_short(value)}")
        values[name] = value
    return cls(**values)


def _type_name(tp) -> str:
    if typing.get_origin(tp) is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if isinstance(tp, types.UnionType):
        return " or ".join(_type_name(t) for t in typing.get_args(tp))
    return "null" if tp is type(None) else tp.__name__


def _short(value) -> str:
    if isinstance(value, (list, dict)):
        return f"a JSON {'array' if isinstance(value, list) else 'object'}"
    text = "null" if value is None else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_meta(raw: bytes) -> SampleMeta:
    """The `json` member -> SampleMeta; FormatError (bad_json, format_version, bad_meta,
    bad_offsets) unless every field is present, typed and within the rules of `check_meta`."""
    try:
        obj = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise FormatError("bad_json", f"metadata is not UTF-8 JSON ({type(exc).__name__})") from None
    if not isinstance(obj, dict):
        raise FormatError("bad_json", f"metadata is a JSON {type(obj).__name__}, not an object")
    version = obj.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise FormatError("format_version", f"unsupported format_version {_short(version)}")
    meta = _from_dict(SampleMeta, obj)
    check_meta(meta)
    return meta


def _bounded(meta: SampleMeta, name: str, low: int, high: int) -> None:
    value = getattr(meta, name)
    if not low <= value <= high:
        raise FormatError("bad_meta", f"{name} {value} is outside [{low}, {high}]")


def check_meta(meta: SampleMeta) -> None:
    """Rules on the metadata alone (types are checked by parse_meta)."""
    if meta.format_version != FORMAT_VERSION:
        raise FormatError("format_version", f"unsupported format_version {meta.format_version!r}")
    if not KEY_RE.fullmatch(meta.key):
        raise FormatError("bad_meta", f"key {meta.key!r} may hold only letters, digits, _ and -")
    for name, high in (("num_frames", MAX_FRAMES), ("n_mels", MAX_MELS), ("mel_per_frame", MAX_MEL_PER_FRAME),
                       ("sample_rate", MAX_SAMPLE_RATE), ("hop_length", MAX_SAMPLE_RATE),
                       ("n_fft", MAX_SAMPLE_RATE)):
        _bounded(meta, name, 1, high)
    _bounded(meta, "segment", 0, MAX_FRAMES)
    _bounded(meta, "first_frame", 0, 1 << 40)
    if not 0 < meta.fps <= MAX_FPS:
        raise FormatError("bad_meta", f"fps {meta.fps} is outside (0, {MAX_FPS:g}]")
    if not math.isclose(meta.mel_per_frame * meta.hop_length * meta.fps, meta.sample_rate, rel_tol=1e-6):
        raise FormatError("bad_meta", f"mel_per_frame {meta.mel_per_frame} x hop_length {meta.hop_length} "
                          f"x fps {meta.fps:g} != sample_rate {meta.sample_rate}")
    if meta.has_video:
        _check_video_meta(meta)
    else:
        _check_audio_only_meta(meta)


_FRAME_FIELDS = ("width", "height", "channels", "frame_offsets")
_SOURCE_VIDEO_FIELDS = ("width", "height", "sar", "rotation", "fps", "codec")


def _check_video_meta(meta: SampleMeta) -> None:
    """A sample with frames: their size, channels and offsets are given."""
    null = [name for name in _FRAME_FIELDS if getattr(meta, name) is None]
    if null:
        raise FormatError("bad_meta", f"{', '.join(null)} null in a sample with frames (has_video true)")
    for name in ("width", "height"):
        _bounded(meta, name, 1, MAX_SIDE)
    if meta.channels not in (1, 3):
        raise FormatError("bad_meta", f"channels {meta.channels} must be 1 or 3")
    check_offsets(meta.frame_offsets, meta.num_frames)


def _check_audio_only_meta(meta: SampleMeta) -> None:
    """An audio-only sample: it must have audio, and no frame field or source video field is set."""
    if not meta.has_audio:
        raise FormatError("bad_meta", "has_video and has_audio are both false")
    if meta.crop is not None:
        raise FormatError("bad_meta", "crop in an audio-only sample")
    given = [name for name in _FRAME_FIELDS if getattr(meta, name) is not None]
    given += [f"source_video.{name}" for name in _SOURCE_VIDEO_FIELDS
              if getattr(meta.source_video, name) is not None]
    if given:
        raise FormatError("bad_meta", f"{', '.join(given)} must be null in an audio-only sample (has_video false)")


def check_offsets(offsets: list[int], num_frames: int, size: int | None = None) -> None:
    """num_frames + 1 integers rising strictly from 0 (to the stream's `size` when given)."""
    if len(offsets) != num_frames + 1:
        raise FormatError("bad_offsets", f"{len(offsets)} frame_offsets for {num_frames} frames "
                          "(must be num_frames + 1)")
    if offsets[0] != 0 or any(b <= a for a, b in zip(offsets, offsets[1:])):
        raise FormatError("bad_offsets", "frame_offsets must rise strictly from 0")
    if size is not None and offsets[-1] != size:
        raise FormatError("bad_offsets", f"frame_offsets end at {offsets[-1]}, frames.mjpeg holds {size} bytes")


# ---- .npy members -------------------------------------------------------------------------

def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def npy_header(data: bytes, reason: str = "bad_array") -> tuple[np.dtype, tuple[int, ...], int]:
    """(dtype, shape, data offset) of a .npy member, read from its header alone. FormatError
    unless the header is a plain (non-object, C-order) array whose byte count is exactly
    what follows the header: nothing is allocated from a size the bytes do not hold."""
    buf = io.BytesIO(data)
    try:
        version = npy_format.read_magic(buf)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(buf)
        elif version == (2, 0):
            shape, fortran, dtype = npy_format.read_array_header_2_0(buf)
        else:
            raise FormatError(reason, f".npy version {version} is not supported")
    except (ValueError, EOFError, OSError, SyntaxError, TypeError) as exc:
        if isinstance(exc, FormatError):
            raise
        raise FormatError(reason, f"unreadable .npy header ({exc})") from None
    if any(d < 0 for d in shape):
        raise FormatError(reason, f"negative dimension in shape {shape}")
    if dtype.hasobject or fortran:
        raise FormatError(reason, f"dtype {dtype} / fortran_order {fortran}: only plain C-order arrays")
    count = math.prod(shape)
    start = buf.tell()
    if count * dtype.itemsize != len(data) - start:
        raise FormatError(reason, f"header says {shape} x {dtype.itemsize} bytes, "
                          f"the member holds {len(data) - start}")
    return dtype, shape, start


def load_npy(data: bytes, dtype: np.dtype | None = None, shape: tuple[int, ...] | None = None,
             reason: str = "bad_array") -> np.ndarray:
    """A .npy member as a read-only array (never unpickled; header checked before any
    allocation, and against `dtype` / `shape` when given)."""
    found, dims, start = npy_header(data, reason)
    if dtype is not None and found != dtype:
        raise FormatError(reason, f"dtype {found}, expected {dtype}")
    if shape is not None and dims != tuple(shape):
        raise FormatError(reason, f"shape {dims}, expected {tuple(shape)}")
    return np.frombuffer(data, found, math.prod(dims), start).reshape(dims)


# ---- JPEG frames --------------------------------------------------------------------------

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


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def jpeg_size(jpg: bytes | memoryview) -> tuple[int, int] | None:
    """(height, width) from a JPEG's frame header without decoding; None if it has none."""
    n = len(jpg)
    if n < 4 or jpg[0] != 0xFF or jpg[1] != 0xD8:
        return None
    i = 2
    while i + 4 <= n:
        if jpg[i] != 0xFF:
            return None
        marker = jpg[i + 1]
        if marker == 0xFF:                       # fill byte
            i += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD7:
            i += 2
        elif marker in (0xD9, 0xDA):             # end of image / scan data before any frame header
            return None
        elif marker in _SOF:
            if i + 9 > n:
                return None
            return (jpg[i + 5] << 8) | jpg[i + 6], (jpg[i + 7] << 8) | jpg[i + 8]
        else:
            i += 2 + ((jpg[i + 2] << 8) | jpg[i + 3])
    return None


def decode_jpeg(jpg: bytes | memoryview, height: int, width: int, bgr: bool = False, index: int = 0,
                grey: bool = False) -> np.ndarray:
    """JPEG frame `index` -> (H,W,3) uint8 RGB (BGR with `bgr`), after checking that its
    header says height x width (so a lying header never allocates). With `grey`, only the
    JPEG's luma plane is decoded: (H,W) uint8, the codec's own Y = BT.601 luma of the frame
    that was encoded (~25 % cheaper: no chroma IDCT, upsampling or colour conversion)."""
    size = jpeg_size(jpg)
    if size != (height, width):
        if size is None:
            raise FormatError("bad_jpeg", f"frame {index} is not a JPEG")
        raise FormatError("frame_size", f"frame {index} is {size[0]}x{size[1]} (HxW), "
                          f"metadata says {height}x{width}")
    img = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR)
    if img is None or img.shape[0] != height or img.shape[1] != width:
        raise FormatError("bad_jpeg", f"frame {index} does not decode")
    return img if bgr or grey else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def decode_jpegs(data: bytes, offsets: list[int], indices=None) -> np.ndarray:
    """Inverse of encode_jpegs for the frames in `indices` (default all): (N,H,W,3) RGB.
    Unchecked helper for encoder tests; readers of shards use `Sample.frames`."""
    indices = range(len(offsets) - 1) if indices is None else indices
    out = []
    for i in indices:
        img = cv2.imdecode(np.frombuffer(data, np.uint8, offsets[i + 1] - offsets[i], offsets[i]), cv2.IMREAD_COLOR)
        if img is None:
            raise FormatError("bad_jpeg", f"frame {i} does not decode")
        out.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    return np.stack(out)


# ---- a sample: the validator and the decoder ----------------------------------------------

@dataclass
class Sample:
    """A sample whose structure `open_sample` has checked; content decodes on demand.

    An audio-only sample (`has_video` false) has no frames, a visual-only one (`has_audio`
    false) no mel: asking for them raises FormatError `audio_only` / `visual_only`."""
    meta: SampleMeta
    members: dict            # member name -> bytes, as read from the tar
    mel_start: int | None    # byte offset of the mel data inside members[MEL]; None without one

    @property
    def key(self) -> str:
        return self.meta.key

    @property
    def has_video(self) -> bool:
        return self.meta.has_video

    @property
    def has_audio(self) -> bool:
        """Audio to use: false for visual-only samples, also for version-1 ones that store
        the mel of silence (has_audio false with a mel member)."""
        return self.meta.has_audio

    def frame(self, i: int, bgr: bool = False, grey: bool = False) -> np.ndarray:
        """Frame i as (H,W,3) uint8 RGB (BGR with `bgr`; (H,W) luma with `grey`); only its
        own JPEG is decoded."""
        meta = self.meta
        if not meta.has_video:
            raise FormatError("audio_only", f"sample {meta.key} has no frames (has_video false)")
        jpg = memoryview(self.members[FRAMES])[meta.frame_offsets[i]:meta.frame_offsets[i + 1]]
        return decode_jpeg(jpg, meta.height, meta.width, bgr, i, grey)

    def frames(self, indices=None) -> np.ndarray:
        indices = range(self.meta.num_frames) if indices is None else indices
        return np.stack([self.frame(int(i)) for i in indices])

    def mel(self) -> np.ndarray:
        """(n_mels, T*k) float16, a read-only view of the member (no copy)."""
        if self.mel_start is None:
            raise FormatError("visual_only", f"sample {self.meta.key} has no mel (has_audio false)")
        shape = (self.meta.n_mels, self.meta.mel_columns)
        return np.frombuffer(self.members[MEL], MEL_DTYPE, math.prod(shape), self.mel_start).reshape(shape)

    def mel_window(self, first: int, count: int) -> np.ndarray:
        """float32 mel columns of frames [first, first+count); FormatError if any is not finite."""
        k = self.meta.mel_per_frame
        window = self.mel()[:, k * first:k * (first + count)].astype(np.float32)
        if not np.isfinite(window).all():
            raise FormatError("mel_values", f"non-finite mel values in frames {first}..{first + count - 1}")
        return window

    def array(self, name: str) -> np.ndarray:
        """A crop array (CROP_ARRAYS), header checked against its dtype and T."""
        if name not in self.members:
            raise FormatError("missing_member", name)
        dtype, tail = CROP_ARRAYS[name]
        return load_npy(self.members[name], dtype, (self.meta.num_frames, *tail), "bad_array")


def open_sample(raw: dict, require_video: bool = False, require_audio: bool = False) -> Sample:
    """The structural rules, checked before anything is allocated from the sample: the
    metadata parses (parse_meta) and names this sample; the members its streams need are
    there (`frames.mjpeg` unless audio-only, `mel.npy` unless visual-only) and no frames
    member in an audio-only sample; the frame offsets end at the stream's size; the mel's
    .npy header says float16 (n_mels, num_frames * mel_per_frame) and the member holds
    exactly those bytes (also checked for the silent mel of a version-1 sample without audio).

    A reader that needs both streams (pretraining) passes `require_video` / `require_audio`:
    an audio-only / visual-only sample then raises FormatError `audio_only` / `visual_only`."""
    if META not in raw:
        missing = [m for m in MEMBERS if m not in raw]
        raise FormatError("missing_member", ",".join(missing))
    meta = parse_meta(raw[META])
    if "__key__" in raw and raw["__key__"] != meta.key:
        raise FormatError("bad_meta", f"key {meta.key!r} in the metadata, {raw['__key__']!r} in the tar")
    if require_video and not meta.has_video:
        raise FormatError("audio_only", "an audio-only sample (no frames), this reader needs video")
    if require_audio and not meta.has_audio:
        raise FormatError("visual_only", "a visual-only sample (no audio), this reader needs audio")
    needed = [m for m, used in ((FRAMES, meta.has_video), (MEL, meta.has_audio)) if used and m not in raw]
    if needed:
        raise FormatError("missing_member", ",".join(needed))
    if meta.has_video:
        check_offsets(meta.frame_offsets, meta.num_frames, len(raw[FRAMES]))
    elif FRAMES in raw:
        raise FormatError("bad_meta", f"{FRAMES} in an audio-only sample (has_video false)")
    return Sample(meta, raw, _mel_start(raw, meta) if MEL in raw else None)


def _mel_start(raw: dict, meta: SampleMeta) -> int:
    """Where the mel's data starts, after checking its header against the metadata."""
    dtype, shape, start = npy_header(raw[MEL], "mel_header")
    expected = (meta.n_mels, meta.mel_columns)
    if dtype != MEL_DTYPE or shape != expected:
        raise FormatError("mel_header", f"mel is {dtype} {shape}, metadata says float16 {expected} "
                          f"(n_mels, num_frames x mel_per_frame)")
    return start


def verify_sample(raw: dict) -> Sample:
    """The full check (`avprep verify`): open_sample, then every frame decodes to
    height x width, every mel value is finite and crop samples carry their arrays."""
    sample = open_sample(raw)
    if sample.has_video:
        for i in range(sample.meta.num_frames):
            sample.frame(i, bgr=True)
    if sample.mel_start is not None:
        sample.mel_window(0, sample.meta.num_frames)
    _check_arrays(sample)
    return sample


def _check_arrays(sample: Sample) -> None:
    crop = sample.meta.crop
    present = [name for name in CROP_ARRAYS if name in sample.members]
    if crop is None:
        if present:
            raise FormatError("bad_meta", f"crop arrays {present} without json crop")
        return
    for name in CROP_ARRAYS:
        sample.array(name)
    m = sample.meta
    if crop.get("num_frames") != m.num_frames or not crop.get("size") == m.width == m.height:
        raise FormatError("bad_meta", "crop num_frames/size disagree with num_frames/width/height")


# ---- the encoder --------------------------------------------------------------------------

def encode_sample(meta: SampleMeta, frames: np.ndarray | None, mel: np.ndarray | None, quality: int,
                  arrays: dict[str, np.ndarray] | None = None) -> dict:
    """A WebDataset sample (member name -> bytes) for `frames` (T,H,W,3|1 uint8 RGB), `mel`
    (n_mels, T*k; stored as float16) and extra `arrays` (e.g. CROP_ARRAYS). The stream
    fields of `meta` are set here from what is given: no `mel` makes a visual-only sample
    (has_audio false, no mel member), no `frames` an audio-only one (has_video false, no
    frames member, num_frames = mel columns / mel_per_frame). The result passes the
    validator or FormatError."""
    if frames is None and mel is None:
        raise ValueError("a sample needs frames, a mel or both")
    sample = {"__key__": meta.key}
    if frames is not None:
        data, offsets = encode_jpegs(frames, quality)
        t, h, w, c = (int(n) for n in frames.shape)
        meta = dataclasses.replace(meta, num_frames=t, width=w, height=h, channels=c, frame_offsets=offsets,
                                   has_video=True)
        sample[FRAMES] = data
    else:
        t, rest = divmod(int(mel.shape[1]), meta.mel_per_frame)
        if rest:
            raise ValueError(f"an audio-only mel needs a multiple of mel_per_frame {meta.mel_per_frame} "
                             f"columns, got {mel.shape[1]}")
        meta = dataclasses.replace(meta, num_frames=t, width=None, height=None, channels=None,
                                   frame_offsets=None, has_video=False)
    meta = dataclasses.replace(meta, has_audio=mel is not None)
    if mel is not None:
        sample[MEL] = npy_bytes(mel.astype(MEL_DTYPE))
    for name, array in (arrays or {}).items():
        if name in MEMBERS or not ARRAY_MEMBER_RE.fullmatch(name):
            raise ValueError(f"array member name {name!r} must look like name.npy")
        sample[name] = npy_bytes(array)
    sample[META] = meta.to_json()
    opened = open_sample(sample)
    _check_arrays(opened)
    return sample


# ---- naming shards ------------------------------------------------------------------------

def is_command_or_url(spec: str) -> bool:
    """True for `pipe:CMD` (runs CMD) and scheme URLs such as http://, s3://."""
    return spec.startswith(COMMAND_PREFIX) or "://" in spec


def brace_paths(spec: str) -> list[str]:
    """A local brace pattern ('x-{000000..000009}.tar') -> absolute paths, present or not."""
    import webdataset as wds
    return [os.path.abspath(p) for p in wds.shardlists.expand_urls(spec)]


def _tars_in(folder: str) -> list[str]:
    """The .tar files of a folder; not a FIFO named x.tar, whose read would block forever."""
    return [p for p in sorted(glob.glob(os.path.join(glob.escape(folder), "*.tar"))) if os.path.isfile(p)]


def expand_shards(spec: str | list[str], allow_commands: bool = False) -> list[str]:
    """A folder, a glob, a brace pattern ('x-{000000..000009}.tar') or a list -> shard paths.

    Every name that comes from a glob, a folder listing or a brace pattern over local files
    is returned as an absolute path, so webdataset always opens it as a file (a file named
    `pipe:...` is never run). A spec the user typed as `pipe:CMD` or a URL is passed through
    only with `allow_commands` (it runs CMD / fetches the URL); otherwise ValueError. A spec
    that names a folder or file that is there is that folder or file, whatever it looks like.
    """
    if isinstance(spec, (list, tuple)):
        return [p for s in spec for p in expand_shards(s, allow_commands)]
    if os.path.exists(spec):    # a folder or file that is there is itself (`pipe:o/`, `o [1]`, `o {a,b}`)
        found = _tars_in(spec) if os.path.isdir(spec) else [spec]
        if not found:
            raise FileNotFoundError(f"no shards found at {spec!r} (a folder without .tar files)")
        return [os.path.abspath(p) for p in found]
    if is_command_or_url(spec):
        if not allow_commands:
            raise ValueError(f"{spec!r} is a command or URL; pass --allow-commands to run/fetch it "
                             "(local shards need no prefix)")
        import webdataset as wds
        return list(wds.shardlists.expand_urls(spec)) if "{" in spec else [spec]
    if "{" in spec:
        paths = brace_paths(spec)
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(f"{len(missing)} of {len(paths)} shards of {spec!r} are missing, "
                                    f"e.g. {missing[0]}")
        return paths
    found = []
    for path in sorted(glob.glob(spec)) if glob.has_magic(spec) else [spec]:
        if os.path.isdir(path):
            found += _tars_in(path)
        elif os.path.isfile(path):      # a glob's match; not a FIFO
            found.append(path)
    if not found:
        raise FileNotFoundError(f"no shards found at {spec!r} (give a folder, a glob or a brace pattern)")
    return [os.path.abspath(p) for p in found]
