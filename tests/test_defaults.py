"""Every cell and nonlinearity trains with charlm's defaults (learning rate, initialisation,
optimizer, schedule, clipping): no divergence to recover from, and below the unigram bar."""

import math

import numpy as np
import pytest

from charlm.data import synth
from charlm.data import text as data
from charlm.train.config import TrainConfig
from charlm.train.trainer import Trainer

ALPHABET = "abcdefghijklmnopqrstuvwxyz .,\n"
CELLS = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")]


def unigram_entropy(ids):
    counts = np.bincount(np.asarray(ids, np.int64))
    p = counts[counts > 0] / len(ids)
    return float(-(p * np.log(p)).sum())


def train(path, out, **settings):
    corpus = data.read_corpus([path])
    tcfg = TrainConfig(**settings)
    train_ids, val_ids = data.split_train_val(corpus.ids, tcfg.val_frac)
    out.mkdir()
    trainer = Trainer(tcfg, corpus.vocab, train_ids, val_ids, out, {})
    for _ in trainer.run():
        pass
    return trainer


@pytest.fixture(scope="module")
def markov_text(tmp_path_factory):
    """200,000 characters of an order-1 Markov source over 30 symbols: a validation split of
    20,000, long enough for a state that grows without bound to overflow."""
    text, rate = synth.synth_markov(200_000, order=1, alphabet=ALPHABET, seed=5)
    path = tmp_path_factory.mktemp("markov") / "markov.txt"
    path.write_text(text, encoding="utf-8")
    return path, rate


@pytest.mark.slow
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell,activation", CELLS)
def test_every_cell_trains_300_steps_with_the_defaults(markov_text, tmp_path, cell, activation,
                                                       layers):
    path, rate = markov_text
    # a small model and batch keep the test short; the learning rate, initialisation,
    # optimizer, schedule and clipping are the defaults under test
    trainer = train(path, tmp_path / "run", cell=cell, activation=activation, layers=layers,
                    hidden=64, batch_size=16, seq_len=32, steps=300, eval_every=100,
                    sample_every=0)
    p = trainer.progress
    bar = unigram_entropy(trainer.train_ids)
    assert p.rollbacks == 0 and p.skipped == 0
    assert math.isfinite(p.last_val) and p.last_val < bar - 0.1, (p.last_val, bar, rate)


@pytest.mark.slow
def test_a_relu_rnn_validates_tiny_shakespeare_from_the_start(tiny_shakespeare, tmp_path):
    """The run of the report: at full-scale orthogonal recurrent weights, validation over
    111,539 characters overflowed to NaN at step 8."""
    trainer = train(tiny_shakespeare, tmp_path / "run", cell="rnn", activation="relu",
                    layers=1, hidden=64, seq_len=32, batch_size=16, steps=40, seed=3,
                    eval_every=4, sample_every=0)
    p = trainer.progress
    assert p.rollbacks == 0 and p.step == 40
    assert math.isfinite(p.last_val) and p.best_val < 3.6
