"""`charlm fill`: with one blank, the candidate that maximises the whole text's probability as
the interface scores each candidate text on its own (eval perplexity's code); several blanks
by beam search, exact when the beam holds every candidate; the bidirectional model reads both
sides of a blank; bad texts are one-line errors."""

import itertools
import json

import numpy as np
import pytest
from conftest import SMALL_TEXT
from test_cli import assert_one_line_error, run

from charlm import lm
from charlm.cli import main
from charlm.lm import fill as filler

TEXT = "the quick brown fox jumps over the lazy dog"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("fill")
    corpus = root / "small.txt"
    corpus.write_text(SMALL_TEXT, encoding="utf-8")
    neural = ["--hidden", "12", "--steps", "25", "--seq-len", "16"]
    kinds = {"gru": neural, "ngram": ["--cell", "ngram", "--order", "3"],
             "bi": ["--bidirectional", *neural]}
    for name, args in kinds.items():
        with pytest.raises(SystemExit) as exit_info:
            main(["train", str(corpus), *args, "--out", str(root / name), "--quiet"])
        assert exit_info.value.code == 0
    return {name: root / name / "best.npz" for name in kinds}


def _with(model, text, pos, c):
    ids, _, _ = filler.encode(text[:pos] + "_" + text[pos + 1:], model.vocab)
    ids[pos] = c
    return ids


@pytest.mark.parametrize("kind", ["gru", "ngram"])
def test_one_blank_is_the_candidate_of_the_most_probable_text(models, kind):
    model = lm.load(models[kind])
    pos = 11
    text = TEXT[:pos] + "_" + TEXT[pos + 1:]
    ids, blanks, _ = filler.encode(text, model.vocab)
    result = filler.fill(model, ids, blanks, top=model.vocab.size)
    # each candidate text scored on its own through score(), as `eval perplexity` does
    nats = np.array([model.score(_with(model, TEXT, pos, c))[0]
                     for c in range(model.vocab.size)])
    best = int(np.argmin(nats))
    assert result.ids[pos] == best and result.text[pos] == model.vocab.char(best)
    probs = np.exp(-(nats - nats.min()))
    probs /= probs.sum()
    got = {c: p for c, p in result.blanks[0][1]}
    for c in range(model.vocab.size):
        assert got[model.vocab.char(c)] == pytest.approx(probs[c], rel=1e-4, abs=1e-7)


def test_eval_perplexity_agrees_on_the_best_candidate(models, tmp_path, capfd):
    model = lm.load(models["gru"])
    text = "the quick br_wn fox"
    code, out, err = run(capfd, "fill", models["gru"], text, "--json", "--top", "3")
    assert code == 0, err
    shown = json.loads(out)
    per_text = []
    for c, _ in [(d["char"], d["prob"]) for d in shown["blanks"][0]["candidates"]]:
        path = tmp_path / f"{ord(c)}.txt"
        path.write_text(text.replace("_", c), encoding="utf-8")
        code, out_c, err = run(capfd, "eval", "perplexity", models["gru"], path, "--json")
        per_text.append(json.loads(out_c)["nats_per_char"])
    assert per_text == sorted(per_text)                  # the top candidate: the fewest nats
    assert shown["text"] == text.replace("_", shown["blanks"][0]["candidates"][0]["char"])
    assert model.describe() == shown["model"]


@pytest.mark.parametrize("kind", ["gru", "bi"])
def test_a_beam_as_wide_as_the_vocabulary_finds_the_best_pair(models, kind):
    """Two blanks: with every candidate kept, beam search is exhaustive."""
    model = lm.load(models[kind])
    text = "the qu__k brown fox"
    ids, blanks, _ = filler.encode(text, model.vocab)
    V = model.vocab.size
    result = filler.fill(model, ids, blanks, beam=V)
    best, best_score = None, -np.inf
    for a, b in itertools.product(range(V), repeat=2):
        trial = ids.copy()
        trial[blanks] = a, b
        if filler.is_cloze(model):     # the first blank sees the text up to the second
            score = (filler.cloze_at(model, trial[None, :blanks[1]], [blanks[0]])[0, 0, a]
                     + filler.cloze_at(model, trial[None, :], [blanks[1]])[0, 0, b])
        else:
            score = -model.score(trial)[0]
        if score > best_score:
            best, best_score = (a, b), score
    assert tuple(result.ids[blanks]) == best
    assert result.log_prob == pytest.approx(best_score, rel=1e-9)


def test_the_bidirectional_model_reads_both_sides(models):
    model = lm.load(models["bi"])
    text = "the quick brown fox jumps over the l_zy dog and the cat"

    def candidates(t):
        ids, blanks, _ = filler.encode(t, model.vocab)
        return dict(filler.fill(model, ids, blanks, top=model.vocab.size).blanks[0][1])

    base = candidates(text)
    far_right = candidates(text[:-1] + "s")                    # 19 characters to the right
    far_left = candidates("b" + text[1:])                      # 35 to the left
    for changed in (far_right, far_left):
        assert max(abs(changed[c] - base[c]) for c in base) > 1e-6     # float32 noise: 0
    assert candidates(text) == base


def test_one_pass_of_the_bidirectional_model_is_its_cloze_distribution(models):
    model = lm.load(models["bi"])
    ids, blanks, _ = filler.encode("the quick br_wn fox", model.vocab)
    result = filler.fill(model, ids, blanks, top=3)
    log_probs = filler.cloze_at(model, result.ids[None, :], blanks)[0, 0]
    top = np.argsort(-log_probs, kind="stable")[:3]
    assert [c for c, _ in result.blanks[0][1]] == [model.vocab.char(int(c)) for c in top]
    assert result.blanks[0][1][0][1] == pytest.approx(np.exp(log_probs[top[0]]))


@pytest.mark.parametrize("kind, text, code, fragment", [
    ("gru", "", 3, "the text is empty"),
    ("gru", "no blank here", 3, "has no _"),
    ("gru", "_he quick", 3, "starts with _"),
    ("bi", "the quick_", 3, "ends with _"),
    ("gru", "the qu_ck €", 3, "outside the model's vocabulary"),
    ("bi", "the qu_ck", 2, None),
])
def test_bad_texts_are_one_line_errors(models, capfd, kind, text, code, fragment):
    got, out, err = run(capfd, "fill", models[kind], text)
    if fragment is None:
        assert got == 0 and out.startswith("the qu"), err
    else:
        assert_one_line_error(err, got, code, fragment)


def test_unknown_skip_drops_the_character(models, capfd):
    code, out, err = run(capfd, "fill", models["gru"], "the qu_ck €fox", "--unknown", "skip",
                         "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["skipped"] == 1 and "€" not in shown["text"]


class _ScoreOnly:
    """A model kind with only the interface's score(): a mixture from elsewhere, say."""

    def __init__(self, model):
        self.vocab, self.path, self._model = model.vocab, model.path, model

    def score(self, ids, streams=1):
        return self._model.score(ids, streams)


@pytest.mark.parametrize("kind", ["gru", "ngram"])
def test_a_kind_without_batch_scoring_fills_the_same(models, kind):
    model = lm.load(models[kind])
    ids, blanks, _ = filler.encode("the qu_ck br_wn fox", model.vocab)
    batched = filler.fill(model, ids, blanks, top=4)
    one_by_one = filler.fill(_ScoreOnly(model), ids, blanks, top=4)
    assert one_by_one.text == batched.text
    for (pos_a, cands_a), (pos_b, cands_b) in zip(batched.blanks, one_by_one.blanks):
        assert pos_a == pos_b and [c for c, _ in cands_a] == [c for c, _ in cands_b]
        assert [p for _, p in cands_a] == pytest.approx([p for _, p in cands_b], rel=1e-4)
