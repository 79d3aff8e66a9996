"""A large vocabulary as a user meets it: the defaults that pick an embedding and the adaptive
softmax, frequency-ranked ids, the checkpoint's schema for them, and every command on such a
model."""

import json
from dataclasses import replace

import numpy as np
import pytest
from test_cli import assert_one_line_error, run

from charlm import lm
from charlm.data import text as data
from charlm.errors import CheckpointError
from charlm.io import checkpoint
from charlm.train.config import ADAPTIVE_FROM, TrainConfig
from charlm.train.trainer import Trainer

CJK = 0x4E00


@pytest.fixture
def zh_corpus(tmp_path):
    """About 30k characters over ADAPTIVE_FROM + 200 CJK characters, Zipf-distributed, in
    lines of five with punctuation (a poem's shape)."""
    rng = np.random.default_rng(0)
    V = ADAPTIVE_FROM + 200
    ranks = np.arange(1, V + 1)
    p = 1.0 / ranks ** 1.1
    ids = np.concatenate([rng.permutation(V),          # every character at least once
                          rng.choice(V, 30_000, p=p / p.sum())])
    chars = [chr(CJK + i) for i in ids]
    lines = ["".join(chars[i:i + 5]) + ("，" if (i // 5) % 2 == 0 else "。\n")
             for i in range(0, len(chars), 5)]
    path = tmp_path / "poems.txt"
    path.write_text("".join(lines), encoding="utf-8")
    return path


def test_a_large_vocabulary_gets_an_embedding_and_an_adaptive_softmax(zh_corpus, tmp_path,
                                                                     capfd):
    out = tmp_path / "run"
    code, _, err = run(capfd, "train", zh_corpus, "--steps", "6", "--hidden", "32",
                       "--seq-len", "16", "--batch-size", "4", "--out", out, "--quiet")
    assert code == 0, err
    assert "an input embedding of 64 and an adaptive softmax" in err
    assert "--embed 0 or --softmax full to turn off" in err
    model = lm.load(out / "last.npz")
    cfg = model.model_config
    assert cfg.embed == 64 and cfg.softmax == "adaptive" and len(cfg.cutoffs) >= 1
    assert model.format_version == checkpoint.ADAPTIVE_VERSION
    assert "tail.0.0.weight" in model.params and "head.bias" not in model.params
    # the ids are ranked by frequency in the training split: the Zipf head leads
    read = data.read_corpus([zh_corpus])
    train_ids, _ = data.split_train_val(read.ids, 0.1)
    counts = np.bincount(train_ids, minlength=read.vocab.size)
    ranked = [read.vocab.index(model.vocab.char(i)) for i in range(model.vocab.size)]
    assert np.all(np.diff(counts[ranked]) <= 0)
    assert model.vocab.char(0) == chr(CJK) and model.vocab != read.vocab

    code, stdout, err = run(capfd, "eval", "perplexity", out / "best.npz", zh_corpus, "--json")
    assert code == 0, err
    assert 0 < json.loads(stdout)["nats_per_char"] < 10
    code, stdout, err = run(capfd, "sample", out / "best.npz", "--length", "40", "--seed", "1")
    assert code == 0, err
    assert len(stdout.strip()) > 0 and set(stdout) <= set(zh_corpus.read_text()) | {"\n"}
    code, stdout, err = run(capfd, "info", out / "best.npz")
    assert code == 0 and "adaptive softmax" in stdout, err


def test_a_small_vocabulary_keeps_one_hot_input_and_the_full_softmax(small_corpus, tmp_path,
                                                                    capfd):
    out = tmp_path / "run"
    code, _, err = run(capfd, "train", small_corpus, "--steps", "2", "--hidden", "8",
                       "--seq-len", "8", "--batch-size", "2", "--out", out, "--quiet")
    assert code == 0, err
    cfg = lm.load(out / "last.npz").model_config
    assert (cfg.embed, cfg.softmax) == (0, "full") and "adaptive" not in err


def test_the_user_choice_wins_and_resume_keeps_the_ranked_vocabulary(zh_corpus, tmp_path,
                                                                     capfd):
    out = tmp_path / "run"
    common = ["--hidden", "32", "--seq-len", "16", "--batch-size", "4", "--quiet"]
    code, _, err = run(capfd, "train", zh_corpus, "--steps", "3", "--softmax", "full",
                       "--out", out, *common)
    assert code == 0, err
    cfg = lm.load(out / "last.npz").model_config
    assert (cfg.embed, cfg.softmax) == (64, "full") and "an adaptive softmax" not in err

    adaptive = tmp_path / "adaptive"
    code, _, err = run(capfd, "train", zh_corpus, "--steps", "3", "--cutoffs", "50,400",
                       "--out", adaptive, *common)
    assert code == 0, err
    assert lm.load(adaptive / "last.npz").model_config.cutoffs == (50, 400)
    code, _, err = run(capfd, "train", zh_corpus, "--resume", adaptive / "last.npz",
                       "--steps", "5", "--quiet")
    assert code == 0, err
    assert checkpoint.load(adaptive / "last.npz").config["progress"]["step"] == 5


@pytest.mark.parametrize("args, fragments", [
    (["--cutoffs", "100"], ["--cutoffs only apply to the adaptive softmax"]),
    (["--softmax", "adaptive", "--cutoffs", "400,50"], ["--cutoffs 400,50 is invalid"]),
    (["--softmax", "adaptive", "--cutoffs", "a,b"], ["--cutoffs a,b is invalid"]),
    (["--softmax", "adaptive", "--cutoffs", "5,10,20", "--hidden", "16"],
     ["no inner size", "use fewer cutoffs"]),
])
def test_bad_adaptive_settings_are_one_line_errors(small_corpus, tmp_path, capfd, args,
                                                   fragments):
    code, _, err = run(capfd, "train", small_corpus, "--steps", "1", "--out", tmp_path / "r",
                       "--seq-len", "8", "--batch-size", "2", *args)
    assert_one_line_error(err, code, 2, *fragments)
    assert not (tmp_path / "r").exists()


def test_resume_with_an_adaptive_softmax_is_exact(zh_corpus, tmp_path):
    read = data.read_corpus([zh_corpus])
    tcfg = TrainConfig(cell="gru", layers=2, hidden=8, embed=4, softmax="adaptive",
                       cutoffs="20,300", div_value=2.0, dropout=0.2, seq_len=5, batch_size=3,
                       steps=9, eval_every=3)
    ranked = data.ranked_by_frequency(read, len(read.ids))
    train_ids, val_ids = data.split_train_val(ranked.ids, 0.1)
    val_ids = val_ids[:200]

    def trainer(out, resume=None):
        out.mkdir(exist_ok=True)
        return Trainer(tcfg, ranked.vocab, train_ids, val_ids, out,
                       {"fingerprint": read.fingerprint}, resume=resume)

    straight = trainer(tmp_path / "a")
    list(straight.run())
    first = trainer(tmp_path / "b")
    for event in first.run():
        if event["event"] == "step" and event["step"] == 4:
            first.stop_signal = 2                      # what the SIGINT handler does
    assert first.progress.step == 4
    resumed = trainer(tmp_path / "b", checkpoint.load(tmp_path / "b" / "last.npz"))
    list(resumed.run())
    assert "tail.1.1.weight" in straight.params
    assert np.array_equal(straight.flat, resumed.flat)


def _adaptive_config(**model):
    section = {"cell": "gru", "vocab_size": 50, "hidden": 16, "layers": 1,
               "activation": "tanh", "dropout": 0.0, "embed": 4, "softmax": "adaptive",
               "cutoffs": [10, 30], "div_value": 2.0} | model
    return {"kind": checkpoint.KIND, "model": section,
            "train": {"optimizer": "sgd", "batch_size": 1}, "progress": {}, "weights_only": True}


def test_the_schema_ties_the_adaptive_shapes_to_the_config():
    members = checkpoint.schema(_adaptive_config(), checkpoint.ADAPTIVE_VERSION)
    assert members["params/head.weight"] == ("<f4", (12, 16))
    assert members["params/tail.0.0.weight"] == ("<f4", (8, 16))
    assert members["params/tail.1.1.weight"] == ("<f4", (20, 4))
    assert "params/head.bias" not in members


@pytest.mark.parametrize("model, version, fragment", [
    ({}, 2, "'softmax' needs format 3"),
    ({"cutoffs": [30, 10]}, 3, "'cutoffs' is invalid"),
    ({"cutoffs": [10, 50]}, 3, "'cutoffs' is invalid"),
    ({"cutoffs": "10,30"}, 3, "'cutoffs' is invalid"),
    ({"cutoffs": [10, True]}, 3, "'cutoffs' is invalid"),
    ({"cutoffs": [1, 2, 3, 4, 5]}, 3, "'cutoffs' is invalid"),      # no inner size at H 16
    ({"div_value": 0.5}, 3, "div_value"),
    ({"softmax": "sparse"}, 3, "softmax"),
])
def test_the_loader_refuses_an_invalid_adaptive_config(model, version, fragment):
    with pytest.raises(CheckpointError, match=fragment):
        checkpoint.schema(_adaptive_config(**model), version)


@pytest.mark.parametrize("vocab, softmax, bound", [
    (65, "full", np.sqrt(6 / (65 + 128))),            # Xavier's bound, the larger at small V
    (3000, "full", 1 / np.sqrt(128)),                 # never below nn.Linear's 1/sqrt(H)
    (3000, "adaptive", 1 / np.sqrt(128)),             # nn.AdaptiveLogSoftmaxWithLoss's head
])
def test_the_output_layer_starts_at_the_measured_scale(vocab, softmax, bound):
    from charlm.nn.model import ModelConfig, init_params
    cutoffs = (500, 2000) if softmax == "adaptive" else ()
    cfg = ModelConfig("gru", vocab, 128, 1, softmax=softmax, cutoffs=cutoffs)
    _, params = init_params(cfg, np.random.default_rng(0))
    w = params["head.weight"]
    assert bound * 0.99 < np.abs(w).max() <= bound


@pytest.mark.parametrize("given, budget_passes, larger", [
    ({}, 60.0, True),                               # time to spare: a larger shortlist
    ({}, 36.0, True),                               # 1.5 times the passes
    ({}, 35.0, False),                              # less: the usual one
    ({"cutoffs": "300,900"}, 60.0, False),          # the user's cutoffs stay
])
def test_a_run_with_time_to_spare_gets_a_larger_shortlist(zh_corpus, tmp_path, monkeypatch,
                                                          given, budget_passes, larger):
    from charlm.train import autosize, largevocab, session
    corpus = data.read_corpus([zh_corpus])

    def choose(*args, **kwargs):
        return autosize.Choice(2, 16, 0.5, "chosen", 24 * 30_000, 24, budget_passes)
    monkeypatch.setattr(session.autosize, "choose", choose)
    plan = session.plan(corpus, [zh_corpus], given, {"time_budget": 60.0}, out=tmp_path / "r")
    usual = plan.tcfg.cutoffs
    tcfg, choice = session._auto_size(plan)
    assert tcfg.epochs == 24
    if not larger:
        assert tcfg.cutoffs == usual and "shortlist" not in choice.reason
        return
    memorising = largevocab.with_cutoffs(replace(tcfg, cutoffs=""), plan.train_ids,
                                         corpus.vocab.size, largevocab.MEMORISING_SHARES)
    assert tcfg.cutoffs == memorising.cutoffs != usual
    assert int(tcfg.cutoffs.split(",")[0]) > int(usual.split(",")[0])
    assert f"larger shortlist (cutoffs {tcfg.cutoffs}" in choice.reason
