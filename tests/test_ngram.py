"""Kneser-Ney n-gram model: normalisation, the two scoring paths agree, a pure-Python reference,
the checkpoint arrays, and the tinyshakespeare benchmark number."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from charlm.nn.kneser_ney import (
    NGramModel,
    _discounts,
    fit_kneser_ney,
    log_prob_stream,
    next_distribution,
    schema,
)


def random_text(n: int, vocab_size: int, seed: int) -> np.ndarray:
    """(n,) uint8 ids with a skewed unigram, so some n-grams repeat and some are rare."""
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(vocab_size, 0.7))
    return rng.choice(vocab_size, size=n, p=weights).astype(np.uint8)


@pytest.fixture(scope="module")
def text() -> np.ndarray:
    return random_text(3000, 12, seed=1)


@pytest.mark.parametrize("order", [1, 2, 3, 4, 5, 6])
def test_next_distribution_sums_to_one(text, order):
    V = 12
    model = fit_kneser_ney(text[:2000], V, order)
    rng = np.random.default_rng(order)
    starts, lengths = rng.integers(0, 1990, 20), rng.integers(0, 9, 20)
    seen = [text[s: s + length] for s, length in zip(starts, lengths, strict=True)]
    unseen = [rng.integers(0, V, length) for length in rng.integers(1, 12, 20)]
    unseen.append(np.array([11, 11, 11, 11, 11, 11, 11], np.uint8))
    for context in [np.zeros(0, np.uint8), *seen, *unseen]:
        p = next_distribution(model, context)
        assert p.shape == (V,) and p.dtype == np.float64
        assert np.all(p > 0)
        assert abs(p.sum() - 1.0) < 1e-12


@pytest.mark.parametrize("order", [1, 2, 3, 6])
def test_stream_matches_next_distribution(text, order):
    model = fit_kneser_ney(text[:2000], 12, order)
    held_out = text[2000:]
    log_p = log_prob_stream(model, held_out)                   # (N-1,): targets held_out[1:]
    assert log_p.shape == (len(held_out) - 1,)
    rng = np.random.default_rng(0)
    # the first few positions have a truncated context; always check them
    for t in [1, 2, 3, 4, 5, 6, *rng.integers(1, len(held_out), 50)]:
        p = next_distribution(model, held_out[:t])
        assert log_p[t - 1] == pytest.approx(math.log(p[held_out[t]]), abs=1e-12)


def reference_log_probs(train: list[int], ids: list[int], vocab_size: int, order: int,
                        discounts: list[np.ndarray]) -> list[float]:
    """log p(ids[1:]) under interpolated modified KN fit to train, with dicts of tuples."""
    grams = [Counter(tuple(train[s: s + n]) for s in range(len(train) - n + 1))
             for n in range(order + 1)]
    counts = [dict(grams[order])] if order else []
    for n in range(order - 1, 0, -1):                       # continuation counts below the top
        left = defaultdict(set)
        for g in grams[n + 1]:
            left[g[1:]].add(g[0])
        counts.insert(0, {g: len(left[g]) for g in grams[n]})
    children = [defaultdict(dict) for _ in range(order)]
    for n in range(order):
        for g, c in counts[n].items():
            children[n][g[:-1]][g[-1]] = c

    def prob(h: tuple, w: int) -> float:
        n = len(h) + 1
        lower = prob(h[1:], w) if n > 1 else 1.0 / vocab_size
        kids = children[n - 1].get(h, {})
        total = sum(kids.values())
        if total == 0:
            return lower
        d = [0.0, *discounts[n - 1]]
        gamma = sum(d[min(c, 3)] for c in kids.values()) / total
        c = kids.get(w, 0)
        return max(c - d[min(c, 3)], 0.0) / total + gamma * lower

    return [math.log(prob(tuple(ids[max(0, t - order + 1): t]), ids[t]))
            for t in range(1, len(ids))]


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_matches_pure_python_reference(order):
    train = random_text(400, 5, seed=order).tolist()
    held_out = random_text(60, 5, seed=10 + order).tolist()
    model = fit_kneser_ney(np.array(train), 5, order)
    discounts = [model.level(n).discounts for n in range(1, order + 1)]
    expected = reference_log_probs(train, held_out, 5, order, discounts)
    got = log_prob_stream(model, np.array(held_out))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_hand_checked_model():
    """V = 3 (a, b, c), order 2, arrays written by hand; probabilities worked out on paper."""
    V = 3
    arrays = {
        "ngram/keys_1": np.array([0, 1, 2]),                   # a, b, c
        "ngram/counts_1": np.array([1, 2, 1]),                 # continuation counts
        "ngram/discounts_1": np.array([0.5, 1.0, 1.5]),
        "ngram/keys_2": np.array([0 * V + 1, 0 * V + 2, 1 * V + 0]),    # ab, ac, ba
        "ngram/counts_2": np.array([3, 1, 1]),
        "ngram/discounts_2": np.array([0.5, 1.0, 1.5]),
    }
    model = NGramModel.from_arrays(arrays, V, order=2)
    # unigram: c(.) = 4, gamma = (0.5 + 1 + 0.5) / 4 = 1/2
    unigram = np.array([0.5 / 4 + 1 / 6, 1 / 4 + 1 / 6, 0.5 / 4 + 1 / 6])
    np.testing.assert_allclose(next_distribution(model, []), unigram, atol=1e-15)
    # after a: c(a.) = 4, gamma = (1.5 + 0.5) / 4 = 1/2; ab keeps 3 - 1.5, ac keeps 1 - 0.5
    after_a = np.array([0.5 * unigram[0], 1.5 / 4 + 0.5 * unigram[1], 0.5 / 4 + 0.5 * unigram[2]])
    np.testing.assert_allclose(next_distribution(model, [2, 0]), after_a, atol=1e-15)
    # after b: only ba, seen once: c(b.) = 1, gamma = 0.5
    after_b = 0.5 * unigram + np.array([0.5, 0, 0])
    np.testing.assert_allclose(next_distribution(model, [1]), after_b, atol=1e-15)
    # c never starts a bigram: back off fully to the unigram
    np.testing.assert_allclose(next_distribution(model, [0, 2]), unigram, atol=1e-15)
    np.testing.assert_allclose(log_prob_stream(model, np.array([0, 1, 2, 0])),
                               np.log([after_a[1], after_b[2], unigram[0]]), atol=1e-15)


def test_fit_counts_and_discounts_by_hand():
    model = fit_kneser_ney(np.array([0, 1, 0, 1, 2]), 3, order=2)        # "ababc"
    bigrams = model.level(2)
    assert bigrams.keys.tolist() == [0 * 3 + 1, 1 * 3 + 0, 1 * 3 + 2]    # ab, ba, bc
    assert bigrams.counts.tolist() == [2, 1, 1]                        # raw counts at the top
    assert model.level(1).counts.tolist() == [1, 1, 1]                 # a<-b, b<-a, c<-b
    # n1 = 4, n2 = 2, n3 = 1, n4 = 1: Y = 1/2, D1 = 1 - 2Y/2, D2 = 2 - 3Y/2, D3 = 3 - 4Y
    counts = np.array([1, 1, 1, 1, 2, 2, 3, 4, 9])
    np.testing.assert_allclose(_discounts(counts), [0.5, 1.25, 1.0])


def test_round_trip_and_schema(text):
    model = fit_kneser_ney(text, 12, order=5)
    arrays = model.to_arrays()
    expected = schema(12, 5, model.sizes())
    assert set(arrays) == set(expected)
    for name, arr in arrays.items():
        assert (str(arr.dtype), arr.shape) == expected[name], name
    again = NGramModel.from_arrays({k: v.copy() for k, v in arrays.items()}, 12, 5)
    assert again.sizes() == model.sizes()
    np.testing.assert_array_equal(log_prob_stream(again, text), log_prob_stream(model, text))


def test_round_trip_through_npz(text, tmp_path: Path):
    model = fit_kneser_ney(text, 12, order=3)
    np.savez(tmp_path / "m.npz", **model.to_arrays())
    with np.load(tmp_path / "m.npz", allow_pickle=False) as loaded:
        again = NGramModel.from_arrays(loaded, 12, 3)
    np.testing.assert_array_equal(log_prob_stream(again, text), log_prob_stream(model, text))


@pytest.mark.parametrize("damage, reason", [
    (lambda a: a.pop("ngram/counts_2"), "missing"),
    (lambda a: a.__setitem__("ngram/keys_2", a["ngram/keys_2"][::-1].copy()), "sorted"),
    (lambda a: a.__setitem__("ngram/keys_2", a["ngram/keys_2"][:2].copy()), "counts_2 must be"),
    (lambda a: a["ngram/counts_1"].__setitem__(0, -1), "negative"),
    (lambda a: a.__setitem__("ngram/counts_1", a["ngram/counts_1"].astype(np.int32)), "int64"),
    (lambda a: a["ngram/keys_3"].__setitem__(-1, 10**12), "outside"),
    (lambda a: a["ngram/discounts_1"].__setitem__(0, 1.5), "D_k <= k"),
    (lambda a: a["ngram/discounts_2"].__setitem__(2, np.nan), "finite"),
])
def test_from_arrays_rejects_bad_arrays(text, damage, reason):
    arrays = {k: v.copy() for k, v in fit_kneser_ney(text, 12, order=3).to_arrays().items()}
    damage(arrays)
    with pytest.raises(ValueError, match=reason):
        NGramModel.from_arrays(arrays, 12, 3)


def test_id_dtypes_and_short_streams(text):
    dtypes = (np.uint8, np.uint16, np.uint32)
    models = [fit_kneser_ney(text.astype(dt), 12, order=4) for dt in dtypes]
    scores = [log_prob_stream(m, text[:100].astype(np.uint32)) for m in models]
    np.testing.assert_array_equal(scores[0], scores[1])
    np.testing.assert_array_equal(scores[0], scores[2])
    assert log_prob_stream(models[0], text[:0]).shape == (0,)
    assert log_prob_stream(models[0], text[:1]).shape == (0,)
    assert log_prob_stream(models[0], text[:2]).shape == (1,)
    with pytest.raises(ValueError, match="lie in"):
        log_prob_stream(models[0], np.array([0, 12]))


def test_training_text_shorter_than_order():
    model = fit_kneser_ney(np.array([3, 1]), 5, order=6)
    assert model.sizes() == [2, 1, 0, 0, 0, 0]
    p = next_distribution(model, [1, 3, 1, 3, 1, 3, 1])
    assert abs(p.sum() - 1) < 1e-12


def test_large_vocabulary_keys_do_not_overflow():
    # a base-V key of 8 characters would overflow int64 for V = 300000; trie keys stay small
    rng = np.random.default_rng(0)
    V = 300_000
    ids = np.repeat(rng.integers(0, V, 50), 4).astype(np.uint32)       # runs of repeats
    model = fit_kneser_ney(ids, V, order=8)
    p = next_distribution(model, ids[-20:])
    assert abs(p.sum() - 1) < 1e-12
    assert np.all(log_prob_stream(model, ids) < 0)


def load_ids(path: Path) -> tuple[np.ndarray, int]:
    """ids (N,) into the sorted code points of the whole file, and V."""
    text = path.read_text(encoding="utf-8")
    vocab, ids = np.unique(np.frombuffer(text.encode("utf-32-le"), np.uint32), return_inverse=True)
    return ids.astype(np.uint16), len(vocab)


def test_tinyshakespeare_order6_benchmark(tiny_shakespeare):
    ids, V = load_ids(tiny_shakespeare)
    n_val = int(len(ids) * 0.1)
    model = fit_kneser_ney(ids[: len(ids) - n_val], V, order=6)
    nats = -log_prob_stream(model, ids[len(ids) - n_val:]).mean()
    assert V == 65
    assert nats <= 1.568
