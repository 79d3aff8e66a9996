"""The fault catalog of RELIABILITY.md (groups B-F), end to end through the `charlm` command.

Each test provokes one fault the way a user would meet it (or injects it with a monkeypatch where
the real thing cannot be arranged here, e.g. a full disk) and checks the exit code, the one-line
`error:` message and what is left on disk. Commands run in-process through `charlm.cli.main`,
except where a signal, a pipe or a possible hang needs a real process.
"""

import errno
import fcntl
import itertools
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import run

from charlm import fs
from charlm.data import text as data
from charlm.io import checkpoint, npz
from charlm.nn import loss, model
from charlm.train.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
TINY = ("--hidden", "8", "--layers", "1", "--batch-size", "2", "--seq-len", "8", "--quiet")
ENV = dict(os.environ, PYTHONUNBUFFERED="1", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")


def charlm_process(*args, timeout=60, **kwargs):
    """charlm ARGS in a fresh interpreter -> CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-m", "charlm", *map(str, args)], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=timeout, **kwargs)


def assert_error(err, code, expected_code, *fragments):
    """Exit code, and exactly one `error:` line (the last one) holding every fragment."""
    assert code == expected_code, err
    assert "Traceback" not in err and "Warning" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert err.rstrip("\n").splitlines()[-1] == errors[0], err
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def train(capfd, corpus, out, *extra, cell="gru", steps=3):
    return run(capfd, "train", corpus, "--cell", cell, *TINY, "--steps", steps, "--out", out,
               *extra)


@pytest.fixture
def text(small_corpus):
    """The small corpus's text (tests/conftest.py)."""
    return small_corpus.read_text()


@pytest.fixture
def trained(small_corpus, tmp_path, capfd):
    """A 3-step GRU run: tmp_path/run/{last,best}.npz."""
    out = tmp_path / "run"
    code, _, err = train(capfd, small_corpus, out)
    assert code == 0, err
    return out


def snapshot(directory):
    """{name: (bytes, mtime_ns)} of every file in directory."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(Path(directory).iterdir()) if p.is_file()}


def temp_files(directory):
    return [p.name for p in Path(directory).iterdir() if p.name.startswith(".charlm-")]


def record_saves(monkeypatch):
    """Make every successful checkpoint save also remember the bytes it wrote, by file name."""
    saved = {}

    def recording(real_save):
        def recording_save(path, *args, **kwargs):
            real_save(path, *args, **kwargs)
            saved[Path(path).name] = Path(path).read_bytes()
        return recording_save
    for name in ("save_neural", "save_weights"):     # last.npz, best.npz
        monkeypatch.setattr(checkpoint, name, recording(getattr(checkpoint, name)))
    return saved


def record_steps(monkeypatch):
    """Make Trainer.train_step remember (parameters, moments, optimizer step) before and after."""
    steps = []
    real_step = Trainer.train_step

    def state(trainer):
        moments = {m: {n: v.copy() for n, v in views.items()}
                   for m, views in trainer.opt.moment_views.items()}
        return trainer.flat.copy(), moments, trainer.opt.step_count

    def recording_step(self):
        before = state(self)
        result = real_step(self)
        steps.append((before, state(self), result))
        return result
    monkeypatch.setattr(Trainer, "train_step", recording_step)
    return steps


def assert_unchanged(before, after):
    flat0, moments0, count0 = before
    flat1, moments1, count1 = after
    assert np.array_equal(flat0, flat1) and count0 == count1
    for moment, views in moments0.items():
        for name, value in views.items():
            assert np.array_equal(value, moments1[moment][name]), (moment, name)


def metrics(out):
    """The validation records of metrics.jsonl (each run's opening record left out)."""
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r.get("event") not in ("start", "mixture")]


# ---- D: numerics --------------------------------------------------------------------------------

@pytest.mark.parametrize("activation,fragments", [
    ("relu", ("diverged", "non-finite loss or gradient", "last finite loss")),   # overflows
    ("tanh", ("loss is exploding", "over 3 x the first")),          # stays finite, but huge
])
def test_d1_d6_a_huge_learning_rate_exits_6_without_numpy_warnings(small_corpus, tmp_path, capfd,
                                                                   activation, fragments):
    out = tmp_path / "run"
    code, _, err = run(capfd, "train", small_corpus, "--cell", "rnn", "--activation", activation,
                       *TINY, "--optimizer", "sgd", "--lr", "1e30", "--clip-norm", "1e30",
                       "--lr-schedule", "constant", "--steps", "50", "--eval-every", "25",
                       "--out", out)
    # three rollbacks (the default --max-rollbacks) halve 1e30 three times: still far too much
    assert_error(err, code, 6, *fragments, "lower --lr (now 1e+30; 3 rollbacks took it down to "
                 "1.25e+29)", f"no checkpoint was saved in {out}")
    assert err.count("rollback ") == 3
    assert not (out / "last.npz").exists() and temp_files(out) == []


def test_d1_divergence_keeps_the_last_good_checkpoint_byte_for_byte(small_corpus, tmp_path,
                                                                   capfd, monkeypatch):
    calls = itertools.count(1)
    real = loss.cross_entropy

    def nan_from_step_6(logits, targets, want_grad=True, log_probs=None):
        nll, dlogits = real(logits, targets, want_grad, log_probs)
        return (math.nan if next(calls) >= 6 else nll), dlogits
    monkeypatch.setattr(loss, "cross_entropy", nan_from_step_6)
    saved = record_saves(monkeypatch)
    out = tmp_path / "run"
    code, _, err = train(capfd, small_corpus, out, "--eval-every", "5", steps=20)
    # every loss from the sixth on is NaN: three rollbacks to step 5 skip steps 6, 7 and 8;
    # step 9 is the fourth divergence and ends the run before step 10's save
    assert_error(err, code, 6, "lower --lr", "step 9", "last finite loss", "at step 5", str(out),
                 "3 rollbacks")
    assert set(saved) == {"last.npz", "best.npz"}
    for name, content in saved.items():
        assert (out / name).read_bytes() == content, name
    ckpt = checkpoint.load(out / "last.npz")
    assert ckpt.config["progress"]["step"] == 5
    assert [r["step"] for r in metrics(out) if "event" not in r] == [5]
    assert [(r["step"], r["to_step"], r["skip_step"]) for r in metrics(out) if "event" in r] == \
        [(6, 5, 6), (7, 5, 7), (8, 5, 8)]
    assert temp_files(out) == []


def test_d2_a_non_finite_step_rolls_back_halves_the_rate_and_skips_its_batch(
        small_corpus, tmp_path, capfd, monkeypatch):
    calls = itertools.count(1)
    real = loss.cross_entropy

    def nan_at_step_4(logits, targets, want_grad=True, log_probs=None):
        nll, dlogits = real(logits, targets, want_grad, log_probs)
        return (math.nan if next(calls) == 4 else nll), dlogits
    monkeypatch.setattr(loss, "cross_entropy", nan_at_step_4)
    steps = record_steps(monkeypatch)
    out = tmp_path / "run"
    code, _, err = train(capfd, small_corpus, out, "--eval-every", "4", "--optimizer", "sgd",
                         "--lr-schedule", "constant", steps=8)
    assert code == 0, err
    # steps 1-3, the NaN at step 4 (no update, not recorded), back to step 0: steps 1-3 again,
    # step 4's batch skipped, steps 5-8
    assert len(steps) == 3 + 3 + 1 + 4
    first, replayed = steps[0], steps[3]
    assert_unchanged(first[0], replayed[0])     # the same weights, moments and update count
    for (before, after, _), (again, after_again, _) in zip(steps[:3], steps[3:6]):
        # SGD: the update is -lr * gradient, and the same batch has the same gradient at the
        # same weights; the halved rate halves it (only the first pair starts equal)
        if np.array_equal(before[0], again[0]):
            update, replayed_update = after[0] - before[0], after_again[0] - again[0]
            assert np.abs(update).max() > 1e-4      # float32 weights: updates to within 2e-7
            np.testing.assert_allclose(replayed_update, update / 2, rtol=1e-3, atol=2e-7)
    before, after, (step_loss, norm) = steps[6]
    assert math.isnan(step_loss) and math.isnan(norm)
    assert_unchanged(before, after)            # the skipped batch: no update at all
    assert "rollback 1 of at most 3: the loss diverged" in err
    assert "batch 4 to be skipped" in err and "step 4: skipped the batch that diverged" in err
    assert "rollbacks" in err                  # the summary
    records = metrics(out)
    assert [(r["step"], r["to_step"], r["skip_step"], r["lr"]) for r in records
            if r.get("event") == "rollback"] == [(4, 0, 4, pytest.approx(2e-3))]
    assert [(r["step"], r["skipped"]) for r in records if "event" not in r] == [(4, 1), (8, 1)]
    progress = checkpoint.load(out / "last.npz").config["progress"]
    assert (progress["skipped"], progress["rollbacks"], progress["lr_scale"]) == (1, 1, 0.5)
    assert progress["step"] == 8 and progress["optimizer_step"] == 7 and progress["skip_at"] == []


@pytest.mark.parametrize("clip", [("--clip-norm", "5"), ("--clip-value", "0.5")])
def test_d4_an_inf_gradient_entry_is_caught_before_clipping(small_corpus, tmp_path, capfd,
                                                            monkeypatch, clip):
    calls = itertools.count(1)
    real = model.backward

    def inf_at_step_3(params, cfg, dlogits, cache, grads, *args, **kwargs):
        result = real(params, cfg, dlogits, cache, grads, *args, **kwargs)
        if next(calls) == 3:
            grads["head.bias"][0] = np.inf
        return result
    monkeypatch.setattr(model, "backward", inf_at_step_3)
    steps = record_steps(monkeypatch)
    out = tmp_path / "run"
    code, _, err = train(capfd, small_corpus, out, *clip, steps=5)
    assert code == 0, err
    # validated after every step: back to step 2's state, step 3's batch skipped, then 4 and 5
    assert len(steps) == 2 + 1 + 2 and math.isnan(steps[2][2][0])
    assert_unchanged(steps[2][0], steps[2][1])
    assert "gradient norm inf" in err and "batch 3 to be skipped" in err
    ckpt = checkpoint.load(out / "last.npz")    # loading checks every value is finite
    assert ckpt.config["progress"]["skipped"] == 1


def test_d3_a_gradient_norm_beyond_float32_is_clipped_not_skipped(small_corpus, tmp_path, capfd,
                                                                  monkeypatch):
    real = model.backward

    def huge(params, cfg, dlogits, cache, grads, *args, **kwargs):
        result = real(params, cfg, dlogits, cache, grads, *args, **kwargs)
        grads["head.weight"][...] = 1e20       # the sum of squares overflows float32
        return result
    monkeypatch.setattr(model, "backward", huge)
    steps = record_steps(monkeypatch)
    out = tmp_path / "run"
    code, _, err = train(capfd, small_corpus, out, "--optimizer", "sgd", "--lr", "0.1",
                         steps=2)
    assert code == 0, err
    (before, after, (_, norm)) = steps[0]
    assert 1e20 < norm < math.inf
    moved = np.abs(after[0] - before[0]).max()
    assert 0 < moved <= 0.1 * 5 * (1 + 1e-4)   # lr x clip-norm 5: the update was clipped
    assert checkpoint.load(out / "last.npz").config["progress"]["skipped"] == 0


def test_b8_non_finite_weights_are_never_saved(small_corpus, tmp_path, capfd, monkeypatch):
    real_step = Trainer.train_step

    def poison_at_step_7(self):
        result = real_step(self)
        if self.progress.step == 7:
            self.flat[0] = np.nan                # the update itself went bad
        return result
    monkeypatch.setattr(Trainer, "train_step", poison_at_step_7)
    saved = record_saves(monkeypatch)
    out = tmp_path / "run"
    code, _, err = train(capfd, small_corpus, out, "--eval-every", "5", steps=20)
    assert_error(err, code, 6, "lower --lr", "intact")
    assert (out / "last.npz").read_bytes() == saved["last.npz"]
    assert checkpoint.load(out / "last.npz").config["progress"]["step"] == 5


# ---- B: writing checkpoints during training -----------------------------------------------------

@pytest.mark.parametrize("fault,message", [("enospc", "No space left on device (needed about"),
                                           ("eio", "Input/output error")])
def test_b2_b4_a_failed_save_exits_5_and_keeps_the_previous_checkpoint(
        small_corpus, tmp_path, capfd, monkeypatch, fault, message):
    saved = record_saves(monkeypatch)
    if fault == "enospc":
        writes, real_write = itertools.count(1), fs._write_bytes

        # save 1 = the run's n-gram (before training), 2, 3 = step 5's last and best; 4 fails
        def write_bytes(fd, payload):
            if next(writes) == 4:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real_write(fd, payload)
        monkeypatch.setattr(fs, "_write_bytes", write_bytes)
    else:
        syncs, real_fsync = itertools.count(1), os.fsync

        # two per save (file, directory): 1-2 the n-gram, 3-6 step 5's; 7 = step 10's file
        def fsync(fd):
            if next(syncs) == 7:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            real_fsync(fd)
        monkeypatch.setattr(os, "fsync", fsync)
    out = tmp_path / "run"
    code, _, err = train(capfd, small_corpus, out, "--eval-every", "5", steps=20)
    assert_error(err, code, 5, "could not write checkpoint", str(out / "last.npz"), message)
    assert "training summary" not in err       # no silent continue, no success report
    assert (out / "last.npz").read_bytes() == saved["last.npz"]
    assert checkpoint.load(out / "last.npz").config["progress"]["step"] == 5
    assert temp_files(out) == []
    assert [r["step"] for r in metrics(out)] == [5]


@pytest.mark.parametrize("cell", ["gru", "ngram"])
def test_b2_a_full_disk_at_the_metrics_log_is_an_output_error(small_corpus, tmp_path, capfd,
                                                              monkeypatch, cell):
    """Either model kind's metrics.jsonl goes through the run directory, so a full disk there
    is exit 5 with a message naming the file, not an internal error."""
    real_open = open

    def full_disk(file, mode="r", *args, **kwargs):
        if str(file).endswith("metrics.jsonl") and "a" in mode:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))
        return real_open(file, mode, *args, **kwargs)
    monkeypatch.setattr("builtins.open", full_disk)
    out = tmp_path / "run"
    if cell == "ngram":
        code, _, err = run(capfd, "train", small_corpus, "--cell", "ngram", "--out", out)
    else:
        code, _, err = train(capfd, small_corpus, out, cell=cell)
    assert_error(err, code, 5, "metrics.jsonl", "No space left on device")


def test_b3_an_unwritable_output_directory_fails_before_any_step(small_corpus, tmp_path, capfd,
                                                                 monkeypatch):
    # root ignores chmod here, so the refusal of a read-only filesystem is injected
    real_write_bytes = Path.write_bytes

    def read_only(self, content):
        if self.name.startswith(".charlm-"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_write_bytes(self, content)
    monkeypatch.setattr(Path, "write_bytes", read_only)
    steps = record_steps(monkeypatch)
    out = tmp_path / "run"
    code, _, err = train(capfd, small_corpus, out)
    assert_error(err, code, 5, f"cannot write to {out}", "Read-only file system", "--out")
    assert steps == [] and not (out / "last.npz").exists()


def test_b3_an_output_directory_that_cannot_be_created_exits_5(small_corpus, tmp_path, capfd):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    code, _, err = train(capfd, small_corpus, blocker / "run")
    assert_error(err, code, 5, "cannot use output directory", "Not a directory", "--out")
    code, _, err = train(capfd, small_corpus, blocker)
    assert_error(err, code, 5, "cannot use output directory", str(blocker))
    assert blocker.read_text() == "not a directory"


def test_b6_out_equal_to_the_corpus_is_refused_before_writing(small_corpus, capfd):
    before = small_corpus.read_bytes()
    code, _, err = train(capfd, small_corpus, small_corpus)
    assert_error(err, code, 2, "is the corpus itself")
    assert small_corpus.read_bytes() == before
    code, _, err = train(capfd, small_corpus.parent, small_corpus.parent)   # a corpus directory
    assert_error(err, code, 2, "is the corpus itself")
    assert not temp_files(small_corpus.parent)
    assert not (small_corpus.parent / ".charlm.lock").exists()


def test_b7_a_run_directory_in_use_is_refused_with_the_holder_pid(small_corpus, tmp_path, capfd):
    out = tmp_path / "run"
    out.mkdir()
    with open(out / ".charlm.lock", "w") as held:
        held.write("4242\n")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code, _, err = train(capfd, small_corpus, out)
        assert_error(err, code, 5, "in use by another charlm train (PID 4242)", "--out")
        assert not (out / "last.npz").exists()
    code, _, err = train(capfd, small_corpus, out)         # released: the run goes ahead
    assert code == 0, err
    assert (out / "last.npz").exists()


def test_b7_c3_a_live_training_process_holds_its_directory(text, small_corpus, tmp_path, capfd):
    big = tmp_path / "big.txt"
    big.write_text(text * 20)
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "charlm", "train", str(big), "--out", str(out), "--cell", "gru",
         *TINY, "--steps", "1000000", "--eval-every", "20"],
        cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not (out / "last.npz").exists() and time.time() < deadline:
            time.sleep(0.05)
        code, _, err = run(capfd, "train", big, "--out", out, *TINY, "--steps", "3")
        assert_error(err, code, 5, "in use", f"PID {proc.pid}")
        code, _, err = run(capfd, "train", big, "--resume", out / "last.npz", "--quiet")
        assert_error(err, code, 5, "in use", f"PID {proc.pid}")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, proc_err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM, proc_err
    assert "SIGTERM: saved step" in proc_err and "Traceback" not in proc_err
    assert checkpoint.load(out / "last.npz").config["progress"]["step"] >= 20


def test_b11_resume_points_at_a_run_directorys_last_checkpoint(small_corpus, tmp_path, capfd):
    out = tmp_path / "run"
    code, _, err = train(capfd, small_corpus, out)
    assert code == 0, err
    code, _, err = run(capfd, "train", small_corpus, "--resume", out)
    assert_error(err, code, 4, f"{out} is a directory", str(out / "last.npz"))


def test_b12_an_n_gram_run_is_refitted_never_resumed(small_corpus, tmp_path, capfd):
    out = tmp_path / "ngram"
    code, _, err = run(capfd, "train", small_corpus, "--cell", "ngram", "--out", out)
    assert code == 0, err
    code, _, err = run(capfd, "train", small_corpus, "--cell", "ngram", "--out", out)
    assert_error(err, code, 2, "already holds", "--force")
    assert "--resume" not in err                    # an n-gram has nothing to resume
    code, _, err = run(capfd, "train", small_corpus, "--cell", "ngram", "--out", out,
                       "--resume", out / "last.npz")
    assert_error(err, code, 2, "nothing to resume", "--resume")


def test_b10_a_foreign_file_named_last_npz_is_not_overwritten(small_corpus, tmp_path, capfd):
    out = tmp_path / "run"
    out.mkdir()
    mine = out / "last.npz"
    mine.write_bytes(b"my own model, not charlm's")
    code, _, err = train(capfd, small_corpus, out)
    assert_error(err, code, 2, "already holds last.npz", "--resume", "--force")
    assert mine.read_bytes() == b"my own model, not charlm's"
    code, _, err = run(capfd, "train", small_corpus, "--resume", mine)
    assert_error(err, code, 4, str(mine), "not a .npz archive")
    assert mine.read_bytes() == b"my own model, not charlm's"
    code, _, err = train(capfd, small_corpus, out, "--force")   # asked for: replaced
    assert code == 0, err
    assert checkpoint.load(mine).config["progress"]["step"] == 3


# ---- C: interrupts and resume -------------------------------------------------------------------

def test_c9_resume_from_a_corrupt_checkpoint_exits_4_and_starts_nothing(trained, small_corpus,
                                                                       capfd):
    last = trained / "last.npz"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    before = snapshot(trained)
    code, _, err = run(capfd, "train", small_corpus, "--resume", last, "--steps", "6", "--quiet")
    assert_error(err, code, 4, str(last), "truncated or corrupt")
    assert snapshot(trained) == before


@pytest.mark.parametrize("key, value", [("step", "abc"), ("elapsed", [1]), ("best_val", "x"),
                                        ("budget_spent", -1), ("rng", {"state": 1})])
def test_resume_from_a_checkpoint_with_a_malformed_progress_field_exits_4(
        trained, small_corpus, tmp_path, capfd, key, value):
    ckpt = checkpoint.load(trained / "last.npz")
    config = json.loads(json.dumps(ckpt.config))
    config["progress"][key] = value
    bad = tmp_path / "bad.npz"
    npz.save_checkpoint(bad, dict(ckpt.arrays), config, checkpoint.FORMAT_VERSION)
    code, _, err = run(capfd, "train", small_corpus, "--resume", bad, "--steps", "6",
                       "--out", tmp_path / "out", "--quiet")
    assert_error(err, code, 4, str(bad), f"'{key}'")
    assert not (tmp_path / "out").exists()


def test_c10_resume_when_complete_exits_0_and_touches_no_file(trained, small_corpus, capfd):
    before = snapshot(trained)
    for extra in ((), ("--steps", "3")):
        code, _, err = run(capfd, "train", small_corpus, "--resume", trained / "last.npz",
                           "--quiet", *extra)
        assert code == 0, err
        assert "already complete at step 3" in err and "error" not in err
    after = snapshot(trained)
    for name in ("last.npz", "best.npz", "metrics.jsonl"):
        assert after[name] == before[name], name


def test_c6_resume_with_a_changed_corpus_exits_3(trained, small_corpus, capfd):
    before = snapshot(trained)
    original = small_corpus.read_text()
    small_corpus.write_text(original + "The dog barks.\n")          # same characters, more text
    code, _, err = run(capfd, "train", small_corpus, "--resume", trained / "last.npz", "--quiet")
    assert_error(err, code, 3, "corpus differs", str(trained / "last.npz"))
    small_corpus.write_text(original.replace("q", "Q"))            # same size, another vocabulary
    code, _, err = run(capfd, "train", small_corpus, "--resume", trained / "last.npz", "--quiet")
    assert_error(err, code, 3, "corpus differs")
    after = snapshot(trained)
    for name in ("last.npz", "best.npz", "metrics.jsonl"):
        assert after[name] == before[name], name


def _read_until(stream, marker, timeout):
    """Text read from a pipe until marker appears (a background reader: pipes do not time out)."""
    seen, found = [], threading.Event()

    def reader():
        for line in stream:
            seen.append(line)
            if marker in line:
                found.set()
    threading.Thread(target=reader, daemon=True).start()
    assert found.wait(timeout), "".join(seen)
    return seen


def test_c4_ctrl_c_before_the_first_checkpoint_still_saves_one(text, small_corpus, tmp_path):
    big = tmp_path / "big.txt"
    big.write_text(text * 20)
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "charlm", "train", str(big), "--out", str(out), "--cell", "gru",
         *TINY, "--steps", "1000000", "--eval-every", "1000000"],
        cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        seen = _read_until(proc.stderr, "training a", timeout=60)   # the handler is installed
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    err = "".join(seen)
    assert proc.returncode == -signal.SIGINT, err
    assert not (out / "best.npz").exists()     # no evaluation ever ran
    assert checkpoint.load(out / "last.npz").config["progress"]["step"] >= 1
    assert temp_files(out) == []


# ---- E: corpora ---------------------------------------------------------------------------------

@pytest.mark.parametrize("content,fragments", [
    (b"", ("{corpus} is empty",)),
    (b"a" * 5000, ("{corpus} has only one distinct character", "U+0061")),
    (b"abcdefghij" * 3, ("has 27 characters but one batch needs 65", "--batch-size (now 4)",
                         "--seq-len (now 16)", "e.g. --seq-len 6 or --batch-size 1")),
    (b"\xff\xfeh\x00i\x00", ("{corpus} looks like UTF-16", "iconv")),
])
def test_e1_e2_e3_e10_unusable_corpora_exit_3(tmp_path, capfd, content, fragments):
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(content)
    code, _, err = run(capfd, "train", corpus, "--hidden", "8", "--layers", "1", "--batch-size",
                       "4", "--seq-len", "16", "--steps", "3", "--out", tmp_path / "run")
    assert_error(err, code, 3, *[f.format(corpus=corpus) for f in fragments])
    assert not (tmp_path / "run" / "last.npz").exists()


def test_e6_e7_invalid_utf8_is_an_error_with_its_offset_or_replaced_on_request(text, tmp_path,
                                                                              capfd):
    head = text.encode()
    corpus = tmp_path / "latin1.txt"
    corpus.write_bytes(head + b"caf\xe9\n" + head)
    offset, line = len(head) + 3, text.count("\n") + 1
    code, _, err = train(capfd, corpus, tmp_path / "strict")
    assert_error(err, code, 3, f"byte offset {offset} (line {line})", "bytes E9",
                 "--encoding-errors replace")
    out = tmp_path / "replace"
    code, _, err = train(capfd, corpus, out, "--encoding-errors", "replace")
    assert code == 0, err
    assert "1 invalid UTF-8 sequence(s) replaced by U+FFFD" in err
    vocab = checkpoint.load(out / "last.npz").vocab
    assert vocab.index("\ufffd") is not None and vocab.index("\xe9") is None
    code, _, err = run(capfd, "train", corpus, "--resume", out / "last.npz", "--steps", "4",
                       "--encoding-errors", "replace", "--quiet")
    assert code == 0, err
    assert checkpoint.load(out / "last.npz").config["progress"]["step"] == 4


def test_e9_e11_bom_is_stripped_and_crlf_kept(text, tmp_path, capfd):
    text = text.replace("\n", "\r\n")
    corpus = tmp_path / "windows.txt"
    corpus.write_bytes(b"\xef\xbb\xbf" + text.encode())
    out = tmp_path / "run"
    code, _, err = train(capfd, corpus, out)
    assert code == 0, err
    ckpt = checkpoint.load(out / "last.npz")
    vocab = ckpt.vocab
    assert vocab.index("\ufeff") is None
    assert vocab.index("\r") is not None and vocab.index("\n") is not None
    assert ckpt.config["data"]["fingerprint"]["chars"] == len(text)   # BOM not counted
    code, out_text, err = run(capfd, "sample", out / "last.npz", "--prime", "dog.\r\n",
                              "--length", "5", "--seed", "0")
    assert code == 0 and out_text.startswith("dog.\r\n"), err


def test_e13_a_directory_skips_binary_files_with_a_warning_and_trains(text, tmp_path, capfd):
    corpus = tmp_path / "texts"
    corpus.mkdir()
    (corpus / "a.txt").write_text(text)
    (corpus / "b.bin").write_bytes(bytes(range(256)) * 8)          # NUL bytes: binary
    (corpus / ".hidden.txt").write_text("Ω" * 100)
    out = tmp_path / "run"
    code, _, err = train(capfd, corpus, out)
    assert code == 0, err
    assert "warning:" in err and "b.bin" in err and "looks binary" in err
    ckpt = checkpoint.load(out / "last.npz")
    vocab = ckpt.vocab
    assert vocab.index("\0") is None and vocab.index("Ω") is None
    fingerprint = ckpt.config["data"]["fingerprint"]
    assert fingerprint["files"] == 1 and fingerprint["chars"] == len(text)


def test_e13_a_named_file_with_nul_bytes_trains_with_a_warning_and_keeps_nul(text, tmp_path, capfd):
    corpus = tmp_path / "nul.txt"
    corpus.write_text(text.replace(".", "\0"))
    out = tmp_path / "run"
    code, _, err = train(capfd, corpus, out)
    assert code == 0, err
    assert "looks binary" in err
    assert checkpoint.load(out / "last.npz").vocab.index("\0") is not None


def test_e16_a20_fifos_are_refused_at_once_never_read(text, tmp_path, small_corpus):
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    texts = tmp_path / "texts"                 # a FIFO inside a corpus directory is skipped
    texts.mkdir()
    (texts / "a.txt").write_text(text)
    os.mkfifo(texts / "b.txt")
    out = tmp_path / "run"
    script = f"""
import sys
from charlm.cli import main
for args in (["train", {str(fifo)!r}, "--out", {str(out / 'x')!r}],
             ["train", {str(texts)!r}, "--out", {str(out)!r}, "--steps", "2", "--hidden", "8",
              "--layers", "1", "--batch-size", "2", "--seq-len", "8", "--quiet"],
             ["eval", "perplexity", {str(out / 'last.npz')!r}, {str(fifo)!r}],
             ["sample", {str(fifo)!r}]):
    try:
        main(args)
    except SystemExit as e:
        print("exit", e.code, file=sys.stderr, flush=True)
"""
    started = time.time()
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=ENV,
                            capture_output=True, text=True, timeout=60)
    assert time.time() - started < 60
    err = result.stderr
    assert "Traceback" not in err, err
    assert [line for line in err.splitlines() if line.startswith("exit")] == [
        "exit 3", "exit 0", "exit 3", "exit 4"], err
    assert f"error: {fifo} is a FIFO, not a regular file" in err
    assert f"skipped {texts / 'b.txt'}: not a regular file" in err
    assert "not a regular file" in err.splitlines()[-2]            # the checkpoint loader's words
    assert checkpoint.load(out / "last.npz").config["data"]["fingerprint"]["files"] == 1


def test_e14_more_than_65535_distinct_characters(tmp_path, capfd):
    codepoints = [c for c in range(0x4E00, 0x4E00 + 70_000) if not 0xD800 <= c <= 0xDFFF]
    assert len(codepoints) > 65_535
    text = "".join(map(chr, codepoints))
    corpus = tmp_path / "many.txt"
    corpus.write_text(text, encoding="utf-8")
    read = data.read_corpus([corpus])
    assert read.vocab.size == len(codepoints) and read.ids.dtype == np.uint32
    assert int(read.ids.max()) == read.vocab.size - 1     # no wrap: the last id is V - 1
    out = tmp_path / "run"
    code, _, err = run(capfd, "train", corpus, "--cell", "rnn", "--hidden", "4", "--layers", "1",
                       "--batch-size", "2", "--seq-len", "8", "--steps", "1", "--val-frac",
                       "0.001", "--out", out, "--quiet")
    assert code == 0, err
    assert "vocabulary has 67952 symbols" in err           # the size warning
    ckpt = checkpoint.load(out / "last.npz")
    vocab = ckpt.vocab
    assert vocab.size == len(codepoints) and ckpt.config["model"]["vocab_size"] == vocab.size
    assert list(vocab.codepoints) == codepoints
    code, sampled, err = run(capfd, "sample", out / "last.npz", "--prime", chr(0x10000),
                             "--length", "20", "--seed", "0")
    assert code == 0, err
    sampled = sampled.rstrip("\n")
    assert len(sampled) == 21 and all(vocab.index(ch) is not None for ch in sampled)
    piece = tmp_path / "piece.txt"
    piece.write_text(text[-50:])
    code, result, err = run(capfd, "eval", "perplexity", out / "last.npz", piece, "--json")
    assert code == 0, err
    assert json.loads(result)["chars"] == 49 and math.isfinite(json.loads(result)["perplexity"])


def test_e5_no_validation_split_is_reported(small_corpus, tmp_path, capfd):
    out = tmp_path / "run"
    code, _, err = train(capfd, small_corpus, out, "--val-frac", "0")
    assert code == 0, err
    assert "warning: the validation split has 0 characters" in " ".join(err.split())
    assert (out / "last.npz").exists() and not (out / "best.npz").exists()


# ---- F: sampling and evaluation -----------------------------------------------------------------

def test_f3_length_0_prints_only_the_prime(trained, capfd):
    code, out, err = run(capfd, "sample", trained / "best.npz", "--prime", "The ", "--length", "0")
    assert code == 0 and out == "The \n" and err == ""
    code, out, err = run(capfd, "sample", trained / "best.npz", "--length", "0")
    assert code == 0 and out == "" and err == ""


@pytest.mark.parametrize("temperature", ["1e-300", "1e-320", "5e-324"])
def test_d9_a_tiny_temperature_is_greedy_and_quiet(trained, capfd, temperature):
    code, greedy, err = run(capfd, "sample", trained / "best.npz", "--prime", "The ", "--length",
                            "60", "--temperature", "0")
    assert code == 0 and err == ""
    code, out, err = run(capfd, "sample", trained / "best.npz", "--prime", "The ", "--length",
                         "60", "--temperature", temperature, "--seed", "1")
    assert code == 0, err
    assert err == ""                           # no overflow or invalid-value warnings
    assert out == greedy


def test_f5_a_closed_pipe_ends_sampling_quietly(trained):
    command = (f"{shlex.quote(sys.executable)} -m charlm sample "
               f"{shlex.quote(str(trained / 'best.npz'))} --length 1000000 --seed 0 "
               "| head -c 10; echo \" status=${PIPESTATUS[0]}\"")
    started = time.time()
    result = subprocess.run(["bash", "-c", command], cwd=REPO, env=ENV, capture_output=True,
                            text=True, timeout=120)
    assert result.stdout.endswith(" status=0\n"), result
    assert len(result.stdout) == 10 + len(" status=0\n")
    assert result.stderr == ""                  # no BrokenPipeError traceback, no error line
    assert time.time() - started < 60           # stopped at the broken pipe, not at 10**6


def test_f4_ctrl_c_stops_sampling_keeps_the_output_and_exits_130(trained):
    proc = subprocess.Popen(
        [sys.executable, "-m", "charlm", "sample", str(trained / "best.npz"), "--prime", "The ",
         "--length", "1000000000", "--seed", "0"],
        cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = proc.stdout.read(200)           # it is streaming
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGINT, err
    assert first.startswith(b"The ") and rest.endswith(b"\n")
    assert b"Traceback" not in err


def test_f9_eval_of_fewer_than_two_characters_exits_3(trained, tmp_path, capfd):
    one = tmp_path / "one.txt"
    one.write_text("T")
    code, _, err = run(capfd, "eval", "perplexity", trained / "best.npz", one)
    assert_error(err, code, 3, "fewer than two characters")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    code, _, err = run(capfd, "eval", "perplexity", trained / "best.npz", empty)
    assert_error(err, code, 3, str(empty), "empty")


def test_split_of_a_text_given_as_a_file_is_refused(trained, small_corpus, capfd):
    # without --corpus a split would silently score the whole file
    for option in (("--split", "val"), ("--val-frac", "0.2")):
        code, _, err = run(capfd, "eval", "perplexity", trained / "best.npz", small_corpus,
                           *option)
        assert_error(err, code, 2, option[0], "--corpus FILE --split val")


def test_e16_eval_of_a_directory_exits_3(trained, tmp_path, capfd):
    code, _, err = run(capfd, "eval", "perplexity", trained / "best.npz", tmp_path)
    assert_error(err, code, 3, str(tmp_path), "is a directory")


def test_sampling_and_scoring_an_ngram_checkpoint(text, small_corpus, tmp_path, capfd):
    out = tmp_path / "ngram"
    code, _, err = run(capfd, "train", small_corpus, "--cell", "ngram", "--order", "3", "--out",
                       out)
    assert code == 0, err
    for temperature in ("1", "0", "1e-300"):
        code, text, err = run(capfd, "sample", out / "best.npz", "--prime", "The ", "--length",
                              "40", "--seed", "2", "--temperature", temperature)
        assert code == 0 and err == "", err
        assert text.startswith("The ") and len(text) == len("The ") + 40 + 1
        assert set(text) <= set(text)
    code, result, err = run(capfd, "eval", "perplexity", out / "best.npz", small_corpus, "--json")
    assert code == 0, err
    assert 1 < json.loads(result)["perplexity"] < 34


def _rewrite_member(src, dst, key, array):
    """Copy checkpoint src to dst with member key replaced by array (bypassing the writer)."""
    import io
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            content = buffer.getvalue() if info.filename == key + ".npy" else zin.read(info)
            zout.writestr(info, content)


def test_a16_nan_weights_are_refused_by_sample_eval_and_resume(trained, small_corpus, tmp_path,
                                                               capfd):
    good = trained / "best.npz"
    ckpt = checkpoint.load(good)
    weights = ckpt.arrays["params/rnn.weight_hh_l0"].copy()
    weights.flat[[0, 5, 9]] = [np.nan, np.inf, -np.inf]
    bad = tmp_path / "nan.npz"
    _rewrite_member(good, bad, "params/rnn.weight_hh_l0", weights)
    for args in (("sample", bad), ("eval", "perplexity", bad, small_corpus),
                 ("train", small_corpus, "--resume", bad), ("info", bad)):
        code, out, err = run(capfd, *args)
        assert_error(err, code, 4, str(bad), "params/rnn.weight_hh_l0", "3 non-finite values")
        assert out == ""


def test_d10_weights_that_overflow_to_non_finite_probabilities(trained, small_corpus, tmp_path,
                                                              capfd):
    ckpt = checkpoint.load(trained / "best.npz")
    arrays = dict(ckpt.arrays)
    hidden = ckpt.config["model"]["hidden"]
    bias = arrays["params/rnn.bias_ih_l0"].copy()          # GRU gates r, z, n
    bias[hidden:2 * hidden], bias[2 * hidden:] = -100, 100  # z = 0, n = 1: the state is all 1
    arrays["params/rnn.bias_ih_l0"] = bias
    head = np.full_like(arrays["params/head.weight"], 3e38)
    head[::2] *= -1                            # every value finite, so the loader accepts it,
    arrays["params/head.weight"] = head        # but 8 x 3e38 overflows float32: logits +-inf
    huge = tmp_path / "huge.npz"
    npz.save_checkpoint(huge, arrays, ckpt.config, checkpoint.FORMAT_VERSION)
    for args in (("sample", huge, "--prime", "The ", "--length", "20", "--seed", "1"),
                 ("sample", huge, "--prime", "The ", "--length", "20", "--temperature", "0"),
                 ("eval", "perplexity", huge, small_corpus)):
        code, out, err = run(capfd, *args)
        assert_error(err, code, 4, str(huge), "non-finite probabilities")
        assert out in ("", "The ")             # at most the prime: never garbage text


# ---- G: option ranges ---------------------------------------------------------------------------

@pytest.mark.parametrize("args,option", [
    (("train", "{corpus}", "--dropout", "1"), "--dropout"),
    (("train", "{corpus}", "--dropout", "nan"), "--dropout"),
    (("train", "{corpus}", "--batch-size", "0"), "--batch-size"),
    (("train", "{corpus}", "--seq-len", "0"), "--seq-len"),
    (("train", "{corpus}", "--layers", "0"), "--layers"),
    (("train", "{corpus}", "--steps", "0"), "--steps"),
    (("train", "{corpus}", "--eval-every", "0"), "--eval-every"),
    (("train", "{corpus}", "--time-budget", "nan"), "--time-budget"),
    (("train", "{corpus}", "--time-budget", "-5"), "--time-budget"),
    (("train", "{corpus}", "--time-budget", "inf"), "--time-budget"),
    (("train", "{corpus}", "--epochs", "0"), "--epochs"),
    (("train", "{corpus}", "--epochs", "-0.0"), "--epochs"),
    (("train", "{corpus}", "--warmup", "1"), "--warmup"),
    (("train", "{corpus}", "--lr", "0"), "--lr"),
    (("train", "{corpus}", "--lr", "1e-320"), None),           # positive: accepted, see below
    (("train", "{corpus}", "--clip-norm", "-1"), "--clip-norm"),
    (("train", "{corpus}", "--clip-value", "nan"), "--clip-value"),
    (("train", "{corpus}", "--seed", "-1"), "--seed"),
    (("train", "{corpus}", "--encoding-errors", "ignore"), "--encoding-errors"),
    (("train", "{corpus}", "--optimizer", "lbfgs"), "--optimizer"),
    (("sample", "{ckpt}", "--top-k", "-1"), "--top-k"),
    (("sample", "{ckpt}", "--top-p", "1.5"), "--top-p"),
    (("sample", "{ckpt}", "--seed", "-1"), "--seed"),
    (("sample", "{ckpt}", "--unknown", "ignore"), "--unknown"),
    (("eval", "perplexity", "{ckpt}", "{corpus}", "--streams", "0"), "--streams"),
    (("eval", "perplexity", "{ckpt}", "{corpus}", "--val-frac", "nan"), "--val-frac"),
])
def test_g1_out_of_range_options_exit_2_naming_the_option(trained, small_corpus, tmp_path, capfd,
                                                         args, option):
    names = {"corpus": small_corpus, "ckpt": trained / "best.npz"}
    argv = [a.format(**{k: str(v) for k, v in names.items()}) for a in args]
    if option is None:                          # boundary values that are valid
        argv += ["--length", "5"] if argv[0] == "sample" else [
            *TINY, "--steps", "2", "--out", str(tmp_path / "edge")]
        code, _, err = run(capfd, *argv)
        assert code == 0, err
        return
    code, _, err = run(capfd, *argv)
    assert_error(err, code, 2, option)
