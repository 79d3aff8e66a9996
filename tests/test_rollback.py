"""Divergence recovery end to end: a learning rate far too large diverges for real, the run
rolls back to its last good state with half the rate, skips the batch and finishes; with
--max-rollbacks 0 it stops as before; a resume after a rollback is exact."""

import json
import math
import re

import numpy as np
import pytest
from conftest import run

from charlm.data import text as data
from charlm.io import checkpoint
from charlm.train.config import TrainConfig
from charlm.train.trainer import Trainer

# a ReLU RNN at --lr 1: the loss explodes within the first steps (and again at 0.5)
DIVERGING = ("--cell", "rnn", "--activation", "relu", "--hidden", "16", "--layers", "1",
             "--batch-size", "4", "--seq-len", "16", "--lr", "1", "--eval-every", "10",
             "--quiet")


def records(out, event=None):
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in lines if r.get("event") == event]


def test_a_huge_learning_rate_rolls_back_and_finishes_with_a_finite_loss(small_corpus, tmp_path,
                                                                         capfd):
    out = tmp_path / "run"
    code, _, err = run(capfd, "train", small_corpus, *DIVERGING, "--steps", "40", "--out", out)
    assert code == 0, err
    rollbacks = records(out, "rollback")
    assert len(rollbacks) >= 1
    assert err.count("rollback ") == len(rollbacks)          # a line each on the terminal
    assert [r["lr"] for r in rollbacks] == [0.5 ** (i + 1) for i in range(len(rollbacks))]
    assert all(r["to_step"] < r["step"] and "exploding" in r["reason"] for r in rollbacks)
    progress = checkpoint.load(out / "last.npz").config["progress"]
    assert progress["step"] == 40 and progress["rollbacks"] == len(rollbacks)
    assert progress["lr_scale"] == 0.5 ** len(rollbacks)
    assert progress["skipped"] == len(rollbacks)              # each diverging batch, once
    validations = records(out)
    assert math.isfinite(progress["last_val"]) and validations[-1]["step"] == 40
    assert progress["last_val"] < progress["initial_loss"]    # it learnt after recovering
    assert re.search(rf"rollbacks +│ {len(rollbacks)} ", err), err     # the summary's row
    code, info, _ = run(capfd, "info", out / "last.npz", "--json")
    assert json.loads(info)["rollbacks"] == len(rollbacks)


def test_no_rollbacks_allowed_stops_at_the_first_divergence_with_exit_6(small_corpus, tmp_path,
                                                                        capfd):
    out = tmp_path / "run"
    code, _, err = run(capfd, "train", small_corpus, *DIVERGING, "--steps", "40",
                       "--max-rollbacks", "0", "--out", out)
    assert code == 6
    error = err.strip().splitlines()[-1]
    assert error.startswith("error: the loss is exploding") and "lower --lr (now 1)" in error
    assert "rollback 1" not in err and records(out, "rollback") == []


def _run(corpus, tcfg, out, stop_at=None, resume=None):
    train_ids, val_ids = data.split_train_val(corpus.ids, tcfg.val_frac)
    out.mkdir(exist_ok=True)
    trainer = Trainer(tcfg, corpus.vocab, train_ids, val_ids, out, {}, resume=resume)
    for event in trainer.run():
        if event["event"] == "step" and event["step"] == stop_at:
            trainer.stop_signal = 2                    # what the SIGINT handler does
    return trainer


@pytest.mark.parametrize("forget", [None, "lr_scale"])
def test_a_resumed_run_after_a_rollback_is_bitwise_the_uninterrupted_one(small_corpus, tmp_path,
                                                                         forget):
    corpus = data.read_corpus([small_corpus])
    tcfg = TrainConfig(cell="rnn", activation="relu", hidden=16, layers=1, batch_size=4,
                       seq_len=16, lr=1.0, steps=40, eval_every=10, sample_every=0)
    straight = _run(corpus, tcfg, tmp_path / "a")
    first = _run(corpus, tcfg, tmp_path / "b", stop_at=20)
    assert first.progress.step == 20 and first.progress.rollbacks >= 1
    saved = checkpoint.load(tmp_path / "b" / "last.npz")
    if forget:                                 # a resume that lost the halved rate
        saved.config["progress"][forget] = 1.0
    resumed = _run(corpus, tcfg, tmp_path / "b", resume=saved)
    same = np.array_equal(straight.flat, resumed.flat)
    assert same == (forget is None)
    if forget is None:
        for moment, buf in straight.opt.moments.items():
            assert np.array_equal(buf, resumed.opt.moments[moment])
        for key in ("step", "rollbacks", "lr_scale", "skipped", "last_val"):
            assert getattr(straight.progress, key) == getattr(resumed.progress, key), key
