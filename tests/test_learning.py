"""The model learns: it memorises a short text and beats the unigram bar on Shakespeare."""

import json

import numpy as np
import pytest

from charlm.data import text as data
from charlm.nn import inference
from charlm.train.config import TrainConfig
from charlm.train.trainer import Trainer

TEXT_200 = ("It is a truth universally acknowledged, that a single man in possession of a good "
            "fortune, must be in want of a wife. However little known the feelings or views of "
            "such a man may be on his first entering")[:200]


def _train(ids_path, tcfg, out):
    corpus = data.read_corpus([ids_path])
    train_ids, val_ids = data.split_train_val(corpus.ids, tcfg.val_frac)
    out.mkdir()
    trainer = Trainer(tcfg, corpus.vocab, train_ids, val_ids, out, {})
    for _ in trainer.run():
        pass
    return trainer, corpus


def test_overfits_a_200_character_text(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text(TEXT_200)
    assert len(TEXT_200) == 200
    tcfg = TrainConfig(cell="lstm", layers=1, hidden=64, seq_len=66, batch_size=1, lr=0.02,
                       steps=300, val_frac=0.0, lr_schedule="constant")
    trainer, corpus = _train(path, tcfg, tmp_path / "run")
    nll, count = inference.score_ids(trainer.params, trainer.mcfg, corpus.ids)
    assert count == 199
    assert nll / count < 0.05


def unigram_entropy(ids):
    """Nats/char of the best model that ignores context: the split's own character frequencies."""
    counts = np.bincount(np.asarray(ids, np.int64))
    p = counts[counts > 0] / len(ids)
    return float(-(p * np.log(p)).sum())


@pytest.mark.slow
def test_300_steps_on_tiny_shakespeare_beat_the_unigram_entropy(tiny_shakespeare, tmp_path):
    tcfg = TrainConfig(cell="lstm", layers=1, hidden=128, seq_len=64, batch_size=32,
                       steps=300, eval_every=300, eval_streams=16)
    trainer, corpus = _train(tiny_shakespeare, tcfg, tmp_path / "run")
    val = trainer.progress.best_val
    # the bar: the unigram entropy of the training split (3.31 nats/char), less a margin that
    # a model which learnt nothing but the frequencies (or fit them to the wrong split) misses
    bar = unigram_entropy(trainer.train_ids) - 0.5
    assert val < bar, (val, bar)
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["val_loss"] == val and np.isfinite(record["train_loss"])
