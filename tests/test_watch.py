"""Watching a run learn: a short sample at each validation, with a fixed seed, into the log and
metrics.jsonl; --sample-every and --no-samples change it."""

import json

import numpy as np
import pytest

from charlm.cli import main, render
from charlm.data import text as data
from charlm.nn import model
from charlm.train.config import TrainConfig
from charlm.train.trainer import model_config
from charlm.train.watch import SAMPLE_CHARS, sample_text

TINY = ("--hidden", "8", "--layers", "1", "--batch-size", "2", "--seq-len", "8", "--steps", "6",
        "--eval-every", "2")


def train(capfd, corpus, out, *extra):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(corpus), *TINY, "--out", str(out), *extra])
    _, err = capfd.readouterr()
    assert exit_info.value.code == 0, err
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return err, [r for r in records if "event" not in r]


def test_each_validation_logs_a_sample_line_and_records_it(small_corpus, tmp_path, capfd):
    err, records = train(capfd, small_corpus, tmp_path / "run")
    samples = [r["sample"] for r in records]
    assert [r["step"] for r in records] == [2, 4, 6]
    assert all(len(s) == SAMPLE_CHARS for s in samples)
    vocab = set(small_corpus.read_text())
    assert all(set(s) <= vocab for s in samples)
    lines = [line for line in err.splitlines() if line.startswith("  sample: ")]
    assert lines == [f"  sample: {render.sample_line(s, 80)}" for s in samples]


def test_sample_every_and_no_samples(small_corpus, tmp_path, capfd):
    err, records = train(capfd, small_corpus, tmp_path / "a", "--sample-every", "2")
    assert ["sample" in r for r in records] == [True, False, True]
    assert err.count("  sample: ") == 2
    err, records = train(capfd, small_corpus, tmp_path / "b", "--no-samples")
    assert not any("sample" in r for r in records) and "sample:" not in err


def test_a_sample_depends_on_the_weights_only(small_corpus):
    """The generator is fresh from --seed at every sample: the same weights give the same
    line, so two lines differ only by what the model learnt between them."""
    corpus = data.read_corpus([small_corpus])
    mcfg = model_config(TrainConfig(hidden=8, layers=1), corpus.vocab.size)
    _, params = model.init_params(mcfg, np.random.default_rng(0))
    first = sample_text(params, mcfg, corpus.vocab, seed=7)
    assert first == sample_text(params, mcfg, corpus.vocab, seed=7)
    assert first != sample_text(params, mcfg, corpus.vocab, seed=8)
    params["head.bias"][corpus.vocab.index("e")] += 5.0          # a model that likes 'e'
    assert sample_text(params, mcfg, corpus.vocab, seed=7).count("e") > first.count("e")


def test_a_sample_fits_one_line():
    assert render.sample_line("to be\nor not\tto", 80) == "to be↵or not to"
    assert render.sample_line("床前明月光", 6) == "床前明"          # two cells a character
    assert render.sample_line("abcdef", 4) == "abcd"
