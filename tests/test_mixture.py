"""Mixtures of language models: the definition (exactly the model when mixed with itself;
online weights from earlier text only, moving toward the better model), vocabularies in a
different order, the commands (--mix, --mix-weights, charlm mix) and the mixture checkpoint
under the loader's fault catalog."""

import json

import numpy as np
import pytest
from conftest import run
from test_checkpoint import mutate

from charlm import lm
from charlm.cli import main
from charlm.errors import CheckpointError, UsageError
from charlm.io import checkpoint, mixture_file, npz
from charlm.lm import mixture

TINY = ("--hidden", "8", "--layers", "1", "--batch-size", "2", "--seq-len", "8", "--quiet")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A GRU (full softmax), a GRU with an adaptive softmax (ids ranked by frequency) and a
    4-gram, each trained a few steps on the same small text."""
    from conftest import SMALL_TEXT
    root = tmp_path_factory.mktemp("mix")
    corpus = root / "small.txt"
    corpus.write_text(SMALL_TEXT + "Zebras quietly vex jumpy wolves.\n", encoding="utf-8")
    commands = {"gru": ("--cell", "gru", *TINY, "--steps", "20"),
                "adaptive": ("--cell", "gru", *TINY, "--steps", "20", "--softmax", "adaptive"),
                "ngram": ("--cell", "ngram", "--order", "4")}
    for name, args in commands.items():
        with pytest.raises(SystemExit) as exit_info:
            main(["train", str(corpus), *args, "--out", str(root / name)])
        assert exit_info.value.code == 0
    return root, corpus


def ids_of(model, corpus):
    ids, _ = model.vocab.encode(corpus.read_text(encoding="utf-8"))
    return ids


def test_a_model_mixed_with_itself_scores_exactly_as_the_model(runs):
    root, corpus = runs
    for name in ("gru", "adaptive", "ngram"):
        model = lm.load(root / name / "best.npz")
        ids = ids_of(model, corpus)
        for streams in (1, 3):
            alone = model.log_probs(ids, streams)
            for weights in (None, [0.5, 0.5]):
                mixed = mixture.MixtureLM([model, model], weights).log_probs(ids, streams)
                assert np.array_equal(mixed, alone), name
            nll, count = model.score(ids, streams)
            assert count == len(alone) and nll == pytest.approx(-alone.sum(), rel=1e-12)


def test_log_probs_are_the_terms_of_the_score(runs):
    root, corpus = runs
    for name in ("gru", "adaptive"):
        model = lm.load(root / name / "best.npz")
        ids = ids_of(model, corpus)
        for streams in (1, 4):
            nll, count = model.score(ids, streams)
            assert -model.log_probs(ids, streams).sum() == pytest.approx(nll, rel=1e-12)


def test_online_weights_move_toward_the_better_model():
    rng = np.random.default_rng(0)
    n = 5000
    good = -1.0 + 0.1 * rng.standard_normal(n)
    bad = good - 0.5                          # half a nat worse at every position
    w = mixture.online_weights(np.stack([bad, good]), forgetting=0.0)
    assert w[:, 0].tolist() == [0.5, 0.5]     # nothing seen yet: equal weights
    per_chunk = w[1, ::mixture.CHUNK]
    assert np.all(np.diff(per_chunk) > 0)     # more evidence, more weight to the better model
    assert w[1, -1] > 0.8
    # with forgetting the weights follow a text whose better model changes
    switched = np.stack([np.concatenate([bad[:2500], good[2500:]]),
                         np.concatenate([good[:2500], bad[2500:]])])
    w = mixture.online_weights(switched, forgetting=0.01)
    assert w[1, 2499] > 0.9 and w[0, -1] > 0.5
    assert np.all(np.diff(w[0, 2560::mixture.CHUNK]) > 0)


def test_online_weights_keep_two_models_that_make_different_mistakes():
    """Each model is sure where the other is lost: interpolation beats both, where a
    posterior over "which model wrote this" would settle on one of them."""
    n = 4000
    sure, lost = np.log(0.9), np.log(0.02)
    a = np.where(np.arange(n) % 3 == 0, lost, sure)
    b = np.where(np.arange(n) % 3 == 0, sure, np.log(0.3))
    lp = np.stack([a, b])
    w = mixture.online_weights(lp, forgetting=0.0)
    assert 0.3 < w[0, -1] < 0.9
    mixed = -mixture.mixed_log_probs(lp, w).mean()
    assert mixed < min(-a.mean(), -b.mean()) - 0.1


def test_online_weights_use_only_earlier_positions():
    rng = np.random.default_rng(1)
    lp = -rng.random((3, 1000)) * 3
    w = mixture.online_weights(lp, forgetting=0.001)
    np.testing.assert_allclose(w.sum(axis=0), 1.0)
    for t in (0, 1, 255, 256, 257, 700):
        changed = lp.copy()
        changed[:, t:] = -rng.random((3, 1000 - t)) * 3
        w2 = mixture.online_weights(changed, forgetting=0.001)
        assert np.array_equal(w2[:, :t + 1], w[:, :t + 1]), t
        assert not np.array_equal(w2[:, t + 1:], w[:, t + 1:]) or t == 999


def test_online_weights_match_the_sequential_update():
    rng = np.random.default_rng(2)
    lp = -rng.random((2, 600)) * 4
    f = 0.02
    evidence, pending, expected = np.ones(2), np.zeros(2), []
    for t in range(600):
        w = evidence / evidence.sum()
        expected.append(w)
        r = w * np.exp(lp[:, t]) / (w * np.exp(lp[:, t])).sum()
        pending = (1 - f) * pending + r
        if (t + 1) % mixture.CHUNK == 0:
            evidence, pending = (1 - f) ** mixture.CHUNK * evidence + pending, np.zeros(2)
    np.testing.assert_allclose(mixture.online_weights(lp, f), np.array(expected).T, rtol=1e-9)


def test_the_mixture_beats_the_worse_model_and_follows_the_better(runs):
    root, corpus = runs
    gru, ngram = (lm.load(root / n / "best.npz") for n in ("gru", "ngram"))
    ids = ids_of(gru, corpus)
    mixed = mixture.MixtureLM([gru, ngram])
    nats = {m: m.score(ids)[0] / (len(ids) - 1) for m in (gru, ngram, mixed)}
    assert nats[ngram] < nats[gru] - 0.5                      # the n-gram is far better here
    assert nats[mixed] < nats[ngram] + 0.01
    lp = np.stack([gru.log_probs(ids), ngram.log_probs(ids)])
    assert mixed.weights_for(lp)[1, -1] > 0.99


def test_models_whose_ids_are_ranked_differently_are_aligned(runs):
    root, corpus = runs
    full, adaptive = (lm.load(root / n / "best.npz") for n in ("gru", "adaptive"))
    assert full.vocab != adaptive.vocab                        # same characters, other order
    ids = ids_of(full, corpus)
    mixed = mixture.MixtureLM([full, adaptive], [0.0, 1.0])
    np.testing.assert_allclose(mixed.log_probs(ids), adaptive.log_probs(ids_of(adaptive, corpus)),
                               rtol=1e-12)
    stepper, alone = mixed.stepper(), adaptive.stepper()
    for ch in "The quick":
        got = stepper.step(full.vocab.index(ch))
        want = np.asarray(alone.step(adaptive.vocab.index(ch)), np.float64)
        want = want - np.log(np.exp(want).sum())
        np.testing.assert_allclose(got, want[mixture.align([full, adaptive])[1]], atol=1e-6)


def test_the_stepper_mixes_as_scoring_does(runs):
    root, corpus = runs
    gru, ngram = (lm.load(root / n / "best.npz") for n in ("gru", "ngram"))
    mixed = mixture.MixtureLM([gru, ngram], forgetting=0.01)
    ids = ids_of(gru, corpus)[:60]
    stepper = mixed.stepper()
    stepped = [stepper.step(int(i))[int(j)] for i, j in zip(ids[:-1], ids[1:])]
    np.testing.assert_allclose(stepped, mixed.log_probs(ids), atol=2e-5)


def test_different_vocabularies_are_refused_naming_the_characters(runs, tmp_path, capfd):
    root, _ = runs
    other = tmp_path / "other.txt"
    other.write_text("abcabcabd" * 50, encoding="utf-8")
    code, _, err = run(capfd, "train", other, "--cell", "ngram", "--out", tmp_path / "o")
    assert code == 0, err
    code, _, err = run(capfd, "eval", "perplexity", root / "ngram" / "best.npz", other,
                       "--unknown", "skip", "--mix", tmp_path / "o" / "best.npz")
    assert code == 2 and "different vocabularies" in err and "'Tb" not in err
    assert "only in" in err and "Traceback" not in err


@pytest.mark.parametrize("weights, fragment", [
    ("0.5", "gives 1 weights for 2 models"), ("a,b", "numbers separated by commas"),
    ("-1,2", "must be 0 or more"), ("0,0", "not all 0"), ("nan,1", "finite")])
def test_bad_mix_weights_are_one_line_errors(runs, capfd, weights, fragment):
    root, corpus = runs
    code, _, err = run(capfd, "eval", "perplexity", root / "gru" / "best.npz", corpus,
                       "--mix", root / "ngram" / "best.npz", "--mix-weights", weights)
    assert code == 2 and fragment in err and "Traceback" not in err, err


def test_mix_weights_without_mix_is_refused(runs, capfd):
    root, corpus = runs
    code, _, err = run(capfd, "eval", "perplexity", root / "gru" / "best.npz", corpus,
                       "--mix-weights", "1,1")
    assert code == 2 and "give --mix too" in err


def test_eval_and_sample_take_mix(runs, capfd):
    root, corpus = runs
    code, out, err = run(capfd, "eval", "perplexity", root / "gru" / "best.npz", corpus,
                         "--json", "--mix", root / "ngram" / "best.npz",
                         "--mix", root / "adaptive" / "best.npz")
    assert code == 0, err
    gru, ngram, adaptive = (lm.load(root / n / "best.npz") for n in ("gru", "ngram", "adaptive"))
    ids = ids_of(gru, corpus)
    want = mixture.MixtureLM([gru, ngram, adaptive]).score(ids)[0] / (len(ids) - 1)
    assert json.loads(out)["nats_per_char"] == pytest.approx(want, rel=1e-12)
    code, out, err = run(capfd, "sample", root / "gru" / "best.npz", "--mix",
                         root / "ngram" / "best.npz", "--mix-weights", "0,1", "--length", "40",
                         "--seed", "3", "--temperature", "0")
    assert code == 0, err
    code, alone, err = run(capfd, "sample", root / "ngram" / "best.npz", "--length", "40",
                           "--seed", "3", "--temperature", "0")
    assert out == alone                       # all the weight on the n-gram: its greedy text


def test_mixture_checkpoint_round_trip(runs, tmp_path, capfd):
    root, corpus = runs
    out = tmp_path / "m.npz"
    code, text, err = run(capfd, "mix", root / "gru" / "last.npz", root / "ngram" / "best.npz",
                          root / "adaptive" / "best.npz", "--out", out)
    assert code == 0 and "mixture of" in text, err
    saved = lm.load(out)
    parts = [lm.load(root / n) for n in ("gru/best.npz", "ngram/best.npz", "adaptive/best.npz")]
    ids = ids_of(saved, corpus)
    assert np.array_equal(saved.log_probs(ids), mixture.MixtureLM(parts).log_probs(ids))
    for args in (("info", out), ("eval", "perplexity", out, corpus),
                 ("eval", "perplexity", root / "gru" / "best.npz", corpus, "--compare", out),
                 ("eval", "perplexity", out, "--corpus", corpus, "--split", "val"),
                 ("sample", out, "--length", "20", "--seed", "1")):
        code, text, err = run(capfd, *args)
        assert code == 0, (args, err)
    code, _, err = run(capfd, "mix", root / "gru" / "best.npz", out, "--out", tmp_path / "n.npz")
    assert code == 2 and "is a mixture" in err
    code, _, err = run(capfd, "mix", root / "gru" / "best.npz", root / "ngram" / "best.npz",
                       "--out", out)
    assert code == 2 and "--force" in err


@pytest.fixture
def mixfile(runs, tmp_path):
    root, _ = runs
    parts = [checkpoint.load(root / n / "best.npz") for n in ("gru", "ngram")]
    path = tmp_path / "m.npz"
    mixture_file.save_mixture(path, parts, None, 0.001)
    return path


def edited(mixfile, edit, tmp_path, arrays_edit=None):
    """A copy of mixfile with its config (and arrays) edited, saved as a valid container."""
    loaded = checkpoint.load(mixfile)
    config = json.loads(json.dumps(loaded.config))
    edit(config)
    arrays = dict(loaded.arrays)
    if arrays_edit:
        arrays_edit(arrays)
    bad = tmp_path / "bad.npz"
    npz.save_checkpoint(bad, arrays, config, checkpoint.FORMAT_VERSION)
    return bad


def _set(path, value):
    def edit(config):
        *keys, last = path
        target = config
        for key in keys:
            target = target[key]
        target[last] = value
    return edit


@pytest.mark.parametrize("edit, fragment", [
    (_set(["model", "components"], []), "'components'"),
    (_set(["model", "components"], "x"), "'components'"),
    (_set(["model", "components", 1], 5), "entry 1"),
    (_set(["model", "components", 0, "format_version"], 5), "'format_version'"),
    (_set(["model", "components", 0, "config", "model", "hidden"], 9), "shape"),
    (_set(["model", "components", 1, "config", "kind"], "zip"), "charlm marker"),
    (_set(["model", "components", 0, "config", "model", "cell"], "mixture"), "a mixture holds"),
    (_set(["model", "weights"], [1]), "'weights'"),
    (_set(["model", "weights"], [0, 0]), "'weights'"),
    (_set(["model", "weights"], [1, True]), "'weights'"),
    (_set(["model", "forgetting"], 0.5), "'forgetting'"),
    (_set(["model", "forgetting"], None), "'forgetting'"),
    (_set(["model", "vocab_size"], 3), "meta/vocab"),
])
def test_a_malformed_mixture_config_is_refused(mixfile, tmp_path, edit, fragment):
    bad = edited(mixfile, edit, tmp_path)
    with pytest.raises(CheckpointError) as info:
        lm.load(bad)
    assert str(info.value).startswith(f"{bad}: ") and fragment in str(info.value)


def test_missing_and_extra_model_members_are_refused(mixfile, tmp_path):
    def drop(arrays):
        del arrays["mix/1/ngram/keys_2"]

    def add(arrays):
        arrays["mix/2/params/x"] = np.zeros(2, np.float32)
    for arrays_edit, fragment in ((drop, "mix/1/ngram/keys_2"), (add, "mix/2/params/x")):
        with pytest.raises(CheckpointError) as info:
            lm.load(edited(mixfile, lambda c: None, tmp_path, arrays_edit))
        assert fragment in str(info.value)


def test_vocabularies_that_disagree_inside_the_file_are_refused(mixfile, tmp_path):
    def swap(arrays):
        v = arrays["meta/vocab"].copy()
        v[[0, 1]] = v[[1, 0]]
        arrays["meta/vocab"] = v
    with pytest.raises(CheckpointError, match="not its first model's"):
        lm.load(edited(mixfile, lambda c: None, tmp_path, swap))

    def other_chars(arrays):
        v = arrays["mix/1/meta/vocab"].copy()
        v[-1] = 0x4E00
        arrays["mix/1/meta/vocab"] = v
    with pytest.raises(CheckpointError, match="different vocabularies"):
        lm.load(edited(mixfile, lambda c: None, tmp_path, other_chars))


def test_an_older_format_version_is_refused(mixfile, tmp_path):
    loaded = checkpoint.load(mixfile)
    bad = tmp_path / "old.npz"
    npz.save_checkpoint(bad, dict(loaded.arrays), loaded.config, 3)
    with pytest.raises(CheckpointError, match="needs format 4"):
        lm.load(bad)


def test_truncated_and_mutated_mixture_files_load_or_are_refused(mixfile, tmp_path):
    data = mixfile.read_bytes()
    bad = tmp_path / "cut.npz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        lm.load(bad)
    rng = np.random.default_rng(0)
    refused = 0
    for _ in range(60):
        bad.write_bytes(mutate(data, lambda lo, hi: int(rng.integers(lo, hi + 1))))
        try:
            lm.load(bad)
        except CheckpointError as exc:
            assert str(exc).startswith(f"{bad}: ") and "\n" not in str(exc)
            refused += 1
    assert refused > 30


def test_mix_refuses_a_bad_forgetting_rate(runs, tmp_path, capfd):
    root, _ = runs
    code, _, err = run(capfd, "mix", root / "gru" / "best.npz", root / "ngram" / "best.npz",
                       "--out", tmp_path / "m.npz", "--forgetting", "0.5")
    assert code == 2 and "forgetting" in err and not (tmp_path / "m.npz").exists()
    with pytest.raises(UsageError):
        mixture.MixtureLM([lm.load(root / "gru" / "best.npz")])


def test_one_counting_pass_gives_every_order():
    from charlm.nn import kneser_ney
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 7, 3000)
    models = kneser_ney.fit_kneser_ney_orders(ids, 7, 5)
    for order, m in enumerate(models, start=1):
        alone = kneser_ney.fit_kneser_ney(ids, 7, order).to_arrays()
        got = m.to_arrays()
        assert got.keys() == alone.keys()
        assert all(np.array_equal(got[k], alone[k]) for k in alone), order


def test_a_run_leaves_its_ngram_and_mixture_scored_on_validation(runs):
    from charlm.data import text
    from charlm.train.ngram import choose_and_fit
    root, corpus = runs
    records = [json.loads(line)
               for line in (root / "gru" / "metrics.jsonl").read_text().splitlines()]
    mixed = records[-1]
    assert mixed["event"] == "mixture"
    model, ngram, mix = (lm.load(root / "gru" / n) for n in ("best.npz", "ngram.npz", "mix.npz"))
    ids = ids_of(model, corpus)
    train_ids, val_ids = text.split_train_val(ids, 0.1)
    # the order comes from the training split alone; the n-gram is fitted on all of it
    assert ngram.model.order == mixed["ngram_order"] == choose_and_fit(train_ids,
                                                                       model.vocab.size)[0].order
    assert ngram.config["data"]["train_chars"] == len(train_ids)
    n = len(val_ids) - 1
    assert mixed["ngram_val"] == pytest.approx(ngram.score(val_ids)[0] / n, rel=1e-12)
    assert mixed["model_val"] == pytest.approx(model.score(val_ids, 16)[0] / n, rel=1e-9)
    assert mixed["mix_val"] == pytest.approx(mix.score(val_ids, 16)[0] / n, rel=1e-9)
    assert mixed["mix_val"] <= max(mixed["model_val"], mixed["ngram_val"])


def test_the_run_ngram_order_is_the_best_on_the_training_slice():
    from charlm.train.ngram import SEARCH_ORDER, choose_and_fit
    rng = np.random.default_rng(4)
    words = [rng.integers(0, 20, rng.integers(3, 9)) for _ in range(60)]
    ids = np.concatenate([words[i] for i in rng.integers(0, 60, 3000)])
    model, scores = choose_and_fit(ids, 20)
    assert sorted(scores) == list(range(1, SEARCH_ORDER + 1))
    assert model.order == min(scores, key=scores.get) > 2
    assert sum(model.sizes()) > 0 and model.level(1).counts.sum() > 0


def test_the_run_keeps_time_for_its_mixture_inside_the_budget(tmp_path):
    """The n-gram is fitted, scored and saved on the run's clock before training; the
    stopping rule reserves finish's work: one more validation pass and the gradient RMS's
    training windows."""
    from types import SimpleNamespace

    from charlm.data.vocab import Vocab
    from charlm.io.progress import Progress
    from charlm.lm.adapt import STATS_WINDOWS
    from charlm.train.config import TrainConfig
    from charlm.train.mixture import NGRAM_FILE, RunMixture
    from charlm.train.stopping import StoppingRule
    ids = np.random.default_rng(5).integers(0, 20, 3000)
    trainer = SimpleNamespace(train_ids=ids[:2500], val_ids=ids[2500:], tcfg=TrainConfig(),
                              vocab=Vocab(np.arange(97, 117)), data_info={}, out=tmp_path,
                              progress=Progress(), stopping=StoppingRule(0, 100, 0),
                              step_seconds=0.2)
    assert trainer.stopping.after_run() == 0.0
    run_mixture = RunMixture(trainer.train_ids, trainer.val_ids, trainer.vocab, tmp_path,
                             0.1, {})
    assert (tmp_path / NGRAM_FILE).is_file() and trainer.progress.elapsed == 0
    run_mixture.attach(trainer)
    assert trainer.progress.elapsed == run_mixture.fit_seconds > 0
    trainer.stopping.validated(3.0)
    assert trainer.stopping.after_run() == pytest.approx(3.0 + STATS_WINDOWS * 0.2)
    assert trainer.stopping.after_step(Progress(elapsed=100 - 3.0 - 7.0))     # 3 + 3 + 6 > 10
