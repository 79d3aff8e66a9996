"""Synthetic corpora whose true entropy rate is known, and a text's statistics.

    synth_markov     an order-k Markov chain with Dirichlet transitions and its exact entropy rate
    synth_brackets   a copy task (a random segment, "|", the same segment again) and its exact rate
    corpus_stats     counts, frequent and rare characters, unigram entropy

A model trained on a synthetic source can be checked against the rate no model can beat.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter

import numpy as np


def synth_markov(n_chars: int, order: int = 2, alphabet: str = "abcde", seed: int = 0,
                 concentration: float = 0.5) -> tuple[str, float]:
    """n_chars of a random order-k Markov source over `alphabet`, and its entropy rate in nats/char.

    Each of the K**order contexts gets its own next-character distribution drawn from a
    symmetric Dirichlet(concentration) (small values: peaked, predictable; large: near uniform).
    The first `order` characters are drawn from the stationary distribution, so the text is a
    sample of the stationary process whose rate `markov_entropy_rate` gives exactly.
    """
    K = len(alphabet)
    if K == 0 or len(set(alphabet)) != K:
        raise ValueError(f"alphabet must be non-empty with distinct characters, got {alphabet!r}")
    if order < 0 or K**order > 1_000_000:
        raise ValueError(f"need 0 <= order and len(alphabet)**order <= 1e6, got order {order}")
    if n_chars < 0 or concentration <= 0:
        raise ValueError("n_chars must be >= 0 and concentration > 0")
    rng = np.random.default_rng(seed)
    transitions = rng.dirichlet(np.full(K, float(concentration)), size=K**order)  # (S, K)
    stationary = _stationary(transitions)
    state = int(rng.choice(len(stationary), p=stationary))
    first = [(state // K**(order - 1 - j)) % K for j in range(order)]    # the state's digits
    out = first[:n_chars]
    # bisect on Python lists: one draw per character is the whole cost, so keep it out of numpy
    cdf = np.cumsum(transitions, axis=1)
    cdf[:, -1] = 1.0                                 # a draw in [0, 1) can never fall past it
    cdf_rows = cdf.tolist()
    n_states = K**order
    for u in rng.random(max(n_chars - order, 0)).tolist():
        symbol = bisect.bisect_right(cdf_rows[state], u)
        out.append(symbol)
        state = (state * K + symbol) % n_states
    return "".join(alphabet[i] for i in out), markov_entropy_rate(transitions)


def markov_entropy_rate(transitions: np.ndarray) -> float:
    """sum_s pi(s) H(P(.|s)) in nats for transitions (K**k, K) of an order-k chain over K symbols.

    Row s is the context whose base-K digits are the last k symbols, oldest first.
    """
    stationary = _stationary(transitions)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(transitions > 0, -transitions * np.log(transitions), 0.0)
    return float(stationary @ terms.sum(axis=1))


def synth_brackets(n_chars: int, seed: int = 0, alphabet: str = "abcd", min_len: int = 20,
                   max_len: int = 30, delimiter: str = "|",
                   terminator: str = "\n") -> tuple[str, float]:
    """A copy task with long-range dependencies: n_chars of it and its entropy rate in nats/char.

    Each unit is `segment + delimiter + segment + terminator`: L ~ uniform{min_len..max_len}
    letters drawn uniformly from `alphabet`, then the same letters again. Everything after the
    delimiter is determined, so a unit carries log(max_len - min_len + 1) + E[L] log|alphabet| nats
    over 2 E[L] + 2 characters, and the rate is their ratio. Predicting the copy needs a memory of
    L + 1 characters back (21 to 31 by default): an LSTM trained with 64-step TBPTT can reach the
    rate, a model without that memory pays about log|alphabet| on every copied letter.
    """
    K = len(alphabet)
    if K == 0 or len(set(alphabet)) != K or {delimiter, terminator} & set(alphabet):
        raise ValueError("alphabet must have distinct letters and exclude delimiter and terminator")
    if len(delimiter) != 1 or len(terminator) != 1 or delimiter == terminator:
        raise ValueError("delimiter and terminator must be two different single characters")
    if not 1 <= min_len <= max_len or n_chars < 0:
        raise ValueError(f"need 1 <= min_len <= max_len and n_chars >= 0, got {min_len}, {max_len}")
    rng = np.random.default_rng(seed)
    n_units = n_chars // (2 * min_len + 2) + 1                # enough even if every L = min_len
    lengths = rng.integers(min_len, max_len + 1, size=n_units)
    letters = np.array(list(alphabet))[rng.integers(0, K, size=int(lengths.sum()))]
    segments = np.split(letters, np.cumsum(lengths)[:-1])
    units = ("".join(s) for s in segments)
    text = "".join(f"{s}{delimiter}{s}{terminator}" for s in units)[:n_chars]
    mean_len = (min_len + max_len) / 2
    rate = (math.log(max_len - min_len + 1) + mean_len * math.log(K)) / (2 * mean_len + 2)
    return text, rate


def corpus_stats(text: str, rare_threshold: int = 5) -> dict:
    """Counts and unigram entropy of a text.

    Keys: chars, lines (newline-terminated lines, plus one for a last line without "\\n"),
    vocab_size, top (the 10 most frequent (char, count), most frequent first), entropy_nats and
    entropy_bits (of the character unigram distribution), rare ((char, count) with
    count < rare_threshold, rarest first).
    """
    counts = Counter(text)
    total = len(text)
    probs = np.array(list(counts.values()), np.float64) / max(total, 1)
    entropy = float(-(probs * np.log(probs)).sum()) if total else 0.0
    by_count = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    rare = sorted((item for item in counts.items() if item[1] < rare_threshold),
                  key=lambda item: (item[1], item[0]))
    return {
        "chars": total,
        "lines": text.count("\n") + (1 if text and not text.endswith("\n") else 0),
        "vocab_size": len(counts),
        "top": by_count[:10],
        "entropy_nats": entropy,
        "entropy_bits": entropy / math.log(2),
        "rare": rare,
    }


def _stationary(transitions: np.ndarray, tol: float = 1e-15, max_iter: int = 100_000) -> np.ndarray:
    """pi (S,) with pi = pi T for the k-gram chain of transitions (S, K), by power iteration.

    The chain moves from context s to (s * K + w) % S with probability transitions[s, w]; each
    step is one bincount over the S * K edges, so no (S, S) matrix is built.
    """
    S, K = transitions.shape
    following = (np.arange(S)[:, None] * K + np.arange(K)) % S            # (S, K)
    pi = np.full(S, 1.0 / S)
    for _ in range(max_iter):
        nxt = np.bincount(following.ravel(), weights=(pi[:, None] * transitions).ravel(),
                          minlength=S)
        nxt /= nxt.sum()
        if np.abs(nxt - pi).sum() < tol:
            return nxt
        pi = nxt
    return pi      # slow mixing (near-zero transitions): the last iterate is within ~tol anyway
