"""What a recipe produces: one SourceItem per input video (or audio) file."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field


def text(name: str) -> str:
    """`name` as valid UTF-8 text: bytes of a file name that are not UTF-8 (which Python holds as
    surrogates, and which neither JSON, CSV nor a hash of UTF-8 takes) are written `\xff`."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class SourceItem:
    path: str                       # file to decode
    source: str                     # dataset name: "kinetics", "avspeech", "lrw", ...
    item_id: str                    # stable id inside the source (e.g. youtube id + times, relative path)
    labels: dict = field(default_factory=dict)   # JSON-able labels ({"label": "...", "label_index": 3})
    start: float | None = None      # cut [start, end] seconds out of a longer file (None = whole file)
    end: float | None = None
    split: str | None = None        # "train", "val", "test", ...
    extra: dict = field(default_factory=dict)    # JSON-able extras (AVSpeech face centre, transcripts)
    missing: bool = False           # the recipe listed it but the file is not there
    failed: tuple[str, str] | None = None   # (reason, message): known to fail before decoding
                                            # (an unreadable folder, a duplicate sample key)

    def __post_init__(self):
        # a file name that is not UTF-8 (`bad\xff.mp4`) gives an id of text: its bad bytes as `\xff`
        object.__setattr__(self, "item_id", text(self.item_id))

    def key_stem(self) -> str:
        """A WebDataset-safe key part (no dots or slashes), unique per item_id."""
        safe = re.sub(r"[^A-Za-z0-9_-]+", "_", self.item_id)[-40:].strip("_") or "item"
        digest = hashlib.sha1(f"{self.source}/{self.item_id}".encode()).hexdigest()[:8]
        return f"{self.source}_{safe}_{digest}"
