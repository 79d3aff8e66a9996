"""`charlm eval cloze`: the blanks, the three ways of scoring them (each checked against an
independent computation: the cloze pass, score() of the text, fill on the window) and the
figures."""

import json

import numpy as np
import pytest
from test_cli import assert_one_line_error, run
from test_fill import models  # noqa: F401  (the module's trained models)

from charlm import lm
from charlm.lm import cloze
from charlm.lm import fill as filler

TEXT = ("the quick brown fox jumps over the lazy dog and the cat sat on the mat "
        "while the dog ran to the park")


def test_blanks_are_seeded_and_inside_the_text():
    a = cloze.blank_positions(100, 0.1, seed=3)
    assert len(a) == 10 and a.min() >= 1 and a.max() <= 98 and len(set(a)) == 10
    assert np.array_equal(a, cloze.blank_positions(100, 0.1, seed=3))
    assert not np.array_equal(a, cloze.blank_positions(100, 0.1, seed=4))
    assert np.array_equal(cloze.blank_positions(10, 1.0, 0), np.arange(1, 9))


def test_figures_rank_with_ties_to_the_lower_id():
    with np.errstate(divide="ignore"):
        log_probs = np.log(np.array([[0.5, 0.2, 0.2, 0.1, 0.0, 0.0, 0.0],
                                     [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.4]]))
    got = cloze.figures(log_probs, np.array([2, 5]))
    # row 0: 2 ties with 1 (lower id first): rank 2; row 1: 6 higher, 0..4 tie lower: rank 6
    assert got == {"blanks": 2, "nats": pytest.approx(-(np.log(0.2) + np.log(0.1)) / 2),
                   "top1": 0.0, "top5": 0.5}
    assert cloze.figures(log_probs, np.array([0, 6]))["top1"] == 1.0


def _ids(model, text=TEXT):
    return model.vocab.encode(text)[0].astype(np.int64)


def test_left_context_is_the_left_to_right_score(models):  # noqa: F811
    model = lm.load(models["gru"])
    ids = _ids(model)
    positions = cloze.blank_positions(len(ids), 1.0, 0)              # 1 .. N - 2
    got = cloze.evaluate(model, ids, positions)
    assert got["method"] == cloze.LEFT and got["blanks"] == len(ids) - 2
    nats, count = model.score(ids[:-1])
    assert got["nats"] == pytest.approx(nats / count, rel=1e-5)


def test_the_bidirectional_model_uses_its_cloze_pass(models):  # noqa: F811
    model = lm.load(models["bi"])
    ids = _ids(model)
    positions = cloze.blank_positions(len(ids), 0.3, 1)
    got = cloze.evaluate(model, ids, positions)
    assert got["method"] == cloze.CLOZE
    for t in positions[:3]:                     # fill on the text with that one blank
        blanked = ids.copy()
        blanked[t] = -1
        result = filler.fill(model, blanked, np.array([t]), top=model.vocab.size)
        assert result.blanks[0][1][0][0] == model.vocab.char(
            int(np.argmax(filler.cloze_at(model, ids[None, :], [t])[0, 0])))
    true_lp = filler.cloze_at(model, ids[None, :], positions)[:, 0][
        np.arange(len(positions)), ids[positions]]
    assert got["nats"] == pytest.approx(-true_lp.mean())


@pytest.mark.parametrize("kind", ["gru", "ngram"])
def test_rescoring_is_fill_on_the_window(models, kind):  # noqa: F811
    model = lm.load(models[kind])
    ids = _ids(model)
    window = 6
    positions = cloze.blank_positions(len(ids), 0.2, 2)
    got = cloze.evaluate(model, ids, positions, rescore=True, window=window)
    assert got["method"] == cloze.RESCORED
    nats = []
    for t in positions:
        lo = int(np.clip(t - window, 0, len(ids) - 2 * window - 1))
        piece = ids[lo:lo + 2 * window + 1].copy()
        piece[t - lo] = -1
        result = filler.fill(model, piece, np.array([t - lo]), top=model.vocab.size)
        nats.append(-np.log(dict(result.blanks[0][1])[model.vocab.char(int(ids[t]))]))
    assert got["nats"] == pytest.approx(np.mean(nats), rel=1e-5)


def test_the_command_compares_models_on_the_same_blanks(models, tmp_path, capfd):  # noqa: F811
    path = tmp_path / "t.txt"
    path.write_text(TEXT, encoding="utf-8")
    code, out, err = run(capfd, "eval", "cloze", models["bi"], path, "--compare",
                         models["gru"], "--compare", models["gru"], "--rescore",
                         "--fraction", "0.2", "--seed", "5", "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["method"] for r in rows] == [cloze.CLOZE, cloze.RESCORED, cloze.RESCORED]
    assert len({r["blanks"] for r in rows}) == 1
    assert rows[1]["nats"] == rows[2]["nats"]
    code, out, err = run(capfd, "eval", "cloze", models["gru"], path)
    assert code == 0 and "left context" in out, err


def test_a_text_too_short_is_a_one_line_error(models, tmp_path, capfd):  # noqa: F811
    path = tmp_path / "t.txt"
    path.write_text("ab", encoding="utf-8")
    code, _, err = run(capfd, "eval", "cloze", models["gru"], path)
    assert_one_line_error(err, code, 3, "nothing to blank")
