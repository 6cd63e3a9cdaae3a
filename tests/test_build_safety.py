"""Builds that cannot corrupt each other or a user's files (issue #7 items 3, 5, 8, 9).

Most tests fake the decode (`iter_clips`, `_encode`) so a build of tiny files takes
milliseconds; what they exercise is the build around it: the output lock, temp names,
what "finished" means, the plan a resume must match, listing, duplicates, full disks.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import signal
import subprocess
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from avprep import fsio, pipeline, shards
from avprep.config import BuildConfig, ConfigError
from avprep.items import SourceItem
from avprep.probe import MediaError
from avprep.recipes import prepare_videos
from avprep.recipes.common import list_media, scan_media

from conftest import PY, ROOT, folder_digest, read_outcomes

CFG = BuildConfig(videos_per_shard=2, shard_prefix="t")


@pytest.fixture
def fake_decode(monkeypatch):
    """Decode = read the file; a file starting with b"bad" is corrupt. Returns the ids decoded."""
    decoded = []

    def iter_clips(item, cfg):
        decoded.append(item.item_id)
        data = Path(item.path).read_bytes()
        if data.startswith(b"bad"):
            raise MediaError("corrupt", "not a video")
        yield SimpleNamespace(item=item, data=data, num_frames=10, fps=10.0)

    def encode(clip, cfg, rel):
        key = clip.item.key_stem() + "_s00"
        return {"__key__": key, "bin": clip.data, "json": json.dumps({"key": key, "path": rel}).encode()}

    monkeypatch.setattr(pipeline, "iter_clips", iter_clips)
    monkeypatch.setattr(pipeline, "_encode", encode)
    return decoded


def make_corpus(folder: Path, n: int = 5) -> Path:
    for i in range(n):
        path = folder / ("cats", "dogs")[i % 2] / f"v{i}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"video {i} ".encode() * (1500 + i))   # > one 10 KiB tar record
    return folder


def build(src: Path, out: Path, cfg: BuildConfig = CFG, items=None):
    items = prepare_videos(str(src)) if items is None else items
    return pipeline.build_dataset(items, str(out), cfg, workers=1, root=str(src), recipe="videos",
                                  progress=False)


def tool_temps(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if fsio.is_temp_name(p.name)]


# ---------------------------------------------------------------- item 3: lock, temp names, finished

def test_second_build_into_a_held_folder_fails_at_once(fake_decode, tmp_path):
    src, out = make_corpus(tmp_path / "src"), tmp_path / "out"
    with fsio.OutputLock(out, "avprep build"):
        with pytest.raises(fsio.OutputError, match=rf"in use by another run \(avprep build pid {os.getpid()} "):
            build(src, out)
    assert sorted(p.name for p in out.iterdir()) == [".lock"] and fake_decode == []
    build(src, out)                         # the lock is free again once its holder is done
    assert (out / "manifest.json").exists()


def test_cli_refuses_a_held_folder_with_one_line(tmp_path):
    src, out = make_corpus(tmp_path / "src", n=1), tmp_path / "out"
    with fsio.OutputLock(out, "avprep build"):
        r = subprocess.run([PY, "-m", "cli.avprep_cli", "build", "videos", str(src), "--out", str(out)],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "in use by another run" in lines[0] and f"pid {os.getpid()}" in lines[0]
    assert "Traceback" not in r.stderr


_SLOW_BUILD = """
import os, sys, time
from avprep import pipeline
from avprep.config import BuildConfig
from avprep.items import SourceItem

def slow(item, cfg, root=""):
    open(os.path.join(sys.argv[2], str(os.getpid())), "w").close()
    time.sleep(60)

pipeline.process_item = slow
items = [SourceItem(f"/nowhere/{i}.mp4", "x", str(i)) for i in range(8)]
pipeline.build_dataset(items, sys.argv[1], BuildConfig(videos_per_shard=1), workers=2, progress=False)
"""


def test_killed_build_leaves_no_workers_holding_the_lock(tmp_path):
    """kill -9 of a build with a worker pool: its workers die too and a rerun can start."""
    out, marks = tmp_path / "out", tmp_path / "workers"
    marks.mkdir()
    proc = subprocess.Popen([PY, "-c", _SLOW_BUILD, str(out), str(marks)], cwd=ROOT)
    try:
        _wait_for(lambda: len(list(marks.iterdir())) == 2, 30)
    finally:
        proc.kill()
        proc.wait()
    workers = [int(p.name) for p in marks.iterdir()]
    _wait_for(lambda: not any(_alive(pid) for pid in workers), 10)
    fsio.OutputLock(out, "test").acquire().release()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"     # a zombie holds no files
    except OSError:
        return False


def _wait_for(condition, seconds: float) -> None:
    import time
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_writers_of_one_path_never_share_a_temp_file(tmp_path):
    """The old race: both runs wrote `.x.tar.tmp`; one's cleanup removed the other's file."""
    path = str(tmp_path / "x.tar")
    first, second = shards.ShardWriter(path), shards.ShardWriter(path)
    assert first.tmp_path != second.tmp_path
    assert f".{os.getpid()}." in os.path.basename(first.tmp_path)
    second.abort()
    first.write({"__key__": "k", "json": b"{}"})
    first.commit()
    with tarfile.open(path) as tar:
        assert tar.getnames() == ["k.json"]
    assert first.nbytes == os.path.getsize(path)
    assert os.listdir(tmp_path) == ["x.tar"]


def test_stats_record_tar_size_and_sha256(fake_decode, tmp_path):
    import hashlib
    src, out = make_corpus(tmp_path / "src"), tmp_path / "out"
    build(src, out)
    for stats_path in sorted(out.glob("*.stats.json")):
        stats = json.loads(stats_path.read_text())
        tar = out / stats["shard"]
        assert stats["tar_bytes"] == tar.stat().st_size
        assert stats["tar_sha256"] == hashlib.sha256(tar.read_bytes()).hexdigest()
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["bytes"] for s in manifest["shards"]] == [(out / s["name"]).stat().st_size for s in manifest["shards"]]


def test_resume_redoes_shards_whose_tar_and_stats_disagree(fake_decode, tmp_path):
    src, out = make_corpus(tmp_path / "src", n=8), tmp_path / "out"
    build(src, out)
    reference = folder_digest(out)
    fake_decode.clear()
    (out / "t-000000.tar").write_bytes(b"")                     # 0 bytes, stats claim samples
    stats = json.loads((out / "t-000001.stats.json").read_text())
    stats["samples"] += 1                                       # right size, wrong sample count
    (out / "t-000001.stats.json").write_text(json.dumps(stats))
    stats = json.loads((out / "t-000002.stats.json").read_text())
    del stats["tar_bytes"]                                      # stats without the size (old format)
    (out / "t-000002.stats.json").write_text(json.dumps(stats))
    build(src, out)
    assert len(fake_decode) == 6                                # shards 0-2 redone, shard 3 kept
    assert folder_digest(out) == reference


def test_stale_temp_cleanup_removes_only_the_tools_names(fake_decode, tmp_path):
    src, out = make_corpus(tmp_path / "src"), tmp_path / "out"
    build(src, out)
    ours = [".t-000001.tar.999999.0badf00d.tmp", ".summary.json.999999.12345678.tmp"]
    users = [".notes.tmp", ".x.tar.tmp", ".holiday.mp4.1.0badf00d.tmp", ".t-000001.tar.tmp.bak"]
    for name in ours + users:
        (out / name).write_bytes(b"partial")
    build(src, out)
    assert sorted(tool_temps(out)) == sorted(n for n in users if n.endswith(".tmp"))
    assert (out / ".t-000001.tar.tmp.bak").exists()


# ---------------------------------------------------------------- item 5: the plan covers the corpus

def test_resume_with_another_corpus_of_the_same_names_is_refused(fake_decode, tmp_path):
    src, out = make_corpus(tmp_path / "src"), tmp_path / "out"
    build(src, out)
    os.remove(out / "t-000002.stats.json")                      # as if killed before the last shard
    before = folder_digest(out)
    other = tmp_path / "other"
    make_corpus(other)
    (other / "cats" / "v0.mp4").write_bytes(b"another video entirely")
    with pytest.raises(ConfigError, match=r"other inputs or options \(corpus folder .*src then, .*other now\)"):
        build(other, out)
    (src / "cats" / "v2.mp4").write_bytes(b"edited in place")   # same folder, same names, new content
    with pytest.raises(ConfigError, match="differ in size or modification time") as err:
        build(src, out)
    assert "\n" not in str(err.value)
    assert folder_digest(out) == before


def test_plan_records_root_and_file_states(fake_decode, tmp_path):
    src, out = make_corpus(tmp_path / "src", n=2), tmp_path / "out"
    items = prepare_videos(str(src)) + [SourceItem(str(src / "gone.mp4"), "videos", "gone", missing=True)]
    build(src, out, items=items)
    plan = json.loads((out / "plan.json").read_text())
    assert plan["root"] == str(src.resolve()) and plan["inputs"] == 3 and plan["shards"] == 2
    same_names_new_time = items[0].path
    os.utime(same_names_new_time, ns=(1, 1))
    with pytest.raises(ConfigError, match="modification time"):
        build(src, out, items=items)


def test_unchanged_resume_decodes_nothing(fake_decode, tmp_path):
    src, out = make_corpus(tmp_path / "src"), tmp_path / "out"
    build(src, out)
    before = folder_digest(out)
    fake_decode.clear()
    build(src, out)
    assert fake_decode == [] and folder_digest(out) == before


# ---------------------------------------------------------------- item 9: no silent skips

def test_symlinked_folders_outside_are_followed_once(tmp_path):
    src = make_corpus(tmp_path / "src", n=2)
    elsewhere = make_corpus(tmp_path / "elsewhere", n=3)
    (src / "linked").symlink_to(elsewhere / "cats")             # outside the corpus: followed
    (src / "linked2").symlink_to(elsewhere / "cats")            # the same folder again: once
    (elsewhere / "cats" / "up").symlink_to(elsewhere)           # a loop out there
    (src / "cats" / "loop").symlink_to(src)                     # a loop back to the root
    (src / "again").symlink_to(src / "dogs")                    # an alias inside the corpus
    paths = [os.path.relpath(p, src) for p in list_media(str(src))]
    assert paths == ["cats/v0.mp4", "dogs/v1.mp4", "linked/v0.mp4", "linked/v2.mp4",
                     "linked/up/dogs/v1.mp4"]


def test_unreadable_folder_becomes_an_outcome_row(fake_decode, tmp_path, monkeypatch):
    src, out = make_corpus(tmp_path / "src"), tmp_path / "out"
    blocked = str(src / "dogs")
    real_scandir = os.scandir

    def scandir(path="."):
        if os.fspath(path) == blocked:
            raise PermissionError(errno.EACCES, "Permission denied", blocked)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert scan_media(str(src)).unreadable == [(blocked, "Permission denied")]
    items = prepare_videos(str(src))
    monkeypatch.setattr(os, "scandir", real_scandir)
    build(src, out, items=items)
    rows = {o["item_id"]: o for o in read_outcomes(out)}
    assert sorted(rows) == ["cats/v0", "cats/v2", "cats/v4", "dogs/"]
    row = rows["dogs/"]
    assert (row["status"], row["reason"], row["path"]) == ("failed", "unreadable", "dogs")
    assert "Permission denied" in row["message"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod-000 folder; the scandir test covers it")
def test_chmod_000_folder_is_reported(tmp_path):
    src = make_corpus(tmp_path / "src")
    (src / "dogs").chmod(0)
    try:
        assert [why for _, why in scan_media(str(src)).unreadable] == ["Permission denied"]
    finally:
        (src / "dogs").chmod(0o755)


def test_same_key_inputs_fail_one_as_duplicate_and_build_the_rest(fake_decode, tmp_path):
    src, out = make_corpus(tmp_path / "src", n=3), tmp_path / "out"
    (src / "cats" / "v0.mkv").write_bytes(b"the mkv twin")
    build(src, out)
    rows = read_outcomes(out)
    assert [(o["path"], o["status"], o["reason"]) for o in rows] == [
        ("cats/v0.mkv", "ok", None), ("cats/v0.mp4", "failed", "duplicate_key"), ("cats/v2.mp4", "ok", None),
        ("dogs/v1.mp4", "ok", None)]
    assert "cats/v0.mp4" in rows[1]["message"] and "cats/v0.mkv" in rows[1]["message"]
    assert json.loads((out / "summary.json").read_text())["samples"] == 3


@pytest.mark.parametrize("inside", [False, True])
def test_out_in_the_corpus_keeps_user_files_and_reads_no_outputs(fake_decode, tmp_path, inside):
    src = make_corpus(tmp_path / "src")
    out = src / "shards" if inside else src
    for name in (".notes.tmp", ".x.tar.tmp", "readme.txt"):
        (src / name).write_text("mine")
    build(src, out)
    items = prepare_videos(str(src))
    assert len(items) == 5 and not any(i.failed or i.missing for i in items)
    before = folder_digest(out)
    fake_decode.clear()
    build(src, out, items=items)                # its own outputs did not change the plan
    assert fake_decode == [] and folder_digest(out) == before
    for name in (".notes.tmp", ".x.tar.tmp", "readme.txt"):
        assert (src / name).read_text() == "mine"


def test_new_build_never_replaces_a_users_file(fake_decode, tmp_path):
    src = make_corpus(tmp_path / "src")
    (src / "summary.json").write_text('{"mine": true}')
    with pytest.raises(fsio.OutputError, match=r"already holds summary.json, which this build would replace"):
        build(src, src)
    assert (src / "summary.json").read_text() == '{"mine": true}' and not (src / "plan.json").exists()


# ---------------------------------------------------------------- item 8: unwritable or full output

def test_output_path_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(fsio.OutputError, match="is a file, not a folder"):
        build(tmp_path, tmp_path / "f", items=[SourceItem("a.mp4", "v", "a", missing=True)])


@pytest.mark.skipif(not os.path.isdir("/sys/kernel"), reason="needs sysfs")
def test_read_only_output_folder(tmp_path):
    """sysfs refuses new files even to root (a chmod-555 folder would not stop root)."""
    with pytest.raises(fsio.OutputError, match="choose an output folder you can write to") as err:
        build(tmp_path, Path("/sys/kernel"), items=[SourceItem("a.mp4", "v", "a", missing=True)])
    assert "\n" not in str(err.value)


def _disk_full_for(monkeypatch, shard: str):
    """Writing the tar of `shard` fails with ENOSPC part-way (after its first bytes went out)."""
    real_write = shards._HashingFile.write

    def write(self, data):
        if f".{shard}." in os.path.basename(self.file.name) and self.nbytes > 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(shards._HashingFile, "write", write)
    return real_write


def test_full_disk_stops_the_build_and_the_rerun_resumes(fake_decode, tmp_path, monkeypatch):
    src, reference, out = make_corpus(tmp_path / "src", n=6), tmp_path / "reference", tmp_path / "out"
    build(src, reference)
    real_write = _disk_full_for(monkeypatch, "t-000001.tar")   # shard 0 fits, shard 1 does not
    with pytest.raises(fsio.OutputError, match=r"no space left on the disk holding .*t-000001\.tar \(/") as err:
        build(src, out)
    assert "\n" not in str(err.value)
    assert tool_temps(out) == []
    assert sorted(p.name for p in out.glob("*.stats.json")) == ["t-000000.stats.json"]
    assert not (out / "outcomes.jsonl").exists()              # nothing recorded as failed data
    monkeypatch.setattr(shards._HashingFile, "write", real_write)   # space freed
    fake_decode.clear()
    build(src, out)
    assert len(fake_decode) == 4                               # shards 1 and 2 redone, shard 0 kept
    assert folder_digest(out) == folder_digest(reference)


def test_full_disk_while_decoding_is_not_the_inputs_fault(tmp_path, monkeypatch):
    def iter_clips(item, cfg):
        raise OSError(errno.ENOSPC, "No space left on device", "/tmp/ffmpeg-scratch")
        yield

    monkeypatch.setattr(pipeline, "iter_clips", iter_clips)
    item = SourceItem(str(tmp_path / "a.mp4"), "v", "a")
    with pytest.raises(fsio.OutputError, match="no space left on the disk holding /tmp/ffmpeg-scratch"):
        pipeline.process_item(item, CFG, str(tmp_path))
    outcome, samples = pipeline.process_item(dataclasses.replace(item, missing=True), CFG, str(tmp_path))
    assert (outcome["status"], outcome["reason"], samples) == ("missing", "missing", [])


# ---------------------------------------------------------------- strange paths (h1 sweep)

@contextlib.contextmanager
def no_hang(seconds: int = 20):
    """Fail (instead of hanging the suite) when the block blocks, e.g. opening a FIFO."""
    def stop(*_):
        raise TimeoutError(f"blocked for {seconds} s")
    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_special_files_and_non_utf8_names_get_their_own_reason(tmp_path):
    """A FIFO named x.mp4 was `empty` (its size is 0; had it been opened it would wait for a
    writer forever), a symlink loop `missing`, /dev/zero `empty`; a name that is not UTF-8
    stopped the whole build with a UnicodeEncodeError traceback."""
    src = tmp_path / "src"
    src.mkdir()
    os.mkfifo(src / "fifo.mp4")
    (src / "loop.mp4").symlink_to("loop.mp4")
    (src / "dangling.mp4").symlink_to(tmp_path / "gone.mp4")
    (src / "zero.mp4").symlink_to("/dev/zero")
    with open(os.path.join(os.fsencode(src), b"bad\xff.mp4"), "wb") as f:
        f.write(b"not decoded")
    with no_hang():
        build(src, tmp_path / "out", items=prepare_videos(str(src)))
    rows = {o["item_id"]: (o["reason"], o["message"]) for o in read_outcomes(tmp_path / "out")}
    assert {k: r for k, (r, _) in rows.items()} == {"bad\\xff": "unreadable", "dangling": "missing",
                                                    "fifo": "unreadable", "loop": "unreadable", "zero": "unreadable"}
    assert "is a FIFO (named pipe), not a regular file" in rows["fifo"][1]
    assert "Too many levels of symbolic links" in rows["loop"][1]
    assert f"is a symlink to {tmp_path / 'gone.mp4'}, which is not there" in rows["dangling"][1]
    assert "is a character device" in rows["zero"][1] and "not UTF-8" in rows["bad\\xff"][1]
    assert "bad\\xff.mp4,failed,unreadable" in (tmp_path / "out" / "failures.csv").read_text(encoding="utf-8")


def test_lrw_lists_uppercase_clips_and_special_files_fail_with_their_reason(tmp_path):
    """`BLUE_00002.MP4` was not listed at all; a FIFO, a dangling or looping symlink were
    `missing` ("file listed by the recipe is not there")."""
    from avprep.probe import check_file
    from avprep.recipes.lrw import prepare_lrw
    folder = tmp_path / "lipread_mp4" / "BLUE" / "train"
    folder.mkdir(parents=True)
    (folder / "BLUE_00002.MP4").write_bytes(b"v")
    os.mkfifo(folder / "BLUE_00003.mp4")
    (folder / "BLUE_00004.mp4").symlink_to("BLUE_00004.mp4")
    (folder / "BLUE_00005.txt").write_text("Duration: 0.4 seconds\n")
    items = {i.item_id: i for i in prepare_lrw(str(tmp_path))}
    assert sorted(items) == ["BLUE/train/BLUE_00002", "BLUE/train/BLUE_00003", "BLUE/train/BLUE_00004",
                             "BLUE/train/BLUE_00005"]
    assert items["BLUE/train/BLUE_00002"].path.endswith("BLUE_00002.MP4")
    assert [i.missing for i in items.values()] == [False, False, False, True]
    for stem, says in (("BLUE_00003", "is a FIFO"), ("BLUE_00004", "Too many levels")):
        with no_hang(), pytest.raises(MediaError, match=says):
            check_file(items[f"BLUE/train/{stem}"].path)


def test_an_auto_listed_fifo_csv_is_not_read(tmp_path):
    from avprep.recipes.kinetics import find_csvs
    (tmp_path / "train.csv").write_text("label,youtube_id,time_start,time_end,split\n")
    os.mkfifo(tmp_path / "pipe.csv")
    with no_hang():
        assert find_csvs(str(tmp_path)) == [str(tmp_path / "train.csv")]


@pytest.mark.parametrize("name", ["pipe:o", "o [1]", "o {a,b}", "o *"])
def test_a_shard_folder_with_a_pattern_like_name_is_that_folder(tmp_path, monkeypatch, name):
    """inspect/preview of a build in `pipe:o` refused it as a command, `o [1]` and `o {a,b}`
    found nothing and `o *` read every folder beginning with `o `."""
    from avprep.format import expand_shards
    for folder in ("pipe:o", "o [1]", "o {a,b}", "o *"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "s-000000.tar").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    assert expand_shards(name) == [str(tmp_path / name / "s-000000.tar")]


def test_a_corpus_root_that_cannot_be_read_is_one_plain_line(tmp_path):
    from avprep.recipes import RECIPES, build_recipe
    (tmp_path / "loop").symlink_to("loop")
    with pytest.raises(ConfigError) as err:
        build_recipe(RECIPES["videos"], {"root": str(tmp_path / "loop")}, str(tmp_path / "out"))
    assert str(err.value) == f"cannot read the videos corpus: {tmp_path / 'loop'}: Too many levels of symbolic links"


def test_a_fifo_named_like_a_shard_is_never_opened(tmp_path):
    """inspect, verify and preview of a folder (or glob) holding a FIFO `x-000001.tar` hung."""
    from avprep.format import expand_shards
    from avprep.tools import verify_shards
    (tmp_path / "x-000000.tar").write_bytes(b"")
    os.mkfifo(tmp_path / "x-000001.tar")
    with no_hang():
        assert expand_shards(str(tmp_path)) == expand_shards(str(tmp_path / "*.tar")) == [str(tmp_path / "x-000000.tar")]
        assert verify_shards(str(tmp_path)).shards == 1


def test_an_out_that_is_a_dangling_symlink_says_so(tmp_path):
    """It said 'a part of that path is a file, not a folder'."""
    (tmp_path / "out").symlink_to(tmp_path / "gone")
    with pytest.raises(fsio.OutputError) as err:
        build(tmp_path, tmp_path / "out", items=[SourceItem("a.mp4", "v", "a", missing=True)])
    assert str(err.value).startswith(f"output path {tmp_path / 'out'} is a symlink to {tmp_path / 'gone'}, which "
                                     "does not lead to a folder")


@pytest.mark.parametrize("name", ["P" * 240 + ".png", "漢" * 82 + ".png"], ids=["244-bytes", "250-bytes-cjk"])
def test_an_output_name_near_the_name_limit_is_written(tmp_path, name):
    """A 244-byte --out name was 'File name too long': its temporary name passed 255 bytes."""
    fsio.atomic_write(tmp_path / name, b"png")
    assert os.listdir(tmp_path) == [name] and (tmp_path / name).read_bytes() == b"png"


def test_read_json_gives_none_for_what_is_not_a_json_record(tmp_path):
    (tmp_path / "ok.json").write_text('{"a": [1, 2]}', encoding="utf-8")
    (tmp_path / "bad.json").write_text('{"a": ', encoding="utf-8")
    (tmp_path / "latin1.json").write_bytes(b'{"a": "\xe9"}')
    (tmp_path / "dir.json").mkdir()
    assert fsio.read_json(tmp_path / "ok.json") == {"a": [1, 2]}
    for name in ("bad.json", "latin1.json", "dir.json", "missing.json"):
        assert fsio.read_json(tmp_path / name) is None, name
