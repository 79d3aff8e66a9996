"""Dynamic evaluation: each prediction uses only earlier text, rate 0 is the static score
bit for bit, the steps follow Krause et al.'s update, adaptation helps on a text that repeats
itself, streams adapt their own copies, and the commands and checkpoints that carry it."""

import json

import numpy as np
import pytest
from conftest import run

from charlm import lm
from charlm.cli import main
from charlm.errors import CheckpointError, UsageError
from charlm.io import checkpoint, npz
from charlm.lm import adapt
from charlm.nn import dynamic, model
from charlm.nn.inference import position_log_probs, score_ids

TINY = ("--hidden", "16", "--layers", "2", "--batch-size", "4", "--seq-len", "16", "--quiet")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2x16 GRU and a 2x16 LSTM with an adaptive softmax, 40 steps on the small text."""
    from conftest import SMALL_TEXT
    root = tmp_path_factory.mktemp("adapt")
    corpus = root / "small.txt"
    corpus.write_text(SMALL_TEXT, encoding="utf-8")
    for name, extra in (("gru", ("--cell", "gru")),
                        ("lstm", ("--cell", "lstm", "--softmax", "adaptive"))):
        with pytest.raises(SystemExit) as exit_info:
            main(["train", str(corpus), *extra, *TINY, "--steps", "40",
                  "--out", str(root / name)])
        assert exit_info.value.code == 0
    return root, corpus


def neural(root, name):
    """The run's recurrent model as mix.npz holds it: with its gradient RMS."""
    return lm.load(root / name / "mix.npz").models[0]


def ids_of(m, corpus):
    return m.vocab.encode(corpus.read_text(encoding="utf-8"))[0]


def settings(lr=3e-3, decay=0.02, seg=8):
    return adapt.Settings(lr, decay, seg)


def test_each_prediction_depends_only_on_earlier_characters(trained):
    root, corpus = trained
    for name in ("gru", "lstm"):
        m = neural(root, name)
        adapted = adapt.AdaptedLM(m, settings(), m.adapt_rms)
        ids = ids_of(m, corpus)[:300]
        before = adapted.log_probs(ids)
        for k in (1, 5, 8, 9, 100, 299):                 # inside and at segment edges
            changed = ids.copy()
            changed[k] = (changed[k] + 1) % m.vocab.size
            after = adapted.log_probs(changed)
            # prediction j scores ids[j + 1] from ids[:j + 1]: those before k - 1 keep theirs
            assert np.array_equal(after[:k - 1], before[:k - 1]), (name, k)
            assert not np.array_equal(after[k - 1:], before[k - 1:]), (name, k)


def test_adaptation_changes_later_scores_only(trained):
    root, corpus = trained
    m = neural(root, "gru")
    ids = ids_of(m, corpus)[:300]
    static = position_log_probs(m.params, m.model_config, ids, 1, 8)
    got = adapt.AdaptedLM(m, settings(), m.adapt_rms).log_probs(ids)
    assert np.array_equal(got[:8], static[:8])          # the first segment: trained weights
    assert np.abs(got[8:] - static[8:]).max() > 1e-3


@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_rate_zero_is_the_static_score_bitwise(trained, capfd, name):
    root, corpus = trained
    m = neural(root, name)
    ids = ids_of(m, corpus)
    for seg in (256, 37):
        adapted = adapt.AdaptedLM(m, settings(lr=0.0, decay=0.05, seg=seg), m.adapt_rms)
        assert adapted.score(ids) == score_ids(m.params, m.model_config, ids, 1, seg)
    text = ("--corpus", corpus, "--split", "all", "--json")
    static = run(capfd, "eval", "perplexity", root / name / "best.npz", *text)
    zero = run(capfd, "eval", "perplexity", root / name / "best.npz", *text,
               "--adapt", "--adapt-lr", "0")
    assert static[0] == zero[0] == 0
    assert json.loads(zero[1])["nats_per_char"] == json.loads(static[1])["nats_per_char"]


def test_a_step_is_krause_et_al_update(trained):
    root, corpus = trained
    m = neural(root, "gru")
    cfg, rms = m.model_config, m.adapt_rms
    lr, decay = 1e-3, 0.5
    adapter = dynamic.Adapter(m.params, cfg, rms, lr, decay)
    theta0 = adapter.flat.copy()
    adapter.flat += 0.01                                 # as if earlier steps had moved it
    theta = adapter.flat.copy()
    ids = ids_of(m, corpus)[:17]
    state = model.initial_state(cfg, 1)
    adapter.segment(ids, state)
    flat_grads, grads = model.allocate(model.param_shapes(cfg))
    model.loss_and_grads(adapter_params(cfg, theta), cfg, ids[:-1, None], ids[1:, None],
                         state, grads)
    ms = np.maximum(rms, dynamic.RMS_FLOOR * rms.mean())
    want = theta + np.minimum(decay * ms / rms.mean(), 1) * (theta0 - theta) \
        - lr * flat_grads / (ms + dynamic.EPSILON * rms.mean())
    np.testing.assert_allclose(adapter.flat, want, rtol=1e-5, atol=1e-7)


def test_a_weight_no_training_window_reached_takes_no_giant_step(trained):
    """A rare character's rows have a gradient RMS of 0; epsilon alone would make their step
    50,000 times the typical one."""
    root, _ = trained
    m = neural(root, "gru")
    rms = m.adapt_rms.copy()
    rms[:50] = 0
    lr = 1e-3
    adapter = dynamic.Adapter(m.params, m.model_config, rms, lr, 0.5)
    assert adapter.step_size.max() <= lr / (dynamic.RMS_FLOOR * rms.mean()) * (1 + 1e-6)
    assert np.all(adapter.pull[:50] > 0)                 # and they are pulled back too


def adapter_params(cfg, flat):
    buffer, views = model.allocate(model.param_shapes(cfg))
    buffer[:] = flat
    return views


def test_gradient_rms_is_the_root_mean_square_of_training_gradients(trained):
    root, corpus = trained
    m = lm.load(root / "gru" / "best.npz")
    ids = ids_of(m, corpus)
    from charlm.data.batching import Windows
    windows = Windows(ids, 4, 16)
    flat_grads, grads = model.allocate(model.param_shapes(m.model_config))
    state, squares = model.initial_state(m.model_config, 4), []
    for k in range(3):
        x, y = windows[k]
        _, state, _ = model.loss_and_grads(m.params, m.model_config, x, y, state, grads)
        squares.append(flat_grads.astype(np.float64) ** 2)
    np.testing.assert_allclose(dynamic.gradient_rms(m.params, m.model_config, windows, 3),
                               np.sqrt(np.mean(squares, axis=0)), rtol=1e-6)


def test_adaptation_helps_on_a_text_that_repeats_itself(trained, tmp_path):
    root, _ = trained
    m = neural(root, "gru")
    rng = np.random.default_rng(0)
    phrase = m.vocab.decode(rng.integers(0, m.vocab.size, 40))
    ids = m.vocab.encode(phrase * 30)[0]                 # a random phrase, over and over
    static = m.score(ids)[0]
    adapted = adapt.AdaptedLM(m, settings(lr=3e-4, decay=0.0, seg=8), m.adapt_rms)
    assert adapted.score(ids)[0] < 0.8 * static


def test_streams_adapt_their_own_copies(trained):
    root, corpus = trained
    m = neural(root, "gru")
    ids = ids_of(m, corpus)[:201]
    adapted = adapt.AdaptedLM(m, settings(), m.adapt_rms)
    both = adapted.log_probs(ids, streams=2)
    first, second = adapted.log_probs(ids[:101]), adapted.log_probs(ids[100:])
    assert np.array_equal(both, np.concatenate([first, second]))


def test_training_stores_the_gradient_rms_in_mix_and_leaves_best_plain(trained):
    root, _ = trained
    mix = checkpoint.load(root / "gru" / "mix.npz")
    model_config = mix.config["model"]["components"][0]
    assert model_config["format_version"] == checkpoint.ADAPT_VERSION
    assert model_config["config"]["adapt_rms"]["windows"] > 0
    rms = mix.arrays["mix/0/adapt/rms"]
    assert rms.shape == (lm.load(root / "gru" / "best.npz").parameters,)
    assert np.all(rms >= 0) and rms.max() > 0
    best = checkpoint.load(root / "gru" / "best.npz")
    assert best.format_version == 2 and not any(k.startswith("adapt/") for k in best.arrays)


def test_a_bare_best_gets_the_rms_from_the_corpus(trained, capfd):
    root, corpus = trained
    best = root / "gru" / "best.npz"
    code, _, err = run(capfd, "eval", "perplexity", best, corpus, "--adapt")
    assert code == 2 and "holds no gradient statistics" in err and "mix.npz" in err
    code, out, err = run(capfd, "eval", "perplexity", best, "--corpus", corpus, "--adapt",
                         "--json")
    assert code == 0 and json.loads(out)["nats_per_char"] > 0, err
    code, out, err = run(capfd, "eval", "perplexity", root / "gru" / "mix.npz", corpus,
                         "--adapt", "--json")
    assert code == 0 and json.loads(out)["nats_per_char"] > 0, err


def test_adapt_composes_with_mix_and_streams(trained, capfd):
    root, corpus = trained
    for extra in (("--mix", root / "lstm" / "mix.npz"), ("--streams", "3")):
        code, out, err = run(capfd, "eval", "perplexity", root / "gru" / "mix.npz", corpus,
                             "--adapt", "--adapt-seg", "32", "--json", *extra)
        assert code == 0, err
    gru, lstm = neural(root, "gru"), neural(root, "lstm")
    from charlm.lm.mixture import MixtureLM
    mixed = adapt.with_adapt(MixtureLM([gru, lstm]), settings(seg=32), None)
    assert all(isinstance(p, adapt.AdaptedLM) for p in mixed.models)


def test_bad_adapt_settings_are_refused(trained, tmp_path, capfd):
    root, corpus = trained
    for args, fragment in ((("--adapt-lr", "-1"), "must be 0 or more"),
                           (("--adapt-seg", "0"), "--adapt-seg"),
                           (("--adapt-decay", "nan"), "finite")):
        code, _, err = run(capfd, "eval", "perplexity", root / "gru" / "mix.npz", corpus,
                           "--adapt", *args)
        assert code == 2 and fragment in err and "Traceback" not in err, err
    code, _, err = run(capfd, "train", corpus, "--cell", "ngram", "--out", tmp_path / "n")
    code, _, err = run(capfd, "eval", "perplexity", tmp_path / "n" / "best.npz", corpus,
                       "--adapt")
    assert code == 2 and "adapts recurrent models" in err
    with pytest.raises(UsageError):
        adapt.Settings(-1.0, 0.0, 5).check()


def test_sample_adapt_on(trained, tmp_path, capfd):
    root, corpus = trained
    style = tmp_path / "style.txt"
    style.write_text("dog dog dog dog. " * 40, encoding="utf-8")
    common = ("--length", "60", "--seed", "2", "--temperature", "0")
    code, plain, err = run(capfd, "sample", root / "gru" / "best.npz", *common)
    assert code == 0, err
    code, adapted, err = run(capfd, "sample", root / "gru" / "best.npz", "--adapt-on", style,
                             "--adapt-lr", "3e-3", "--adapt-seg", "8", *common)
    assert code == 0, err

    def styled(text):                       # the share of the style text's letters
        return sum(text.count(c) for c in "dog.") / len(text)
    assert adapted != plain and styled(adapted) > styled(plain) + 0.1
    for args in (("lstm/best.npz", "--mix", root / "gru" / "best.npz"), ("gru/mix.npz",)):
        code, _, err = run(capfd, "sample", root / args[0], *args[1:], "--adapt-on", style,
                           "--length", "10")
        assert code == 0, err


def rms_file(root, tmp_path, edit):
    """mix.npz's recurrent model as a file of its own (a weights-only checkpoint with its
    gradient RMS, format 4), its config and arrays edited."""
    mix = checkpoint.load(root / "gru" / "mix.npz")
    entry = mix.config["model"]["components"][0]
    config = json.loads(json.dumps(entry["config"]))
    arrays = {k[len("mix/0/"):]: v for k, v in mix.arrays.items() if k.startswith("mix/0/")}
    edit(config, arrays)
    path = tmp_path / "model.npz"
    npz.save_checkpoint(path, arrays, config, checkpoint.FORMAT_VERSION)
    return path


@pytest.mark.parametrize("edit, fragment", [
    (lambda c, a: a.pop("adapt/rms"), "adapt/rms"),
    (lambda c, a: c.pop("adapt_rms"), "adapt/rms"),
    (lambda c, a: c.__setitem__("adapt_rms", 3), "'adapt_rms'"),
    (lambda c, a: a.__setitem__("adapt/rms", a["adapt/rms"][:-1]), "adapt/rms"),
])
def test_a_malformed_gradient_rms_is_refused(trained, tmp_path, edit, fragment):
    root, _ = trained
    assert lm.load(rms_file(root, tmp_path, lambda c, a: None)).adapt_rms is not None
    bad = rms_file(root, tmp_path, edit)
    with pytest.raises(CheckpointError) as info:
        lm.load(bad)
    assert fragment in str(info.value)


def test_the_gradient_rms_needs_format_4_and_no_negatives(trained, tmp_path):
    root, corpus = trained
    good = checkpoint.load(rms_file(root, tmp_path, lambda c, a: None))
    old = tmp_path / "v3.npz"
    npz.save_checkpoint(old, dict(good.arrays), good.config, 3)
    with pytest.raises(CheckpointError, match="needs format 4"):
        lm.load(old)
    m = neural(root, "gru")
    with pytest.raises(CheckpointError, match="gradient RMS"):
        adapt.AdaptedLM(m, settings(), -m.adapt_rms - 1)
