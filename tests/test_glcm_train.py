"""Trainer: schedule, checkpoint round-trip, weights-only loading, signals at any point,
no-batch detection, one-line user errors, the run config, CLI end to end."""
from __future__ import annotations

import errno
import json
import os
import pickle
import signal
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest
import torch

import glcm.train as gtrain
from avprep.fsio import OutputError, OutputLock
from avprep.testing import avcorr
from glcm import checkpoint as ckpt
from glcm.config import load_config
from glcm.train import Interrupted, RunLog, StopFlag, Trainer, lr_factor, run_loop
from conftest import cli, one_line_error

# The CLI runs of this file: the smoke preset (the smallest model), CPU, one thread.
SMOKE = ["--preset", "smoke", "--device", "cpu"]


def batch(seed: int, b: int = 4):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (b, 32, 32, 32, 3), dtype=torch.uint8, generator=g),
            torch.randn(b, 80, 320, generator=g) * 20 - 40)


def smoke(*overrides: str):
    return load_config(preset="smoke", overrides=list(overrides))


def test_schedule_warms_up_then_decays():
    cfg = load_config(overrides=["train.warmup_steps=10", "train.steps=110"]).train
    assert lr_factor(0, cfg) == pytest.approx(0.1)
    assert lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(60, cfg) == pytest.approx(0.5)
    assert lr_factor(110, cfg) == pytest.approx(0.0)
    cfg.schedule = "constant"
    assert lr_factor(100, cfg) == 1.0


def test_presets_are_functions_returning_fresh_configs():
    from glcm.config import PRESETS, GLCMConfig
    for name, make in PRESETS.items():
        a, b = make(), make()
        assert isinstance(a, GLCMConfig) and a == b and a is not b, name
    a = PRESETS["avcorr"]()
    a.model.width = 99
    assert PRESETS["avcorr"]().model.width == 8                 # no shared state between calls
    cfg = load_config(preset="avcorr", overrides=["train.steps=7"])
    assert (cfg.model.blocks, cfg.model.output_stride, cfg.train.steps) == ((1, 1, 0, 0), 4, 7)


def test_resume_restores_identical_next_step(tmp_path):
    cfg = smoke()
    a = Trainer(cfg, torch.device("cpu"))
    for s in range(3):
        a.train_step(*batch(s))
    a.save(tmp_path / "c.pt")
    next_a = a.train_step(*batch(99))["loss"].item()
    rand_a = torch.rand(3)

    b = Trainer(smoke("train.seed=5"), torch.device("cpu"))
    b.load(tmp_path / "c.pt")
    assert b.step == 3
    next_b = b.train_step(*batch(99))["loss"].item()
    assert next_b == next_a                              # same weights, BN stats, Adam moments, lr
    torch.rand(3)                                        # (the step used no randomness)
    b.load(tmp_path / "c.pt")
    torch.testing.assert_close(torch.rand(3), rand_a)    # RNG state restored too
    fresh = Trainer(smoke("train.seed=5"), torch.device("cpu"))
    assert fresh.train_step(*batch(99))["loss"].item() != next_a


def test_checkpoints_are_weights_only(tmp_path):
    data = Trainer(smoke(), torch.device("cpu")).state()
    ckpt.atomic_save(data, tmp_path / "c.pt")
    torch.load(tmp_path / "c.pt", weights_only=True)    # plain tensors and data only
    assert os.listdir(tmp_path) == ["c.pt"]              # no temp file left

    class Evil:
        def __reduce__(self):
            return (open, (str(tmp_path / "PWNED"), "w"))
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"format": ckpt.CHECKPOINT_FORMAT, "x": Evil()}, f)
    with pytest.raises(ckpt.CheckpointError) as err:
        ckpt.load(tmp_path / "evil.pt")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "PWNED").exists()


def test_full_disk_names_the_disk_and_leaves_no_temp(tmp_path, monkeypatch):
    def full(obj, f):
        f.write(b"x" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(ckpt.torch, "save", full)
    with pytest.raises(OutputError) as err:
        ckpt.atomic_save({"a": 1}, tmp_path / "checkpoint.pt")
    assert "no space left on the disk holding" in str(err.value) and "\n" not in str(err.value)
    assert os.listdir(tmp_path) == []


def test_checkpoint_of_another_architecture_is_one_line(tmp_path):
    Trainer(smoke("model.width=8"), torch.device("cpu")).save(tmp_path / "w8.pt")
    with pytest.raises(ckpt.CheckpointError, match=r"model.width: 4 here, 8 there") as err:
        Trainer(smoke(), torch.device("cpu")).load(tmp_path / "w8.pt")
    assert "\n" not in str(err.value)
    data = torch.load(tmp_path / "w8.pt", weights_only=True)
    data["config"]["model"]["width"] = 4                 # a config that lies about the weights
    torch.save(data, tmp_path / "lies.pt")
    with pytest.raises(ckpt.CheckpointError, match="does not fit this model") as err:
        Trainer(smoke(), torch.device("cpu")).load(tmp_path / "lies.pt")
    assert "\n" not in str(err.value)


def signalling_loader(n: int, at: int, during_step: bool, trainer: Trainer):
    """Batches; SIGINT arrives while batch `at` is fetched, or during the step that uses it."""
    step = trainer.train_step

    def step_then_signal(*a):
        out = step(*a)
        os.kill(os.getpid(), signal.SIGINT)
        return out

    for i in range(n):
        if i == at and not during_step:
            os.kill(os.getpid(), signal.SIGINT)           # what Ctrl-C delivers while the loader waits
        if i == at and during_step:
            trainer.train_step = step_then_signal
        f, m = batch(i)
        yield {"frames": f, "mel": m, "worker": 0, "skipped": {}}


@pytest.mark.parametrize("during_step,stopped_at", [(True, 3), (False, 2)])
def test_sigint_saves_a_checkpoint_and_stops(tmp_path, during_step, stopped_at):
    trainer = Trainer(smoke("train.steps=100", "train.checkpoint_every=1000"), torch.device("cpu"))
    log = RunLog(tmp_path, True)
    before = signal.getsignal(signal.SIGINT)   # SIG_IGN when run in the background (nohup, CI)
    with StopFlag() as stop:
        last = run_loop(trainer, signalling_loader(100, 2, during_step, trainer), log, stop,
                        tmp_path / "checkpoint.pt", 0, 1)
    log.close()
    # during a step: that step ends, then the loop stops; while waiting: it stops at once
    assert last["interrupted"] and last["signal"] == "SIGINT" and trainer.step == stopped_at
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == stopped_at
    assert signal.getsignal(signal.SIGINT) == before   # the handler in place before is restored


def test_a_step_that_never_finishes_is_stopped_after_the_grace_period():
    stop = StopFlag(grace=0.3)
    t0 = time.perf_counter()
    with stop, pytest.raises(Interrupted) as err:
        with stop.busy():
            threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGTERM)).start()
            time.sleep(20)                                  # a hung step
    assert not err.value.clean and err.value.signum == signal.SIGTERM
    assert time.perf_counter() - t0 < 3


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    avcorr.write_shards(avcorr.make_clips(8, seed=0, min_seconds=3.3, max_seconds=4.0), str(out), per_shard=4)
    return str(out / "avcorr-{000000..000001}.tar"), out


def test_cli_train_resume_and_eval(shards, tmp_path):
    pattern, folder = shards
    run = tmp_path / "run"
    res = cli("train", "--shards", pattern, "--out", run, *SMOKE, "--steps", 4, "--workers", 0,
              "--epoch-batches", 3, "--set", "train.warmup_steps=1", "--set", "train.log_every=2")
    assert res[0] == 0, res[1]
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    assert all(r["loss"] > 0 and r["clips_per_s"] > 0 for r in records)
    assert (run / "curves.png").stat().st_size > 1000 and list((run / "tb").iterdir())
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 4
    saved = json.loads((run / "config.json").read_text())
    assert saved["data"]["shards"] == pattern and saved["train"]["out"] == str(run)
    assert saved["train"]["epoch_batches"] == 3 and saved["model"]["width"] == 4

    # nothing retyped: shards, epoch length, model and the rest come from OUT/config.json
    res = cli("train", "--resume", "--out", run, "--steps", 6)
    assert res[0] == 0, res[1]
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 6
    saved = json.loads((run / "config.json").read_text())
    assert saved["train"]["steps"] == 6 and saved["data"]["shards"] == pattern and saved["model"]["width"] == 4

    res = cli("eval-localization", "--checkpoint", run / "checkpoint.pt", "--shards", pattern,
              "--annotations", folder / "avcorr.json", "--shift", 1)
    assert res[0] == 0, res[1]
    result = json.loads(res[1].strip().splitlines()[-1])
    assert result["clips"] == 8 and 0 <= result["ciou_mean"] <= 1

    enc = tmp_path / "audio.pt"
    res = cli("export-encoder", "--checkpoint", run / "checkpoint.pt", "--encoder", "audio", "--out", enc)
    assert res[0] == 0, res[1]
    assert ckpt.load_encoder(enc, "audio").global_head.out_channels == 8


@pytest.fixture(scope="module")
def run_dir(shards, tmp_path_factory):
    """A finished 2-step run (smoke preset) to resume, evaluate and export from."""
    run = tmp_path_factory.mktemp("done") / "run"
    res = cli("train", "--shards", shards[0], "--out", run, *SMOKE, "--steps", 2, "--epoch-batches", 2)
    assert res[0] == 0, res[1]
    return run


def not_a_checkpoint(tmp_path: Path) -> Path:
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    return tmp_path / "junk.pt"


def empty_annotations(tmp_path: Path) -> Path:
    """A readable avcorr.json that annotates nothing (the checks after it are the ones tested)."""
    (tmp_path / "empty.json").write_text('{"videos": {}}')
    return tmp_path / "empty.json"


def resume_without_checkpoint(tmp_path: Path, run: Path) -> list:
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh" / "config.json").write_text((run / "config.json").read_text())
    return ["train", "--resume", "--out", tmp_path / "fresh"]


def resume_with_junk(tmp_path: Path, run: Path) -> list:
    junk = tmp_path / "junkrun"
    junk.mkdir()
    (junk / "config.json").write_text((run / "config.json").read_text())
    (junk / "checkpoint.pt").write_bytes(b"\x00" * 64)
    return ["train", "--resume", "--out", junk]


# (case, command, what the one line must say); every one exits 2 before any training
USER_ERRORS = [
    ("out is a file", lambda t, s, r: ["train", "--shards", s, "--out", r / "config.json"], "is a file"),
    ("epoch-batches 0", lambda t, s, r: ["train", "--shards", s, "--out", t / "x", "--epoch-batches", 0],
     "train.epoch_batches must be positive"),
    ("width 0", lambda t, s, r: ["train", "--shards", s, "--out", t / "x", "--set", "model.width=0"],
     "model.width must be positive"),
    ("lr nan", lambda t, s, r: ["train", "--shards", s, "--out", t / "x", "--set", "train.lr=nan"],
     "train.lr must be a finite number"),
    ("unknown field", lambda t, s, r: ["train", "--shards", s, "--out", t / "x", "--set", "model.wdth=3"], "wdth"),
    ("resume a non-run", lambda t, s, r: ["train", "--shards", s, "--out", t / "x", "--resume"], "no "),
    ("resume without checkpoint", lambda t, s, r: resume_without_checkpoint(t, r),
     "--resume: no checkpoint at"),
    ("resume other width", lambda t, s, r: ["train", "--resume", "--out", r, "--set", "model.width=8"],
     "model.width: 8 here, 4 there"),
    ("new run over a checkpoint", lambda t, s, r: ["train", "--shards", s, "--out", r, *SMOKE],
     "already holds a checkpoint; add --resume"),
    ("resume a non-checkpoint", lambda t, s, r: resume_with_junk(t, r), "is not a readable GLCM checkpoint"),
    ("eval without checkpoint", lambda t, s, r: ["eval-localization", "--checkpoint", t / "none.pt", "--shards", s,
                                                 "--annotations", empty_annotations(t)], "does not exist"),
    ("eval on a non-checkpoint", lambda t, s, r: ["eval-localization", "--checkpoint", not_a_checkpoint(t),
                                                  "--shards", s, "--annotations", empty_annotations(t)],
     "is not a readable GLCM checkpoint"),
    ("eval with unreadable annotations", lambda t, s, r: ["eval-localization", "--checkpoint", r / "checkpoint.pt",
                                                          "--shards", s, "--annotations", t / "a.json"],
     "not a readable avcorr.json"),
    ("eval without annotations", lambda t, s, r: ["eval-localization", "--checkpoint", r / "checkpoint.pt",
                                                  "--shards", s, "--annotations", t / "a.json"], "--annotations"),
    ("eval on files that are not shards", lambda t, s, r: [
        "eval-localization", "--checkpoint", r / "checkpoint.pt", "--shards", r / "config.json",
        "--annotations", Path(s).parent / "avcorr.json"], "cannot evaluate on them"),
    ("crop too large", lambda t, s, r: ["train", "--shards", s, "--out", t / "x", "--set", "data.crop=100000"],
     "data.crop must be at most 1024 pixels, got 100000"),
    ("export to a folder", lambda t, s, r: ["export-encoder", "--checkpoint", r / "checkpoint.pt", "--encoder",
                                            "audio", "--out", t], "is a folder; give a file name in it, e.g."),
    ("export bad encoder", lambda t, s, r: ["export-encoder", "--checkpoint", r / "checkpoint.pt", "--encoder",
                                            "visual", "--out", t / "e.pt"], "encoder must be one of"),
    ("export a non-checkpoint", lambda t, s, r: ["export-encoder", "--checkpoint", not_a_checkpoint(t),
                                                 "--encoder", "audio", "--out", t / "e.pt"], "not a readable"),
    ("export into a file's folder", lambda t, s, r: ["export-encoder", "--checkpoint", r / "checkpoint.pt",
                                                     "--encoder", "audio", "--out", r / "config.json" / "e.pt"],
     "is a file"),
    ("bench bad sizes", lambda t, s, r: ["bench", "--shards", s, "--batch-sizes", "8,x"], "--batch-sizes"),
    ("bench bad steps", lambda t, s, r: ["bench", "--shards", s, "--steps", 0], "--steps 0"),
]


# (--set values, the one line); found by a sweep of wrong types and ranges: each used to pass
# the checks (and fail later: a traceback in the loader for a negative data.seed, a silent
# upscale for a crop larger than resize_short, a run learning nothing) or said too little
CONFIG_ERRORS = [
    (["data.seed=-1"], "data.seed must be a whole number from 0 to 2**63 - 1, got -1"),
    ([f"train.seed={2**64}"], f"train.seed must be a whole number from 0 to 2**63 - 1, got {2**64}"),
    (["model.blocks=1,1"], "model.blocks needs 4 comma-separated entries (blocks per stage), got 1,1"),
    (["model.audio_layer_strides="], "model.audio_layer_strides needs 4 comma-separated entries (one per audio "
                                     "stage), got none"),
    (["data.frames=30"], "data.frames must be a multiple of model.global_stride (4), got 30"),
    (["model.stem_kt=2"], "model.stem_kt must be odd (an even kernel would add a time step), got 2"),
    (["data.resize_short=16"], "data.crop 32 is larger than the frames (data.resize_short 16); make resize_short "
                               "at least the crop, or 0"),
    (["loss.global_weight=0", "loss.local_weight=0"], "loss.global_weight and loss.local_weight are both 0"),
    (["train.steps=1e3"], "train.steps: expected a whole number, got '1e3'"),
    (["train.lr=[1,2]"], "train.lr: expected a number, got '[1,2]'"),
]


@pytest.mark.parametrize("sets,says", CONFIG_ERRORS, ids=[" ".join(c[0]) for c in CONFIG_ERRORS])
def test_bad_set_values_are_one_line_naming_key_and_value(sets, says):
    from glcm.config import ConfigError
    with pytest.raises(ConfigError) as exc:
        load_config(preset="smoke", overrides=sets)
    assert str(exc.value) == says or str(exc.value).startswith(says)


def test_json_values_of_the_wrong_kind_are_refused():
    """A JSON config's true for a step count was 1 step; 1e400 (inf) an OverflowError traceback."""
    from glcm.config import ConfigError, from_dict
    for value, shown in ((True, "True"), (float("inf"), "inf")):
        with pytest.raises(ConfigError, match=f"train.steps: expected a whole number, got {shown}"):
            from_dict({"train": {"steps": value}})


FINETUNE_ERRORS = [
    (["task.classes=1"], "task.classes must be 0 (the task's own count) or at least 2, got 1"),
    (["task.clips=-1"], "task.clips cannot be negative (0: the task's default), got -1"),
    (["task.beam=0"], "task.beam must be positive, got 0"),
    (["task.name=esc50", "task.train_list=x.txt"], "task.train_list is for dfdc (Chugh et al. lists); task esc50"),
    (["task.name=dfdc", "task.test_list=/no/such/list.txt"], "task.test_list: cannot read list /no/such/list.txt "
                                                             "(no such file)"),
]


@pytest.mark.parametrize("sets,says", FINETUNE_ERRORS, ids=[" ".join(c[0]) for c in FINETUNE_ERRORS])
def test_bad_task_values_are_one_line_before_the_shards(sets, says):
    from glcm.config import ConfigError, load_finetune_config
    with pytest.raises(ConfigError) as exc:
        load_finetune_config(overrides=sets, preset="smoke")
    assert str(exc.value).startswith(says)


@pytest.mark.parametrize("case,command,says", USER_ERRORS, ids=[c[0] for c in USER_ERRORS])
def test_user_errors_are_one_line_with_exit_2(case, command, says, shards, run_dir, tmp_path):
    code, output = cli(*command(tmp_path, shards[0], run_dir))
    assert code == 2, output
    assert says in one_line_error(output)
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"] == 2     # never touched


def test_bench_on_a_machine_without_cuda_says_so(shards):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    code, output = cli("bench", "--shards", shards[0], "--device", "cuda")
    assert code == 2 and "CUDA is not available" in one_line_error(output)


def test_a_second_run_into_one_out_is_refused(shards, tmp_path):
    with OutputLock(tmp_path / "run", "glcm train"):
        code, output = cli("train", "--shards", shards[0], "--out", tmp_path / "run", *SMOKE)
    assert code == 2 and "in use by another run (glcm train pid" in one_line_error(output)
    assert not (tmp_path / "run" / "config.json").exists()


def test_a_pattern_matching_nothing_fails_before_any_model(tmp_path, monkeypatch):
    monkeypatch.setattr(gtrain, "Trainer", lambda *a: pytest.fail("a model was built"))
    code, output = cli("train", "--shards", tmp_path / "none-*.tar", "--out", tmp_path / "run", *SMOKE)
    assert code == 2 and "no shards found" in one_line_error(output)
    code, output = cli("train", "--shards", tmp_path / "s-{000000..000003}.tar", "--out", tmp_path / "run", *SMOKE)
    assert code == 2 and "4 of 4 shards" in one_line_error(output)
    assert not (tmp_path / "run").exists()


def empty_tar(path: Path) -> str:
    with tarfile.open(path, "w"):
        pass
    return str(path)


def zero_byte_shards(folder: Path) -> str:
    for i in range(2):
        (folder / f"z-{i}.tar").write_bytes(b"")
    return str(folder / "z-{0..1}.tar")


# (case, shard spec maker, extra options, what the line names); each must end with exit 1
NO_BATCH = [
    ("zero-byte shards", lambda t, s: zero_byte_shards(t), [], "none of the 2 shards gave a sample"),
    ("zero-sample shard", lambda t, s: empty_tar(t / "e.tar"), ["--workers", 1], "none of the 1 shards gave a sample"),
    ("every sample skipped", lambda t, s: s, ["--workers", 1, "--set", "model.mel_per_frame=4"],
     "1000 samples in a row could not be used (data.skip_limit); skipped by reason: mel_per_frame 1000"),
    ("every sample skipped, one pass", lambda t, s: s, ["--set", "model.mel_per_frame=4", "--set", "data.resample=false"],
     "a whole pass over the shards gave no batch; skipped by reason: mel_per_frame 8"),
    ("fewer samples than a batch", lambda t, s: s, ["--workers", 1, "--batch-size", 16, "--set", "data.resample=false"],
     "a whole pass over the shards gave no batch; skipped by reason: none"),
]


@pytest.mark.parametrize("case,spec,extra,says", NO_BATCH, ids=[c[0] for c in NO_BATCH])
def test_no_batch_ends_within_seconds_with_exit_1(case, spec, extra, says, shards, tmp_path):
    t0 = time.perf_counter()
    code, output = cli("train", "--shards", spec(tmp_path, shards[0]), "--out", tmp_path / "run", *SMOKE,
                       "--steps", 3, *extra)
    assert code == 1, output
    assert says in one_line_error(output)
    assert time.perf_counter() - t0 < 20


def family(pid: int) -> list[int]:
    """The live processes under `pid` (Linux /proc)."""
    kids = []
    for entry in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if entry.isdigit() and int(fields[1]) == pid and fields[0] != "Z":
            kids.append(int(entry))
    return kids + [g for k in kids for g in family(k)]


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def argv0(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return b""


def signal_when_reading(sig: int, readers: int, seen: list) -> None:
    """Wait until `readers` shard commands (sleep) run under this process, note every
    process under it in `seen`, then send `sig` to this process (in any case: no hang)."""
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            kids = [p for p in family(os.getpid()) if alive(p)]
            if sum(argv0(p) == b"sleep" for p in kids) >= readers:
                seen.extend(kids)
                break
            time.sleep(0.05)
    finally:
        seen.append(time.perf_counter())
        os.kill(os.getpid(), sig)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_while_the_loader_waits_leaves_no_process_behind(tmp_path):
    # each worker reads a shard command that never ends, so the first step never comes
    before = set(family(os.getpid()))               # e.g. a resource tracker left by earlier tests
    seen: list = []
    threading.Thread(target=signal_when_reading, args=(signal.SIGTERM, 2, seen), daemon=True).start()
    code, output = cli("train", "--shards", "pipe:sleep 120", "--out", tmp_path / "run", *SMOKE, "--workers", 2)
    took = time.perf_counter() - seen.pop()
    started = [p for p in seen if p not in before]
    assert code == 128 + signal.SIGTERM, output
    assert json.loads(output[output.rindex('{"step"'):].splitlines()[0])["signal"] == "SIGTERM"
    assert len(started) >= 6 and took < 10, started    # 2 workers, each with its shell and sleep
    time.sleep(0.3)
    assert [p for p in started if alive(p)] == []
