"""Resume is exact: N steps in one run equal k steps, save, resume, N - k steps, bitwise.

The same test runs with each piece of saved state replaced in turn by what a fresh run starts
from (as a resume that forgot the piece would), to prove it would catch a missing piece.
"""

import dataclasses

import numpy as np
import pytest

from charlm.data import text as data
from charlm.io import checkpoint
from charlm.train.config import TrainConfig
from charlm.train.trainer import Trainer

STEPS, STOP_AT = 9, 4


def _config(optimizer="adam"):
    return TrainConfig(cell="lstm", layers=2, hidden=8, dropout=0.2, seq_len=5, batch_size=3,
                       lr=0.01, optimizer=optimizer, steps=STEPS, eval_every=3,
                       weight_decay=0.01 if optimizer == "adamw" else 0.0)


def _run(corpus, tcfg, out, stop_at=None, resume=None):
    train_ids, val_ids = data.split_train_val(corpus.ids, tcfg.val_frac)
    info = {"fingerprint": corpus.fingerprint}
    out.mkdir(exist_ok=True)
    trainer = Trainer(tcfg, corpus.vocab, train_ids, val_ids, out, info, resume=resume)
    for event in trainer.run():
        if event["event"] == "step" and event["step"] == stop_at:
            trainer.stop_signal = 2                    # what the SIGINT handler does
    return trainer


@pytest.fixture
def corpus(small_corpus):
    # a corpus shorter than STEPS windows, so the run wraps into a second epoch
    path = small_corpus.parent / "short.txt"
    path.write_text(small_corpus.read_text()[:140])
    return data.read_corpus([path])


# What a resume that forgot a piece would start from: the piece as a fresh run has it.
FORGET = {
    "params": lambda c, fresh: c.arrays.update(
        {k: v.copy() for k, v in fresh.items() if k.startswith("params/")}),
    "moments": lambda c, fresh: c.arrays.update(
        {k: np.zeros_like(v) for k, v in c.arrays.items() if k.startswith("optim/")}),
    "optimizer_step": lambda c, fresh: c.config["progress"].update(optimizer_step=0),
    "hidden_state": lambda c, fresh: c.arrays.update(
        {k: np.zeros_like(v) for k, v in c.arrays.items() if k.startswith("state/")}),
    "rng": lambda c, fresh: c.config["progress"].update(
        rng=np.random.default_rng(_config().seed).bit_generator.state),
    "position": lambda c, fresh: c.config["progress"].update(step=0, epoch=0, window=0,
                                                             elapsed=0.0),
}


def _interrupted_then_resumed(corpus, tmp_path, tcfg, forget=None):
    first = _run(corpus, tcfg, tmp_path / "b", stop_at=STOP_AT)
    assert first.progress.step == STOP_AT
    ckpt = checkpoint.load(tmp_path / "b" / "last.npz")
    if forget is not None:
        fresh = Trainer(tcfg, corpus.vocab, *data.split_train_val(corpus.ids, tcfg.val_frac),
                        tmp_path / "b", {})
        FORGET[forget](ckpt, {f"params/{k}": v for k, v in fresh.params.items()})
    return _run(corpus, tcfg, tmp_path / "b", resume=ckpt)


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "rmsprop", "adagrad", "sgd"])
def test_resume_equals_an_uninterrupted_run_bitwise(corpus, tmp_path, optimizer):
    tcfg = _config(optimizer)
    straight = _run(corpus, tcfg, tmp_path / "a")
    resumed = _interrupted_then_resumed(corpus, tmp_path, tcfg)
    assert straight.windows < STEPS                    # the run crossed an epoch boundary
    assert resumed.progress.step == STEPS
    assert np.array_equal(straight.flat, resumed.flat)
    for moment, buf in straight.opt.moments.items():
        assert np.array_equal(buf, resumed.opt.moments[moment])
    assert straight.progress.best_val == resumed.progress.best_val


@pytest.mark.parametrize("missing", sorted(FORGET))
def test_the_resume_test_catches_each_missing_piece(corpus, tmp_path, missing):
    """A resume that started any one piece afresh instead of from the checkpoint would fail
    the test above: the run it gives differs from the uninterrupted one."""
    tcfg = _config()
    straight = _run(corpus, tcfg, tmp_path / "a")
    broken = _interrupted_then_resumed(corpus, tmp_path, tcfg, forget=missing)
    assert not np.array_equal(straight.flat, broken.flat), missing


def test_resume_with_an_embedding_is_exact(corpus, tmp_path):
    tcfg = dataclasses.replace(_config(), embed=4)
    straight = _run(corpus, tcfg, tmp_path / "a")
    resumed = _interrupted_then_resumed(corpus, tmp_path, tcfg)
    assert "embed.weight" in straight.params
    assert np.array_equal(straight.flat, resumed.flat)


def test_a_resumed_time_budget_run_ends_inside_its_budget(corpus, tmp_path):
    """The longest validation is kept in the checkpoint, so the resumed part reserves it from
    its first step: the whole run, final validation and checkpoints included, ends in budget."""
    budget = 1.5
    tcfg = dataclasses.replace(_config(), steps=0, time_budget=budget, eval_every=0)
    assert _run(corpus, tcfg, tmp_path / "b", stop_at=3).progress.step == 3
    resumed = _run(corpus, tcfg, tmp_path / "b",
                   resume=checkpoint.load(tmp_path / "b" / "last.npz"))
    p = resumed.progress
    assert p.budget_spent == budget and p.step > 3
    assert p.elapsed <= budget * 1.05, p.elapsed               # 5%: the clock's own jitter


@pytest.mark.parametrize("embed", [0, 4])
def test_resume_of_a_bidirectional_model_is_exact(corpus, tmp_path, embed):
    tcfg = dataclasses.replace(_config(), bidirectional=True, embed=embed)
    straight = _run(corpus, tcfg, tmp_path / "a")
    resumed = _interrupted_then_resumed(corpus, tmp_path, tcfg)
    assert "rnn.weight_hh_l1_reverse" in straight.params
    assert np.array_equal(straight.flat, resumed.flat)
    assert straight.progress.best_val == resumed.progress.best_val
