"""The shard format (docs/format.md): one module owns it.

glcm imports this module (and avprep.fsio) and nothing else of avprep's internals.
"""
from __future__ import annotations

import glob
import os

FORMAT_VERSION = 1
MEMBERS = ("frames.mjpeg", "mel.npy", "json")

COMMAND_PREFIX = "pipe:"


def is_command_or_url(spec: str) -> bool:
    """True for `pipe:CMD` (runs CMD) and scheme URLs such as http://, s3://."""
    return spec.startswith(COMMAND_PREFIX) or "://" in spec


def expand_shards(spec: str | list[str], allow_commands: bool = False) -> list[str]:
    """A folder, a glob, a brace pattern ('x-{000000..000009}.tar') or a list -> shard paths.

    Every name that comes from a glob, a folder listing or a brace pattern over local files
    is returned as an absolute path, so webdataset always opens it as a file (a file named
    `pipe:...` is never run). A spec the user typed as `pipe:CMD` or a URL is passed through
    only with `allow_commands` (it runs CMD / fetches the URL); otherwise ValueError.
    """
    if isinstance(spec, (list, tuple)):
        return [p for s in spec for p in expand_shards(s, allow_commands)]
    if is_command_or_url(spec):
        if not allow_commands:
            raise ValueError(f"{spec!r} is a command or URL; pass --allow-commands to run/fetch it "
                             "(local shards need no prefix)")
        import webdataset as wds
        return list(wds.shardlists.expand_urls(spec)) if "{" in spec else [spec]
    if "{" in spec:
        import webdataset as wds
        paths = [os.path.abspath(p) for p in wds.shardlists.expand_urls(spec)]
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(f"{len(missing)} of {len(paths)} shards of {spec!r} are missing, "
                                    f"e.g. {missing[0]}")
        return paths
    found = []
    for path in sorted(glob.glob(spec)) if glob.has_magic(spec) else [spec]:
        if os.path.isdir(path):
            found += sorted(glob.glob(os.path.join(glob.escape(path), "*.tar")))
        elif os.path.exists(path):
            found.append(path)
    if not found:
        raise FileNotFoundError(f"no shards found at {spec!r} (give a folder, a glob or a brace pattern)")
    return [os.path.abspath(p) for p in found]
