"""Beam search, templates and scored sampling on the language-model interface, checked against
brute force on models small enough to enumerate."""

import itertools

import numpy as np
import pytest

from charlm.data.vocab import Vocab, codepoints_of
from charlm.errors import CorpusError, UsageError
from charlm.lm import template
from charlm.lm.beam import beam_search
from charlm.lm.sampling import best_ids, distribution, draw, generate
from charlm.lm.template import Form
from charlm.nn import model
from charlm.nn.inference import Stepper
from charlm.nn.model import ModelConfig


def _random_model(vocab_size=4, seed=0, cell="gru", softmax=None):
    rng = np.random.default_rng(seed)
    cfg = ModelConfig(cell=cell, vocab_size=vocab_size, hidden=8, layers=2,
                      **(softmax or {}))
    flat, params = model.init_params(cfg, rng, dtype=np.float64)
    flat += rng.standard_normal(flat.shape) * 0.8              # a peaked, varied distribution
    return params, cfg


def _log_prob(stepper, prime, ids):
    """The model's log-probability of ids after prime, one step at a time."""
    stepper.reset()
    logits = None
    for i in prime:
        logits = stepper.step(i)
    total = 0.0
    for i in ids:
        z = logits.astype(np.float64)
        total += z[i] - z.max() - np.log(np.exp(z - z.max()).sum())
        logits = stepper.step(i)
    return total


def _run(gen):
    """(the ids a beam search yields, its returned log-probability)."""
    ids = []
    while True:
        try:
            ids.append(next(gen))
        except StopIteration as stop:
            return ids, stop.value


@pytest.mark.parametrize("cell,softmax", [("gru", None), ("lstm", None),
                                          ("gru", {"softmax": "adaptive", "cutoffs": (2,),
                                                   "div_value": 2.0})])
def test_a_wide_beam_finds_the_most_likely_continuation_of_all(cell, softmax):
    """With W >= V^(L-1) nothing is ever cut: the beam is exhaustive, so it must find the best
    of all V^L continuations, and report its log-probability."""
    params, cfg = _random_model(cell=cell, softmax=softmax)
    stepper, prime, length = Stepper(params, cfg), [1, 2], 4
    scores = {seq: _log_prob(stepper, prime, seq)
              for seq in itertools.product(range(cfg.vocab_size), repeat=length)}
    best = max(scores, key=scores.get)
    stepper.reset()
    ids, score = _run(beam_search(stepper, prime, Form.free(length), cfg.vocab_size ** 3))
    assert tuple(ids) == best
    assert score == pytest.approx(scores[best], abs=1e-9)


def test_beam_of_one_is_greedy_and_reports_the_models_log_probability():
    params, cfg = _random_model(vocab_size=7, seed=3)
    stepper, prime = Stepper(params, cfg), [0]
    greedy = [i for i, _ in generate(stepper, prime, 30, np.random.default_rng(0), 0.0)]
    stepper.reset()
    ids, score = _run(beam_search(stepper, prime, Form.free(30), 1))
    assert ids == greedy
    assert score == pytest.approx(_log_prob(stepper, prime, ids), abs=1e-9)


def test_a_beam_streams_the_characters_every_hypothesis_agrees_on():
    """The first id comes out long before the search has run to the end."""
    params, cfg = _random_model(vocab_size=5, seed=1)

    class Counting(Stepper):
        steps = 0

        def step(self, char_id):
            Counting.steps += 1
            return super().step(char_id)

    gen = beam_search(Counting(params, cfg), [0], Form.free(200), 1)
    next(gen)
    assert Counting.steps <= 3                      # the prime, and at most a step or two
    rest, _ = _run(gen)
    assert len(rest) == 199


def test_a_template_forces_its_characters_and_fills_the_rest_from_the_allowed_ones():
    vocab = Vocab(codepoints_of("ab, .\n\t!\x07"))                # 10 ids: letters and others
    params, cfg = _random_model(vocab_size=vocab.size, seed=2)
    form = template.parse_template("__, _\\n_!_.", vocab)
    forced = {i: ch for i, ch in enumerate("__, _\n_!_.") if ch != "_"}
    chosen = [i for i, ch in enumerate("__, _\n_!_.") if ch == "_"]
    stepper = Stepper(params, cfg)
    texts = []
    for seed in range(30):                     # a high temperature: every id is likely
        stepper.reset()
        ids = [i for i, _ in generate(stepper, [0], form, np.random.default_rng(seed), 20.0)]
        texts.append(vocab.decode(ids))
    stepper.reset()
    texts.append(vocab.decode(_run(beam_search(stepper, [0], form, 3))[0]))
    for text in texts:
        assert len(text) == 10
        assert all(text[i] == ch for i, ch in forced.items())
        assert all(text[i] in "ab" for i in chosen), text


def test_allow_takes_characters_and_classes():
    vocab = Vocab(codepoints_of("ab, .\n\t!\x07\u3000。"))

    def allowed(*spec):
        return {vocab.char(i) for i in np.flatnonzero(template.allowed_mask(vocab, spec))}

    assert allowed() == {"a", "b"}
    assert allowed("!") == {"a", "b", "!"}
    assert allowed("[:space:]") == {"a", "b", " ", "\n", "\t", "\u3000"}
    assert allowed("[:punct:]") == {"a", "b", ",", ".", "!", "。"}
    assert allowed("[:cntrl:]", "\\n") == {"a", "b", "\x07", "\n"}
    with pytest.raises(UsageError, match="unknown class"):
        template.allowed_mask(vocab, ["[:alpha:]"])


@pytest.mark.parametrize("text,error,fragment", [
    ("abc", UsageError, "no '_'"),
    ("\\_\\_", UsageError, "no '_'"),
    ("_z_", CorpusError, "'z'"),
    ("_\\q", UsageError, "unknown escape"),
])
def test_bad_templates(text, error, fragment):
    vocab = Vocab(codepoints_of("ab, .\n"))
    with pytest.raises(error, match=fragment):
        template.parse_template(text, vocab)


def test_a_sample_ends_at_the_first_stop_string_it_produces():
    vocab = Vocab(codepoints_of("ab\n"))
    params, cfg = _random_model(vocab_size=3, seed=4)
    stops = template.parse_stops(["b\\n", "aa"], vocab)
    stepper = Stepper(params, cfg)
    ended = 0
    for seed in range(20):
        stepper.reset()
        ids = [i for i, _ in generate(stepper, [0], 50, np.random.default_rng(seed), 3.0,
                                      stops=stops, vocab=vocab)]
        text = vocab.decode(ids)
        first = min((text.find(s) + len(s) for s in ("b\n", "aa") if s in text), default=50)
        assert len(text) == first
        ended += len(text) < 50
    assert ended > 10


def test_the_drawn_log_probability_is_that_of_the_distribution_drawn_from():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal(12).astype(np.float32)
    allowed = np.arange(12) % 3 != 0
    for settings in ((1.0, 0, 1.0), (0.7, 5, 1.0), (1.3, 0, 0.8), (2.0, 3, 0.5)):
        p = distribution(logits, *settings, allowed)
        assert p.sum() == pytest.approx(1.0) and not p[~allowed].any()
        for _ in range(20):
            char_id, log_prob = draw(logits, rng, *settings, allowed=allowed)
            assert allowed[char_id] and log_prob == pytest.approx(np.log(p[char_id]))
    z = logits.astype(np.float64)
    softmax = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    assert np.allclose(distribution(logits), softmax, rtol=1e-12)


def test_best_ids_break_ties_to_the_lower_id():
    values = np.array([1.0, 3.0, 3.0, 2.0, 3.0])
    assert list(best_ids(values, 2)) == [1, 2]
    assert list(best_ids(values, 4)) == [1, 2, 4, 3]
    assert list(best_ids(values, 9)) == [1, 2, 4, 3, 0]


@pytest.mark.parametrize("seed", [27, 29])     # models whose best text stops after 3 characters
def test_a_wide_beam_with_a_stop_string_finds_the_best_text_of_any_length(seed):
    """Candidates: a text of the full length with no stop, or one that ends at its first stop;
    exhaustive at W >= V^(L-1), so the beam must pick the best of them all."""
    vocab = Vocab(codepoints_of("ab\n"))
    params, cfg = _random_model(vocab_size=3, seed=seed)
    stepper, length = Stepper(params, cfg), 5
    scores = {}
    for seq in itertools.product(range(3), repeat=length):
        end = seq.index(2) + 1 if 2 in seq else length        # "\n" is id 2
        scores[seq[:end]] = _log_prob(stepper, [0], seq[:end])
    best = max(scores, key=scores.get)
    assert len(best) == 3 and best[-1] == 2
    stepper.reset()
    ids, score = _run(beam_search(stepper, [0], Form.free(length), 3 ** 4,
                                  template.parse_stops(["\\n"], vocab), vocab))
    assert tuple(ids) == best and score == pytest.approx(scores[best], abs=1e-9)


def test_a_beam_stops_at_a_stop_string_longer_than_what_it_has_written():
    vocab = Vocab(codepoints_of("ab\n"))
    params, cfg = _random_model(vocab_size=3, seed=29)
    stops = template.parse_stops(["ab\\nab", "b\\n"], vocab)
    ids, score = _run(beam_search(Stepper(params, cfg), [0], Form.free(40), 3, stops, vocab))
    text = vocab.decode(ids)
    assert text.endswith("b\n") and "b\n" not in text[:-1]
