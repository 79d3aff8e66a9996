"""Resume is exact: N steps in one run equal k steps, save, resume, N - k steps, bitwise.

The same test runs against resume code with each piece of state left out in turn, to prove it
would catch a missing piece.
"""

import numpy as np
import pytest

from charlm import bundle, data, train
from charlm.train import TrainConfig, Trainer

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


def _interrupted_then_resumed(corpus, tmp_path, tcfg, pieces=train.RESUME_PIECES):
    first = _run(corpus, tcfg, tmp_path / "b", stop_at=STOP_AT)
    assert first.progress["step"] == STOP_AT
    ckpt, _ = bundle.load(tmp_path / "b" / "last.npz")
    original = Trainer._restore
    try:
        Trainer._restore = lambda self, c: original(self, c, pieces=pieces)
        return _run(corpus, tcfg, tmp_path / "b", resume=ckpt)
    finally:
        Trainer._restore = original


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "rmsprop", "adagrad", "sgd"])
def test_resume_equals_an_uninterrupted_run_bitwise(corpus, tmp_path, optimizer):
    tcfg = _config(optimizer)
    straight = _run(corpus, tcfg, tmp_path / "a")
    resumed = _interrupted_then_resumed(corpus, tmp_path, tcfg)
    assert straight.windows < STEPS                    # the run crossed an epoch boundary
    assert resumed.progress["step"] == STEPS
    assert np.array_equal(straight.flat, resumed.flat)
    for moment, buf in straight.opt.moments.items():
        assert np.array_equal(buf, resumed.opt.moments[moment])
    assert straight.progress["best_val"] == resumed.progress["best_val"]


@pytest.mark.parametrize("missing", train.RESUME_PIECES)
def test_the_resume_test_catches_each_missing_piece(corpus, tmp_path, missing):
    tcfg = _config()
    straight = _run(corpus, tcfg, tmp_path / "a")
    pieces = tuple(p for p in train.RESUME_PIECES if p != missing)
    broken = _interrupted_then_resumed(corpus, tmp_path, tcfg, pieces)
    assert not np.array_equal(straight.flat, broken.flat), missing
