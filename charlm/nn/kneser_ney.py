"""Interpolated modified Kneser-Ney character n-gram model on integer id arrays.

Dimensions: N characters in a stream, V vocabulary size, n an order (1..order), M_n the number of
distinct n-grams kept for order n (M_0 = 1: the single empty context).

Probabilities (Chen & Goodman 1998, "interpolated modified Kneser-Ney"), from order 1 upwards:

    p_0(w)     = 1 / V
    p_n(w | h) = max(c_n(hw) - D_n(c_n(hw)), 0) / c_n(h.) + gamma_n(h) * p_{n-1}(w | h')
    gamma_n(h) = (D_n1 * N1(h.) + D_n2 * N2(h.) + D_n3 * N3+(h.)) / c_n(h.)

where h' is h without its first character, c_n(h.) = sum_w c_n(hw), and Nk(h.) counts the w with
c_n(hw) = k (k or more for N3+). At the model's top order c_n is the raw count in the training
text; below it c_n(hw) is the continuation count, the number of distinct characters v for which
vhw occurs. A context h with c_n(h.) = 0 (never seen) leaves p_n = p_{n-1}: it backs off fully.
The three discounts per order come from the count-of-counts n_k of that order's c_n:

    Y = n_1 / (n_1 + 2 n_2)
    D_n1 = 1 - 2Y n_2 / n_1        D_n2 = 2 - 3Y n_3 / n_2        D_n3 = 3 - 4Y n_4 / n_3

Keys. An n-gram is stored as one int64, its rank in a trie rather than a base-V number:

    key_1(w)       = w
    key_n(h w)     = index_{n-1}(h) * V + w        (n >= 2)

index_{n-1}(h) is the position of h in the sorted key array of order n-1 (every prefix of a seen
n-gram is a seen (n-1)-gram). Sorting by key is lexicographic order, the children of context h
are one contiguous run of keys, and a key is below M_{n-1} * V <= N * V, so it never overflows
int64 whatever the order and vocabulary (a base-V key overflows at 65**11).

Checkpoint arrays (`NGramModel.to_arrays`, checked by `schema` and `NGramModel.from_arrays`),
for n = 1..order:

    ngram/keys_{n}       int64   (M_n,)  strictly increasing; 0 <= key < M_{n-1} * V
    ngram/counts_{n}     int64   (M_n,)  >= 0; raw counts at n = order, continuation counts below
    ngram/discounts_{n}  float64 (3,)    D_n1, D_n2, D_n3 with 0 <= D_nk <= k

The vocabulary size and order are not arrays: the caller stores them (and `sizes()`) in its
config. Everything else the model uses is derived from these arrays when it is built.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Array = np.ndarray

KEY_DTYPE = np.dtype(np.int64)
COUNT_DTYPE = np.dtype(np.int64)
DISCOUNT_DTYPE = np.dtype(np.float64)


@dataclass(frozen=True)
class _Order:
    """One order's tables: the stored arrays plus what scoring derives from them."""

    keys: Array          # (M_n,) int64, sorted trie keys
    counts: Array        # (M_n,) int64, raw or continuation counts
    discounts: Array     # (3,) float64, D_n1, D_n2, D_n3
    numer: Array         # (M_n,) float64, max(c - D(c), 0): the discounted count of each n-gram
    denom: Array         # (M_{n-1},) float64, c_n(h.) of each context
    gamma: Array         # (M_{n-1},) float64, the weight left for the lower order (0 if unseen)


class NGramModel:
    """A trained model: per order, sorted trie keys, counts and three discounts (all numpy)."""

    def __init__(self, vocab_size: int, keys: list[Array], counts: list[Array],
                 discounts: list[Array]):
        """keys[n-1], counts[n-1]: (M_n,) int64; discounts[n-1]: (3,) float64. Not validated."""
        self.vocab_size = int(vocab_size)
        self.order = len(keys)
        self._orders: list[_Order] = []
        n_contexts = 1                               # order 1 has the one empty context
        for k, c, d in zip(keys, counts, discounts, strict=True):
            self._orders.append(_derive(k, c, d, n_contexts, self.vocab_size))
            n_contexts = len(k)

    def sizes(self) -> list[int]:
        """M_n for n = 1..order: the number of stored n-grams, for the checkpoint config."""
        return [len(o.keys) for o in self._orders]

    def to_arrays(self) -> dict[str, Array]:
        """The checkpoint members; layout and dtypes in the module docstring."""
        arrays = {}
        for n, o in enumerate(self._orders, start=1):
            arrays[f"ngram/keys_{n}"] = o.keys
            arrays[f"ngram/counts_{n}"] = o.counts
            arrays[f"ngram/discounts_{n}"] = o.discounts
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, Array], vocab_size: int, order: int) -> NGramModel:
        """Rebuild from to_arrays() output; raise ValueError saying what is wrong with them."""
        if vocab_size < 1 or order < 1:
            raise ValueError(f"vocab_size and order must be >= 1, got {vocab_size} and {order}")
        keys, counts, discounts = [], [], []
        n_contexts = 1
        for n in range(1, order + 1):
            k, c, d = (_member(arrays, f"ngram/{name}_{n}") for name in
                       ("keys", "counts", "discounts"))
            _check_order(n, k, c, d, n_contexts, vocab_size)
            keys.append(k)
            counts.append(c)
            discounts.append(d)
            n_contexts = len(k)
        return cls(vocab_size, keys, counts, discounts)

    def level(self, n: int) -> _Order:
        """The tables of order n (1-based); internal to this module and its tests."""
        return self._orders[n - 1]


def schema(vocab_size: int, order: int, sizes: list[int]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """The exact (str(dtype), shape) of every checkpoint member for a model of these sizes."""
    if len(sizes) != order:
        raise ValueError(f"sizes has {len(sizes)} entries but the order is {order}")
    members = {}
    for n, m in enumerate(sizes, start=1):
        members[f"ngram/keys_{n}"] = (str(KEY_DTYPE), (int(m),))
        members[f"ngram/counts_{n}"] = (str(COUNT_DTYPE), (int(m),))
        members[f"ngram/discounts_{n}"] = (str(DISCOUNT_DTYPE), (3,))
    return members


def fit_kneser_ney(ids: Array, vocab_size: int, order: int = 6) -> NGramModel:
    """Count every n-gram of ids (N,) up to `order` and return the interpolated KN model."""
    return fit_kneser_ney_orders(ids, vocab_size, order)[-1]


def fit_kneser_ney_orders(ids: Array, vocab_size: int, max_order: int) -> list[NGramModel]:
    """The KN models of every order 1..max_order of ids (N,), from one counting pass: the
    model of order n keeps raw counts at n and continuation counts below, so each order's
    two kinds of counts are kept."""
    x = _as_ids(ids, vocab_size)
    if max_order < 1:
        raise ValueError(f"order must be >= 1, got {max_order}")
    keys, raw, continuation = [], [], []
    prefix_index = np.zeros(len(x), np.int64)     # index of the (n-1)-gram starting at each s
    for n in range(1, max_order + 1):
        # the n-gram starting at s is its (n-1)-gram prefix's index, then its last character
        window_keys = prefix_index[: len(x) - n + 1] * vocab_size + x[n - 1:]     # (N-n+1,)
        k, first, index, c = np.unique(window_keys, return_index=True, return_inverse=True,
                                       return_counts=True)
        if n > 1:
            # order n-1's continuation counts: each distinct n-gram adds one to its suffix,
            # the (n-1)-gram that starts one character after it
            suffix = prefix_index[first + 1]
            continuation.append(np.bincount(suffix, minlength=len(keys[-1]))
                                .astype(COUNT_DTYPE))
        keys.append(k.astype(KEY_DTYPE))
        raw.append(c.astype(COUNT_DTYPE))
        prefix_index = index.reshape(-1)
    models = []
    for n in range(1, max_order + 1):
        counts = continuation[:n - 1] + [raw[n - 1]]
        models.append(NGramModel(vocab_size, keys[:n], counts, [_discounts(c) for c in counts]))
    return models


def log_prob_stream(model: NGramModel, ids: Array) -> Array:
    """Natural-log probability of ids[1:] (N-1,) float64, each given all characters before it.

    Position t uses the last order-1 characters before it, or all t of them near the start.
    """
    x = _as_ids(ids, model.vocab_size)
    n_pred = len(x) - 1
    if n_pred <= 0:
        return np.zeros(0, np.float64)
    windows = _window_indices(model, x)
    p = np.full(n_pred, 1.0 / model.vocab_size)    # p_0, for targets x[1:]
    for n in range(1, model.order + 1):
        # the n-gram ending at target t starts at s = t - n + 1; targets t < n - 1 lack it
        first_target = max(n - 1, 1)
        starts = np.arange(first_target - n + 1, n_pred + 2 - n)     # s for t = first..N-1
        context = windows[n - 1][starts] if n > 1 else np.zeros(len(starts), np.int64)
        gram = windows[n][starts]
        p[first_target - 1:] = _interpolate(model.level(n), context, gram, p[first_target - 1:])
    return np.log(p)


def next_distribution(model: NGramModel, context_ids: Array) -> Array:
    """p(. | context) (V,) float64 summing to 1; only the last order-1 ids of the context count."""
    V = model.vocab_size
    x = _as_ids(context_ids, V)
    tail = x[len(x) - min(len(x), model.order - 1):]            # the part the model can use
    windows = _window_indices(model, tail)
    p = np.full(V, 1.0 / V)
    for n in range(1, min(model.order, len(tail) + 1) + 1):
        context = int(windows[n - 1][len(tail) - n + 1]) if n > 1 else 0
        level = model.level(n)
        if context < 0 or level.denom[context] == 0:
            continue                                # unseen context: keep the lower order
        lo, hi = np.searchsorted(level.keys, [context * V, (context + 1) * V])
        p = level.gamma[context] * p
        p[level.keys[lo:hi] - context * V] += level.numer[lo:hi] / level.denom[context]
    return p


def _interpolate(level: _Order, context: Array, gram: Array, p_lower: Array) -> Array:
    """p_n for each position from its context index, n-gram index (-1: unseen) and p_{n-1}."""
    seen = context >= 0
    denom = np.where(seen, level.denom[np.maximum(context, 0)], 0.0)
    seen &= denom > 0
    numer = np.where(gram >= 0, level.numer[np.maximum(gram, 0)], 0.0)
    gamma = level.gamma[np.maximum(context, 0)]
    mixed = numer / np.where(seen, denom, 1.0) + gamma * p_lower
    return np.where(seen, mixed, p_lower)


def _window_indices(model: NGramModel, x: Array) -> list[Array]:
    """windows[n][s] = index in order n of the n-gram x[s:s+n], -1 if unseen (n = 1..order).

    windows[0] is unused. Each order is one vectorised searchsorted over the whole stream.
    """
    windows: list[Array] = [np.zeros(0, np.int64)]
    prefix = np.zeros(len(x), np.int64)
    for n in range(1, model.order + 1):
        if len(x) < n:
            windows.append(np.zeros(0, np.int64))
            continue
        keys = model.level(n).keys
        prefix = prefix[: len(x) - n + 1]
        wanted = prefix * model.vocab_size + x[n - 1:]                  # (N-n+1,)
        where = np.searchsorted(keys, wanted)
        found = (prefix >= 0) & (where < len(keys))
        found[found] = keys[where[found]] == wanted[found]
        prefix = np.where(found, where, -1)
        windows.append(prefix)
    return windows


def _derive(keys: Array, counts: Array, discounts: Array, n_contexts: int,
            vocab_size: int) -> _Order:
    """Discounted counts per n-gram, and c(h.) and gamma per context, from the stored arrays."""
    parent = keys // vocab_size                     # each n-gram's context index in order n-1
    # D(c): 0 for c = 0 (a continuation count can be 0), else D1, D2, D3 for c = 1, 2, >= 3
    per_count = np.concatenate([[0.0], discounts])
    numer = np.maximum(counts - per_count[np.minimum(counts, 3)], 0.0)
    denom = np.bincount(parent, weights=counts, minlength=n_contexts).astype(np.float64)
    left = np.bincount(parent, weights=per_count[np.minimum(counts, 3)], minlength=n_contexts)
    gamma = np.divide(left, denom, out=np.zeros(n_contexts), where=denom > 0)
    return _Order(keys, counts, discounts, numer, denom, gamma)


def _discounts(counts: Array) -> Array:
    """Chen & Goodman's D1, D2, D3+ (3,) from the count-of-counts; clipped so p sums to 1.

    A small text can lack some n_k; a missing ratio then falls back to Y (plain KN's D), and
    to 0.5 if even Y is undefined.
    """
    n1, n2, n3, n4 = (int(np.count_nonzero(counts == k)) for k in (1, 2, 3, 4))
    y = n1 / (n1 + 2 * n2) if n1 + 2 * n2 > 0 else 0.5
    d = np.array([
        1 - 2 * y * n2 / n1 if n1 > 0 else y,
        2 - 3 * y * n3 / n2 if n2 > 0 else y,
        3 - 4 * y * n4 / n3 if n3 > 0 else y,
    ])
    # D_k > k would give n-grams of count k negative mass; D_k < 0 would add mass
    return np.clip(d, 0.0, [1.0, 2.0, 3.0]).astype(DISCOUNT_DTYPE)


def _as_ids(ids: Array, vocab_size: int) -> Array:
    """ids as a 1-D int64 array, checked to lie in [0, vocab_size)."""
    x = np.asarray(ids)
    if x.ndim != 1 or not (np.issubdtype(x.dtype, np.integer) or x.size == 0):
        raise ValueError(f"ids must be a 1-D integer array, got {x.dtype} {x.shape}")
    x = x.astype(np.int64)
    if x.size and (x.min() < 0 or x.max() >= vocab_size):
        raise ValueError(f"ids must lie in [0, {vocab_size}), got [{x.min()}, {x.max()}]")
    return x


def _member(arrays: dict[str, Array], name: str) -> Array:
    """arrays[name] as an ndarray, or ValueError if missing."""
    if name not in arrays:
        raise ValueError(f"missing array {name}")
    return np.asarray(arrays[name])


def _check_order(n: int, keys: Array, counts: Array, discounts: Array, n_contexts: int,
                 vocab_size: int) -> None:
    """Raise ValueError unless order n's arrays meet the contract of the module docstring."""
    members = {"keys": keys, "counts": counts, "discounts": discounts}
    for (dtype, shape), (name, arr) in zip(schema(vocab_size, 1, [len(keys)]).values(),
                                           members.items(), strict=True):
        if str(arr.dtype) != dtype or arr.shape != shape:
            raise ValueError(f"ngram/{name}_{n} must be {dtype} {shape}, "
                             f"got {arr.dtype} {arr.shape}")
    if len(keys) and np.any(np.diff(keys) <= 0):
        raise ValueError(f"ngram/keys_{n} is not sorted and unique")
    if len(keys) and (keys[0] < 0 or keys[-1] >= n_contexts * vocab_size):
        raise ValueError(f"ngram/keys_{n} has keys outside [0, {n_contexts} * {vocab_size})")
    if np.any(counts < 0):
        raise ValueError(f"ngram/counts_{n} has negative counts")
    if not np.all(np.isfinite(discounts)) or np.any(discounts < 0) or np.any(discounts > [1, 2, 3]):
        raise ValueError(f"ngram/discounts_{n} must be finite with 0 <= D_k <= k")
