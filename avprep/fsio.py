"""Safe file output shared by avprep and glcm: atomic writes, an output-folder lock, and
one-line messages for the OS errors a user can fix (full disk, read-only, path is a file).

Every file the tools write goes through `atomic_write*`: a temporary name unique to this
process (`.<name>.<pid>.<random>.tmp`) beside the target, fsync, then rename. A failed
write removes its temporary file, so a full disk leaves nothing half-written behind.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import socket
import sys
import time
from pathlib import Path
from typing import IO, Iterator

TMP_SUFFIX = ".tmp"
NAME_MAX = 255          # bytes in one file name (ext4, xfs, btrfs, tmpfs)
LOCK_NAME = ".lock"


class OutputError(Exception):
    """An output problem the user can fix; str() is one line saying what to do."""


def local_path(path: str | os.PathLike) -> str:
    """`path` as ffmpeg reads a local file: a relative path whose first part holds ':'
    (`pipe:x.mp4`, a folder `pipe:c/`) gets a leading './', else ffmpeg takes it for a protocol.
    Idempotent: './x:a.mp4' stays as it is."""
    path = os.fspath(path)
    if ":" in path.split(os.sep, 1)[0] and not os.path.isabs(path):
        return os.path.join(".", path)
    return path


def is_hidden(name: str) -> bool:
    """A hidden entry (a leading dot: `.ipynb_checkpoints`, `.DS_Store`, macOS's `._x` files):
    never a corpus's class, clip or list file."""
    return name.startswith(".")


def visible_names(folder: str | os.PathLike) -> list[str]:
    """The names in `folder` that are not hidden, sorted (OSError as os.listdir raises it)."""
    return sorted(n for n in os.listdir(folder) if not is_hidden(n))


def temp_path(path: str | os.PathLike) -> str:
    """A temporary name beside `path`, unique to this process and call. A name so long that
    the temporary one would pass the file system's 255 bytes is cut in it (the target keeps it)."""
    folder, name = os.path.split(os.fspath(path))
    suffix = f".{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}"
    room = NAME_MAX - 1 - len(suffix)
    if len(os.fsencode(name)) > room:
        name = os.fsencode(name)[:room].decode("utf-8", "ignore")   # whole characters only
    return os.path.join(folder, f".{name}{suffix}")


def is_temp_name(name: str) -> bool:
    """True for names `temp_path` makes (and the older `.<name>.tmp`)."""
    return name.startswith(".") and name.endswith(TMP_SUFFIX)


def temp_target(name: str) -> str | None:
    """The file name a `temp_path` name (`.<target>.<pid>.<hex>.tmp`) stands for, else None."""
    if not is_temp_name(name):
        return None
    parts = name[1:-len(TMP_SUFFIX)].rsplit(".", 2)
    if len(parts) == 3 and parts[0] and parts[1].isdigit() and len(parts[2]) == 8 \
            and all(c in "0123456789abcdef" for c in parts[2]):
        return parts[0]
    return None


def remove_stale_temps(folder: str | os.PathLike, targets: set[str]) -> list[str]:
    """Remove the temporary files `temp_path` made for the names in `targets` (leftovers of a
    killed run) and nothing else; returns the removed names. Call it only while holding the
    folder's OutputLock: another run's writer could otherwise be writing one of them."""
    removed = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if temp_target(entry.name) in targets and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(entry.path)
                removed.append(entry.name)
    return sorted(removed)


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "wb", fsync: bool = True) -> Iterator[IO]:
    """Open a temporary file for writing; on success it is fsynced and renamed to `path`.

    On any error (including a full disk) the temporary file is removed and an OSError
    becomes an OutputError naming the path and what to do."""
    path = os.fspath(path)
    tmp = temp_path(path)
    try:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
            raise OutputError(describe_os_error(exc, path)) from exc
        raise


def atomic_write(path: str | os.PathLike, data: bytes | str, fsync: bool = True) -> None:
    with atomic_writer(path, "wb" if isinstance(data, bytes) else "w", fsync) as f:
        f.write(data)


def atomic_write_json(path: str | os.PathLike, obj, fsync: bool = True) -> None:
    atomic_write(path, json.dumps(obj, indent=1, sort_keys=True) + "\n", fsync)


def read_json(path: str | os.PathLike):
    """The JSON value in file `path`, or None when it cannot be read or is not JSON (a
    record to compare with, where unreadable means "not the same")."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def describe_os_error(exc: OSError, path: str | os.PathLike) -> str:
    """One line for an OS error while writing `path`: what happened and what to do."""
    path = os.fspath(path)
    if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
        return f"no space left on the disk holding {path} ({_mount_point(path)}); free space or use another output folder"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"cannot write {path}: {exc.strerror}; choose an output folder you can write to"
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        return f"cannot write {path}: a part of that path is a file, not a folder; choose another output folder"
    return f"cannot write {path}: {exc.strerror or exc}"


def _mount_point(path: str) -> str:
    p = os.path.abspath(path)
    while not os.path.ismount(p):
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    return p


def make_output_dir(path: str | os.PathLike) -> Path:
    """Create an output folder; a path that is a file or cannot be created is an OutputError."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"output path {path} is a file, not a folder; give a folder for --out")
    if path.is_symlink() and not path.exists():
        raise OutputError(f"output path {path} is a symlink to {os.readlink(path)}, which does not lead to a folder "
                          "(missing, or a symlink loop); create that folder or give another --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(describe_os_error(exc, path)) from exc
    if not os.access(path, os.W_OK):
        raise OutputError(f"cannot write to output folder {path}; choose a folder you can write to")
    return path


class OutputLock:
    """An exclusive lock on an output folder (`<folder>/.lock`, fcntl.flock), held for a run.

    A second run into the same folder raises OutputError naming the holder. The lock is
    released by the kernel when the process dies, so a killed run never leaves a stale lock."""

    def __init__(self, folder: str | os.PathLike, tool: str):
        self.folder, self.tool = Path(folder), tool
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> "OutputLock":
        import fcntl
        make_output_dir(self.folder)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:      # e.g. a read-only folder that os.access let through (root)
            raise OutputError(describe_os_error(exc, self.path)) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_holder(fd)
            os.close(fd)
            raise OutputError(f"{self.folder} is in use by another run ({holder}); wait for it to finish "
                              "or choose another output folder") from None
        info = {"tool": self.tool, "pid": os.getpid(), "host": socket.gethostname(),
                "since": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv[:6])}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)      # closing drops the flock
            self._fd = None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return "holder unknown"
    if not isinstance(info, dict):
        return "holder unknown"
    return (f"{info.get('tool', '?')} pid {info.get('pid', '?')} on {info.get('host', '?')} "
            f"since {info.get('since', '?')}")
